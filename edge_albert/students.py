"""Students: the size presets, an ``AlbertConfig`` from a preset or a JSON file, FLOPs and
latency, and initialising a preset student from the teacher where shapes allow.

Initialisation: the factorised embedding from a truncated SVD of the teacher's word embeddings
(V x H = U S V^T -> V x E = U_E S_E and E -> H via V_E), position and token-type embeddings
projected the same way; when the student has the teacher's width and heads (and an FFN no
wider), the shared layer(s), pooler and classifier are copied from the teacher (the middle layer
of each group's share, or the layers ``teacher_layers`` names; a narrower student FFN keeps the
teacher's most important neurons). Students cut from the teacher itself are
:mod:`~edge_albert.prune`'s.
"""
from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .errors import ConfigError
from .modeling import AlbertShape, albert_config


@dataclass(frozen=True)
class Preset:
    shape: AlbertShape
    note: str


# Sized against the MiniLM-L6 teacher (H 384, 6 layers, 22.7M parameters, 30,522 WordPiece ids);
# parameter counts below are with that vocabulary (an own 8k SentencePiece vocab saves ~2.9M).
PRESETS: dict[str, Preset] = {
    "tiny": Preset(AlbertShape(64, 128, 4, 2, 512), "H128 x 4 passes: ~2.1M params, ~0.08x teacher FLOPs"),
    "small": Preset(AlbertShape(128, 256, 4, 4, 1024), "H256 x 4 passes: ~4.8M params, ~0.30x teacher FLOPs (default)"),
    "medium": Preset(AlbertShape(128, 384, 2, 12, 1536), "teacher width x 2 passes, layer copied from the teacher: ~5.8M params, ~0.34x FLOPs"),
    "large": Preset(AlbertShape(128, 384, 6, 12, 1536, num_hidden_groups=2), "teacher width x 6 passes in 2 groups: ~7.6M params, ~1.0x FLOPs"),
}


def student_config(spec: str, *, vocab_size: int, label_names: Sequence[str], max_positions: int,
                   pad_token_id: int = 0):
    """An AlbertConfig from a preset name or an AlbertConfig JSON file."""
    from transformers import AlbertConfig

    if spec in PRESETS:
        return albert_config(PRESETS[spec].shape, vocab_size=vocab_size, label_names=label_names,
                             max_position_embeddings=max_positions, pad_token_id=pad_token_id)
    path = Path(spec)
    if not path.is_file():
        raise ConfigError(f"unknown student {spec!r}: expected a preset ({', '.join(PRESETS)})"
                          " or an AlbertConfig JSON file", key="distill.student")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ConfigError("student config is not valid JSON", where=path) from None
    if not isinstance(raw, dict):
        raise ConfigError("student config must be a JSON object", where=path)
    h, heads = raw.get("hidden_size", 768), raw.get("num_attention_heads", 12)
    if not isinstance(h, int) or not isinstance(heads, int) or heads < 1 or h % heads:
        raise ConfigError(f"hidden_size {h} is not divisible by num_attention_heads {heads}",
                          where=path, key="hidden_size")
    names = list(label_names)
    raw.update(vocab_size=vocab_size, num_labels=len(names), id2label=dict(enumerate(names)),
               label2id={n: i for i, n in enumerate(names)})
    raw.setdefault("max_position_embeddings", max_positions)
    raw.setdefault("hidden_act", "gelu_pytorch_tanh")
    try:
        return AlbertConfig(**{k: v for k, v in raw.items() if k not in ("architectures", "model_type")})
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"not a valid AlbertConfig ({exc})", where=path) from None


def flops_per_sequence(config, seq_len: int) -> int:
    """Multiply-adds x 2 of one forward pass at ``seq_len`` tokens (encoder, mapping, head)."""
    def get(name: str, distilbert_name: str) -> int:  # DistilBERT names them differently
        value = getattr(config, name, None)
        return int(getattr(config, distilbert_name) if value is None else value)

    h = get("hidden_size", "dim")
    i = get("intermediate_size", "hidden_dim")
    layers = get("num_hidden_layers", "n_layers")
    t = seq_len
    per_layer = 2 * t * (4 * h * h + 2 * h * i) + 2 * 2 * t * t * h
    e = getattr(config, "embedding_size", h)
    # ALBERT always runs embedding_hidden_mapping_in, also when E == H (a pruned student)
    mapping = 2 * t * e * h if (e != h or getattr(config, "model_type", "") == "albert") else 0
    head = 2 * h * h + 2 * h * config.num_labels
    return int(layers * per_layer + mapping + head)


@torch.no_grad()
def torch_latency_ms(model: Any, seq_len: int, *, batch: int = 1, runs: int = 20) -> float:
    """Median wall time of one torch forward pass (after warm-up)."""
    model.eval()
    ids = torch.full((batch, seq_len), 5, dtype=torch.long)
    mask = torch.ones_like(ids)
    for _ in range(3):
        model(input_ids=ids, attention_mask=mask)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        model(input_ids=ids, attention_mask=mask)
        times.append((time.perf_counter() - t0) * 1000)
    return round(float(np.median(times)), 3)


