"""``edge-albert finetune``: a Hugging Face BERT-family encoder becomes a task teacher.

Works for ALBERT, BERT, RoBERTa, DistilBERT and MiniLM checkpoints (anything
``AutoModelForSequenceClassification`` loads), single-sentence and sentence-pair tasks, any
number of labels. Writes a Hugging Face directory with the tokenizer, label names, the dev
metrics and a manifest; converters and ``distill`` take it as is.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import torch
from torch import nn

from .artifacts import Manifest, check_new_output, write_artifact
from .config import FinetuneConfig, to_dict
from .data import Dataset
from .errors import DataError
from .modeling import (
    copy_tokenizer_files,
    load_encoder_for_classification,
    quiet_transformers,
    resolve_model,
)
from .runtime.metrics import classification_metrics
from .runtime.tokenizer import TextTokenizer
from .train_device import init_distributed, resolve_device, world
from .training import Trainer, model_inputs, predict_logits, seed_everything, tokenize


class ClassifierLoss(nn.Module):
    """Cross-entropy of a sequence classifier on a batch."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: dict[str, torch.Tensor]):
        out = self.model(**model_inputs(self.model, batch))
        # fp32 loss: the logits are bf16 under autocast
        loss = nn.functional.cross_entropy(out.logits.float(), batch["labels"])
        return loss, {}


def check_task(train: Dataset, dev: Dataset) -> list[str]:
    """Label names of the task; DataError for one-class data or dev labels unseen in train."""
    names = train.label_names()
    if len(names) < 2:
        raise DataError(f"the train file has one class only ({names[0]!r}): nothing to learn",
                        where=train.path)
    unseen = sorted(set(dev.labels) - set(names))
    if unseen:
        raise DataError(f"dev label(s) {unseen} never occur in the train file {train.path}",
                        where=dev.path)
    if train.is_pair != dev.is_pair:
        raise DataError("train and dev files disagree on single vs pair task", where=dev.path)
    return names


def partial_dir(out_dir: str | Path) -> Path:
    """Where a stage keeps resumable checkpoints beside its output directory."""
    out = Path(out_dir)
    return out.parent / f"{out.name}.partial"


def run_finetune(cfg: FinetuneConfig, model_name: str | Path, train: Dataset, dev: Dataset,
                 out_dir: str | Path, *, resume: bool = False, force: bool = False,
                 progress: bool | None = None) -> Manifest | None:
    """Fine-tune ``model_name`` on ``train``, keep the best state on ``dev``, write ``out_dir``."""

    out = Path(out_dir)
    check_new_output(out, force)
    names = check_task(train, dev)
    name = resolve_model(model_name)
    tok_dir = Path(name) if Path(name).is_dir() else None
    if tok_dir is None:
        raise DataError("fine-tuning from a hub id needs the model downloaded first",
                        where=str(model_name), hint="pass a local directory")
    tok = TextTokenizer.load(tok_dir)
    init_distributed(resolve_device(cfg.device))
    seed_everything(cfg.seed)
    quiet_transformers()
    model = load_encoder_for_classification(name, label_names=names)
    if model.config.vocab_size < tok.vocab_size:
        raise DataError(f"tokenizer has {tok.vocab_size} ids but the model only {model.config.vocab_size}",
                        where=tok_dir)
    train_set = tokenize(tok, train, names, cfg.max_length)
    dev_set = tokenize(tok, dev, names, cfg.max_length)
    dev_gold = dev_set.labels

    def evaluate() -> dict[str, float]:
        m = classification_metrics(predict_logits(model, dev_set), dev_gold)
        return {**m, "score": m["accuracy"]}

    ckpt = partial_dir(out)
    config_dict = {**to_dict(cfg), "model": str(model_name), "train": str(train.path),
                   "dev": str(dev.path), "labels": names}
    ckpt.mkdir(parents=True, exist_ok=True)
    trainer = Trainer(ClassifierLoss(model), cfg, train_set, ckpt_dir=ckpt,
                      log_path=ckpt / "train_log.jsonl", config_dict=config_dict, evaluate=evaluate,
                      progress=progress)
    result = trainer.fit(resume=resume)
    if "stopped_at" in result or world()[0] != 0:
        return None
    final = evaluate()
    model.to("cpu")
    with write_artifact(out, stage="finetune", config=config_dict, force=force) as w:
        model.save_pretrained(w.path)
        copy_tokenizer_files(tok_dir, w.path)
        if (ckpt / "train_log.jsonl").is_file():
            shutil.copyfile(ckpt / "train_log.jsonl", w.path / "train_log.jsonl")
        w.extra.update({"dev": {k: v for k, v in final.items() if k != "score"},
                        "best_step": result["best_step"], "steps": result["steps"],
                        "train_seconds": round(result["train_seconds"], 1),
                        "device": result["device"], "precision": result["precision"],
                        "labels": names, "history": result["history"]})
    shutil.rmtree(ckpt, ignore_errors=True)
    return w.manifest


__all__ = ["ClassifierLoss", "check_task", "partial_dir", "run_finetune"]
