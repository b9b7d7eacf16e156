"""What ``validate`` compares the converted files with: the float reference (a Hugging Face model
directory run in torch, or a float model file run through the runtime), found, checked against
the files' tokenizer, and run over the eval rows.

Top-level imports stay light (stdlib, numpy, errors, artifacts): the cold-start worker imports
:mod:`~edge_albert.validate` and with it this module, and must load nothing but the runtime.
"""
from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import json
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .artifacts import MANIFEST, Manifest, load_manifest
from .errors import ArtifactError, ModelError, TokenizerError

REFERENCE_FILE_ORDER = ("onnx", "tflite", "ort")


@dataclasses.dataclass
class Reference:
    """The float model the files are compared with."""

    kind: str  # "torch" (a Hugging Face directory) or "file" (a float model file, via the runtime)
    path: Path
    labels: list[str]
    vocab_size: int | None = None
    format: str | None = None
    precision: str | None = None

    @property
    def name(self) -> str:
        return self.path.name if self.kind == "file" else f"{self.path.name} (torch)"


def _torch_available() -> bool:
    return all(importlib.util.find_spec(m) is not None for m in ("torch", "transformers"))


def _source_model_dir(manifest: Manifest) -> Path | None:
    """The Hugging Face directory an artifact was converted from, when it is still on disk."""
    cands = [manifest.config.get("model")] + [i.get("path") for i in manifest.inputs]
    for c in cands:
        if c and (Path(c) / "config.json").is_file():
            return Path(c)
    return None


def _hf_vocab_size(model_dir: Path) -> int | None:
    try:
        cfg = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    v = cfg.get("vocab_size") if isinstance(cfg, dict) else None
    return int(v) if isinstance(v, int) else None


def _hf_labels(model_dir: Path) -> list[str] | None:
    """The label names transformers gives the model: config.json's id2label, or its defaults
    (``LABEL_<i>`` for ``num_labels``), which transformers 5 does not write out."""
    try:
        from transformers import AutoConfig

        id2label = AutoConfig.from_pretrained(model_dir).id2label
        return [str(id2label[i]) for i in range(len(id2label))]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _fp32_file(directory: Path, manifest: Manifest) -> Path | None:
    from .runtime import model_files

    fp32 = [n for n in model_files(directory) if manifest.files[n].get("precision") == "fp32"]
    fp32.sort(key=lambda n: REFERENCE_FILE_ORDER.index(Path(n).suffix[1:])
              if Path(n).suffix[1:] in REFERENCE_FILE_ORDER else 99)
    return directory / fp32[0] if fp32 else None


def resolve_reference(reference: str | Path | None, first: Path, manifest: Manifest) -> Reference:
    """``reference`` as given, or the torch model ``first`` was converted from (when it is on disk
    and torch is installed), or ``first``'s fp32 file."""
    if reference is None:
        src = _source_model_dir(manifest)
        if src is not None and _torch_available():
            reference = src
        else:
            fp32 = _fp32_file(first, manifest)
            if fp32 is None:
                raise ArtifactError("no fp32 model file to compare with, and the model it was"
                                    " converted from is not on disk", where=first,
                                    hint="pass --reference MODEL_DIR_OR_FLOAT_FILE")
            reference = fp32
    path = Path(reference)
    return _hf_reference(path) if path.is_dir() else _file_reference(path)


def _hf_reference(path: Path) -> Reference:
    if not (path / "config.json").is_file():
        raise ModelError("reference is not a Hugging Face model directory (no config.json)",
                         where=path, hint="pass a model directory or a float model file")
    if not _torch_available():
        raise ModelError("a Hugging Face reference needs torch and transformers", where=path,
                         hint="pip install 'edge-albert[toolchain]', or pass a float model file")
    labels = _hf_labels(path)
    if not labels:
        raise ModelError("config.json names no labels", where=path / "config.json")
    return Reference("torch", path, labels, vocab_size=_hf_vocab_size(path))


def _file_reference(path: Path) -> Reference:
    if not path.is_file():
        raise ModelError("reference does not exist", where=path)
    if path.suffix not in (".onnx", ".ort", ".tflite"):
        raise ModelError(f"reference {path.suffix!r} is neither a model directory nor a .onnx,"
                         " .ort or .tflite file", where=path)
    meta: dict[str, Any] = {}
    labels: list[str] = []
    if (path.parent / MANIFEST).is_file():
        m = load_manifest(path.parent)
        meta = m.files.get(path.name, {})
        labels = [str(x) for x in m.extra.get("labels") or []]
    if not labels and (path.parent / "labels.txt").is_file():
        labels = [x for x in (path.parent / "labels.txt").read_text("utf-8").splitlines() if x]
    if str(meta.get("precision", "")).startswith("int8"):
        raise ModelError(f"reference must be a float file, this one is {meta['precision']}",
                         where=path, hint="pass the fp32 file or the model directory")
    return Reference("file", path, labels, format=meta.get("format", path.suffix[1:]),
                     precision=meta.get("precision", "fp32"))


