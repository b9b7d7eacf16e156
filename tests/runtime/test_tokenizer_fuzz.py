"""Fuzzing the runtime tokenizer: any string -> ids inside the vocabulary, at most max_length of
them, a well-formed batch, and the same ids as the host (transformers') tokenizer.

"Host" is what the toolchain side uses on the same directory: transformers' AutoTokenizer (which
reads the tokenizer.json the toolchain wrote) and AlbertTokenizer built from spiece.model alone;
the runtime is compared on both paths (tokenizer.json, and the pipeline it assembles itself from
spiece.model).
"""
from __future__ import annotations

import os
import re
import shutil

import numpy as np
import pytest
from edge_albert.runtime.tokenizer import TextTokenizer
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from edge_albert.errors import TokenizerError

# FUZZ_EXAMPLES=2000 for a deeper run; the default keeps this file to a few seconds
FUZZ = settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", "60")), deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])

NASTY = st.sampled_from(["\x00", "\x01", "\t", "\n", "\r", "\x0b", "\x1c", "\x7f", "\x85", "\xa0",
                         "\u200b", "\u200d", "\u200f", "\u202e", "\u2028", "\u3000", "\ufeff",
                         "\ufffd", "שלום", "مرحبا", "😀", "👩‍👩‍👧", "e\u0301", "ﬁ", "Ａ", "ß", "İ",
                         "``", "''", "▁", "[CLS]", "[SEP]", "<pad>", "[MASK]", "<unk>", "the film",
                         " is charming", "  ", "\U0010ffff", "\U000e0001"])
TEXT = st.one_of(
    st.lists(st.one_of(NASTY, st.text(max_size=6)), max_size=12).map("".join),
    st.text(max_size=40))
# what Python strings may hold but UTF-8 cannot: lone surrogates (e.g. a "\ud800" JSON escape)
SURROGATE_TEXT = st.lists(st.one_of(TEXT, st.characters(categories=["Cs"])), min_size=1,
                          max_size=4).map("".join)
MAX_LEN = st.integers(4, 48)


@pytest.fixture(scope="module")
def toks(tiny_tokenizer, tmp_path_factory):
    """Runtime and host tokenizers for both loading paths."""
    transformers = pytest.importorskip("transformers")
    spm_only = tmp_path_factory.mktemp("spm_only")
    shutil.copy(tiny_tokenizer / "spiece.model", spm_only / "spiece.model")
    return {
        "json": (TextTokenizer.load(tiny_tokenizer),
                 transformers.AutoTokenizer.from_pretrained(str(tiny_tokenizer))),
        "spm": (TextTokenizer.load(spm_only),
                transformers.AlbertTokenizer.from_pretrained(str(spm_only))),
    }


def check_batch(tok: TextTokenizer, enc, n: int, max_length: int, pairs: bool) -> None:
    """Everything a model relies on in an encoded batch."""
    vocab = tok._tok.get_vocab(with_added_tokens=True)
    cls, sep = vocab["[CLS]"], vocab["[SEP]"]
    ids, mask, types = enc.input_ids, enc.attention_mask, enc.token_type_ids
    assert ids.dtype == mask.dtype == types.dtype == np.int64
    assert ids.shape == mask.shape == types.shape and ids.shape[0] == n
    assert n == 0 or 2 <= ids.shape[1] <= max_length
    assert ((ids >= 0) & (ids < tok.vocab_size)).all()
    for i in range(n):
        k = int(mask[i].sum())
        assert 2 <= k <= max_length
        assert (mask[i, :k] == 1).all() and (mask[i, k:] == 0).all()  # no holes
        assert (ids[i, k:] == tok.pad_id).all() and (types[i, k:] == 0).all()
        assert ids[i, 0] == cls and ids[i, k - 1] == sep
        t = types[i, :k]
        if pairs:  # segment A (with [CLS] and its [SEP]) is 0, segment B and its [SEP] are 1
            assert t[0] == 0 and t[-1] == 1 and (np.diff(t) >= 0).all()
            assert ids[i, int(np.argmax(t)) - 1] == sep
        else:
            assert (t == 0).all()


def host_ids(hf, texts, pairs, max_length):
    if not texts:  # transformers itself fails on an empty batch (IndexError)
        return [], []
    ref = hf(list(texts), list(pairs) if pairs is not None else None, truncation=True,
             max_length=max_length, return_token_type_ids=True)
    return ref["input_ids"], ref["token_type_ids"]


