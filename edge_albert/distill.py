"""``edge-albert distill``: a fine-tuned teacher -> a smaller ALBERT student.

The student uses ALBERT's two size tricks, a factorised embedding (V x E, then E x H) and one
layer shared across all passes, and is sized for latency: the number of passes sets the time,
the shared weights keep the file small.

Loss (weights in :class:`~edge_albert.config.DistillConfig`):
  * cross-entropy on the labels (for augmented text: the teacher's label),
  * KL on temperature-softened teacher logits (computed once and cached on disk, keyed by the
    teacher and the texts; set ``EDGE_ALBERT_CACHE`` to share them between runs),
  * hidden-state MSE through a learned projection with a layer mapping, and
  * attention-distribution KL (heads averaged, so head counts may differ),
the last two only when teacher and student share the tokenizer (their positions line up).

Students come from :mod:`~edge_albert.students` (presets, initialised from the teacher where
shapes allow) or :mod:`~edge_albert.prune` (``student = "pruned"``: the teacher itself, cut).
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .artifacts import Manifest, atomic_write_text, check_new_output, sha256_file, write_artifact
from .config import DistillConfig, to_dict
from .data import Dataset, Texts
from .distill_loss import DistillLoss
from .errors import ConfigError, DataError
from .finetune import check_task, partial_dir
from .modeling import (
    copy_tokenizer_files,
    label_names_of,
    load_classifier,
    parameter_count,
    quiet_transformers,
)
from .runtime.metrics import classification_metrics
from .runtime.tokenizer import TextTokenizer
from .students import _encoder_parts, flops_per_sequence, init_from_teacher, student_config
from .train_device import init_distributed, resolve_device, world
from .training import TokenizedSet, Trainer, predict_logits, seed_everything, tokenize


# ----------------------------------------------------------------------------- augmentation
def augment_texts(texts: Sequence[str], n: int, seed: int,
                  mask_token: str | None = None) -> list[tuple[int, str]]:
    """``n`` variants per text, as (source index, text), after Tang et al. 2019 (arXiv:1903.12136).

    Each word is replaced by ``mask_token`` with p 0.1 (when the tokenizer has one), dropped with
    p 0.1 and swapped with its neighbour with p 0.1; then, with p 0.25, the variant is cut to a
    random n-gram of 1-5 words. Teachers fine-tuned for classification carry no masked-LM head,
    so TinyBERT's MLM replacement is not available from them; the variants are labelled by the
    teacher's logits, so a variant whose sentiment changed is labelled for what it now says.
    """
    rng = random.Random(seed)
    out: list[tuple[int, str]] = []
    for i, t in enumerate(texts):
        words = t.split()
        for _ in range(n):
            w = [x for x in words if rng.random() > 0.1] or words[:1]
            if mask_token:
                w = [mask_token if rng.random() < 0.1 else x for x in w]
            for j in range(len(w) - 1):
                if rng.random() < 0.1:
                    w[j], w[j + 1] = w[j + 1], w[j]
            if len(w) > 2 and rng.random() < 0.25:
                k = rng.randint(1, min(5, len(w) - 1))
                start = rng.randrange(len(w) - k + 1)
                w = w[start:start + k]
            out.append((i, " ".join(w)))
    return out


# ----------------------------------------------------------------------------- the stage
PRUNED = "pruned"  # distill.student: cut from the teacher's own weights (see edge_albert.prune)
CACHE_ENV = "EDGE_ALBERT_CACHE"  # a directory shared by runs: teacher logits are looked up there


def logits_key(teacher_dir: str | Path, texts: Sequence[str], pairs: Sequence[str] | None,
               max_length: int) -> str:
    """What the teacher's logits over a training set depend on: the teacher (its manifest, or
    its weights file when it has none), every training text (augmented ones included) and the
    length they are cut to. Hashing the texts, not the file's path, keeps a shared cache honest
    when a file is edited in place."""
    t = Path(teacher_dir)
    ident = next((sha256_file(t / f) for f in ("manifest.json", "model.safetensors",
                                                 "pytorch_model.bin") if (t / f).is_file()), str(t))
    h = hashlib.sha256(json.dumps([ident, max_length, len(texts)]).encode())
    for text in texts:
        h.update(text.encode("utf-8", "surrogatepass") + b"\x00")
    for text in pairs or ():
        h.update(text.encode("utf-8", "surrogatepass") + b"\x01")
    return h.hexdigest()


def logits_cache_dir(run_cache: Path) -> Path:
    """``$EDGE_ALBERT_CACHE/teacher-logits`` when set (runs with the same teacher and texts,
    e.g. several presets, compute the logits once), else the run's own checkpoint directory."""
    shared = os.environ.get(CACHE_ENV)
    return Path(shared).expanduser() / "teacher-logits" if shared else run_cache


