"""``edge-albert model trim-vocab``: drop the word-embedding rows a deployment never uses.

A student that keeps the teacher's 30,522-id WordPiece vocabulary spends most of its parameters
on the embedding table (3.9M of the ``small`` preset's 4.9M), yet one task's text uses a
fraction of the ids (SST-2's training sentences: 11,570). Trimming keeps

  * the special tokens ([PAD], [UNK], [CLS], [SEP], [MASK]),
  * every single-character piece and its ``##`` form, so any word still splits into pieces
    (a word the corpus never shows is spelled with shorter pieces instead of its own id),
  * the ids the corpus uses (``min_count`` times or more), and the first ``keep_first`` ids
    (BERT's vocabulary lists whole words roughly by frequency after the characters),

in their original order, and rewrites ``tokenizer.json`` / ``vocab.txt`` and the embedding rows
to match. Text whose pieces are all kept tokenizes exactly as before (WordPiece's greedy
longest match over a subset picks the same pieces), so the model's logits on the corpus do not
change; on other text they may. With ``--dev`` the stage measures that on labelled data:
accuracy before and after, agreement, the share of texts whose tokenization changed.

Written by hand because no library trims a WordPiece model (TextPruner does it for a torch
model but pulls in its own stack); SentencePiece (Unigram) tokenizers are refused: size those
with ``edge-albert tokenizer train --vocab-size``.
"""
from __future__ import annotations

import dataclasses
import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .artifacts import Manifest, check_new_output, write_artifact
from .config import to_dict
from .data import Dataset, read_dataset
from .errors import DataError, TokenizerError
from .modeling import copy_tokenizer_files, label_names_of, load_classifier, parameter_count
from .runtime.tokenizer import TextTokenizer

SPECIAL = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


@dataclasses.dataclass(frozen=True)
class TrimVocabConfig:
    """What to keep besides the special tokens and the single characters."""

    enabled: bool = False  # in a recipe: run this stage (between student and convert)
    min_count: int = 1  # keep an id the corpus uses at least this often
    keep_first: int = 0  # also keep ids below this (the vocabulary's most frequent words)
    max_length: int = 128  # for the --dev comparison

    def __post_init__(self) -> None:
        if self.min_count < 1:
            raise ValueError(f"min_count must be >= 1, got {self.min_count}")
        if self.keep_first < 0:
            raise ValueError(f"keep_first must be >= 0, got {self.keep_first}")


def read_corpus(path: str | Path) -> list[str]:
    """Texts of a corpus file: a task file (TSV/CSV/JSONL: texts and pairs) or plain ``.txt``
    with one text per line."""
    p = Path(path)
    if p.suffix == ".txt":
        if not p.is_file():
            raise DataError("corpus file does not exist", where=p)
        try:
            lines = [ln.strip() for ln in p.read_text(encoding="utf-8").splitlines()]
        except UnicodeDecodeError as exc:
            raise DataError(f"not UTF-8 text (byte {exc.start})", where=p) from None
        texts = [ln for ln in lines if ln]
        if not texts:
            raise DataError("corpus file has no text", where=p)
        return texts
    ds = read_dataset(p)
    return list(ds.texts) + list(ds.pairs or ())


def _wordpiece_json(tok_dir: Path) -> tuple[dict[str, Any], dict[str, int]]:
    path = tok_dir / "tokenizer.json"
    if (tok_dir / "spiece.model").is_file():
        raise TokenizerError("vocabulary trimming supports WordPiece tokenizers; this one is"
                             " SentencePiece", where=tok_dir / "spiece.model",
                             hint="size a SentencePiece vocabulary when training it"
                                  " (edge-albert tokenizer train --vocab-size)")
    if not path.is_file():
        raise TokenizerError("no tokenizer.json (vocabulary trimming rewrites it)", where=tok_dir)
    try:
        spec = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise TokenizerError("tokenizer.json is not valid JSON", where=path) from None
    model = spec.get("model") if isinstance(spec, dict) else None
    if not isinstance(model, dict) or model.get("type") != "WordPiece":
        kind = model.get("type") if isinstance(model, dict) else None
        raise TokenizerError(f"vocabulary trimming supports WordPiece tokenizers, not {kind}",
                             where=path)
    return spec, dict(model["vocab"])


def kept_ids(vocab: dict[str, int], counts: Counter, cfg: TrimVocabConfig) -> list[int]:
    """The ids to keep, ascending (see the module docstring)."""
    keep = {i for i, n in counts.items() if n >= cfg.min_count}
    keep.update(range(min(cfg.keep_first, len(vocab))))
    for piece, i in vocab.items():
        if piece in SPECIAL or len(piece) == 1 or (piece.startswith("##") and len(piece) == 3):
            keep.add(i)
    return sorted(keep)


def _rewrite_tokenizer(spec: dict[str, Any], new: dict[str, int], where: Path) -> dict[str, Any]:
    """``tokenizer.json`` with the trimmed vocabulary; special-token ids follow their pieces."""
    spec = json.loads(json.dumps(spec))
    spec["model"]["vocab"] = new
    for tok in spec.get("added_tokens") or ():
        if tok["content"] not in new:
            raise TokenizerError(f"added token {tok['content']!r} is not in the vocabulary",
                                 where=where)
        tok["id"] = new[tok["content"]]
    post = spec.get("post_processor") or {}
    for item in [post, *(post.get("processors") or ())]:
        for st in (item.get("special_tokens") or {}).values():
            st["ids"] = [new[t] for t in st["tokens"]]
        for name in ("sep", "cls"):  # BertProcessing / RobertaProcessing: [piece, id]
            if isinstance(item.get(name), list) and item[name][0] in new:
                item[name][1] = new[item[name][0]]
    if isinstance(spec.get("padding"), dict) and spec["padding"].get("pad_token") in new:
        spec["padding"]["pad_id"] = new[spec["padding"]["pad_token"]]
    return spec


