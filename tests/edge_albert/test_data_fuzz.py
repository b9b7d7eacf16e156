"""Fuzzing the data loader: any bytes in, a Dataset or a DataError naming the file out.

Random bytes, random unicode (control characters, RTL, emoji, NUL), 1 MB fields, mixed line
endings and BOMs. What is checked, beyond "no other exception":
  * a DataError names the file (``where``), fits on one line, and its ``line`` is a real line;
  * a Dataset is consistent (one label per text, no blank texts or labels);
  * well-formed files round-trip exactly, whatever the characters and line endings;
  * the line a ragged row / bad byte is reported on is the line it is on.
The random-bytes run is repeated in a subprocess so an interpreter crash shows as an exit status.
"""
from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from edge_albert.data import read_dataset
from edge_albert.errors import DataError

# FUZZ_EXAMPLES=2000 for a deeper run; the default keeps this file to a few seconds
FUZZ = settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", "60")), deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])
EXTS = ("tsv", "csv", "jsonl")
BOM = b"\xef\xbb\xbf"
EOLS = ("\n", "\r\n", "\r")

# Text with the nasty parts over-represented: controls, NUL, RTL marks and scripts, emoji,
# combining marks, Unicode line separators, BOMs in the middle, plus anything else.
NASTY = st.sampled_from(["\x00", "\x01", "\x0b", "\x0c", "\x1c", "\x1f", "\x7f", "\x85", "\u00a0",
                         "\u200b", "\u200e", "\u200f", "\u202e", "\u2028", "\u2029", "\ufeff",
                         "\ufffd", "שלום", "مرحبا", "😀", "👩‍👩‍👧", "e\u0301", "\"", "'", ",", ";",
                         " ", "\\", "{", "}", "[", "]"])
TEXT = st.lists(st.one_of(NASTY, st.text(min_size=1, max_size=8)), min_size=1, max_size=12).map("".join)
LABEL = st.text(alphabet=st.characters(categories=["L", "N"]), min_size=1, max_size=6)


def _check(path, **kw):
    """read_dataset either returns a consistent Dataset or raises a DataError about ``path``."""
    try:
        ds = read_dataset(path, **kw)
    except DataError as e:
        assert e.where == str(path), e
        msg = str(e)
        assert "\n" not in msg and "\r" not in msg, repr(msg)
        assert msg.startswith(str(path)), msg
        if e.line is not None:
            n_lines = len(path.read_bytes().replace(b"\r\n", b"\n").replace(b"\r", b"\n")
                          .split(b"\n"))
            assert 1 <= e.line <= n_lines, (e.line, n_lines, msg)
        return None
    assert len(ds.texts) == len(ds.labels) >= 1
    if ds.pairs is not None:
        assert len(ds.pairs) == len(ds.texts)
    assert all(isinstance(t, str) and t.strip() for t in ds.texts)
    assert all(t.strip() for t in ds.pairs or ())
    assert all(lab and lab == lab.strip() for lab in ds.labels)
    assert ds.label_column not in ds.text_columns
    return ds


# -- random bytes and near-valid files --------------------------------------------------------

@FUZZ
@given(raw=st.binary(max_size=3000), ext=st.sampled_from(EXTS), bom=st.booleans())
def test_random_bytes(tmp_path, raw, ext, bom):
    path = tmp_path / f"data.{ext}"
    path.write_bytes((BOM if bom else b"") + raw)
    _check(path)


_HEADERS = st.lists(st.sampled_from(["sentence", "text", "label", "Quality", "#1 String",
                                     "#2 String", "premise", "hypothesis", "id", "stars", ""]),
                    min_size=1, max_size=4)


@st.composite
def delimited_files(draw):
    """Header + rows of random cells, random delimiters, quotes, line endings and BOM."""
    header = draw(_HEADERS)
    delim = draw(st.sampled_from(["\t", ",", ";"]))
    rows = draw(st.lists(st.lists(st.one_of(TEXT, LABEL, st.just(""), st.just('"')),
                                  min_size=0, max_size=len(header) + 1), max_size=6))
    lines = [delim.join(header)] + [delim.join(r) for r in rows]
    body = "".join(line + draw(st.sampled_from((*EOLS, "", "\n\n"))) for line in lines)
    return (BOM if draw(st.booleans()) else b"") + body.encode("utf-8")


@FUZZ
@given(raw=delimited_files(), ext=st.sampled_from(("tsv", "csv")),
       label_names=st.sampled_from([None, ["0", "1"]]))
def test_near_valid_delimited_files(tmp_path, raw, ext, label_names):
    path = tmp_path / f"data.{ext}"
    path.write_bytes(raw)
    ds = _check(path, label_names=label_names)
    if ds is not None and label_names is not None:
        assert set(ds.labels) <= set(label_names)


@FUZZ
@given(header=st.lists(st.one_of(TEXT, st.sampled_from(["text", "label", "sentence1"])),
                       min_size=1, max_size=4),
       rows=st.lists(st.lists(st.one_of(TEXT, LABEL), min_size=1, max_size=4), max_size=3))