def _teacher_logits(teacher: Any, data: TokenizedSet, cache: Path, key: str) -> np.ndarray:
    """Teacher logits over a set, cached on disk under ``key`` (recomputed if the key changes)."""
    npy, meta = cache / f"teacher_logits-{key[:24]}.npy", cache / f"teacher_logits-{key[:24]}.json"
    if npy.is_file() and meta.is_file() and json.loads(meta.read_text()).get("key") == key:
        logits = np.load(npy)
        if len(logits) == len(data):
            return logits
    cache.mkdir(parents=True, exist_ok=True)
    on_gpu = next(teacher.parameters()).is_cuda
    logits = predict_logits(teacher, data, batch_size=1024 if on_gpu else 128)
    # the pid names the temp file: a seeded random name was the same in every rank of a DDP run
    # (and in parallel runs with one seed and a shared cache), so one rank's rename took the
    # other's file
    tmp = cache / f".teacher_logits.{os.getpid()}.npy"
    np.save(tmp, logits)
    tmp.replace(npy)
    atomic_write_text(meta, json.dumps({"key": key, "rows": len(logits)}))  # a kill never cuts it
    return logits


def _preset_student(cfg: DistillConfig, teacher: Any, s_tok: TextTokenizer,
                    names: Sequence[str], shared_tok: bool) -> tuple[Any, list[str]]:
    """A preset (or AlbertConfig JSON) student, initialised from the teacher where shapes allow."""
    max_pos = max(cfg.max_length, getattr(teacher.config, "max_position_embeddings", 512) or 512)
    s_config = student_config(cfg.student, vocab_size=s_tok.vocab_size, label_names=names,
                              max_positions=min(max_pos, 512), pad_token_id=s_tok.pad_id)
    if cfg.attention_weight > 0:
        s_config._attn_implementation = "eager"
    if cfg.dropout >= 0:
        s_config.hidden_dropout_prob = s_config.attention_probs_dropout_prob = cfg.dropout
    if cfg.max_length > s_config.max_position_embeddings:
        raise ConfigError(f"max_length {cfg.max_length} exceeds the student's"
                          f" {s_config.max_position_embeddings} positions", key="distill.max_length")
    from transformers import AlbertForSequenceClassification

    student = AlbertForSequenceClassification(s_config)
    n_layers = len(_encoder_parts(teacher)["layers"] or ())
    if cfg.teacher_layers and (len(cfg.teacher_layers) != s_config.num_hidden_groups
                               or max(cfg.teacher_layers) >= n_layers):
        raise ConfigError(f"teacher_layers {list(cfg.teacher_layers)}: expected one index per"
                          f" student layer group ({s_config.num_hidden_groups}), each below the"
                          f" teacher's {n_layers} layers", key="distill.teacher_layers")
    initialised = (init_from_teacher(student, teacher, cfg.teacher_layers)
                   if (cfg.init_from_teacher and shared_tok) else [])
    if cfg.freeze_embeddings:
        # the teacher's word geometry for every id, also the ids the task data never shows
        student.albert.embeddings.word_embeddings.weight.requires_grad_(False)
    return student, initialised


def _train_preset(cfg: DistillConfig, student: Any, teacher: Any, data: TokenizedSet,
                  evaluate: Any, ckpt: Path, config_dict: dict[str, Any], progress: bool | None,
                  resume: bool) -> dict[str, Any] | None:
    """Distil into a preset student in one run of the training loop (None: stopped early, or
    not rank 0)."""
    trainer = Trainer(DistillLoss(student, teacher, cfg), cfg, data, ckpt_dir=ckpt,
                      log_path=ckpt / "train_log.jsonl", config_dict=config_dict,
                      evaluate=lambda: {**(m := evaluate(student)), "score": m["accuracy"]},
                      progress=progress)
    result = trainer.fit(resume=resume)
    if "stopped_at" in result or world()[0] != 0:
        return None
    return result


