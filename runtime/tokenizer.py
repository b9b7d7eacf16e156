"""Text -> ``input_ids``, ``attention_mask``, ``token_type_ids``: one implementation for host and device.

Loads either
  (a) an ALBERT-style SentencePiece directory (``spiece.model``, and ``tokenizer.json`` when the
      toolchain wrote one), or
  (b) a Hugging Face WordPiece directory (``tokenizer.json`` or ``vocab.txt``: BERT, MiniLM).

Encoding runs on Hugging Face's ``tokenizers`` library, the same engine transformers' fast
tokenizers use, so ids match the toolchain's exactly. For a SentencePiece model without a
``tokenizer.json`` the same Unigram pipeline transformers builds for ALBERT is assembled here from
the model's pieces and scores (see :func:`albert_tokenizer_from_spm`). Truncation is
``longest_first`` to ``max_length``, as transformers does; padding goes to the smallest bucket
that fits the batch.

Imports: numpy, tokenizers, sentencepiece only.
"""
from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import TokenizerError

ALBERT_SPECIALS = ("<pad>", "<unk>", "[CLS]", "[SEP]", "[MASK]")


def _spm_charsmap(model_bytes: bytes) -> bytes:
    """``normalizer_spec.precompiled_charsmap`` of a serialized SentencePiece ModelProto.

    A ten-line protobuf wire walk, written by hand so the device runtime needs no protobuf
    package: ModelProto field 3 is the NormalizerSpec, whose field 2 is the charsmap.
    """
    def fields(buf: bytes) -> Iterator[tuple[int, bytes | None]]:
        i = 0
        while i < len(buf):
            key, i = _varint(buf, i)
            num, wire = key >> 3, key & 7
            if wire == 0:
                _, i = _varint(buf, i)
                yield num, None
            elif wire == 1:
                i += 8
            elif wire == 2:
                n, i = _varint(buf, i)
                yield num, buf[i:i + n]
                i += n
            elif wire == 5:
                i += 4
            else:
                raise ValueError(f"unsupported protobuf wire type {wire}")

    for num, val in fields(model_bytes):
        if num == 3 and val is not None:
            for n2, v2 in fields(val):
                if n2 == 2 and v2 is not None:
                    return bytes(v2)
    return b""


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        if i >= len(buf):
            raise ValueError("truncated varint")
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, i
        shift += 7


def albert_normalizer(lowercase: bool = True, charsmap: bytes = b"") -> Any:
    """The normalizer transformers' AlbertTokenizer uses (quotes, NFKD, strip accents, lower)."""
    from tokenizers import normalizers

    steps = [normalizers.Replace("``", '"'), normalizers.Replace("''", '"'),
             normalizers.NFKD(), normalizers.StripAccents()]
    if lowercase:
        steps.append(normalizers.Lowercase())
    if charsmap:
        steps.append(normalizers.Precompiled(charsmap))
    return normalizers.Sequence(steps)


def albert_tokenizer_from_spm(spm_path: str | Path, lowercase: bool = True) -> Any:
    """Build the ``tokenizers`` pipeline transformers uses for ALBERT from a ``spiece.model``."""
    import sentencepiece as spm
    from tokenizers import AddedToken, Tokenizer, decoders, pre_tokenizers, processors
    from tokenizers.models import Unigram

    spm_path = Path(spm_path)
    try:
        raw = spm_path.read_bytes()
        sp = spm.SentencePieceProcessor(model_proto=raw)
        charsmap = _spm_charsmap(raw)
    except (OSError, RuntimeError, ValueError) as exc:
        raise TokenizerError(f"not a readable SentencePiece model ({exc})", where=spm_path) from None
    vocab = [(sp.id_to_piece(i), float(sp.get_score(i))) for i in range(sp.get_piece_size())]
    pieces = {p: i for i, (p, _) in enumerate(vocab)}
    missing = [t for t in ALBERT_SPECIALS if t not in pieces]
    if missing:
        raise TokenizerError(f"SentencePiece model lacks ALBERT special piece(s) {missing}",
                             where=spm_path)
    tok = Tokenizer(Unigram(vocab, unk_id=pieces["<unk>"], byte_fallback=False))
    tok.normalizer = albert_normalizer(lowercase, charsmap)
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.WhitespaceSplit(),
        pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always"),
    ])
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS]:0 $A:0 [SEP]:0",
        pair="[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1",
        special_tokens=[("[CLS]", pieces["[CLS]"]), ("[SEP]", pieces["[SEP]"])],
    )
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in ALBERT_SPECIALS])
    return tok


