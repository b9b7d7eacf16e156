"""One calibration protocol: real task text -> the real tokenizer -> an iterable of feed dicts.

A :class:`CalibrationSet` holds single-example feed dicts (``input_ids``, ``attention_mask``,
``token_type_ids``), each padded to the smallest sequence bucket that fits, so calibration sees
padding exactly as the device will. Examples are drawn stratified by label and by token length
(quartiles): labels take turns, and within a label its length quartiles take turns, so a skewed or
short-text-heavy file still calibrates every class and every length. The same set feeds

* TensorFlow Lite's converter: :meth:`CalibrationSet.representative_dataset` (int32 feeds), and
* onnxruntime's quantizer: :meth:`CalibrationSet.data_reader`, a ``CalibrationDataReader``
  (int64 feeds).

:func:`parity_feeds` draws the eval inputs for parity checks from the same file, padded batches
per bucket. numpy and the runtime tokenizer only; onnxruntime is imported by ``data_reader``.
"""
from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..data import Dataset, Texts
from ..errors import DataError
from ..runtime.tokenizer import TextTokenizer, pick_bucket
from .spec import INPUT_NAMES, ExportSpec

DEFAULT_SIZE = 200

Feed = dict[str, np.ndarray]


@dataclass(frozen=True)
class CalibrationSet:
    """Feed dicts of one example each, padded to their bucket, int64."""

    feeds: tuple[Feed, ...]
    source: str
    labels: dict[str, int] = field(default_factory=dict)
    lengths: dict[str, int] = field(default_factory=dict)
    pad_id: int = 0

    def __len__(self) -> int:
        return len(self.feeds)

    def __iter__(self) -> Iterator[Feed]:
        return iter(self.feeds)

    def iter_as(self, dtype: Any) -> Iterator[Feed]:
        """The feeds with every input cast to ``dtype`` (int32 for TFLite)."""
        for f in self.feeds:
            yield {k: v.astype(dtype) for k, v in f.items()}

    def representative_dataset(self) -> Callable[[], Iterator[Feed]]:
        """For ``TFLiteConverter.representative_dataset``: int32 feed dicts by input name."""
        return lambda: self.iter_as(np.int32)

    def data_reader(self):
        """An onnxruntime ``CalibrationDataReader`` over the int64 feeds (restartable)."""
        from onnxruntime.quantization import CalibrationDataReader

        feeds = self.feeds

        class Reader(CalibrationDataReader):
            def __init__(self) -> None:
                self._it = iter(feeds)

            def get_next(self) -> Feed | None:
                return next(self._it, None)

            def rewind(self) -> None:
                self._it = iter(feeds)

            def __len__(self) -> int:
                return len(feeds)

        return Reader()

    def uniform(self, width: int | None = None) -> CalibrationSet:
        """The same examples all padded to ``width`` or the widest bucket used (onnxruntime's
        histogram calibrators, Entropy and Percentile, need one shape per tensor; a
        fixed-shape file, its own)."""
        width = width or max(f["input_ids"].shape[1] for f in self.feeds)
        feeds = []
        for f in self.feeds:
            extra = width - f["input_ids"].shape[1]
            feeds.append({k: np.pad(v, ((0, 0), (0, extra)),
                                    constant_values=self.pad_id if k == "input_ids" else 0)
                          for k, v in f.items()})
        return CalibrationSet(tuple(feeds), self.source, self.labels, {str(width): len(feeds)},
                              self.pad_id)

    def describe(self) -> dict[str, Any]:
        return {"source": self.source, "examples": len(self), "by_label": self.labels,
                "by_bucket": self.lengths}


def _token_lengths(tok: TextTokenizer, ds: Dataset | Texts, max_length: int) -> np.ndarray:
    enc = tok.encode(list(ds.texts), list(ds.pairs) if ds.pairs else None, max_length=max_length,
                     pad_to=max_length)
    return enc.lengths.astype(np.int64)


def stratified_indices(labels: Sequence[str], lengths: Sequence[int] | np.ndarray, n: int, *,
                       seed: int = 0) -> list[int]:
    """Up to ``n`` row indices: labels take turns (balanced as far as the data allows) and, within
    a label, its length quartiles take turns; rows are shuffled within each stratum with ``seed``."""
    lens = np.asarray(lengths)
    edges = np.quantile(lens, [0.25, 0.5, 0.75]) if len(lens) else np.array([])
    strata: dict[tuple[str, int], list[int]] = defaultdict(list)
    for i, (label, length) in enumerate(zip(labels, lens)):
        strata[(label, int(np.searchsorted(edges, length, side="right")))].append(i)
    rng = random.Random(seed)
    by_label: dict[str, list[list[int]]] = defaultdict(list)
    for key in sorted(strata):
        rng.shuffle(strata[key])
        by_label[key[0]].append(strata[key])
    turn = {label: 0 for label in by_label}
    picked: list[int] = []
    # labels take turns; within a label, its length strata take turns
    while len(picked) < n and any(q for qs in by_label.values() for q in qs):
        for label, queues in by_label.items():
            live = [q for q in queues if q]
            if live and len(picked) < n:
                picked.append(live[turn[label] % len(live)].pop())
                turn[label] += 1
    return picked


