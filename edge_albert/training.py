"""The training loop fine-tuning and distillation share.

Seeded and resumable: the data order is a function of (seed, epoch), and a checkpoint holds the
weights, optimizer, scheduler, RNG states, step and the best dev state so far, written atomically
every ``checkpoint_every`` steps. A run resumed from a checkpoint ends with the same weights as an
uninterrupted run. Multi-process training uses ``torch.distributed`` (DDP; gloo on CPU, nccl on
GPU) when launched with ``torchrun``: each rank takes its share of every global batch.
"""
from __future__ import annotations

import contextlib
import contextvars
import copy
import json
import math
import os
import random
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .artifacts import atomic_write_text
from .config import TrainConfig
from .core_share import CoreShare
from .data import Dataset
from .errors import ConfigError
from .runtime.tokenizer import TextTokenizer
from .train_device import device_name, resolve_device, resolve_precision, world

CKPT = "checkpoint.pt"
_STOP_AFTER: contextvars.ContextVar[int | None] = contextvars.ContextVar("stop_after", default=None)


@contextlib.contextmanager
def stop_after(steps: int) -> Iterator[None]:
    """For tests: a training loop started inside stops after ``steps`` steps, as if killed
    there (its stage returns None and leaves the checkpoint a resume starts from)."""
    token = _STOP_AFTER.set(steps)
    try:
        yield
    finally:
        _STOP_AFTER.reset(token)


@dataclass
class TokenizedSet:
    """A data set encoded once: padded int64 arrays, real lengths, label ids, optional soft targets."""

    input_ids: np.ndarray
    token_type_ids: np.ndarray
    lengths: np.ndarray
    labels: np.ndarray
    soft: np.ndarray | None = None  # teacher logits, (n, num_labels)

    def __len__(self) -> int:
        return len(self.labels)

    def batch(self, idx: Sequence[int] | np.ndarray) -> dict[str, torch.Tensor]:
        idx = np.asarray(idx)
        width = int(self.lengths[idx].max())
        ids = torch.from_numpy(self.input_ids[idx, :width])
        out = {
            "input_ids": ids,
            "attention_mask": torch.from_numpy(
                (np.arange(width)[None, :] < self.lengths[idx][:, None]).astype(np.int64)),
            "token_type_ids": torch.from_numpy(self.token_type_ids[idx, :width]),
            "labels": torch.from_numpy(self.labels[idx]),
            "index": torch.from_numpy(idx.astype(np.int64)),
        }
        if self.soft is not None:
            out["soft"] = torch.from_numpy(self.soft[idx])
        return out


