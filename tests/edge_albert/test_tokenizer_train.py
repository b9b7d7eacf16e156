"""SentencePiece training is reproducible: same text and config, byte-identical model."""
from __future__ import annotations

from edge_albert.runtime.tokenizer import TextTokenizer

from edge_albert.config import TokenizerConfig
from edge_albert.tokenizer_train import train_tokenizer

TEXT = [f"the film number {i} was {'good' if i % 2 else 'bad'} and plot {i * 7 % 13} moved"
        for i in range(300)]


def test_same_text_same_bytes_and_no_temporary_path(tmp_path):
    train_tokenizer(TokenizerConfig(vocab_size=80), TEXT, tmp_path / "a")
    train_tokenizer(TokenizerConfig(vocab_size=80), TEXT, tmp_path / "b")
    a, b = (tmp_path / "a" / "spiece.model").read_bytes(), (tmp_path / "b" / "spiece.model").read_bytes()
    assert a == b
    assert str(tmp_path).encode() not in a and b"corpus.txt" not in a
    tok = TextTokenizer.load(tmp_path / "a")
    assert 20 < tok.vocab_size <= 80 and tok.tokenize("the film was good")
