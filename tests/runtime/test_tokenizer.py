"""The runtime tokenizer: ALBERT SentencePiece and WordPiece directories, truncation and buckets."""
import json
import shutil

import numpy as np
import pytest
from edge_albert.runtime.tokenizer import TextTokenizer, pick_bucket

from edge_albert.errors import TokenizerError


def test_albert_ids_and_specials(tiny_tokenizer):
    tok = TextTokenizer.load(tiny_tokenizer)
    assert tok.kind == "sentencepiece" and tok.pad_id == 0
    assert 20 < tok.vocab_size <= 120  # a small corpus may yield fewer pieces than asked
    enc = tok.encode(["The film IS charming ."], max_length=32)
    ids = enc.input_ids[0, : int(enc.lengths[0])]
    assert ids[0] == 2 and ids[-1] == 3  # [CLS] ... [SEP]
    assert tok.tokenize("The film") == tok.tokenize("the film")  # lower-cased


def test_pairs_truncation_and_buckets(tiny_tokenizer):
    tok = TextTokenizer.load(tiny_tokenizer)
    long = "the film is charming " * 40
    enc = tok.encode([long, "short ."], ["the plot drags .", "yes"], max_length=24, buckets=[8, 16, 32])
    assert enc.input_ids.shape == (2, 24)  # 32 is above max_length: clipped to max_length
    assert enc.lengths.tolist()[0] == 24
    row = enc.token_type_ids[0]
    assert row[0] == 0 and row[23] == 1  # longest_first keeps part of the second text
    small = tok.encode(["short ."], max_length=128, buckets=[8, 16, 32])
    assert small.input_ids.shape[1] == 8 and small.attention_mask[0].sum() < 8
    assert pick_bucket(17, [32, 16, 64], 128) == 32 and pick_bucket(500, [32], 128) == 128


def test_spm_only_directory_matches_tokenizer_json(tiny_tokenizer, tmp_path):
    shutil.copy(tiny_tokenizer / "spiece.model", tmp_path / "spiece.model")
    a = TextTokenizer.load(tiny_tokenizer)
    b = TextTokenizer.load(tmp_path)
    texts = ["The film is charming .", "ÉLAN ``quoted'' café", "[MASK] odd  spacing\tx"]
    np.testing.assert_array_equal(a.encode(texts).input_ids, b.encode(texts).input_ids)


def test_missing_pieces_are_clear_errors(tmp_path):
    with pytest.raises(TokenizerError, match=r"expected spiece.model, tokenizer.json or vocab.txt"):
        TextTokenizer.load(tmp_path)
    with pytest.raises(TokenizerError, match="does not exist"):
        TextTokenizer.load(tmp_path / "nope")
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(TokenizerError, match="cannot load the tokenizer") as e:
        TextTokenizer.load(tmp_path)
    assert e.value.where == str(tmp_path / "tokenizer.json")  # the file, not its directory


def test_wordpiece_from_vocab_txt(tmp_path):
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "film", "is", "good", "##s"]
    (tmp_path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": True}))
    tok = TextTokenizer.load(tmp_path)
    enc = tok.encode(["The films"], ["good"], max_length=16)
    n = int(enc.lengths[0])
    assert enc.input_ids[0, :n].tolist() == [2, 5, 6, 9, 3, 8, 3]
    assert enc.token_type_ids[0, :n].tolist() == [0, 0, 0, 0, 0, 1, 1]


def test_piece_ids_are_untruncated_and_leave_encode_truncating(tiny_tokenizer):
    from edge_albert.runtime.tokenizer import TextTokenizer

    tok = TextTokenizer.load(tiny_tokenizer)
    long = " ".join(["the film is charming"] * 20)
    assert tok.encode([long], max_length=16).lengths[0] == 16
    [ids] = tok.piece_ids([long])
    assert len(ids) > 16  # no truncation, no special tokens
    assert tok.encode([long], max_length=16).lengths[0] == 16  # encode truncates again