def run_distill(cfg: DistillConfig, teacher_dir: str | Path, train: Dataset, dev: Dataset,
                out_dir: str | Path, *, unlabelled: Texts | None = None,
                student_tokenizer: str | Path | None = None,
                resume: bool = False, force: bool = False,
                progress: bool | None = None) -> Manifest | None:
    """Distil the classifier in ``teacher_dir`` into an ALBERT student written to ``out_dir``.

    ``unlabelled``: more transfer text (e.g. in-domain sentences without labels), labelled by the
    teacher's logits like the augmented variants.
    """
    out = Path(out_dir)
    check_new_output(out, force)
    names = check_task(train, dev)
    if unlabelled is not None and (unlabelled.pairs is None) != (train.pairs is None):
        raise DataError(f"the task has {'text pairs' if train.pairs else 'single texts'} but this"
                        f" file has {'pairs' if unlabelled.pairs else 'single texts'}",
                        where=unlabelled.path)
    quiet_transformers()
    teacher = load_classifier(teacher_dir)
    t_names = label_names_of(teacher)
    if len(t_names) != len(names):
        raise DataError(f"the teacher has {len(t_names)} labels {t_names} but the data has"
                        f" {len(names)} {names}", where=train.path)
    if sorted(t_names) == sorted(names):
        names = t_names  # keep the teacher's id order
    want_inner = cfg.hidden_weight > 0 or cfg.attention_weight > 0
    if want_inner and cfg.attention_weight > 0:
        teacher.config._attn_implementation = "eager"
    t_tok = TextTokenizer.load(teacher_dir)
    s_tok_dir = Path(student_tokenizer) if student_tokenizer else Path(teacher_dir)
    s_tok = TextTokenizer.load(s_tok_dir) if student_tokenizer else t_tok
    shared_tok = student_tokenizer is None
    if want_inner and not shared_tok:
        raise ConfigError("hidden-state and attention losses need the teacher's tokenizer",
                          key="distill.hidden_weight", hint="set hidden_weight = attention_weight = 0")
    device = resolve_device(cfg.device)
    init_distributed(device)
    seed_everything(cfg.seed)
    pruned = cfg.student == PRUNED
    if pruned and not shared_tok:
        raise ConfigError("a pruned student keeps the teacher's tokenizer", key="distill.student",
                          hint="drop --student-tokenizer, or distil into a preset student")
    if pruned:
        from .albert_form import to_albert

        albert = to_albert(teacher)  # before anything trains: an unsupported teacher stops here
        if cfg.max_length > albert.config.max_position_embeddings:
            raise ConfigError(f"max_length {cfg.max_length} exceeds the teacher's"
                              f" {albert.config.max_position_embeddings} positions",
                              key="distill.max_length")
        initialised = ["the teacher's own weights (ALBERT form), pruned"]
    else:
        student, initialised = _preset_student(cfg, teacher, s_tok, names, shared_tok)
    teacher.to(device)  # the student moves with the Trainer

    # training texts (+ augmented variants), labelled by the teacher once and cached
    texts, pairs, labels = list(train.texts), list(train.pairs) if train.pairs else None, train.label_ids(names)
    if cfg.augment:
        extra = augment_texts(train.texts, cfg.augment, cfg.augment_seed, mask_token=t_tok.mask_token)
        texts += [t for _, t in extra]
        if pairs is not None:
            pairs += [train.pairs[i] for i, _ in extra]  # type: ignore[index]
        labels = labels + [-1] * len(extra)  # filled from the teacher below
    if unlabelled is not None:
        texts += unlabelled.texts
        if pairs is not None and unlabelled.pairs is not None:
            pairs += unlabelled.pairs
        labels = labels + [-1] * len(unlabelled)
    t_data = tokenize(t_tok, train, names, cfg.max_length, texts=texts, pairs=pairs,
                      labels=[max(0, x) for x in labels])
    ckpt = partial_dir(out)
    key = logits_key(teacher_dir, texts, pairs, cfg.max_length)
    soft = _teacher_logits(teacher, t_data, logits_cache_dir(ckpt), key)
    lab = np.asarray(labels, dtype=np.int64)
    lab[lab < 0] = soft[lab < 0].argmax(-1)
    s_data = t_data if shared_tok else tokenize(s_tok, train, names, cfg.max_length, texts=texts,
                                                 pairs=pairs, labels=lab.tolist())
    s_data.labels = lab
    s_data.soft = soft.astype(np.float32)

    dev_set = tokenize(s_tok, dev, names, cfg.max_length)
    t_dev = predict_logits(teacher, tokenize(t_tok, dev, names, cfg.max_length)).argmax(-1)

    def evaluate_model(model: Any) -> dict[str, float]:
        logits = predict_logits(model, dev_set)
        m = classification_metrics(logits, dev_set.labels)
        m["agreement"] = float((logits.argmax(-1) == t_dev).mean())
        return m

    config_dict = {**to_dict(cfg), "teacher": str(teacher_dir), "train": str(train.path),
                   "dev": str(dev.path), "labels": names,
                   "student_tokenizer": str(student_tokenizer) if student_tokenizer else None,
                   **({"unlabelled": str(unlabelled.path)} if unlabelled is not None else {})}
    ckpt.mkdir(parents=True, exist_ok=True)
    prune_info: dict[str, Any] = {}
    result: dict[str, Any] | None
    if pruned:
        from .prune import prune_and_recover

        done = prune_and_recover(
            cfg, albert, teacher, s_data, evaluate=evaluate_model, ckpt=ckpt,
            config_dict=config_dict, progress=progress, resume=resume,
            teacher_flops=flops_per_sequence(teacher.config, cfg.max_length))
        if done is None:
            return None
        student, prune_info = done
        result = {"best_step": None, "steps": prune_info["steps"], "device": prune_info["device"],
                  "precision": prune_info["precision"],
                  "train_seconds": sum(p["train_seconds"] for p in prune_info["phases"]),
                  "history": [{"prune_step": p["step"], **p["dev"]} for p in prune_info["phases"]]}
    else:
        result = _train_preset(cfg, student, teacher, s_data, evaluate_model, ckpt, config_dict,
                               progress, resume)
        if result is None:
            return None

    final = evaluate_model(student)
    student.cpu()
    inputs = [teacher_dir] if (Path(teacher_dir) / "manifest.json").is_file() else []
    with write_artifact(out, stage="distill", config=config_dict, inputs=inputs, force=force) as w:
        student.save_pretrained(w.path)
        copy_tokenizer_files(s_tok_dir, w.path)
        if (ckpt / "train_log.jsonl").is_file():
            shutil.copyfile(ckpt / "train_log.jsonl", w.path / "train_log.jsonl")
        w.extra.update({
            "dev": {k: v for k, v in final.items() if k != "score"},
            "parameters": parameter_count(student),
            "teacher_parameters": parameter_count(teacher),
            "flops_per_seq_128": flops_per_sequence(student.config, 128),
            "teacher_flops_per_seq_128": flops_per_sequence(teacher.config, 128),
            "initialised_from_teacher": initialised, "train_rows": len(s_data),
            **({"unlabelled": {"rows": len(unlabelled),
                               "ignored_label_column": unlabelled.ignored_labels}}
               if unlabelled is not None else {}),
            **({"flops_per_seq_max_length": flops_per_sequence(student.config, cfg.max_length),
                "teacher_flops_per_seq_max_length": flops_per_sequence(teacher.config,
                                                                       cfg.max_length),
                "prune": prune_info} if pruned else {}),
            "best_step": result["best_step"], "steps": result["steps"],
            "train_seconds": round(result["train_seconds"], 1), "device": result["device"],
            "precision": result["precision"], "labels": names, "history": result["history"],
        })
    shutil.rmtree(ckpt, ignore_errors=True)
    return w.manifest


__all__ = ["CACHE_ENV", "PRUNED", "DistillLoss", "augment_texts", "logits_key", "run_distill"]