def check_vocabulary(tokenizer_vocab: int, rows: int | None, *, tokenizer_dir: Path,
                     source: str) -> None:
    """TokenizerError when the tokenizer can emit ids past the model's embedding rows."""
    if rows is not None and tokenizer_vocab > rows:
        raise TokenizerError(
            f"tokenizer can emit token ids up to {tokenizer_vocab - 1}, but the model's embedding"
            f" table has {rows} rows (vocab_size from {source})", where=tokenizer_dir,
            hint="use the tokenizer the model was trained with")


def _artifact_vocab_rows(manifest: Manifest, ref: Reference) -> tuple[int | None, str]:
    """The artifact model's vocabulary size: its manifest, the model it came from, the reference."""
    if manifest.extra.get("vocab_size"):
        return int(manifest.extra["vocab_size"]), f"{manifest.path}/{MANIFEST}"
    src = _source_model_dir(manifest)
    if src is not None and (v := _hf_vocab_size(src)) is not None:
        return v, str(src / "config.json")
    if ref.kind == "torch" and ref.vocab_size is not None:
        return ref.vocab_size, str(ref.path / "config.json")
    return None, ""


@contextlib.contextmanager
def _native_stderr_muted() -> Iterator[None]:
    """LiteRT's C++ code prints an INFO line to file descriptor 2 per interpreter: send fd 2 to
    /dev/null while a model loads (Python errors are exceptions, not affected)."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def open_classifier(path: str | Path, *, model: str | None = None, threads: int) -> Any:
    """``Classifier.load`` with the interpreter's native log lines muted."""
    from .runtime import Classifier

    with _native_stderr_muted():
        return Classifier.load(path, model=model, threads=threads)


# ----------------------------------------------------------------------------- logits
def _split(items: Sequence[Any]) -> tuple[list[str], list[str] | None]:
    if items and isinstance(items[0], (tuple, list)):
        return [str(x[0]) for x in items], [str(x[1]) for x in items]
    return [str(x) for x in items], None


def token_lengths(tokenizer: Any, items: Sequence[Any], max_length: int) -> np.ndarray:
    """Token count of every row (special tokens included, truncated to ``max_length``)."""
    a, b = _split(items)
    return tokenizer.encode(a, b, max_length=max_length, pad_to=max_length).lengths


def classifier_logits(clf: Any, items: Sequence[Any], *, batch_size: int) -> np.ndarray:
    """Logits of every row, batched in length order (less padding), returned in row order."""
    order = np.argsort(token_lengths(clf.tokenizer, items, clf.max_length), kind="stable")
    out = clf.logits([items[i] for i in order], batch_size=batch_size)
    logits = np.empty_like(out)
    logits[order] = out
    return logits


def _torch_logits(ref: Reference, items: Sequence[Any], *, max_length: int,
                  buckets: Sequence[int], threads: int, batch_size: int) -> np.ndarray:
    import inspect

    import torch

    from .modeling import load_classifier
    from .runtime.tokenizer import TextTokenizer

    tok = TextTokenizer.load(ref.path)
    check_vocabulary(tok.vocab_size, ref.vocab_size, tokenizer_dir=ref.path,
                     source=str(ref.path / "config.json"))
    model = load_classifier(ref.path)
    max_pos = getattr(model.config, "max_position_embeddings", max_length)
    max_length = min(max_length, int(max_pos))
    takes_types = "token_type_ids" in inspect.signature(model.forward).parameters
    order = np.argsort(token_lengths(tok, items, max_length), kind="stable")
    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    out = []
    try:
        with torch.no_grad():
            for s in range(0, len(order), batch_size):
                a, b = _split([items[i] for i in order[s:s + batch_size]])
                enc = tok.encode(a, b, max_length=max_length, buckets=buckets)
                feed = {k: torch.from_numpy(v) for k, v in enc.as_dict().items()
                        if takes_types or k != "token_type_ids"}
                out.append(model(**feed).logits.float().numpy())
    finally:
        torch.set_num_threads(saved)
    logits = np.empty((len(order), out[0].shape[-1]), dtype=np.float32)
    logits[order] = np.concatenate(out)
    return logits


def reference_logits(ref: Reference, items: Sequence[Any], *, max_length: int,
                     buckets: Sequence[int], threads: int, batch_size: int) -> np.ndarray:
    """The reference's logits on every row (row order)."""
    if ref.kind == "torch":
        logits = _torch_logits(ref, items, max_length=max_length, buckets=buckets,
                               threads=threads, batch_size=batch_size)
    else:
        clf = open_classifier(ref.path, threads=threads)
        logits = classifier_logits(clf, items, batch_size=batch_size)
    if not np.isfinite(logits).all():
        raise ModelError("the reference returns non-finite logits", where=ref.path)
    return logits


__all__ = ["REFERENCE_FILE_ORDER", "Reference", "check_vocabulary", "classifier_logits",
           "open_classifier", "reference_logits", "resolve_reference", "token_lengths"]
