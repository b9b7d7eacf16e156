"""Models: load teachers from a local directory or a hub id; build random ALBERTs from a shape.

Shapes include the published albert-base/large/xlarge/xxlarge-v2 configs (for size and speed
benchmarks without downloading anything) and tiny configs for fast tests.
"""
from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ModelError


@dataclass(frozen=True)
class AlbertShape:
    """The size knobs of an ALBERT encoder."""

    embedding_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    num_hidden_groups: int = 1
    max_position_embeddings: int = 512


# Published v2 shapes (google-research/albert, Hugging Face config.json files) and test sizes.
SHAPES: dict[str, AlbertShape] = {
    "tiny": AlbertShape(16, 32, 2, 2, 64, max_position_embeddings=128),
    "tiny-12": AlbertShape(16, 32, 12, 2, 64, max_position_embeddings=128),
    # a small teacher trained from scratch by the built-in demo (about 1M parameters)
    "demo-teacher": AlbertShape(64, 256, 4, 4, 1024, max_position_embeddings=128),
    "base": AlbertShape(128, 768, 12, 12, 3072),
    "large": AlbertShape(128, 1024, 24, 16, 4096),
    "xlarge": AlbertShape(128, 2048, 24, 16, 8192),
    "xxlarge": AlbertShape(128, 4096, 12, 64, 16384),
}

def quiet_transformers() -> None:
    """Silence transformers' per-load progress bars and info logs (our CLI shows its own)."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*(/[\w.\-]+)?$")


def albert_config(
    shape: str | AlbertShape,
    *,
    vocab_size: int = 30000,
    num_labels: int = 2,
    label_names: Sequence[str] | None = None,
    **overrides: Any,
):
    """An ``AlbertConfig`` for a named shape (see :data:`SHAPES`) or an :class:`AlbertShape`."""
    from transformers import AlbertConfig

    if isinstance(shape, str):
        if shape not in SHAPES:
            raise ModelError(f"unknown ALBERT shape {shape!r} (known: {', '.join(SHAPES)})")
        shape = SHAPES[shape]
    if shape.hidden_size % shape.num_attention_heads:
        raise ModelError(f"hidden_size {shape.hidden_size} is not divisible by"
                         f" num_attention_heads {shape.num_attention_heads}")
    names = list(label_names) if label_names is not None else [str(i) for i in range(num_labels)]
    kw: dict[str, Any] = dict(
        vocab_size=vocab_size, embedding_size=shape.embedding_size, hidden_size=shape.hidden_size,
        num_hidden_layers=shape.num_hidden_layers, num_attention_heads=shape.num_attention_heads,
        intermediate_size=shape.intermediate_size, num_hidden_groups=shape.num_hidden_groups,
        max_position_embeddings=shape.max_position_embeddings, hidden_act="gelu_pytorch_tanh",
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, classifier_dropout_prob=0.1,
        num_labels=len(names), id2label=dict(enumerate(names)),
        label2id={n: i for i, n in enumerate(names)}, pad_token_id=0,
    )
    kw.update(overrides)
    return AlbertConfig(**kw)


def build_albert_classifier(config, *, seed: int = 0):
    """A randomly initialised ``AlbertForSequenceClassification`` (deterministic for a seed)."""
    import torch
    from transformers import AlbertForSequenceClassification

    torch.manual_seed(seed)
    model = AlbertForSequenceClassification(config)
    model.eval()
    return model


def parameter_count(model) -> int:
    """Unique parameters (ALBERT's shared layer counted once)."""
    return sum(p.numel() for p in model.parameters())


def trim_positions(model, length: int) -> int:
    """Keep only the position embeddings a ``length``-token input reads; returns the rows dropped.

    An exported file never sees more than its export spec's longest sequence (the runtime cuts
    there), so the other rows are dead weight: 384 of the 512 in the default student at length
    128, 0.59 MB in fp32 and 0.15 MB in int8. Position tables with a padding row (RoBERTa counts
    positions from ``padding_idx + 1``) keep that offset. Models without a learned absolute
    table are left as they are.
    """
    import torch

    emb = getattr(getattr(model, "base_model", model), "embeddings", None)
    table = getattr(emb, "position_embeddings", None)
    if emb is None or not isinstance(table, torch.nn.Embedding):
        return 0
    keep = length + (table.padding_idx + 1 if table.padding_idx is not None else 0)
    rows = table.num_embeddings
    if rows <= keep:
        return 0
    new = torch.nn.Embedding(keep, table.embedding_dim, padding_idx=table.padding_idx)
    new.weight.data = table.weight.data[:keep].clone()
    new.weight.requires_grad_(table.weight.requires_grad)
    emb.position_embeddings = new
    for name in ("position_ids", "token_type_ids"):  # [1, rows] helper buffers
        buf = getattr(emb, name, None)
        if isinstance(buf, torch.Tensor) and buf.dim() == 2 and buf.shape[1] == rows:
            emb.register_buffer(name, buf[:, :keep].clone(), persistent=False)
    model.config.max_position_embeddings = keep
    return rows - keep


def _check_local(path: Path) -> None:
    if not path.is_dir():
        raise ModelError("model directory does not exist", where=path)
    if not (path / "config.json").is_file():
        raise ModelError("not a Hugging Face model directory (no config.json)", where=path,
                         hint="point at a directory written by save_pretrained")
    try:
        json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ModelError("config.json is not valid JSON", where=path / "config.json") from None
    if not any((path / f).is_file() for f in WEIGHT_FILES):
        raise ModelError("no weights (model.safetensors or pytorch_model.bin, whole or sharded"
                         " with an .index.json)", where=path)


def resolve_model(name_or_path: str | Path) -> str:
    """A local directory (checked) or a hub id passed through to ``from_pretrained``."""
    p = Path(name_or_path)
    if p.exists() or str(name_or_path).startswith((".", "/", "~")) or not _HUB_ID.match(str(name_or_path)):
        _check_local(p)
        return str(p)
    return str(name_or_path)


#: how transformers stores a model's weights: whole, or sharded with an index
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json",
                "pytorch_model.bin.index.json")


