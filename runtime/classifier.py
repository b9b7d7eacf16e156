"""``Classifier``: text in, labels and probabilities out, on the device.

    clf = Classifier.load("bundle/model.int8-dynamic.tflite", threads=2)
    labels, probs = clf.predict(["a charming journey", "a dull mess"])

It reads what the converter recorded in the artifact's ``manifest.json`` (sequence length,
buckets, label names, every file's sha256) and refuses a model file whose hash does not match.
Batches are padded to the smallest bucket that fits their longest row, and truncated to the
model's maximum length exactly as the toolchain truncates.
"""
from __future__ import annotations

import reprlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..artifacts import MANIFEST, Manifest, load_manifest, verify_file
from ..errors import ArtifactError, RuntimeBackendError
from .backends import FORMATS, Backend, open_backend
from .metrics import softmax
from .tokenizer import TOKENIZER_FILES_READ, TextTokenizer

Texts = Sequence[str] | Sequence[tuple[str, str]]
DEFAULT_BUCKETS = (32, 64, 128)
# the files TextTokenizer.load reads (special_tokens_map.json it never does)


def model_files(directory: str | Path) -> list[str]:
    """Model files an artifact directory's manifest lists (or that lie in it, without one)."""
    d = Path(directory)
    if (d / MANIFEST).is_file():
        names = list(load_manifest(d).files)
    else:
        names = sorted(p.name for p in d.iterdir())
    return [n for n in names if Path(n).suffix in FORMATS and "/" not in n]