def test_quoted_csv_with_any_header(tmp_path, header, rows):
    """Column names with newlines, quotes or controls still give one-line errors."""
    buf = io.StringIO(newline="")
    csv.writer(buf).writerows([header, *rows])
    path = tmp_path / "data.csv"
    path.write_text(buf.getvalue(), encoding="utf-8", newline="")
    _check(path)
    _check(path, text_columns=[header[0]], label_column=header[-1])


@FUZZ
@given(objs=st.lists(st.dictionaries(st.sampled_from(["text", "label", "sentence1", "sentence2",
                                                      "premise", "hypothesis", "x"]),
                                     st.one_of(TEXT, LABEL, st.none(), st.integers(),
                                               st.floats(), st.booleans(),
                                               st.lists(st.integers(), max_size=3))),
                     max_size=5),
       junk=st.lists(st.sampled_from(["", "[]", "1", "null", "{", '"x"', "{}",
                                      '{"text": "\\ud800", "label": 1}',
                                      '{"text": "a", "label": ' + "9" * 5000 + "}",
                                      "[" * 50_000]), max_size=2),
       ascii_only=st.booleans(), eol=st.sampled_from(EOLS))
def test_near_valid_jsonl(tmp_path, objs, junk, ascii_only, eol):
    lines = [json.dumps(o, ensure_ascii=ascii_only) for o in objs] + junk
    path = tmp_path / "data.jsonl"
    path.write_bytes(eol.join(lines).encode("utf-8"))
    ds = _check(path)
    if ds is not None:  # no text the loader hands on may be unencodable (lone surrogates)
        for t in ds.texts + (ds.pairs or ()) + ds.labels:
            t.encode("utf-8")


@pytest.mark.parametrize("junk", ["[" * 100_000, '{"text": "a", "label": ' + "1" * 5000 + "}",
                                  '{"text": ' + "1e999999" + ', "label": 1}'])
def test_jsonl_pathological_values(tmp_path, junk):
    """Deep nesting and huge numbers: python's json raises RecursionError/ValueError for these."""
    path = tmp_path / "data.jsonl"
    path.write_text('{"text": "ok", "label": 1}\n' + junk + "\n", encoding="utf-8")
    ds = _check(path)
    assert ds is None or ds.texts[0] == "ok"


# -- round trips --------------------------------------------------------------------------------

ROWS = st.lists(st.tuples(TEXT, LABEL), min_size=1, max_size=8)


def _eols(draw, n):
    return [draw(st.sampled_from(EOLS)) for _ in range(n)]


@FUZZ
@given(data=st.data(), rows=ROWS, bom=st.booleans())
def test_tsv_round_trip(tmp_path, data, rows, bom):
    rows = [(t, lab) for t, lab in rows if t.strip() and not set(t) & {"\t", "\n", "\r"}]
    assume(rows)
    eols = _eols(data.draw, len(rows) + 1)
    text = "sentence\tlabel" + eols[0] + "".join(f"{t}\t{lab}{e}" for (t, lab), e in zip(rows, eols[1:]))
    path = tmp_path / "data.tsv"
    path.write_bytes((BOM if bom else b"") + text.encode("utf-8"))
    ds = read_dataset(path)
    assert ds.texts == tuple(t for t, _ in rows)
    assert ds.labels == tuple(lab for _, lab in rows)


@FUZZ
@given(rows=ROWS, eol=st.sampled_from(EOLS), bom=st.booleans(),
       quoting=st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL]))
def test_csv_round_trip(tmp_path, rows, eol, bom, quoting):
    """Quoted CSV fields may hold anything: delimiters, quotes, newlines of any kind."""
    rows = [(t, lab) for t, lab in rows if t.strip()]
    assume(rows)
    if any(set(t) & {"\r", "\n"} for t, _ in rows):
        quoting = csv.QUOTE_ALL  # csv.writer leaves a \r unquoted when the line ends in \n
    buf = io.StringIO(newline="")
    w = csv.writer(buf, lineterminator=eol, quoting=quoting)
    w.writerow(["text", "label"])
    w.writerows(rows)
    path = tmp_path / "data.csv"
    path.write_bytes((BOM if bom else b"") + buf.getvalue().encode("utf-8"))
    ds = read_dataset(path)
    assert ds.texts == tuple(t for t, _ in rows)
    assert ds.labels == tuple(lab for _, lab in rows)


@FUZZ
@given(data=st.data(), rows=ROWS, pairs=st.lists(TEXT, min_size=8, max_size=8),
       ascii_only=st.booleans(), bom=st.booleans())
@example(data=None, rows=[("a\u2028b", "1"), ("c\x85d", "0")], pairs=["e"] * 8,
         ascii_only=False, bom=False)
