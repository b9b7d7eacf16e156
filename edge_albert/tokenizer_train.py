"""Train an ALBERT-style SentencePiece tokenizer and write a directory transformers also loads.

The directory holds ``spiece.model`` (SentencePiece unigram, ALBERT's ids: ``<pad>`` 0,
``<unk>`` 1, ``[CLS]`` 2, ``[SEP]`` 3, ``[MASK]`` 4), ``tokenizer.json`` (the exact pipeline the
runtime runs), ``tokenizer_config.json`` naming ``AlbertTokenizer``, and a manifest.

Training text is normalized with the runtime's own normalizer first, so the pieces SentencePiece
learns are the pieces the runtime will see.
"""
from __future__ import annotations

import io
import json
import os
import random
from collections.abc import Iterable, Sequence
from pathlib import Path

from .artifacts import Manifest, write_artifact
from .config import TokenizerConfig, to_dict
from .data import read_dataset
from .errors import DataError
from .runtime.tokenizer import (
    ALBERT_SPECIALS,
    TextTokenizer,
    albert_normalizer,
    albert_tokenizer_from_spm,
)


def training_sentences(paths: Sequence[str | Path]) -> list[str]:
    """Every text (both sides of pairs) of labelled data files."""
    out: list[str] = []
    for p in paths:
        ds = read_dataset(p)
        out.extend(ds.texts)
        if ds.pairs:
            out.extend(ds.pairs)
    return out


def run_tokenizer(config: TokenizerConfig, data_files: Sequence[str | Path], out_dir: str | Path,
                  *, force: bool = False, progress: bool | None = None) -> Manifest:
    """The tokenizer stage: a SentencePiece model trained on every text of ``data_files``.

    (``progress`` is the stage contract's; training takes seconds and shows none.)"""
    del progress
    return train_tokenizer(config, training_sentences(data_files), out_dir, sources=data_files,
                           force=force)


def train_tokenizer(
    config: TokenizerConfig,
    sentences: Iterable[str],
    out_dir: str | Path,
    *,
    sources: Sequence[str | Path] = (),
    force: bool = False,
) -> Manifest:
    """Train SentencePiece on ``sentences`` and write the tokenizer artifact to ``out_dir``."""
    import sentencepiece as spm

    norm = albert_normalizer(config.lowercase)
    text = [norm.normalize_str(s).replace("\n", " ").strip() for s in sentences]
    text = [t for t in text if t]
    if not text:
        raise DataError("no training text for the tokenizer", where=", ".join(map(str, sources)) or None)
    rng = random.Random(config.seed)
    if len(text) > config.max_sentences:
        text = rng.sample(text, config.max_sentences)
    with write_artifact(out_dir, stage="tokenizer", config=to_dict(config), force=force) as w:
        # from memory, not a corpus file: the model then records no temporary path, so the
        # same text and config give a byte-identical spiece.model
        model = io.BytesIO()
        try:
            spm.SentencePieceTrainer.train(
                sentence_iterator=iter(text), model_writer=model, vocab_size=config.vocab_size,
                model_type=config.model_type.value,
                character_coverage=config.character_coverage,
                pad_id=0, unk_id=1, bos_id=-1, eos_id=-1,
                pad_piece="<pad>", unk_piece="<unk>",
                control_symbols=["[CLS]", "[SEP]", "[MASK]"],
                normalization_rule_name="identity", hard_vocab_limit=False,
                num_threads=min(2, os.cpu_count() or 1),
                input_sentence_size=config.max_sentences, shuffle_input_sentence=True,
                minloglevel=2,
            )
        except RuntimeError as exc:
            raise DataError(f"SentencePiece training failed: {exc}",
                            where=", ".join(map(str, sources)) or None,
                            hint="a smaller --vocab-size may fit a small corpus") from None
        (w.path / "spiece.model").write_bytes(model.getvalue())
        tok = albert_tokenizer_from_spm(w.path / "spiece.model", config.lowercase)
        tok.save(str(w.path / "tokenizer.json"))
        specials = dict(zip(("pad_token", "unk_token", "cls_token", "sep_token", "mask_token"),
                            ALBERT_SPECIALS))
        (w.path / "tokenizer_config.json").write_text(json.dumps({
            "tokenizer_class": "AlbertTokenizer", "do_lower_case": config.lowercase,
            "keep_accents": False, "bos_token": "[CLS]", "eos_token": "[SEP]",
            "model_max_length": 512, **specials,
        }, indent=2) + "\n", encoding="utf-8")
        (w.path / "special_tokens_map.json").write_text(json.dumps(specials, indent=2) + "\n",
                                                          encoding="utf-8")
        w.extra["vocab_size"] = TextTokenizer(tok, source=w.path, kind="sentencepiece").vocab_size
        w.extra["sentences"] = len(text)
        w.extra["sources"] = [str(s) for s in sources]
    assert w.manifest is not None
    return w.manifest