@dataclass
class Classifier:
    """A model file, its tokenizer and its labels; see :meth:`load`."""

    backend: Backend
    tokenizer: TextTokenizer
    labels: list[str]
    max_length: int
    buckets: tuple[int, ...]
    path: Path
    info: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, path: str | Path, *, model: str | None = None,
             tokenizer: str | Path | TextTokenizer | None = None, threads: int | None = None,
             backend: str | None = None, providers: Sequence[str] = ("cpu",),
             verify: bool = True) -> Classifier:
        """Load a model file, or one file (``model=``) of an artifact/bundle directory.

        ``tokenizer`` defaults to the model's directory; ``threads`` sets the interpreter's
        threads; ``backend`` overrides the choice made from the file suffix.
        """
        if threads is not None and threads < 1:
            raise RuntimeBackendError(f"threads must be >= 1, got {threads}")
        path = Path(path)
        if path.is_dir():
            directory = path
            choices = model_files(directory)
            if model is None:
                if len(choices) != 1:
                    raise RuntimeBackendError(
                        f"{len(choices)} model files here; pick one with model=... (choices:"
                        f" {', '.join(choices) or 'none'})", where=directory)
                model = choices[0]
            file = directory / model
        else:
            file, directory = path, path.parent
            if not (directory / MANIFEST).is_file() and (directory.parent / MANIFEST).is_file():
                directory = directory.parent  # e.g. an artifact's fixed/ shape variants
        if not file.is_file():
            raise RuntimeBackendError("model file does not exist", where=file)
        manifest: Manifest | None = None
        meta: dict[str, Any] = {}
        if (directory / MANIFEST).is_file():
            manifest = load_manifest(directory)
            rel = file.resolve().relative_to(directory.resolve()).as_posix()
            if rel not in manifest.files:
                raise ArtifactError("model file is not listed in the directory's manifest.json",
                                    where=file)
            if verify:
                verify_file(manifest, rel)
                if tokenizer is None:  # a changed tokenizer.json would encode other ids silently
                    for name in TOKENIZER_FILES_READ:
                        if name in manifest.files:
                            verify_file(manifest, name)
            meta = dict(manifest.files[rel])
        be = open_backend(file, threads=threads, backend=backend, providers=providers)
        tok = tokenizer if isinstance(tokenizer, TextTokenizer) else TextTokenizer.load(
            tokenizer or directory)
        try:  # values read from the manifest (or labels.txt): a damaged one is an ArtifactError
            labels = cls.labels_of(directory, manifest)
            vocab = manifest.extra.get("vocab_size") if manifest else None
            vocab = None if vocab is None else int(vocab)
            max_len = int(meta.get("seq_len") or be.fixed_length or DEFAULT_BUCKETS[-1])
            buckets = tuple(int(b) for b in meta.get("buckets") or DEFAULT_BUCKETS
                            if int(b) <= max_len)
        except (TypeError, ValueError) as exc:
            raise ArtifactError(f"malformed value ({exc})", where=directory / (
                MANIFEST if manifest is not None else "labels.txt")) from None
        if vocab is not None and tok.vocab_size > vocab:
            raise RuntimeBackendError(
                f"tokenizer has {tok.vocab_size} ids but the model's vocabulary has {vocab}",
                where=tok.source, hint="use the tokenizer the model was trained with")
        if be.fixed_length:
            max_len, buckets = be.fixed_length, (be.fixed_length,)
        info = {"format": meta.get("format", be.format), "precision": meta.get("precision"),
                "size_bytes": file.stat().st_size, "backend": be.name, **be.versions()}
        return cls(be, tok, labels, max_len, buckets or (max_len,), file, info)

    @staticmethod
    def labels_of(directory: Path, manifest: Manifest | None) -> list[str]:
        if manifest is not None and manifest.extra.get("labels"):
            if not isinstance(manifest.extra["labels"], list):
                raise TypeError("extra.labels is not a list")
            return [str(x) for x in manifest.extra["labels"]]
        txt = directory / "labels.txt"
        if txt.is_file():
            return [x for x in txt.read_text(encoding="utf-8").splitlines() if x]
        return []

    # -- inference ------------------------------------------------------------------------------
    def split(self, texts: Texts) -> tuple[list[str], list[str] | None]:
        """First texts and pairs (None for single texts) of one batch: all singles or all pairs."""
        items = [texts] if isinstance(texts, str) else list(texts)
        is_pair = [isinstance(x, (tuple, list)) for x in items]
        if not any(is_pair):
            return [str(x) for x in items], None
        bad = next((i for i, (x, p) in enumerate(zip(items, is_pair))
                    if not p or len(x) != 2), None)
        if bad is not None:
            raise RuntimeBackendError(
                f"item {bad} of the batch is {reprlib.repr(items[bad])}, expected a (text,"
                " pair) tuple: a batch is all single texts or all pairs", where=self.path)
        return [str(x[0]) for x in items], [str(x[1]) for x in items]

    def encode(self, texts: Texts, width: int | None = None) -> Any:
        """Split single texts / pairs and encode one batch the way the model expects (padded to
        ``width`` when given, else to the smallest bucket that fits)."""
        a, b = self.split(texts)
        pad_to = self.backend.fixed_length or width
        return self.tokenizer.encode(a, b, max_length=self.max_length, buckets=self.buckets,
                                     pad_to=pad_to)

    def feeds(self, items: Texts, width: int | None = None) -> dict[str, Any]:
        """What ``backend.run`` takes for ``items``: token ids padded to ``width`` (or to the
        smallest bucket that fits), or, for a text-in file, the items themselves."""
        if self.backend.takes_text:
            a, b = self.split(items)
            return {"text": list(zip(a, b)) if b is not None else a}
        out: dict[str, Any] = self.encode(items, width).as_dict()
        return out

    def logits(self, texts: Texts, *, batch_size: int = 8) -> np.ndarray:
        """Raw logits, shape (len(texts), num_labels)."""
        if batch_size < 1:
            raise RuntimeBackendError(f"batch_size must be >= 1, got {batch_size}")
        items: list[Any] = [texts] if isinstance(texts, str) else list(texts)  # one text: one row
        if self.backend.fixed_batch:
            batch_size = self.backend.fixed_batch  # a file with a pinned batch size
        out = []
        for s in range(0, len(items), batch_size):
            out.append(self.backend.run(self.feeds(items[s:s + batch_size])))
        if not out:
            return np.zeros((0, max(1, len(self.labels))), dtype=np.float32)
        logits = np.concatenate(out)
        if not np.isfinite(logits).all():
            raise RuntimeBackendError("the model returned non-finite logits", where=self.path)
        return logits

    def predict(self, texts: Texts, *, batch_size: int = 8) -> tuple[list[str], np.ndarray]:
        """Label names and class probabilities."""
        logits = self.logits(texts, batch_size=batch_size)
        probs = softmax(logits).astype(np.float32)
        names = self.labels or [str(i) for i in range(logits.shape[-1])]
        return [names[i] for i in probs.argmax(-1)], probs