def test_jsonl_round_trip(tmp_path, data, rows, pairs, ascii_only, bom):
    """JSON strings may hold U+2028, U+0085 and other characters str.splitlines() splits on."""
    rows = [(t, lab, p) for (t, lab), p in zip(rows, pairs) if t.strip() and p.strip()]
    assume(rows)
    eols = _eols(data.draw, len(rows)) if data is not None else ["\n"] * len(rows)
    body = "".join(json.dumps({"sentence1": t, "sentence2": p, "label": lab},
                              ensure_ascii=ascii_only) + e for (t, lab, p), e in zip(rows, eols))
    path = tmp_path / "data.jsonl"
    path.write_bytes((BOM if bom else b"") + body.encode("utf-8"))
    ds = read_dataset(path)
    assert ds.inputs() == [(t, p) for t, _, p in rows]
    assert ds.labels == tuple(lab for _, lab, _ in rows)


@pytest.mark.parametrize("ext", EXTS)
def test_one_megabyte_field(tmp_path, ext):
    big = ("a quite long review 😀 שלום " * 40_000)[:1_000_000]
    path = tmp_path / f"data.{ext}"
    if ext == "jsonl":
        path.write_text(json.dumps({"text": big, "label": "1"}) + "\n", encoding="utf-8")
    else:
        sep = "\t" if ext == "tsv" else ","
        path.write_text(f"text{sep}label\n{big}{sep}1\nshort{sep}0\n", encoding="utf-8")
    ds = read_dataset(path)
    assert ds.texts == (big,) + (("short",) if ext != "jsonl" else ())
    assert ds.labels[0] == "1"


# -- the reported line is the real line -------------------------------------------------------

@FUZZ
@given(data=st.data(), n_before=st.integers(0, 6), blanks=st.integers(0, 2), bom=st.booleans())
def test_ragged_row_line_number(tmp_path, data, n_before, blanks, bom):
    eols = _eols(data.draw, n_before + blanks + 2)
    lines = ["sentence\tlabel"] + [f"ok {i}\t1" for i in range(n_before)] + [" "] * blanks
    lines.append("bad\t0\textra")
    text = "".join(line + e for line, e in zip(lines, eols))
    path = tmp_path / "data.tsv"
    path.write_bytes((BOM if bom else b"") + text.encode("utf-8"))
    with pytest.raises(DataError, match="row has 3 fields") as e:
        read_dataset(path)
    assert e.value.line == len(lines) and e.value.where == str(path)


@FUZZ
@given(data=st.data(), n_before=st.integers(0, 6), ext=st.sampled_from(EXTS))
def test_invalid_utf8_line_number(tmp_path, data, n_before, ext):
    eols = _eols(data.draw, n_before + 2)
    if ext == "jsonl":
        lines = [json.dumps({"text": f"ok {i}", "label": 1}) for i in range(n_before + 1)]
    else:
        sep = "\t" if ext == "tsv" else ","
        lines = [f"text{sep}label"] + [f"ok {i}{sep}1" for i in range(n_before)]
    raw = b"".join(line.encode() + e.encode() for line, e in zip(lines, eols))
    raw += b"bad \xff byte"
    path = tmp_path / f"data.{ext}"
    path.write_bytes(raw)
    with pytest.raises(DataError, match="invalid UTF-8 at byte 4") as e:
        read_dataset(path)
    assert e.value.line == len(lines) + 1


# -- no interpreter crash: the same random inputs in a child process -------------------------

_CHILD = r"""
import random, sys
from pathlib import Path
from edge_albert.data import read_dataset
from edge_albert.errors import DataError
rng = random.Random(1234)
d = Path(sys.argv[1])
pieces = [b"sentence", b"label", b"text", b"\t", b",", b"\n", b"\r\n", b"\r", b'"', b"\x00",
          b"\xef\xbb\xbf", b"\xff", b"{", b"}", b"[", b":", b"1", b"0", "שלום 😀".encode(),
          b"\xe2\x80\xa8"]
valid = [b"sentence\tlabel\nthe film\t1\nthe plot\t0\n",
         b'text,label\n"a, b",1\nc,0\n',
         b'{"text": "a", "label": 1}\n{"text": "b", "label": 0}\n']
ok = err = 0
for i in range(300):
    if i % 3 == 0:
        raw = bytes(rng.randrange(256) for _ in range(rng.randrange(400)))
    elif i % 3 == 1:
        raw = b"".join(rng.choice(pieces) for _ in range(rng.randrange(60)))
    else:  # a valid file of each format, then a few random insertions
        raw = bytearray(valid[i % 9 // 3])
        for _ in range(rng.randrange(4)):
            k = rng.randrange(len(raw) + 1)
            raw[k:k] = rng.choice(pieces)
        raw = bytes(raw)
    for ext in ("tsv", "csv", "jsonl"):
        p = d / f"f{i}.{ext}"
        p.write_bytes(raw)
        try:
            read_dataset(p)
            ok += 1
        except DataError as e:
            assert e.where == str(p), e
            err += 1
print(ok, err)
"""


def test_random_files_in_a_subprocess(tmp_path):
    """300 random/mutated files per format; the child must exit 0 (no segfault, no raw error)."""
    proc = subprocess.run([sys.executable, "-c", _CHILD, str(tmp_path)], check=False,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    ok, err = map(int, proc.stdout.split())
    assert ok + err == 900 and ok > 0 and err > 0
