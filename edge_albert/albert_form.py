"""A BERT-family teacher written as an ALBERT, and structured slices of such an ALBERT.

Pruned students start from the teacher's own weights: :func:`to_albert` writes a BERT, MiniLM,
RoBERTa or (shared) ALBERT classifier as an ``AlbertForSequenceClassification`` with one layer
group per teacher layer (nothing shared), the embedding size equal to the hidden size and an
identity ``embedding_hidden_mapping_in``; its logits equal the teacher's to float rounding.
:func:`slice_albert` then keeps a subset of layers, attention heads, FFN neurons and hidden
(residual) dimensions. The widths are uniform across layers (each layer keeps its *own* best
heads and neurons, the same number of them), because transformers 5 no longer restores
per-layer pruned heads: the result is a plain ALBERT directory that transformers, the
converters and the runtime load as they are. A head count k needs a hidden size of k times the
head size (ALBERT derives the head size from both), so fewer heads means a narrower residual
stream; the embedding table keeps its width and ``embedding_hidden_mapping_in`` selects the
kept dimensions.
"""
from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .errors import ModelError

#: teacher families the ALBERT form (and so the pruner) supports, by ``config.model_type``
SUPPORTED = ("albert", "bert", "roberta", "xlm-roberta")
#: ... and those the converters also take: DistilBERT's head is pre_classifier + ReLU where
#: ALBERT's pooler has tanh, so its ALBERT form (``pooler_activation = "relu"``) is exact in
#: memory but would reload in transformers with tanh: converted, never saved or pruned
CONVERTIBLE = (*SUPPORTED, "distilbert")


@dataclass(frozen=True)
class Keep:
    """What a slice keeps of an unshared ALBERT (indices into the current model).

    ``layers``: layer groups, in order; ``heads`` / ``neurons``: per kept layer, the same number
    each; ``hidden``: residual dimensions (a multiple of the head size: ``len(heads[0])`` heads).
    """

    layers: tuple[int, ...]
    heads: tuple[tuple[int, ...], ...]
    neurons: tuple[tuple[int, ...], ...]
    hidden: tuple[int, ...]