_SURROGATE = re.compile("[\ud800-\udfff]")


def _as_text(t: object) -> str:
    """``str(t)``, with lone surrogates (a ``"\\ud800"`` JSON escape, a surrogateescape'd byte)
    replaced by U+FFFD: they are not UTF-8, and ``tokenizers`` refuses them with a TypeError."""
    t = t if isinstance(t, str) else str(t)
    if not t.isascii() and _SURROGATE.search(t):
        t = _SURROGATE.sub("\ufffd", t)
    return t


@dataclass
class Encoded:
    """A padded batch: int64 arrays of shape (batch, seq_len)."""

    input_ids: np.ndarray
    attention_mask: np.ndarray
    token_type_ids: np.ndarray

    def as_dict(self) -> dict[str, np.ndarray]:
        return {"input_ids": self.input_ids, "attention_mask": self.attention_mask,
                "token_type_ids": self.token_type_ids}

    @property
    def lengths(self) -> np.ndarray:
        return np.asarray(self.attention_mask.sum(axis=1))


def pick_bucket(length: int, buckets: Sequence[int] | None, max_length: int) -> int:
    """Smallest bucket >= length (buckets above max_length are ignored); max_length if none fits."""
    for b in sorted(buckets or ()):
        if length <= b <= max_length:
            return b
    return max_length


#: every file a tokenizer directory may hold: copied with a model
TOKENIZER_FILES = ("spiece.model", "tokenizer.json", "tokenizer_config.json",
                   "special_tokens_map.json", "vocab.txt")
#: the ones :meth:`TextTokenizer.load` reads: hash-checked when a model loads
TOKENIZER_FILES_READ = ("spiece.model", "tokenizer.json", "tokenizer_config.json", "vocab.txt")