def _remap_added_tokens_decoder(path: Path, piece_of: dict[int, str], new: dict[str, int]) -> None:
    """transformers' ``tokenizer_config.json`` may key special tokens by id: follow the pieces."""
    if not path.is_file():
        return
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise TokenizerError("tokenizer_config.json is not valid JSON", where=path) from None
    dec = cfg.get("added_tokens_decoder") if isinstance(cfg, dict) else None
    if isinstance(dec, dict):
        cfg["added_tokens_decoder"] = {str(new[piece_of[int(k)]]): v for k, v in dec.items()
                                       if piece_of.get(int(k)) in new}
        path.write_text(json.dumps(cfg, indent=2, ensure_ascii=False), encoding="utf-8")


def run_trim_vocab(cfg: TrimVocabConfig, model_dir: str | Path, corpus: Sequence[str | Path],
                   out_dir: str | Path, *, dev: Dataset | None = None,
                   force: bool = False,
                   progress: bool | None = None) -> Manifest:
    """Write a copy of the classifier in ``model_dir`` with the trimmed vocabulary to ``out_dir``.

    (``progress`` is the stage contract's; trimming takes seconds and shows none.)"""
    del progress
    import numpy as np
    import torch

    from .training import predict_logits, tokenize

    src = Path(model_dir)
    check_new_output(Path(out_dir), force)  # before the slow parts
    spec, vocab = _wordpiece_json(src)
    tok = TextTokenizer.load(src)
    texts = [t for f in corpus for t in read_corpus(f)]
    counts: Counter = Counter()
    for ids in tok.piece_ids(texts):
        counts.update(ids)
    keep = kept_ids(vocab, counts, cfg)
    piece_of = {i: p for p, i in vocab.items()}
    new = {piece_of[i]: n for n, i in enumerate(keep)}

    model = load_classifier(src)
    emb = model.get_input_embeddings()
    if emb.weight.shape[0] < len(vocab):  # more rows (padded tables) are fine: never looked up
        raise TokenizerError(f"the model has {emb.weight.shape[0]} word embeddings but the"
                             f" tokenizer {len(vocab)} ids", where=src / "tokenizer.json",
                             hint="the tokenizer belongs to another model")
    params_before = parameter_count(model)
    names = label_names_of(model)
    old_ids = tokenize(tok, dev, names, cfg.max_length) if dev is not None else None
    before = predict_logits(model, old_ids) if old_ids is not None else None
    with torch.no_grad():
        rows = emb.weight[torch.as_tensor(keep)].clone()
    pad_old = getattr(model.config, "pad_token_id", None)
    pad = new.get(piece_of.get(pad_old, "")) if pad_old is not None else None
    model.set_input_embeddings(torch.nn.Embedding.from_pretrained(rows, freeze=False,
                                                                  padding_idx=pad))
    model.config.vocab_size = len(keep)
    for attr in ("pad_token_id", "bos_token_id", "eos_token_id"):
        old = getattr(model.config, attr, None)
        if old is not None:  # follow the piece; an id that was not kept becomes the pad id
            setattr(model.config, attr, new.get(piece_of.get(old, ""), pad))

    config = {**to_dict(cfg), "model": str(src), "corpus": [str(c) for c in corpus],
              "dev": str(dev.path) if dev is not None else None}
    inputs: list[str | Path] = [src] if (src / "manifest.json").is_file() else []
    with write_artifact(out_dir, stage="trim_vocab", config=config, inputs=inputs,
                        force=force) as w:
        model.save_pretrained(w.path)
        copy_tokenizer_files(src, w.path)
        (w.path / "tokenizer.json").write_text(
            json.dumps(_rewrite_tokenizer(spec, new, src / "tokenizer.json"), ensure_ascii=False),
            encoding="utf-8")
        if (w.path / "vocab.txt").is_file():
            (w.path / "vocab.txt").write_text("".join(p + "\n" for p in new), encoding="utf-8")
        _remap_added_tokens_decoder(w.path / "tokenizer_config.json", piece_of, new)
        trimmed_tok = TextTokenizer.load(w.path)
        w.extra.update({
            "vocab_before": len(vocab), "vocab_after": len(keep),
            "from_corpus": sum(1 for n in counts.values() if n >= cfg.min_count),
            "corpus_texts": len(texts),
            "parameters_before": params_before, "parameters": parameter_count(model),
        })
        if dev is not None and old_ids is not None and before is not None:
            new_ids = tokenize(trimmed_tok, dev, names, cfg.max_length)
            after = predict_logits(model, new_ids)
            remap = np.full(len(vocab), -1, dtype=np.int64)
            remap[keep] = np.arange(len(keep))
            changed = [not np.array_equal(remap[a[:k]], b[:j]) for a, k, b, j in zip(
                old_ids.input_ids, old_ids.lengths, new_ids.input_ids, new_ids.lengths)]
            labels = np.asarray(dev.label_ids(names))
            w.extra["dev"] = {
                "rows": len(dev),
                "accuracy_before": round(float((before.argmax(-1) == labels).mean()), 4),
                "accuracy": round(float((after.argmax(-1) == labels).mean()), 4),
                "agreement": round(float((before.argmax(-1) == after.argmax(-1)).mean()), 4),
                "max_abs_logit_change": round(float(np.abs(before - after).max()), 4),
                "tokenization_changed": round(float(np.mean(changed)), 4),
            }
    assert w.manifest is not None
    return w.manifest


__all__ = ["TrimVocabConfig", "kept_ids", "read_corpus", "run_trim_vocab"]
