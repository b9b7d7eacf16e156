"""Labelled text from TSV, CSV and JSONL files: single-sentence and sentence-pair tasks.

Columns are chosen by name or by 0-based index, or detected from the GLUE layouts
(SST-2 ``sentence,label``; MRPC ``Quality,#1 String,#2 String``; AG News ``text,label``).
TSV is read with ``csv.QUOTE_NONE`` because MRPC strings contain bare quotes.

Every problem is a :class:`DataError` that names the file and, where there is one, the line.
Torch-free: the device runtime's validator reads eval sets with this module too.

One module at ~410 lines, not split: the three readers share the column detection, the line
numbers in errors and the Dataset they return; unlabelled text and label mapping are the few
functions on top, and a split would leave each part importing the others' private helpers.
"""
from __future__ import annotations

import csv
import io
import json
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import DataError

# Known layouts, tried in order. Pairs first, so MRPC is never read as a single-text task.
PAIR_COLUMNS = (
    ("#1 String", "#2 String"), ("sentence1", "sentence2"), ("question1", "question2"),
    ("premise", "hypothesis"), ("question", "sentence"), ("text_a", "text_b"),
)
SINGLE_COLUMNS = ("sentence", "text", "content", "review", "document")
LABEL_COLUMNS = ("label", "Quality", "labels", "class", "target", "intent")
EXTENSIONS = {".tsv": "tsv", ".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
_LINE_END = re.compile(r"\r\n|\r|\n")
_SURROGATE = re.compile("[\ud800-\udfff]")


@dataclass(frozen=True)
class Dataset:
    """Rows of one file: ``texts`` (and ``pairs`` for pair tasks) with raw string ``labels``."""

    path: Path
    texts: tuple[str, ...]
    pairs: tuple[str, ...] | None
    labels: tuple[str, ...]
    text_columns: tuple[str, ...]
    label_column: str

    @property
    def is_pair(self) -> bool:
        return self.pairs is not None

    def __len__(self) -> int:
        return len(self.texts)

    def label_names(self) -> list[str]:
        """The labels in a stable order: numeric order if every label is an integer, else sorted."""
        return sort_labels(set(self.labels))

    def label_ids(self, names: Sequence[str], mapping: Mapping[str, str] | None = None
                  ) -> list[int]:
        """Map labels to ids by ``names`` (after ``mapping``, data label -> model label, when
        given); DataError naming labels the mapping lacks."""
        index = {n: i for i, n in enumerate(names)}
        if mapping:
            index = {d: index[m] for d, m in mapping.items() if m in index}
        unknown = sorted(set(self.labels) - set(index))
        if unknown:
            raise DataError(
                f"label(s) {', '.join(map(repr, unknown[:5]))} not among the known labels"
                f" {list(names)}", where=self.path,
                hint="the labels must be those the model (or the train file) was built with,"
                     " or map them with --label-map DATA=MODEL,... (e.g. 0=negative,1=positive)")
        return [index[x] for x in self.labels]

    def inputs(self) -> list[str] | list[tuple[str, str]]:
        """Texts for a single task, (text, pair) tuples for a pair task."""
        if self.pairs is None:
            return list(self.texts)
        return list(zip(self.texts, self.pairs))

    def subset(self, idx: Sequence[int]) -> Dataset:
        return Dataset(self.path, tuple(self.texts[i] for i in idx),
                       None if self.pairs is None else tuple(self.pairs[i] for i in idx),
                       tuple(self.labels[i] for i in idx), self.text_columns, self.label_column)


def sort_labels(labels: set[str] | Sequence[str]) -> list[str]:
    labels = set(labels)
    try:
        return sorted(labels, key=lambda s: int(s))
    except ValueError:
        return sorted(labels)


def _decode(raw: bytes, path: Path) -> str:
    bom = 3 if raw.startswith(b"\xef\xbb\xbf") else 0
    try:
        return raw[bom:].decode("utf-8")
    except UnicodeDecodeError as exc:
        start = exc.start + bom
        # lines end in \n, \r\n or a bare \r, as the CSV and JSONL readers count them
        before = raw[:start].replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        line = before.count(b"\n") + 1
        col = len(before) - (before.rfind(b"\n") + 1)
        raise DataError(f"invalid UTF-8 at byte {col} of the line (file offset {start}):"
                        " expected UTF-8 text", where=path, line=line) from None


def _rows(path: Path, fmt: str, text: str) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """Header and (line number, cells) rows of a delimited file."""
    delimiter = "\t" if fmt == "tsv" else ","
    quoting: Any = csv.QUOTE_NONE if fmt == "tsv" else csv.QUOTE_MINIMAL
    # no field is longer than the file: lift csv's 128 KiB default so long documents load
    if len(text) > csv.field_size_limit():
        csv.field_size_limit(len(text))
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, quoting=quoting,
                        strict=True)
    rows: list[tuple[int, list[str]]] = []
    header: list[str] | None = None
    try:
        for cells in reader:
            if not cells or all(not c.strip() for c in cells):
                continue  # blank line
            if header is None:
                header = [c.strip() for c in cells]
                continue
            rows.append((reader.line_num, cells))
    except csv.Error as exc:
        raise DataError(f"cannot parse {fmt.upper()}: {exc}", where=path,
                        line=reader.line_num) from None
    if header is None:
        raise DataError("file is empty: expected a header line and rows", where=path)
    return header, rows