def tokenize(tok: TextTokenizer, ds: Dataset, label_names: Sequence[str], max_length: int,
             *, texts: Sequence[str] | None = None, pairs: Sequence[str] | None = None,
             labels: Sequence[int] | None = None) -> TokenizedSet:
    """Encode a data set (or replacement texts) with the runtime tokenizer."""
    texts = list(ds.texts) if texts is None else list(texts)
    if pairs is None and ds.pairs is not None and len(texts) == len(ds):
        pairs = list(ds.pairs)
    enc = tok.encode(texts, pairs, max_length=max_length, pad_to=max_length)
    lab = np.asarray(ds.label_ids(label_names) if labels is None else labels, dtype=np.int64)
    return TokenizedSet(enc.input_ids, enc.token_type_ids, enc.lengths.astype(np.int64), lab)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def model_inputs(model: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The batch tensors this model's forward takes: DistilBERT has no token types, and RoBERTa's
    single type embedding must not see the pair's type ids."""
    import inspect

    inner = getattr(model, "module", model)
    out = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    if ("token_type_ids" in inspect.signature(inner.forward).parameters
            and getattr(inner.config, "type_vocab_size", 2) > 1):
        out["token_type_ids"] = batch["token_type_ids"]
    return out


@torch.no_grad()
def predict_logits(model: nn.Module, data: TokenizedSet, batch_size: int = 128) -> np.ndarray:
    """Logits of a classifier over a whole set, in eval mode, in the set's order.

    Rows are run sorted by length so each batch pads little (SST-2 sentences are mostly short:
    this is several times faster than batches in file order).
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    order = np.argsort(data.lengths, kind="stable")
    out = np.zeros((len(data), 0), np.float32)
    for s in range(0, len(data), batch_size):
        idx = order[s:s + batch_size]
        batch = {k: v.to(device) for k, v in data.batch(idx).items()}
        logits = model(**model_inputs(model, batch)).logits.float().cpu().numpy()
        if out.shape[1] == 0:
            out = np.zeros((len(data), logits.shape[1]), np.float32)
        out[idx] = logits
    model.train(was_training)
    return out


def _param_groups(module: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for name, p in module.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or "LayerNorm" in name or "bias" in name else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


# Settings a resumed run may change: its length (the linear decay is re-aimed at the new end),
# how often it evaluates and checkpoints, its thread counts, its device (a run started on a CPU
# may go on on a GPU) and its precision. Any other change is refused.
RESUMABLE_KEYS = frozenset({"epochs", "max_steps", "eval_every", "checkpoint_every", "threads",
                            "share_cores", "device", "precision"})


def _config_diff(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    keys = sorted(set(saved) | set(current))
    return [k for k in keys if k not in RESUMABLE_KEYS and saved.get(k) != current.get(k)]


class Trainer:
    """Runs ``module(batch) -> (loss, logs)`` over a :class:`TokenizedSet` with AdamW + linear decay.

    ``evaluate()`` returns a dict with a ``score`` (higher is better); the best-scoring state of
    ``module`` is kept and restored at the end.
    """

    def __init__(self, module: nn.Module, cfg: TrainConfig, data: TokenizedSet, *,
                 ckpt_dir: Path, log_path: Path | None, config_dict: dict[str, Any],
                 evaluate: Callable[[], dict[str, float]], progress: bool | None = None) -> None:
        self.module = module
        self.cfg = cfg
        self.data = data
        self.ckpt_dir = Path(ckpt_dir)
        self.log_path = log_path
        self.config_dict = config_dict
        self.evaluate = evaluate
        self.progress = progress is not False
        self.stop_after = _STOP_AFTER.get()  # tests: stop (as if killed) after this many steps
        self.rank, self.world = world()
        self.device = resolve_device(cfg.device)
        self.precision = resolve_precision(cfg.precision, self.device)
        self.module.to(self.device)
        global_batch = cfg.batch_size * self.world
        self.steps_per_epoch = max(1, math.ceil(len(data) / global_batch))
        self.total_steps = cfg.max_steps or max(1, math.ceil(cfg.epochs * self.steps_per_epoch))
        self.eval_every = cfg.eval_every or self.steps_per_epoch
        self.log_every = max(1, min(50, self.total_steps // 10))
        self.history: list[dict[str, Any]] = []

    # -- data order: a pure function of (seed, epoch), so a resumed run sees the same batches
    def _batch_indices(self, step: int) -> np.ndarray:
        epoch, k = divmod(step, self.steps_per_epoch)
        order = np.random.default_rng(self.cfg.seed + 1000 * epoch).permutation(len(self.data))
        gb = self.cfg.batch_size * self.world
        chunk = order[k * gb:(k + 1) * gb]
        return chunk[self.rank::self.world]

    def _log(self, record: dict[str, Any]) -> None:
        if self.rank == 0 and self.log_path is not None:
            with open(self.log_path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(record) + "\n")

    def _restart_log(self, step: int | None) -> None:
        """Start the log afresh (``step`` None: no checkpoint to resume), or drop what a killed
        run logged after the checkpoint it resumes from (those steps run again)."""
        if self.rank != 0 or self.log_path is None or not self.log_path.is_file():
            return
        keep = []
        for line in (self.log_path.read_text(encoding="utf-8").splitlines() if step is not None
                     else []):
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by the kill
            if isinstance(record, dict) and record.get("step", 0) <= step:
                keep.append(line + "\n")
        atomic_write_text(self.log_path, "".join(keep))

    def _save(self, step: int, opt, sched, best: dict[str, Any]) -> None:
        if self.rank != 0:
            return
        self.ckpt_dir.mkdir(parents=True, exist_ok=True)
        state = {
            "step": step, "config": self.config_dict, "model": self.module.state_dict(),
            "optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "best": best,
            "history": self.history,
            "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(),
                    "python": random.getstate(),
                    "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None},
        }
        tmp = self.ckpt_dir / f".{CKPT}.tmp-{os.getpid()}"
        torch.save(state, tmp)
        os.replace(tmp, self.ckpt_dir / CKPT)

    def _load(self, opt, sched) -> tuple[int, dict[str, Any]]:
        path = self.ckpt_dir / CKPT
        state = torch.load(path, map_location="cpu", weights_only=False)
        diff = _config_diff(state.get("config", {}), self.config_dict)
        if diff:
            raise ConfigError(
                f"checkpoint was made with a different config (differing keys: {', '.join(diff)})",
                where=path, hint="resume with the same settings, or start over without --resume")
        changed = sorted(k for k in RESUMABLE_KEYS
                         if state.get("config", {}).get(k) != self.config_dict.get(k))
        if changed:
            self._log({"resume_changed": {k: [state["config"].get(k), self.config_dict.get(k)]
                                          for k in changed}})
        self.module.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"]["torch"])
        np.random.set_state(state["rng"]["numpy"])
        random.setstate(state["rng"]["python"])
        if state["rng"].get("cuda") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        self.history = list(state.get("history", []))
        return int(state["step"]), state["best"]

    def fit(self, *, resume: bool = False) -> dict[str, Any]:
        """Train; torch's thread count is set back to what it was when this returns."""
        threads = torch.get_num_threads()
        try:
            return self._fit(resume)
        finally:
            torch.set_num_threads(threads)

    def _fit(self, resume: bool) -> dict[str, Any]:
        cfg = self.cfg
        if cfg.threads > 0:
            torch.set_num_threads(cfg.threads)
        model: nn.Module = self.module
        if self.world > 1:
            model = nn.parallel.DistributedDataParallel(
                self.module, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        opt = torch.optim.AdamW(_param_groups(self.module, cfg.weight_decay), lr=cfg.learning_rate)
        warm = int(cfg.warmup_ratio * self.total_steps)

        def lr_lambda(s: int) -> float:
            if s < warm:
                return (s + 1) / max(1, warm)
            return max(0.0, (self.total_steps - s) / max(1, self.total_steps - warm))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda)
        step = 0
        best: dict[str, Any] = {"score": -math.inf, "state": None, "metrics": {}, "step": 0}
        if resume and (self.ckpt_dir / CKPT).is_file():
            step, best = self._load(opt, sched)
            self._restart_log(step)
            self._log({"resumed_from": step, "precision": self.precision})
        else:
            self._restart_log(None)
            self._log({"precision": self.precision})
        bar = None
        if self.progress and self.rank == 0:
            from tqdm.auto import tqdm

            # into a log file (not a terminal): a line every 30 s, not one per step
            bar = tqdm(total=self.total_steps, initial=step, unit="step", dynamic_ncols=True,
                       leave=False, mininterval=0.1 if sys.stderr.isatty() else 30)
        share = (CoreShare(torch.get_num_threads(), torch.set_num_threads)
                 if cfg.share_cores and self.world == 1 and self.device.type == "cpu" else None)
        model.train()
        t0, seen = time.perf_counter(), 0
        while step < self.total_steps:
            batch = {k: v.to(self.device, non_blocking=True)
                     for k, v in self.data.batch(self._batch_indices(step)).items()}
            # bf16: matmuls in bfloat16, weights, optimizer and losses in fp32 (no loss scaling
            # needed: bf16 has fp32's exponent range)
            with torch.autocast(self.device.type, dtype=torch.bfloat16,
                                enabled=self.precision == "bf16"):
                loss, logs = model(batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip > 0:
                nn.utils.clip_grad_norm_(self.module.parameters(), cfg.grad_clip)
            opt.step()
            sched.step()
            step += 1
            seen += len(batch["labels"]) * self.world
            if share is not None and (n := share.tick()) is not None:
                self._log({"step": step, "threads": n})
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{loss.item():.4f}",
                                ex_s=f"{seen / (time.perf_counter() - t0):.0f}",
                                **({"threads": share.threads} if share is not None else {}))
            if step % self.log_every == 0 or step == self.total_steps:
                self._log({"step": step, "loss": round(loss.item(), 6),
                           "lr": sched.get_last_lr()[0], **{k: round(v, 6) for k, v in logs.items()}})
            if step % self.eval_every == 0 or step == self.total_steps:
                metrics = self.evaluate()
                self.history.append({"step": step, **metrics})
                self._log({"step": step, "eval": metrics})
                if metrics["score"] > best["score"]:
                    best = {"score": metrics["score"], "metrics": metrics, "step": step,
                            "state": copy.deepcopy(self.module.state_dict())}
                model.train()
            if cfg.checkpoint_every and (step % cfg.checkpoint_every == 0) and step < self.total_steps:
                self._save(step, opt, sched, best)
            if self.stop_after is not None and step >= self.stop_after:
                if bar is not None:
                    bar.close()
                return {"stopped_at": step}
        if bar is not None:
            bar.close()
        if best["state"] is not None:
            self.module.load_state_dict(best["state"])
        return {"best_step": best["step"], "best": best["metrics"], "history": self.history,
                "steps": self.total_steps, "train_seconds": time.perf_counter() - t0,
                "device": device_name(self.device), "precision": self.precision}
