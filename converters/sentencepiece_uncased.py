"""A SentencePiece model whose own normaliser does what this project's runtime does before
SentencePiece (ALBERT's quote replacement, NFKD, accent stripping, lower-casing; every
White_Space character a separator), so that clients which run SentencePiece alone (MediaPipe's
TextClassifier, onnxruntime-extensions' ``SentencepieceTokenizer``) feed the model the runtime's
ids. MediaPipe lower-cases ASCII only and strips no accents ("café" became ``<unk>``); the
extensions op does no lower-casing at all.

SentencePiece's normaliser is a precompiled charsmap; its trainer compiles one from a rule file
(``normalization_rule_tsv``), so the charsmap is built here from one rule per code point that the
runtime's normaliser changes, by training a throwaway model and keeping only its charsmap.
"""
from __future__ import annotations

import functools
import io
import tempfile
from pathlib import Path

# why a client running SentencePiece itself may still feed other ids on a few texts
SEGMENTATION_DIFFERS = ("SentencePiece's own segmentation (the client's) and the runtime's (Hugging"
                        " Face tokenizers' Unigram) can pick different pieces on rare words (seen"
                        " on typos and on random letter strings with vocabularies of a few"
                        " hundred pieces)")

# Unicode's White_Space property: what Rust's char::is_whitespace (tokenizers' WhitespaceSplit)
# splits on; Python's str.isspace also takes U+001C..U+001F, which tokenizers keeps
_WHITE_SPACE = frozenset("\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005"
                         "\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000")


@functools.lru_cache(maxsize=2)  # one per convert run, not one per file it writes
def uncased_sentencepiece(model: bytes) -> bytes:
    """The SentencePiece model with a normaliser that does the runtime's normalisation itself
    (one rule per changed code point, compiled by SentencePiece's trainer)."""
    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2 as pb

    from ..runtime.tokenizer import albert_normalizer

    proto = pb.ModelProto()  # type: ignore[attr-defined]  # protobuf-generated, no stubs
    proto.ParseFromString(model)
    ours = albert_normalizer(True, proto.normalizer_spec.precompiled_charsmap)
    rules = [("``", '"'), ("''", '"')]
    for cp in range(0x110000):
        if 0xD800 <= cp < 0xE000:  # surrogates are no text
            continue
        c = chr(cp)
        # the runtime's pre-tokenizer splits on every White_Space character; SentencePiece only
        # on " " (a tab or newline left in became <unk>): map them to " " for it to collapse
        n = "".join(" " if x in _WHITE_SPACE else x for x in ours.normalize_str(c))
        if n != c:
            rules.append((c, n))

    def hexes(s: str) -> str:
        return " ".join(f"{ord(x):X}" for x in s)

    with tempfile.TemporaryDirectory(prefix="edge-albert-spm-") as d:
        tsv = Path(d) / "rules.tsv"
        tsv.write_text("".join(f"{hexes(s)}\t{hexes(n)}\n" for s, n in rules), encoding="utf-8")
        buf = io.BytesIO()
        spm.SentencePieceTrainer.train(  # a throwaway model: only its compiled charsmap is used
            sentence_iterator=iter(["abc def"] * 20), model_writer=buf, vocab_size=10,
            model_type="char", normalization_rule_tsv=str(tsv), hard_vocab_limit=False,
            minloglevel=2)
    compiled = pb.ModelProto()  # type: ignore[attr-defined]
    compiled.ParseFromString(buf.getvalue())
    proto.normalizer_spec.precompiled_charsmap = compiled.normalizer_spec.precompiled_charsmap
    proto.normalizer_spec.name = "edge_albert_uncased"
    return proto.SerializeToString()


__all__ = ["SEGMENTATION_DIFFERS", "uncased_sentencepiece"]