def _jsonl_rows(path: Path, text: str) -> tuple[list[str], list[tuple[int, list[str]]]]:
    header: list[str] | None = None
    rows: list[tuple[int, list[str]]] = []
    # Lines end in \n, \r\n or \r only: str.splitlines() would also split inside JSON strings
    # holding U+2028, U+0085, \x1c... which JSON allows unescaped.
    for n, line in enumerate(_LINE_END.split(text), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"not a JSON object ({exc.msg})", where=path, line=n) from None
        except ValueError as exc:  # an integer of more than 4300 digits
            raise DataError(f"not a JSON object ({str(exc).split(':')[0]})", where=path,
                            line=n) from None
        except RecursionError:
            raise DataError("not a JSON object (nested too deeply)", where=path, line=n) from None
        if not isinstance(obj, dict):
            raise DataError("expected a JSON object per line", where=path, line=n)
        if "\\u" in line:  # a \ud800-style escape decodes to a lone surrogate: not UTF-8 text
            obj = {_SURROGATE.sub("\ufffd", k): _SURROGATE.sub("\ufffd", v) if isinstance(v, str)
                   else v for k, v in obj.items()}
        if header is None:
            header = list(obj)
        missing = [k for k in header if k not in obj]
        if missing:
            raise DataError(f"missing key(s) {', '.join(map(repr, missing))}", where=path, line=n)
        rows.append((n, ["" if obj[k] is None else str(obj[k]) for k in header]))
    if header is None:
        raise DataError("file is empty: expected one JSON object per line", where=path)
    return header, rows


def _names(header: list[str]) -> str:
    """Column names for a one-line message: a name with a newline or control shown as repr."""
    return ", ".join(c if c.isprintable() else repr(c) for c in header)


def _pick(header: list[str], wanted: str | int, path: Path, what: str) -> int:
    if isinstance(wanted, int) or (isinstance(wanted, str) and wanted.isdigit()
                                   and wanted not in header):
        i = int(wanted)
        if not 0 <= i < len(header):
            raise DataError(f"{what} column index {i} out of range (the file has {len(header)}"
                            f" columns: {_names(header)})", where=path, line=1)
        return i
    if wanted not in header:
        raise DataError(f"no {what} column {wanted!r} (columns: {_names(header)})",
                        where=path, line=1)
    return header.index(wanted)


def detect_label(header: list[str], path: Path) -> str:
    """The label column of a known layout, or DataError listing the columns."""
    label = next((c for c in LABEL_COLUMNS if c in header), None)
    if label is None:
        raise DataError(f"no label column found (columns: {_names(header)}; expected one of"
                        f" {', '.join(LABEL_COLUMNS)})", where=path, line=1,
                        hint="name it with --label-column")
    return label


def detect_text(header: list[str], label: str, path: Path) -> tuple[str, ...]:
    """The text column(s) of a known layout (pairs first), or DataError listing the columns."""
    for a, b in PAIR_COLUMNS:
        if a in header and b in header:
            return (a, b)
    for c in SINGLE_COLUMNS:
        if c in header:
            return (c,)
    others = [c for c in header if c != label]
    if len(others) == 1:
        return (others[0],)
    raise DataError(f"cannot tell the text column(s) (columns: {_names(header)})",
                    where=path, line=1, hint="name them with --text-column")