def head_size(config: Any) -> int:
    return int(config.hidden_size // config.num_attention_heads)


def check_unshared(model: Any) -> None:
    cfg = model.config
    if cfg.num_hidden_groups != cfg.num_hidden_layers or getattr(cfg, "inner_group_num", 1) != 1:
        raise ModelError("slicing needs one layer group per pass (an ALBERT form from"
                         " to_albert), not shared layers")


@torch.no_grad()
def to_albert(teacher: Any, *, for_conversion: bool = False) -> Any:
    """The teacher as an unshared ``AlbertForSequenceClassification`` (same logits).

    BERT (MiniLM) and RoBERTa layers map one to one onto ALBERT's; RoBERTa's position table is
    shifted (its positions start after the padding id) and its classification head is ALBERT's
    pooler + classifier. A shared ALBERT is unshared (one group per pass, each a copy of its
    group's layer). ``for_conversion`` also takes DistilBERT (see :data:`CONVERTIBLE`).
    """
    from transformers import AlbertConfig, AlbertForSequenceClassification

    tc = teacher.config
    family = getattr(tc, "model_type", "?")
    if family == "distilbert" and for_conversion:
        return _distilbert_to_albert(teacher)
    if family not in SUPPORTED:
        raise ModelError(f"the pruner supports {', '.join(SUPPORTED)} teachers, not {family!r}",
                         hint="distil into a preset student instead (--student small)"
                         + ("; 'edge-albert convert' takes a DistilBERT as it is"
                            if family == "distilbert" else ""))
    if family == "albert" and getattr(tc, "inner_group_num", 1) != 1:
        raise ModelError("an ALBERT teacher with inner_group_num > 1 cannot be pruned")
    if getattr(tc, "position_embedding_type", "absolute") not in ("absolute", None):
        raise ModelError(f"position_embedding_type {tc.position_embedding_type!r} has no ALBERT"
                         " form (absolute positions only)")
    roberta = family in ("roberta", "xlm-roberta")
    shift = (tc.pad_token_id + 1) if roberta else 0
    layers = tc.num_hidden_layers
    cfg = AlbertConfig(**dict(
        vocab_size=tc.vocab_size, embedding_size=getattr(tc, "embedding_size", tc.hidden_size),
        hidden_size=tc.hidden_size, num_hidden_layers=layers, num_hidden_groups=layers,
        num_attention_heads=tc.num_attention_heads, intermediate_size=tc.intermediate_size,
        inner_group_num=1, hidden_act=tc.hidden_act, hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0, classifier_dropout_prob=0.1,
        max_position_embeddings=min(512, tc.max_position_embeddings - shift),
        type_vocab_size=tc.type_vocab_size, layer_norm_eps=tc.layer_norm_eps,
        num_labels=tc.num_labels, id2label=dict(tc.id2label), label2id=dict(tc.label2id),
        pad_token_id=tc.pad_token_id))
    student = AlbertForSequenceClassification(cfg).eval()
    a = student.albert
    base = getattr(teacher, teacher.base_model_prefix)
    emb = base.embeddings
    a.embeddings.word_embeddings.weight.copy_(emb.word_embeddings.weight)
    n = cfg.max_position_embeddings
    a.embeddings.position_embeddings.weight.copy_(emb.position_embeddings.weight[shift:shift + n])
    a.embeddings.token_type_embeddings.weight.copy_(emb.token_type_embeddings.weight)
    a.embeddings.LayerNorm.load_state_dict(emb.LayerNorm.state_dict())
    mapping = a.encoder.embedding_hidden_mapping_in
    if family == "albert":
        mapping.load_state_dict(base.encoder.embedding_hidden_mapping_in.state_dict())
        groups = base.encoder.albert_layer_groups
        for i in range(layers):
            src = groups[int(i / (layers / tc.num_hidden_groups))].albert_layers[0]
            a.encoder.albert_layer_groups[i].albert_layers[0].load_state_dict(src.state_dict())
        a.pooler.load_state_dict(base.pooler.state_dict())
        student.classifier.load_state_dict(teacher.classifier.state_dict())
        return student
    torch.nn.init.eye_(mapping.weight)
    mapping.bias.zero_()
    for i, src in enumerate(base.encoder.layer):
        bert_layer_into(a.encoder.albert_layer_groups[i].albert_layers[0], src)
    if roberta:  # RobertaClassificationHead: dense + tanh on <s>, then out_proj
        a.pooler.load_state_dict(teacher.classifier.dense.state_dict())
        student.classifier.load_state_dict(teacher.classifier.out_proj.state_dict())
    else:
        if getattr(base, "pooler", None) is None:
            raise ModelError("the teacher has no pooler (BERT's sequence classifier uses one)")
        a.pooler.load_state_dict(base.pooler.dense.state_dict())
        student.classifier.load_state_dict(teacher.classifier.state_dict())
    return student


def _distilbert_to_albert(teacher: Any) -> Any:
    """DistilBERT's layers map one to one too (no token types: two zero rows stand in); its
    head's ReLU replaces the pooler's tanh, recorded as ``config.pooler_activation``."""
    from transformers import AlbertConfig, AlbertForSequenceClassification

    tc = teacher.config
    layers = tc.n_layers
    cfg = AlbertConfig(**dict(
        vocab_size=tc.vocab_size, embedding_size=tc.dim, hidden_size=tc.dim,
        num_hidden_layers=layers, num_hidden_groups=layers, num_attention_heads=tc.n_heads,
        intermediate_size=tc.hidden_dim, inner_group_num=1, hidden_act=tc.activation,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, classifier_dropout_prob=0.1,
        max_position_embeddings=tc.max_position_embeddings, type_vocab_size=2,
        layer_norm_eps=1e-12,  # DistilBERT's LayerNorms use 1e-12 whatever the config says
        num_labels=tc.num_labels, id2label=dict(tc.id2label), label2id=dict(tc.label2id),
        pad_token_id=tc.pad_token_id))
    cfg.pooler_activation = "relu"
    student = AlbertForSequenceClassification(cfg).eval()
    a, base = student.albert, teacher.distilbert
    a.embeddings.word_embeddings.weight.copy_(base.embeddings.word_embeddings.weight)
    a.embeddings.position_embeddings.weight.copy_(base.embeddings.position_embeddings.weight)
    a.embeddings.token_type_embeddings.weight.zero_()
    a.embeddings.LayerNorm.load_state_dict(base.embeddings.LayerNorm.state_dict())
    mapping = a.encoder.embedding_hidden_mapping_in
    torch.nn.init.eye_(mapping.weight)
    mapping.bias.zero_()
    for i, src in enumerate(base.transformer.layer):
        dst = a.encoder.albert_layer_groups[i].albert_layers[0]
        att = src.attention
        for name, lin in (("query", att.q_lin), ("key", att.k_lin), ("value", att.v_lin),
                          ("dense", att.out_lin)):
            getattr(dst.attention, name).load_state_dict(lin.state_dict())
        dst.attention.LayerNorm.load_state_dict(src.sa_layer_norm.state_dict())
        dst.ffn.load_state_dict(src.ffn.lin1.state_dict())
        dst.ffn_output.load_state_dict(src.ffn.lin2.state_dict())
        dst.full_layer_layer_norm.load_state_dict(src.output_layer_norm.state_dict())
    a.pooler.load_state_dict(teacher.pre_classifier.state_dict())
    a.pooler_activation = torch.nn.ReLU()
    student.classifier.load_state_dict(teacher.classifier.state_dict())
    return student


@torch.no_grad()
def bert_layer_into(dst: Any, src: Any, neurons: torch.Tensor | None = None) -> None:
    """A BERT / RoBERTa layer's weights into an ALBERT layer (``neurons``: the FFN neurons to
    keep, in order, when the ALBERT layer's FFN is narrower)."""
    att, so = src.attention.self, src.attention.output
    dst.attention.query.load_state_dict(att.query.state_dict())
    dst.attention.key.load_state_dict(att.key.state_dict())
    dst.attention.value.load_state_dict(att.value.state_dict())
    dst.attention.dense.load_state_dict(so.dense.state_dict())
    dst.attention.LayerNorm.load_state_dict(so.LayerNorm.state_dict())
    _fill(dst.ffn, src.intermediate.dense, neurons)
    _fill(dst.ffn_output, src.output.dense, None, neurons)
    dst.full_layer_layer_norm.load_state_dict(src.output.LayerNorm.state_dict())


def full_keep(model: Any) -> Keep:
    """A :class:`Keep` that keeps everything of ``model``."""
    cfg = model.config
    r = range(cfg.num_hidden_layers)
    return Keep(tuple(r), tuple(tuple(range(cfg.num_attention_heads)) for _ in r),
                tuple(tuple(range(cfg.intermediate_size)) for _ in r),
                tuple(range(cfg.hidden_size)))


def _fill(dst: Any, src: Any, rows: torch.Tensor | None, cols: torch.Tensor | None = None
          ) -> None:
    """Copy the kept rows (outputs) and columns (inputs) of a Linear or LayerNorm into ``dst``."""
    w, b = src.weight.detach(), src.bias.detach()
    if rows is not None:
        w, b = w[rows], b[rows]
    if cols is not None:
        w = w[:, cols]
    dst.weight.copy_(w)
    dst.bias.copy_(b)


@torch.no_grad()
def slice_albert(model: Any, keep: Keep) -> Any:
    """A new, smaller ``AlbertForSequenceClassification`` holding ``keep`` of ``model``."""
    from transformers import AlbertForSequenceClassification

    check_unshared(model)
    d = head_size(model.config)
    k = len(keep.heads[0])
    if not keep.layers or any(len(h) != k for h in keep.heads) or \
            len({len(n) for n in keep.neurons}) != 1 or len(keep.hidden) != k * d:
        raise ModelError(f"not a uniform slice: {len(keep.layers)} layers, heads"
                         f" {[len(h) for h in keep.heads]}, neurons"
                         f" {[len(n) for n in keep.neurons]}, hidden {len(keep.hidden)}"
                         f" (needs {k} x {d})")
    cfg = copy.deepcopy(model.config)
    cfg.hidden_size, cfg.num_attention_heads = len(keep.hidden), k
    cfg.intermediate_size = len(keep.neurons[0])
    cfg.num_hidden_layers = cfg.num_hidden_groups = len(keep.layers)
    out = AlbertForSequenceClassification(cfg).eval()
    hid = torch.tensor(keep.hidden)
    src, dst = model.albert, out.albert
    dst.embeddings.load_state_dict(src.embeddings.state_dict())
    _fill(dst.encoder.embedding_hidden_mapping_in, src.encoder.embedding_hidden_mapping_in, hid)
    for i, g in enumerate(keep.layers):
        s = src.encoder.albert_layer_groups[g].albert_layers[0]
        t = dst.encoder.albert_layer_groups[i].albert_layers[0]
        dims = torch.tensor([h * d + j for h in keep.heads[i] for j in range(d)])
        neu = torch.tensor(keep.neurons[i])
        for name in ("query", "key", "value"):
            _fill(getattr(t.attention, name), getattr(s.attention, name), dims, hid)
        _fill(t.attention.dense, s.attention.dense, hid, dims)
        _fill(t.attention.LayerNorm, s.attention.LayerNorm, hid)
        _fill(t.ffn, s.ffn, neu, hid)
        _fill(t.ffn_output, s.ffn_output, hid, neu)
        _fill(t.full_layer_layer_norm, s.full_layer_layer_norm, hid)
    _fill(dst.pooler, src.pooler, hid, hid)
    _fill(out.classifier, model.classifier, None, hid)
    out.config._attn_implementation = model.config._attn_implementation
    return out


@torch.no_grad()
def share_layers(model: Any, groups: int) -> Any:
    """``model`` with its L layers merged, in order, into ``groups`` shared layer groups (ALBERT's
    cross-layer sharing): group g runs for the passes transformers assigns it
    (``int(i / (L / groups))``) and starts as the mean of those layers' weights."""
    from transformers import AlbertForSequenceClassification

    check_unshared(model)
    n = model.config.num_hidden_layers
    if not 1 <= groups < n or n % groups:
        raise ModelError(f"cannot share {n} layers in {groups} groups (a divisor of {n}, below it)",
                         hint="set distill.share_groups to a divisor of the pruned layer count")
    cfg = copy.deepcopy(model.config)
    cfg.num_hidden_groups = groups
    out = AlbertForSequenceClassification(cfg).eval()
    state = model.state_dict()
    merged = {k: v for k, v in state.items() if ".albert_layer_groups." not in k}
    prefix = "albert.encoder.albert_layer_groups."
    for g in range(groups):
        members = [i for i in range(n) if int(i / (n / groups)) == g]
        for key in (k for k in state if k.startswith(f"{prefix}{members[0]}.")):
            rest = key[len(f"{prefix}{members[0]}."):]
            merged[f"{prefix}{g}.{rest}"] = torch.stack(
                [state[f"{prefix}{i}.{rest}"] for i in members]).mean(0)
    out.load_state_dict(merged)
    out.config._attn_implementation = model.config._attn_implementation
    return out


@torch.no_grad()
def factorise_embeddings(model: Any, size: int) -> Any:
    """``model`` with its word embeddings factorised to ``size`` by a truncated SVD (V x E_old =
    U S V^T -> V x ``size`` = U_k S_k), position and token-type tables projected on the same
    basis, and ``embedding_hidden_mapping_in`` folded with the old LayerNorm's gain and bias.

    The embedding LayerNorm then normalises ``size`` dimensions instead of E_old: for centred
    inputs LN_old(x) ~ sqrt(E_old / size) * LN_new(y) V_k^T when x = y V_k^T, which the mapping
    absorbs; it is an approximation that the recovery distillation after it closes.
    """
    from transformers import AlbertForSequenceClassification

    emb, enc = model.albert.embeddings, model.albert.encoder
    old = emb.word_embeddings.weight.shape[1]
    if not 1 <= size < old:
        raise ModelError(f"embedding size {size} must be between 1 and the current {old}")
    _, _, vt = torch.linalg.svd(emb.word_embeddings.weight.float(), full_matrices=False)
    basis = vt[:size]  # size x E_old, orthonormal rows
    cfg = copy.deepcopy(model.config)
    cfg.embedding_size = size
    out = AlbertForSequenceClassification(cfg).eval()
    state = {k: v for k, v in model.state_dict().items()
             if not k.startswith(("albert.embeddings.", "albert.encoder.embedding_hidden"))}
    out.load_state_dict(state, strict=False)
    new = out.albert.embeddings
    new.word_embeddings.weight.copy_(emb.word_embeddings.weight @ basis.T)
    new.position_embeddings.weight.copy_(emb.position_embeddings.weight @ basis.T)
    new.token_type_embeddings.weight.copy_(emb.token_type_embeddings.weight @ basis.T)
    new.LayerNorm.weight.fill_(1.0)
    new.LayerNorm.bias.zero_()
    gamma, beta = emb.LayerNorm.weight, emb.LayerNorm.bias
    w, b = enc.embedding_hidden_mapping_in.weight, enc.embedding_hidden_mapping_in.bias
    mapping = out.albert.encoder.embedding_hidden_mapping_in
    mapping.weight.copy_((w * gamma) @ basis.T * (old / size) ** 0.5)
    mapping.bias.copy_(b + w @ beta)
    out.config._attn_implementation = model.config._attn_implementation
    return out


def skip_layers(model: Any, drop: Sequence[int]) -> Any:
    """``model`` without the layer groups in ``drop`` (everything else kept)."""
    full = full_keep(model)
    idx = [i for i in full.layers if i not in set(drop)]
    return slice_albert(model, Keep(tuple(idx), tuple(full.heads[i] for i in idx),
                                    tuple(full.neurons[i] for i in idx), full.hidden))


@torch.no_grad()
def max_logit_diff(a: Any, b: Any, *, vocab: int, seed: int = 0) -> float:
    """Max |logit difference| of two classifiers on padded random token ids."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, max(6, vocab), (8, 24), generator=g)
    mask = torch.ones_like(ids)
    for row, n in enumerate((24, 20, 13, 7, 24, 3, 17, 10)):
        mask[row, n:] = 0
    feed = {"input_ids": ids, "attention_mask": mask}
    return float((a(**feed).logits - b(**feed).logits).abs().max())


def write_albert_form(model_dir: str | Path, out_dir: str | Path, *, force: bool = False):
    """``edge-albert model albert-form``: a BERT-family classifier as an ALBERT directory with
    the same logits, which every converter (TFLite included) and the runtime take as it is."""
    from .artifacts import check_new_output, write_artifact
    from .modeling import copy_tokenizer_files, load_classifier, parameter_count, quiet_transformers

    check_new_output(out_dir, force)
    teacher = load_classifier(model_dir)
    albert = to_albert(teacher)
    diff = max_logit_diff(teacher, albert, vocab=teacher.config.vocab_size)
    if not diff <= 1e-4:
        raise ModelError(f"the ALBERT form differs from the model by {diff:.3g} in the logits",
                         where=model_dir, hint="a model variant the ALBERT form does not cover")
    quiet_transformers()
    inputs = [model_dir] if (Path(model_dir) / "manifest.json").is_file() else []
    with write_artifact(out_dir, stage="albert-form", config={"model": str(model_dir)},
                        inputs=inputs, force=force) as w:
        albert.save_pretrained(w.path)
        copy_tokenizer_files(model_dir, w.path)
        w.extra.update(source_model_type=teacher.config.model_type,
                       parameters=parameter_count(albert), max_abs_logit_diff=diff)
    return w.manifest


__all__ = ["SUPPORTED", "Keep", "bert_layer_into", "factorise_embeddings", "full_keep", "head_size",
           "max_logit_diff", "share_layers",
           "skip_layers", "slice_albert", "to_albert", "write_albert_form"]