@FUZZ
@given(texts=st.lists(TEXT, max_size=6), max_length=MAX_LEN,
       buckets=st.none() | st.lists(st.integers(1, 80), max_size=3))
@example(texts=["", " ", "\x00", "\u2028"], max_length=4, buckets=None)
def test_any_text_single(toks, texts, max_length, buckets):
    for kind, (ours, hf) in toks.items():
        enc = ours.encode(texts, max_length=max_length, buckets=buckets)
        check_batch(ours, enc, len(texts), max_length, pairs=False)
        ref_ids, ref_types = host_ids(hf, texts, None, max_length)
        for i, n in enumerate(enc.lengths.tolist()):
            assert enc.input_ids[i, :n].tolist() == ref_ids[i], (kind, texts[i])
            assert enc.token_type_ids[i, :n].tolist() == ref_types[i], (kind, texts[i])


@FUZZ
@given(rows=st.lists(st.tuples(TEXT, TEXT), max_size=6), max_length=MAX_LEN)
@example(rows=[("", "dull"), ("the film", ""), ("", "")], max_length=4)
@example(rows=[("the film " * 30, "is charming " * 30)], max_length=5)
def test_any_text_pairs(toks, rows, max_length):
    texts, pairs = [a for a, _ in rows], [b for _, b in rows]
    for kind, (ours, hf) in toks.items():
        enc = ours.encode(texts, pairs, max_length=max_length)
        check_batch(ours, enc, len(rows), max_length, pairs=True)
        ref_ids, ref_types = host_ids(hf, texts, pairs, max_length)
        for i, n in enumerate(enc.lengths.tolist()):
            assert enc.input_ids[i, :n].tolist() == ref_ids[i], (kind, rows[i])
            assert enc.token_type_ids[i, :n].tolist() == ref_types[i], (kind, rows[i])


@FUZZ
@given(texts=st.lists(st.one_of(SURROGATE_TEXT, st.none(), st.integers(), st.floats()),
                      min_size=1, max_size=4),
       max_length=MAX_LEN)
def test_text_python_holds_but_utf8_cannot(toks, texts, max_length):
    """Lone surrogates and non-strings: encoded as str(x) with U+FFFD for each surrogate (what
    the host makes of U+FFFD), never a TypeError from the tokenizers library."""
    ours, hf = toks["json"]
    enc = ours.encode(texts, max_length=max_length)
    check_batch(ours, enc, len(texts), max_length, pairs=False)
    check_batch(ours, ours.encode(texts, texts[::-1], max_length=max_length), len(texts),
                max_length, pairs=True)
    replaced = [re.sub("[\ud800-\udfff]", "\ufffd", str(t)) for t in texts]
    ref_ids, _ = host_ids(hf, replaced, None, max_length)
    assert [enc.input_ids[i, :n].tolist() for i, n in enumerate(enc.lengths)] == ref_ids
    assert ours.tokenize(replaced[0]) == ours.tokenize(str(texts[0]))


def test_one_text_is_not_a_list_of_characters(toks):
    ours, _ = toks["json"]
    one = ours.encode("the film is charming", max_length=32)
    assert one.input_ids.shape[0] == 1
    assert one.input_ids.tolist() == ours.encode(["the film is charming"], max_length=32).input_ids.tolist()
    pair = ours.encode("the film", "is charming", max_length=32)
    assert pair.input_ids.tolist() == ours.encode(["the film"], ["is charming"], max_length=32).input_ids.tolist()


@pytest.mark.parametrize("text", ["the film is charming . " * 5000,  # 115k characters
                                  "x" * 100_000, "😀" * 100_000, "a\u0301\x00" * 40_000])
def test_huge_text_is_truncated(toks, text):
    ours, hf = toks["json"]
    enc = ours.encode([text, "short"], [text[:10], text], max_length=32)
    check_batch(ours, enc, 2, 32, pairs=True)
    ref_ids, _ = host_ids(hf, [text, "short"], [text[:10], text], 32)
    assert [enc.input_ids[i, :n].tolist() for i, n in enumerate(enc.lengths)] == ref_ids


def test_bad_arguments_are_tokenizer_errors(toks):
    ours, _ = toks["json"]
    with pytest.raises(TokenizerError, match="max_length must be at least 4"):
        ours.encode(["a"], max_length=3)
    with pytest.raises(TokenizerError, match="2 texts but 1 pairs") as e:
        ours.encode(["a", "b"], ["c"])
    assert e.value.where == str(ours.source)
    assert ours.encode([], max_length=8).input_ids.shape == (0, 8)