def _labels(ds: Dataset | Texts) -> Sequence[str]:
    """A labelled file's labels (to balance the draw), or one stratum for unlabelled text."""
    return ds.labels if isinstance(ds, Dataset) else ("",) * len(ds)


def _rows(tok: TextTokenizer, ds: Dataset | Texts, idx: Sequence[int], spec: ExportSpec
          ) -> list[Feed]:
    feeds = []
    for i in idx:
        enc = tok.encode([ds.texts[i]], [ds.pairs[i]] if ds.pairs else None,
                         max_length=spec.max_length, buckets=spec.buckets)
        feeds.append(enc.as_dict())
    return feeds


def build_calibration(ds: Dataset | Texts, tok: TextTokenizer, *, spec: ExportSpec,
                      size: int = DEFAULT_SIZE, seed: int = 0) -> CalibrationSet:
    """``size`` examples of ``ds`` (stratified by label and length) as bucket-padded feeds."""
    if len(ds) == 0:
        raise DataError("calibration file has no rows", where=ds.path)
    lengths = _token_lengths(tok, ds, spec.max_length)
    labels = _labels(ds)
    idx = stratified_indices(labels, lengths, size, seed=seed)
    feeds = _rows(tok, ds, idx, spec)
    by_label: dict[str, int] = defaultdict(int)
    by_bucket: dict[str, int] = defaultdict(int)
    for i, f in zip(idx, feeds):
        by_label[labels[i] or "(unlabelled)"] += 1
        by_bucket[str(f["input_ids"].shape[1])] += 1
    return CalibrationSet(tuple(feeds), str(ds.path), dict(sorted(by_label.items())),
                          dict(sorted(by_bucket.items(), key=lambda kv: int(kv[0]))), tok.pad_id)


def parity_feeds(ds: Dataset | Texts, tok: TextTokenizer, *, spec: ExportSpec, n: int = 256,
                 batch_size: int = 32, seed: int = 1) -> list[Feed]:
    """Up to ``n`` rows of ``ds`` as padded batches: rows grouped by bucket, each batch padded to
    its bucket (so nearly every row carries padding)."""
    lengths = _token_lengths(tok, ds, spec.max_length)
    idx = stratified_indices(_labels(ds), lengths, n, seed=seed)
    by_bucket: dict[int, list[int]] = defaultdict(list)
    for i in idx:
        by_bucket[pick_bucket(int(lengths[i]), spec.buckets, spec.max_length)].append(i)
    batches: list[Feed] = []
    for width in sorted(by_bucket):
        rows = by_bucket[width]
        for s in range(0, len(rows), batch_size):
            chunk = rows[s:s + batch_size]
            enc = tok.encode([ds.texts[i] for i in chunk],
                             [ds.pairs[i] for i in chunk] if ds.pairs else None,
                             max_length=spec.max_length, pad_to=width)
            batches.append(enc.as_dict())
    return batches


def synthetic_parity_feeds(tok: TextTokenizer, *, spec: ExportSpec, n: int = 256,
                           batch_size: int = 32, seed: int = 1) -> list[Feed]:
    """Padded batches of random token ids, for a model converted without any text.

    Only a fallback: parity on real text (``--calibration``) is what the manifest should show.
    """
    rng = np.random.default_rng(seed)
    low = min(5, tok.vocab_size - 1)
    batches: list[Feed] = []
    widths = list(spec.buckets)
    for s in range(0, n, batch_size):
        rows = min(batch_size, n - s)
        width = widths[(s // batch_size) % len(widths)]
        ids = np.full((rows, width), tok.pad_id, dtype=np.int64)
        mask = np.zeros((rows, width), dtype=np.int64)
        for r in range(rows):
            k = int(rng.integers(3, width + 1))
            ids[r, :k] = rng.integers(low, tok.vocab_size, size=k)
            mask[r, :k] = 1
        batches.append({"input_ids": ids, "attention_mask": mask,
                        "token_type_ids": np.zeros_like(ids)})
    return batches


__all__ = [
    "DEFAULT_SIZE",
    "INPUT_NAMES",
    "CalibrationSet",
    "build_calibration",
    "parity_feeds",
    "stratified_indices",
    "synthetic_parity_feeds",
]