def _weights_file(name: str) -> Path:
    """The weights file of a local model directory (for naming it in errors)."""
    for f in WEIGHT_FILES:
        if (Path(name) / f).is_file():
            return Path(name) / f
    return Path(name)


def _verify_weights(path: Path) -> None:
    """Re-hash the weights an edge-albert manifest lists: a flipped bit would load silently."""
    if not (path / "manifest.json").is_file():
        return
    from .artifacts import load_manifest, verify_file

    manifest = load_manifest(path)
    for f in ("model.safetensors", "pytorch_model.bin"):
        if f in manifest.files:
            verify_file(manifest, f)


def _from_pretrained(loader, name: str, **kw: Any):
    from safetensors import SafetensorError

    quiet_transformers()
    try:
        return loader.from_pretrained(name, **kw)
    except SafetensorError as exc:  # a truncated or damaged model.safetensors
        raise ModelError(f"the weights file is damaged ({str(exc).splitlines()[0][:200]})",
                         where=_weights_file(name),
                         hint="re-create the model directory, or restore it from a copy") from None
    except OSError as exc:
        if Path(name).exists():
            raise ModelError(f"cannot load the model ({str(exc).splitlines()[0][:200]})",
                             where=name) from None
        raise ModelError(f"cannot load hub id {name!r} (no network or no such model)",
                         hint="pass a local Hugging Face directory instead") from None
    except (ValueError, RuntimeError) as exc:  # RuntimeError: weights that do not fit config.json
        detail = _first_mismatch(Path(name)) if Path(name).is_dir() else None
        raise ModelError(detail or f"cannot load the model ({str(exc).splitlines()[0][:200]})",
                         where=name) from None


def _checkpoint_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape in a model directory's weights, read without loading them."""
    import torch
    from safetensors import safe_open

    shapes: dict[str, tuple[int, ...]] = {}
    for f in sorted(path.glob("*.safetensors")):
        with safe_open(str(f), "pt") as fh:
            shapes.update({k: tuple(fh.get_slice(k).get_shape()) for k in fh.keys()})  # noqa: SIM118 - not a dict
    for f in sorted(path.glob("pytorch_model*.bin")):
        state = torch.load(f, map_location="meta", weights_only=True)
        shapes.update({k: tuple(v.shape) for k, v in state.items()})
    return shapes


def _first_mismatch(path: Path) -> str | None:
    """'weights and config.json disagree on <tensor> ...' for the first tensor whose stored shape
    is not the one config.json makes (None when none differs, or it cannot be told)."""
    try:
        import torch
        from transformers import AutoConfig, AutoModelForSequenceClassification

        with torch.device("meta"):
            model = AutoModelForSequenceClassification.from_config(
                AutoConfig.from_pretrained(path))
        expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        stored = _checkpoint_shapes(path)
    except Exception:  # only a better message is at stake; the caller has one
        return None
    for key, shape in stored.items():
        if key in expected and expected[key] != shape:
            return (f"the weights do not fit config.json: {key} is {list(shape)} in the weights,"
                    f" config.json makes it {list(expected[key])}")
    return None