class TextTokenizer:
    """Encodes texts and text pairs the way the model was trained."""

    def __init__(self, tokenizer: Any, *, source: Path, kind: str) -> None:
        self._tok = tokenizer
        self._tok.no_padding()
        self._tok.no_truncation()
        self.source = source
        self.kind = kind  # "sentencepiece" or "wordpiece"
        vocab = tokenizer.get_vocab(with_added_tokens=True)
        self.vocab_size = max(vocab.values()) + 1 if vocab else 0
        pad = next((t for t in ("<pad>", "[PAD]") if t in vocab), None)
        if pad is None:
            raise TokenizerError("tokenizer has no padding token (<pad> or [PAD])", where=source)
        self.pad_id = vocab[pad]
        self.mask_token = next((t for t in ("[MASK]", "<mask>") if t in vocab), None)
        self._max_length: int | None = None
        # truncation length is state of the shared `tokenizers` object: set + encode under a lock
        self._lock = threading.Lock()

    @classmethod
    def load(cls, directory: str | Path) -> TextTokenizer:
        """Load a tokenizer directory (see the module docstring for what it may hold)."""
        from tokenizers import Tokenizer

        d = Path(directory)
        if not d.is_dir():
            raise TokenizerError("tokenizer directory does not exist", where=d)
        lowercase = True
        cfg_path = d / "tokenizer_config.json"
        if cfg_path.is_file():
            try:
                cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
                lowercase = bool(cfg.get("do_lower_case", True))
            except (json.JSONDecodeError, UnicodeDecodeError):
                raise TokenizerError("tokenizer_config.json is not valid JSON", where=cfg_path) from None
        kind = "sentencepiece" if (d / "spiece.model").is_file() else "wordpiece"
        # the first of these present is the one read: the error then names that file
        source = next((d / f for f in ("tokenizer.json", "spiece.model", "vocab.txt")
                       if (d / f).is_file()), None)
        if source is None:
            raise TokenizerError(
                "no tokenizer here: expected spiece.model, tokenizer.json or vocab.txt",
                where=d, hint="point at the directory the tokenizer was saved to")
        try:
            if source.name == "tokenizer.json":
                tok = Tokenizer.from_file(str(source))
            elif source.name == "spiece.model":
                tok = albert_tokenizer_from_spm(source, lowercase)
            else:
                from tokenizers.implementations import BertWordPieceTokenizer

                tok = BertWordPieceTokenizer(str(source), lowercase=lowercase)._tokenizer
        except TokenizerError:
            raise
        # tokenizers and sentencepiece raise bare Exceptions (or RuntimeError/OSError) on a bad file
        except Exception as exc:
            raise TokenizerError(f"cannot load the tokenizer ({str(exc).splitlines()[0][:200]})",
                                 where=source) from None
        return cls(tok, source=d, kind=kind)

    def tokenize(self, text: str) -> list[str]:
        """Sub-word pieces of one text, without special tokens."""
        return list(self._tok.encode(_as_text(text), add_special_tokens=False).tokens)

    def piece_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """The vocabulary ids of each text's pieces, without special tokens or truncation."""
        with self._lock:  # encode() leaves truncation set: clear it (and its cached length)
            self._tok.no_truncation()
            self._max_length = None
            found = self._tok.encode_batch([_as_text(t) for t in texts], add_special_tokens=False)
        return [list(e.ids) for e in found]

    def encode(
        self,
        texts: Sequence[str],
        pairs: Sequence[str] | None = None,
        *,
        max_length: int = 128,
        buckets: Sequence[int] | None = None,
        pad_to: int | None = None,
    ) -> Encoded:
        """Encode a batch. Truncates ``longest_first`` to ``max_length`` (special tokens included),
        then pads to ``pad_to``, or to the smallest bucket that fits the longest row."""
        if max_length < 4:
            raise TokenizerError(f"max_length must be at least 4, got {max_length}", where=self.source)
        if isinstance(texts, str):  # one text, not a sequence of one-character texts
            texts = [texts]
        if isinstance(pairs, str):
            pairs = [pairs]
        texts = [_as_text(t) for t in texts]
        if pairs is not None:
            pairs = [_as_text(t) for t in pairs]
            if len(pairs) != len(texts):
                raise TokenizerError(f"{len(texts)} texts but {len(pairs)} pairs",
                                     where=self.source)
        batch = list(zip(texts, pairs)) if pairs is not None else texts
        with self._lock:
            if self._max_length != max_length:
                self._tok.enable_truncation(max_length, strategy="longest_first")
                self._max_length = max_length
            encs = self._tok.encode_batch(batch, add_special_tokens=True) if batch else []
        longest = max((len(e.ids) for e in encs), default=1)
        width = pad_to if pad_to is not None else pick_bucket(longest, buckets, max_length)
        n = len(encs)
        ids = np.full((n, width), self.pad_id, dtype=np.int64)
        mask = np.zeros((n, width), dtype=np.int64)
        types = np.zeros((n, width), dtype=np.int64)
        for i, e in enumerate(encs):
            k = min(len(e.ids), width)
            ids[i, :k] = e.ids[:k]
            mask[i, :k] = 1
            types[i, :k] = e.type_ids[:k]
        return Encoded(ids, mask, types)

    def save(self, directory: str | Path) -> None:
        """Write ``tokenizer.json`` (the runtime's whole tokenizer) into ``directory``."""
        self._tok.save(str(Path(directory) / "tokenizer.json"))