# ----------------------------------------------------------------------------- initialisation
def _encoder_parts(teacher: Any) -> dict[str, Any]:
    """Word/position/type embeddings and layers of a BERT-family teacher, where it has them."""
    base = getattr(teacher, teacher.base_model_prefix, None)
    emb = getattr(base, "embeddings", None)
    layers = None
    enc = getattr(base, "encoder", None) or getattr(base, "transformer", None)
    if enc is not None:
        layers = getattr(enc, "layer", None)
    return {"base": base, "emb": emb, "layers": layers}


@torch.no_grad()
def init_from_teacher(student: Any, teacher: Any, layers: Sequence[int] = ()) -> list[str]:
    """Copy what the shapes allow from the teacher; returns what was initialised.

    ``layers``: the teacher layer for each of the student's layer groups (default: the middle
    layer of each group's share of the teacher). A student FFN narrower than the teacher's keeps
    the teacher's most important neurons (see :func:`_copy_bert_layer`).
    """
    done: list[str] = []
    parts = _encoder_parts(teacher)
    emb = parts["emb"]
    if emb is None or not hasattr(emb, "word_embeddings"):
        return done
    s_cfg, s_emb = student.config, student.albert.embeddings
    w = emb.word_embeddings.weight.float()
    if w.shape[0] != s_emb.word_embeddings.weight.shape[0]:
        return done  # different vocabularies
    e = s_cfg.embedding_size
    if e > w.shape[1]:
        return done
    u, s, vt = torch.linalg.svd(w, full_matrices=False)
    basis = vt[:e]  # E x H_t
    s_emb.word_embeddings.weight.copy_(u[:, :e] * s[:e])
    done.append("word_embeddings (truncated SVD)")
    pos = getattr(emb, "position_embeddings", None)
    n = min(s_emb.position_embeddings.weight.shape[0], pos.weight.shape[0]) if pos is not None else 0
    if n and pos is not None:
        s_emb.position_embeddings.weight[:n].copy_(pos.weight[:n].float() @ basis.T)
        done.append("position_embeddings (projected)")
    tt = getattr(emb, "token_type_embeddings", None)
    if tt is not None:
        k = min(tt.weight.shape[0], s_emb.token_type_embeddings.weight.shape[0])
        s_emb.token_type_embeddings.weight[:k].copy_(tt.weight[:k].float() @ basis.T)
        done.append("token_type_embeddings (projected)")
    mapping = student.albert.encoder.embedding_hidden_mapping_in
    h_t, h_s = w.shape[1], s_cfg.hidden_size
    if h_s == h_t:
        mapping.weight.copy_(basis.T)  # E -> H_t, back to the teacher's hidden space
        mapping.bias.zero_()
        done.append("embedding_hidden_mapping_in (SVD basis)")
    t_cfg = teacher.config
    same_layer = (h_s == h_t and s_cfg.intermediate_size <= getattr(t_cfg, "intermediate_size", -1)
                  and s_cfg.num_attention_heads == t_cfg.num_attention_heads
                  and getattr(t_cfg, "model_type", "") in ("bert", "roberta", "electra", "xlm-roberta"))
    t_layers = parts["layers"]
    if same_layer and t_layers is not None:
        groups = student.albert.encoder.albert_layer_groups
        picks = list(layers) or [min(len(t_layers) - 1, (g * 2 + 1) * len(t_layers) // (2 * len(groups)))
                                 for g in range(len(groups))]
        for group, i in zip(groups, picks):
            _copy_bert_layer(group.albert_layers[0], t_layers[i])
        ffn = ("" if s_cfg.intermediate_size == t_cfg.intermediate_size else
               f", top {s_cfg.intermediate_size} of {t_cfg.intermediate_size} FFN neurons")
        done.append(f"shared layer(s) from teacher layer(s) {picks}{ffn}")
        base = parts["base"]
        if getattr(base, "pooler", None) is not None:
            student.albert.pooler.load_state_dict(base.pooler.dense.state_dict())
            done.append("pooler")
        cls = getattr(teacher, "classifier", None)
        if isinstance(cls, nn.Linear) and cls.weight.shape == student.classifier.weight.shape:
            student.classifier.load_state_dict(cls.state_dict())
            done.append("classifier")
    return done


def ffn_neuron_order(w_in: torch.Tensor, w_out: torch.Tensor) -> torch.Tensor:
    """FFN neurons, most important first: |row of the input weight| x |column of the output weight|.

    A weight-magnitude proxy for structured FFN pruning (cf. Michel et al. 2019 for heads; no
    data pass needed). ``w_in``: I x H (``nn.Linear`` H -> I), ``w_out``: H x I.
    """
    score = w_in.float().norm(dim=1) * w_out.float().norm(dim=0)
    return torch.argsort(score, descending=True)


def _copy_bert_layer(dst: Any, src: Any) -> None:
    """A BERT layer into an ALBERT layer; a narrower student FFN keeps the top neurons."""
    from .albert_form import bert_layer_into

    w_in, w_out = src.intermediate.dense.weight, src.output.dense.weight
    bert_layer_into(dst, src, ffn_neuron_order(w_in, w_out)[:dst.ffn.out_features].sort().values)


__all__ = ["PRESETS", "Preset", "ffn_neuron_order", "flops_per_sequence", "init_from_teacher",
           "student_config", "torch_latency_ms"]