def load_classifier(name_or_path: str | Path):
    """A fine-tuned sequence classifier (teacher or student) in eval mode."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    name = resolve_model(name_or_path)
    if Path(name).is_dir():
        _verify_weights(Path(name))
    cfg = _from_pretrained(AutoConfig, name)
    archs = getattr(cfg, "architectures", None) or []
    if not any(a.endswith("ForSequenceClassification") for a in archs):
        raise ModelError(
            f"not a sequence-classification model (architectures: {archs or 'none'})", where=name,
            hint="fine-tune it first with 'edge-albert finetune'")
    model, info = _from_pretrained(AutoModelForSequenceClassification, name,
                                   output_loading_info=True)
    missing = sorted(info.get("missing_keys") or ())
    if missing:  # e.g. a damaged tensor name: transformers would initialise it randomly
        where = _weights_file(name) if Path(name).is_dir() else name
        raise ModelError(f"the weights lack {len(missing)} tensor(s) of the model (first:"
                         f" {missing[0]})", where=where,
                         hint="the weights file is damaged or belongs to another model")
    model.eval()
    return model


def load_encoder_for_classification(name_or_path: str | Path, *, label_names: Sequence[str]):
    """A base encoder with a fresh classification head for ``label_names`` (for fine-tuning)."""
    from transformers import AutoModelForSequenceClassification

    name = resolve_model(name_or_path)
    names = list(label_names)
    return _from_pretrained(
        AutoModelForSequenceClassification, name, num_labels=len(names),
        id2label=dict(enumerate(names)), label2id={n: i for i, n in enumerate(names)},
        ignore_mismatched_sizes=True)


def label_names_of(model) -> list[str]:
    """The model's label names in id order."""
    id2label = model.config.id2label
    return [str(id2label[i]) for i in range(len(id2label))]


def copy_tokenizer_files(src: str | Path, dst: str | Path) -> list[str]:
    """Copy the tokenizer files of ``src`` that exist into ``dst``; returns their names."""
    import shutil

    from .runtime.tokenizer import TOKENIZER_FILES

    src, dst = Path(src), Path(dst)
    copied = []
    for name in TOKENIZER_FILES:
        if (src / name).is_file():
            shutil.copyfile(src / name, dst / name)
            copied.append(name)
    return copied


def init_model_dir(
    shape: str,
    tokenizer_dir: str | Path,
    out_dir: str | Path,
    *,
    label_names: Sequence[str] = ("0", "1"),
    seed: int = 0,
    max_position_embeddings: int | None = None,
    force: bool = False,
):
    """Write a randomly initialised ALBERT classifier directory (weights, tokenizer, manifest).

    Useful for conversion tests and for size/speed benchmarks at the published shapes; its
    predictions mean nothing until it is trained.
    """
    from .artifacts import write_artifact
    from .runtime.tokenizer import TextTokenizer

    tok = TextTokenizer.load(tokenizer_dir)
    extra = {} if max_position_embeddings is None else {
        "max_position_embeddings": max_position_embeddings}
    config = albert_config(shape, vocab_size=tok.vocab_size, label_names=label_names, **extra)
    model = build_albert_classifier(config, seed=seed)
    cfg = {"shape": shape, "seed": seed, "label_names": list(label_names),
           "vocab_size": tok.vocab_size, **extra}
    quiet_transformers()
    with write_artifact(out_dir, stage="model", config=cfg, force=force) as w:
        model.save_pretrained(w.path)
        copy_tokenizer_files(tokenizer_dir, w.path)
        w.extra["parameters"] = parameter_count(model)
    return w.manifest


def describe_model(name_or_path: str | Path) -> dict[str, Any]:
    """Architecture, size and labels of a classifier directory."""
    model = load_classifier(name_or_path)
    cfg = model.config
    return {
        "path": str(name_or_path),
        "architecture": type(model).__name__,
        "model_type": cfg.model_type,
        "parameters": parameter_count(model),
        "layers": getattr(cfg, "num_hidden_layers", None),
        "hidden_size": getattr(cfg, "hidden_size", None),
        "embedding_size": getattr(cfg, "embedding_size", None),
        "num_hidden_groups": getattr(cfg, "num_hidden_groups", None),
        "vocab_size": cfg.vocab_size,
        "max_position_embeddings": getattr(cfg, "max_position_embeddings", None),
        "labels": label_names_of(model),
    }
