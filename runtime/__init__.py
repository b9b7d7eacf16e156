"""The device runtime: numpy, sentencepiece, tokenizers and one interpreter; no torch, no tensorflow."""
from .tokenizer import Encoded, TextTokenizer, pick_bucket

__all__ = ["Encoded", "TextTokenizer", "pick_bucket"]