def read_dataset(
    path: str | Path,
    *,
    text_columns: Sequence[str | int] | None = None,
    label_column: str | int | None = None,
    label_names: Sequence[str] | None = None,
) -> Dataset:
    """Read a labelled TSV/CSV/JSONL file.

    ``label_names``, when given (e.g. the train file's labels or a model's), makes a label outside
    them an error naming the line.
    """
    path = Path(path)
    fmt = EXTENSIONS.get(path.suffix.lower())
    if fmt is None:
        raise DataError(f"unknown file extension {path.suffix!r}: expected one of"
                        f" {', '.join(sorted(EXTENSIONS))}", where=path)
    if not path.is_file():
        raise DataError("file does not exist", where=path)
    text = _decode(path.read_bytes(), path)
    header, rows = _jsonl_rows(path, text) if fmt == "jsonl" else _rows(path, fmt, text)
    if not rows:
        raise DataError("header only: the file has no data rows", where=path)

    lcol = (detect_label(header, path) if label_column is None
            else header[_pick(header, label_column, path, "label")])
    tcols = (detect_text(header, lcol, path) if not text_columns
             else tuple(header[_pick(header, c, path, "text")] for c in text_columns))
    if not 1 <= len(tcols) <= 2:
        raise DataError(f"expected 1 or 2 text columns, got {len(tcols)}", where=path)
    if lcol in tcols:
        raise DataError(f"column {lcol!r} is both a text and the label column", where=path,
                        line=1, hint="name different columns with --text-column/--label-column")
    t_idx = [header.index(c) for c in tcols]
    l_idx = header.index(lcol)

    texts: list[str] = []
    pairs: list[str] = []
    labels: list[str] = []
    known = set(label_names) if label_names is not None else None
    for line, cells in rows:
        if len(cells) != len(header):
            raise DataError(f"row has {len(cells)} fields, the header has {len(header)}"
                            " (ragged row; a stray tab or delimiter?)", where=path, line=line)
        for j, i in enumerate(t_idx):
            if not cells[i].strip():
                raise DataError(f"empty text in column {tcols[j]!r}", where=path, line=line)
        label = cells[l_idx].strip()
        if not label:
            raise DataError(f"empty label in column {lcol!r}", where=path, line=line)
        if known is not None and label not in known:
            raise DataError(f"label {label!r} is not among the known labels {list(label_names or [])}",
                            where=path, line=line,
                            hint="a dev/eval file may only use labels seen in training")
        texts.append(cells[t_idx[0]])
        if len(t_idx) == 2:
            pairs.append(cells[t_idx[1]])
        labels.append(label)
    return Dataset(path, tuple(texts), tuple(pairs) if len(t_idx) == 2 else None, tuple(labels),
                   tcols, lcol)


@dataclass(frozen=True)
class Texts:
    """Unlabelled rows: ``texts`` (and ``pairs``); ``ignored_labels`` names a label column the
    file had, which was not read."""

    path: Path
    texts: tuple[str, ...]
    pairs: tuple[str, ...] | None
    ignored_labels: str | None = None

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def is_pair(self) -> bool:
        return self.pairs is not None

    def subset(self, idx: Sequence[int]) -> Texts:
        return Texts(self.path, tuple(self.texts[i] for i in idx),
                     None if self.pairs is None else tuple(self.pairs[i] for i in idx),
                     self.ignored_labels)


def read_texts(path: str | Path) -> Texts:
    """Unlabelled text: a TSV/CSV/JSONL data file (its label column, if any, is ignored) or any
    other file as plain text, one text per line (a tab splits a text pair); blank lines skipped."""
    path = Path(path)
    if not path.is_file():
        raise DataError("file does not exist", where=path)
    text = _decode(path.read_bytes(), path)
    fmt = EXTENSIONS.get(path.suffix.lower())
    if fmt is None:
        lines = [ln.strip() for ln in _LINE_END.split(text)]
        cells = [ln.split("\t") for ln in lines if ln]
        if not cells:
            raise DataError("no text: the file is empty or blank", where=path)
        widths = {len(c) for c in cells}
        if widths - {1, 2} or len(widths) > 1:
            raise DataError("expected one text, or two tab-separated texts, on every line",
                            where=path)
        return Texts(path, tuple(c[0] for c in cells),
                     tuple(c[1] for c in cells) if widths == {2} else None)
    header, rows = _jsonl_rows(path, text) if fmt == "jsonl" else _rows(path, fmt, text)
    if not rows:
        raise DataError("header only: the file has no data rows", where=path)
    label = next((c for c in LABEL_COLUMNS if c in header), None)
    cols = detect_text(header, label or "", path)
    idx = [header.index(c) for c in cols]
    got: list[list[str]] = [[], []]
    for line, row in rows:
        if len(row) != len(header):
            raise DataError(f"row has {len(row)} fields, the header has {len(header)}",
                            where=path, line=line)
        for j, i in enumerate(idx):
            got[j].append(row[i])
    return Texts(path, tuple(got[0]), tuple(got[1]) if len(idx) == 2 else None, label)


def read_calibration(path: str | Path) -> Dataset | Texts:
    """Text to calibrate or check a model with: a labelled file keeps its labels (only to balance
    the draw; they need not be the model's label names), an unlabelled one is just text."""
    texts = read_texts(path)
    return read_dataset(path) if texts.ignored_labels else texts


_LABEL_I = re.compile(r"LABEL_(\d+)")


def parse_label_map(spec: str | Mapping[str, str] | None) -> dict[str, str]:
    """``"0=negative,1=positive"`` (or a mapping) -> {data label: model label}; a data label
    named twice is refused."""
    if not spec:
        return {}
    if isinstance(spec, Mapping):
        return {str(k): str(v) for k, v in spec.items()}
    out: dict[str, str] = {}
    for part in (p.strip() for p in spec.split(",") if p.strip()):
        key, sep, value = part.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise DataError(f"--label-map: expected DATA=MODEL pairs, got {part!r}",
                            hint="e.g. --label-map 0=negative,1=positive")
        if key.strip() in out:
            raise DataError(f"--label-map names the data label {key.strip()!r} twice")
        out[key.strip()] = value.strip()
    return out


def label_mapping(labels: Sequence[str], names: Sequence[str],
                  label_map: str | Mapping[str, str] | None = None,
                  where: str | Path | None = None) -> dict[str, str]:
    """How a data file's labels map onto a model's label names, in this order: an explicit
    ``label_map``; the names themselves; ``LABEL_<i>`` models (transformers' default names) take
    integer labels ``i``. {data label: model label}. Labels no rule maps are mapped to
    themselves, so the caller's own check (:meth:`Dataset.label_ids`, ``read_dataset(...,
    label_names=...)``) names them, with the line where it can."""
    names = [str(n) for n in names]
    present = sort_labels(set(labels))
    explicit = parse_label_map(label_map)
    if explicit:
        lacking = sorted(set(explicit.values()) - set(names))
        if lacking:
            raise DataError(f"--label-map names {lacking[0]!r}, which is not among the model's"
                            f" labels {names}", where=where)
        missing = [x for x in present if x not in explicit]
        if missing:
            raise DataError(f"label {missing[0]!r} is not in --label-map"
                            f" ({', '.join(f'{k}={v}' for k, v in explicit.items())})",
                            where=where)
        return {x: explicit[x] for x in present}
    if all(x in names for x in present):
        return {x: x for x in present}
    index = {int(m.group(1)): n for n in names if (m := _LABEL_I.fullmatch(n))}
    if len(index) == len(names) and all(x.isdigit() and int(x) in index for x in present):
        return {x: index[int(x)] for x in present}  # transformers' default names: i -> LABEL_i
    return {x: x for x in present}


def percentiles(values: Sequence[int], qs: Sequence[int] = (50, 90, 99, 100)) -> dict[str, int]:
    """Nearest-rank percentiles of integer lengths."""
    s = sorted(values)
    out: dict[str, int] = {}
    for q in qs:
        k = max(0, min(len(s) - 1, -(-q * len(s) // 100) - 1))
        out["max" if q == 100 else f"p{q}"] = s[k]
    return out


def summarize(ds: Dataset) -> dict[str, object]:
    """Rows, task kind, label distribution and character-length percentiles."""
    counts = Counter(ds.labels)
    lengths = [len(t) + (len(ds.pairs[i]) if ds.pairs else 0) for i, t in enumerate(ds.texts)]
    return {
        "path": str(ds.path),
        "rows": len(ds),
        "task": "pair" if ds.is_pair else "single",
        "text_columns": list(ds.text_columns),
        "label_column": ds.label_column,
        "labels": {name: counts[name] for name in ds.label_names()},
        "chars": percentiles(lengths),
    }
