"""Pruned students: the teacher's own weights, cut to a FLOPs target in steps, each step
followed by distillation to recover.

Why: a student trained from a random start re-learns language from the task's few thousand
sentences and stays 5-8 points under its teacher on SST-2; structured pruning of the fine-tuned
teacher keeps what pre-training put there (Michel et al. 2019, Kwon et al. 2022, CoFi).

One step (``distill.prune_steps`` of them, FLOPs targets ``flops ** (s / steps)`` of the
teacher's at ``max_length`` tokens):

1. **Score** every attention head, FFN neuron and hidden (residual) dimension by its empirical
   Fisher information on task data: a gate of 1 multiplies the unit's output; the gradient of one
   example's cross-entropy with respect to the gate is the sum of gradient x activation over the
   unit's positions; the score is the sum of its squares over ``prune_score_batches`` batches
   (Kwon et al. 2022). A layer's score is measured directly: the KL to the teacher with that
   layer skipped.
2. **Choose the shape**: every uniform shape (layers, heads = hidden / head size, FFN width)
   whose FLOPs fill the target (FFN width rounded down to a multiple of 16) is cut one-shot
   from the current model, keeping the best-scored layers, heads, neurons and dimensions, and
   the one with the smallest KL to the teacher's logits on held-aside training texts is kept.
   Removed units are exactly the lowest-scored ones of their layer.
3. **Recover**: distil (logits, plus hidden states of the matching teacher layers when
   ``hidden_weight`` > 0) for this step's share of the training steps.

With ``share_groups`` = G, a last step applies ALBERT's cross-layer sharing to the pruned student:
its layers are merged, in order, into G shared groups (each group's weights the mean of its
layers'), which divides the encoder's parameters by L / G at the same FLOPs, and recovers again.
With ``embedding_size`` = E, a last step factorises the embedding table to V x E by SVD (ALBERT's
factorised embedding; vocabulary trimming is the other way to shrink it) and recovers again.

Each finished step is saved in the run's checkpoint folder (its shape, the student), so a killed
run resumes at the step it was in.
"""
from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from torch import nn

from .albert_form import (
    Keep,
    check_unshared,
    factorise_embeddings,
    head_size,
    share_layers,
    skip_layers,
    slice_albert,
)
from .artifacts import atomic_write_text
from .config import DistillConfig
from .distill_loss import DistillLoss
from .errors import ConfigError
from .train_device import device_name, resolve_device, resolve_precision, world
from .training import TokenizedSet, Trainer, model_inputs

FFN_MULTIPLE = 16


def albert_flops(*, layers: int, hidden: int, ffn: int, embedding: int, seq: int,
                 labels: int) -> int:
    """FLOPs (2 x multiply-adds) of one ALBERT forward pass at ``seq`` tokens."""
    from .students import flops_per_sequence

    cfg = SimpleNamespace(model_type="albert", hidden_size=hidden, intermediate_size=ffn,
                          num_hidden_layers=layers, embedding_size=embedding, num_labels=labels)
    return flops_per_sequence(cfg, seq)


def model_flops(model: Any, seq: int) -> int:
    from .students import flops_per_sequence

    return flops_per_sequence(model.config, seq)


# ----------------------------------------------------------------------------- scoring
@dataclasses.dataclass
class Scores:
    """Fisher scores of the current model's units (higher = more important)."""

    heads: torch.Tensor  # [layers, heads]
    neurons: torch.Tensor  # [layers, ffn]
    hidden: torch.Tensor  # [hidden]
    layers: torch.Tensor  # [layers]: KL to the teacher with the layer skipped
    examples: int


def _batch_inputs(model: Any, data: TokenizedSet, idx: np.ndarray) -> dict[str, torch.Tensor]:
    return model_inputs(model, data.batch(idx))


def fisher_scores(model: Any, data: TokenizedSet, batches: list[np.ndarray]) -> Scores:
    """Per-unit empirical Fisher information of the cross-entropy (see the module docstring)."""
    check_unshared(model)
    cfg = model.config
    n_layers, k, d = cfg.num_hidden_layers, cfg.num_attention_heads, head_size(cfg)
    heads = torch.zeros(n_layers, k, dtype=torch.float64)
    neurons = torch.zeros(n_layers, cfg.intermediate_size, dtype=torch.float64)
    hidden = torch.zeros(cfg.hidden_size, dtype=torch.float64)
    per_batch_hidden: list[torch.Tensor] = []
    handles = []

    def on_input(acc: torch.Tensor, row: int, grouped: bool):
        def pre_hook(_mod, args):
            x = args[0]
            xd = x.detach()  # the hook must not hold x itself: x -> hook -> x is a cycle
            # through autograd's C++ side that Python's collector cannot see (it leaked every
            # scored batch's activations: +2 GB per pruning step on SST-2, an OOM on AG News)

            def grad_hook(g: torch.Tensor) -> None:
                s = (g.detach() * xd).sum(1)  # [batch, units x dims]
                if grouped:
                    s = s.view(s.shape[0], k, d).sum(-1)
                acc[row] += (s.double() ** 2).sum(0)
            if x.requires_grad:
                x.register_hook(grad_hook)
        return pre_hook

    def on_output(_mod, _args, y):
        yd = y.detach()  # (see pre_hook)

        def grad_hook(g: torch.Tensor) -> None:
            per_batch_hidden.append((g.detach() * yd).sum(1).double())  # [batch, hidden]
        if y.requires_grad:
            y.register_hook(grad_hook)

    enc = model.albert.encoder
    handles.append(enc.embedding_hidden_mapping_in.register_forward_hook(on_output))
    for i, group in enumerate(enc.albert_layer_groups):
        layer = group.albert_layers[0]
        handles.append(layer.attention.dense.register_forward_pre_hook(on_input(heads, i, True)))
        handles.append(layer.ffn_output.register_forward_pre_hook(on_input(neurons, i, False)))
        handles.append(layer.attention.LayerNorm.register_forward_hook(on_output))
        handles.append(layer.full_layer_layer_norm.register_forward_hook(on_output))
    was_training = model.training
    model.eval()
    seen = 0
    try:
        for idx in batches:
            batch = data.batch(idx)
            logits = model(**model_inputs(model, batch)).logits
            loss = nn.functional.cross_entropy(logits, batch["labels"], reduction="sum")
            model.zero_grad(set_to_none=True)
            per_batch_hidden.clear()
            loss.backward()
            # one gate per hidden dimension, shared by every site: sum the sites, then square
            hidden += (torch.stack(per_batch_hidden).sum(0) ** 2).sum(0)
            seen += len(idx)
    finally:
        for h in handles:
            h.remove()
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    return Scores(heads, neurons, hidden, torch.zeros(n_layers), seen)


@torch.no_grad()
def kl_to_teacher(model: Any, data: TokenizedSet, idx: np.ndarray) -> float:
    """Mean KL(teacher || model) over the rows ``idx`` (the set's cached teacher logits)."""
    assert data.soft is not None
    model.eval()
    total = 0.0
    for s in range(0, len(idx), 128):
        part = idx[s:s + 128]
        logp = nn.functional.log_softmax(model(**_batch_inputs(model, data, part)).logits, -1)
        t = nn.functional.log_softmax(torch.from_numpy(data.soft[part]).float(), -1)
        total += float((t.exp() * (t - logp)).sum())
    return total / max(1, len(idx))


def layer_scores(model: Any, data: TokenizedSet, idx: np.ndarray) -> torch.Tensor:
    """KL to the teacher with each layer skipped in turn (higher = the layer matters more)."""
    n = model.config.num_hidden_layers
    if n == 1:
        return torch.full((1,), math.inf)
    return torch.tensor([kl_to_teacher(skip_layers(model, [i]), data, idx) for i in range(n)])


# ----------------------------------------------------------------------------- shapes
def top(scores: torch.Tensor, n: int) -> tuple[int, ...]:
    """Indices of the ``n`` highest scores, in index order (ties: the lower index)."""
    order = torch.argsort(-scores, stable=True)[:n]
    return tuple(sorted(int(i) for i in order))


def keep_for(scores: Scores, *, layers: int, heads: int, ffn: int) -> Keep:
    """The best-scored units for a uniform shape."""
    d_hidden = heads * (scores.hidden.numel() // scores.heads.shape[1])
    kept = top(scores.layers, layers)
    return Keep(kept, tuple(top(scores.heads[i], heads) for i in kept),
                tuple(top(scores.neurons[i], ffn) for i in kept), top(scores.hidden, d_hidden))


def candidate_shapes(model: Any, target: float, seq: int, *, prune_hidden: bool
                     ) -> list[tuple[int, int, int]]:
    """Uniform shapes (layers, heads, ffn) no wider than ``model`` whose FLOPs at ``seq`` tokens
    fill ``target``: at most the target and within 5 % of it. When no shape can fill it (a tiny
    model whose attention over ``seq`` tokens dominates), the shapes at their full FFN width
    that stay under it."""
    cfg = model.config
    d, k_max, ffn_max = head_size(cfg), cfg.num_attention_heads, cfg.intermediate_size
    filled, capped = [], []
    for n_layers in range(1, cfg.num_hidden_layers + 1):
        for k in (range(max(1, math.ceil(k_max / 3)), k_max + 1) if prune_hidden else [k_max]):
            def f(ffn: int, n_layers: int = n_layers, k: int = k) -> int:
                return albert_flops(layers=n_layers, hidden=k * d, ffn=ffn,
                                    embedding=cfg.embedding_size, seq=seq, labels=cfg.num_labels)
            per_neuron = f(1) - f(0)
            room = int((target - f(0)) // per_neuron)
            ffn = min(ffn_max, room - room % FFN_MULTIPLE)
            if ffn < min(FFN_MULTIPLE, ffn_max) or f(ffn) > target:
                continue
            if f(ffn) >= 0.95 * target:
                filled.append((n_layers, k, ffn))
            elif ffn == ffn_max:
                capped.append((n_layers, k, ffn))
    return filled or capped


def choose_keep(model: Any, scores: Scores, target: float, seq: int, data: TokenizedSet,
                proxy: np.ndarray, *, prune_hidden: bool) -> tuple[Keep, list[dict[str, Any]]]:
    """The candidate shape whose one-shot cut is closest to the teacher (see the docstring)."""
    shapes = candidate_shapes(model, target, seq, prune_hidden=prune_hidden)
    if not shapes:
        raise ConfigError(f"no uniform shape of this model fits {target / 1e9:.3g} GFLOPs at"
                          f" {seq} tokens", key="distill.flops", hint="raise distill.flops")
    table: list[dict[str, Any]] = []
    keeps: list[Keep] = []
    for n_layers, k, ffn in shapes:
        keep = keep_for(scores, layers=n_layers, heads=k, ffn=ffn)
        cut = slice_albert(model, keep)
        keeps.append(keep)
        table.append({"layers": n_layers, "heads": k, "hidden": len(keep.hidden), "ffn": ffn,
                      "flops": model_flops(cut, seq), "kl": round(kl_to_teacher(cut, data, proxy), 5)})
    best = min(range(len(table)), key=lambda i: float(table[i]["kl"]))
    return keeps[best], table


def keep_to_json(keep: Keep) -> dict[str, Any]:
    return {f.name: [list(x) if isinstance(x, tuple) else x for x in getattr(keep, f.name)]
            for f in dataclasses.fields(keep)}


def keep_from_json(raw: dict[str, Any]) -> Keep:
    return Keep(tuple(raw["layers"]), tuple(tuple(h) for h in raw["heads"]),
                tuple(tuple(n) for n in raw["neurons"]), tuple(raw["hidden"]))


# ----------------------------------------------------------------------------- the loop
def prune_and_recover(cfg: DistillConfig, albert: Any, teacher: Any, data: TokenizedSet, *,
                      evaluate: Callable[[Any], dict[str, float]], ckpt: Path,
                      config_dict: dict[str, Any], progress: bool | None, resume: bool,
                      teacher_flops: int,
                      ) -> tuple[Any, dict[str, Any]] | None:
    """Prune ``albert`` (the teacher's ALBERT form) to ``cfg.flops`` of ``teacher_flops`` in
    ``cfg.prune_steps`` steps; returns the student and a summary (None if stopped early)."""
    if world()[1] > 1:
        raise ConfigError("a pruned student trains in one process (not under torchrun)",
                          key="distill.student")
    rng = np.random.default_rng(cfg.seed)
    order = rng.permutation(len(data))
    proxy = np.sort(order[:512])
    score_batches = [np.sort(order[512 + i * cfg.batch_size: 512 + (i + 1) * cfg.batch_size])
                     for i in range(cfg.prune_score_batches)]
    score_batches = [b for b in score_batches if len(b)] or [np.sort(order[:cfg.batch_size])]
    steps_total = cfg.max_steps or max(1, math.ceil(cfg.epochs * math.ceil(len(data) / cfg.batch_size)))
    plan: list[tuple[str, int]] = [("prune", s) for s in range(1, cfg.prune_steps + 1)]
    if cfg.share_groups:
        plan.append(("share", cfg.share_groups))
    if cfg.embedding_size:
        plan.append(("factorise", cfg.embedding_size))
    per_step = max(1, steps_total // len(plan))
    model = albert
    origin_layers = list(range(model.config.num_hidden_layers))
    origin_hidden = list(range(model.config.hidden_size))
    phases: list[dict[str, Any]] = []
    for k, (kind, arg) in enumerate(plan, 1):
        pdir = ckpt / (f"prune-{arg}" if kind == "prune" else kind)
        target = teacher_flops * cfg.flops ** (arg / cfg.prune_steps) if kind == "prune" else 0
        done = pdir / "done.json"
        if resume and done.is_file():
            info = json.loads(done.read_text())
            model = (slice_albert(model, keep_from_json(info["keep"])) if kind == "prune"
                     else share_layers(model, arg) if kind == "share"
                     else factorise_embeddings(model, arg))
            model.load_state_dict(torch.load(pdir / "student.pt", map_location="cpu",
                                             weights_only=True))
            origin_layers, origin_hidden = info["origin_layers"], info["origin_hidden"]
            phases.append(info["summary"])
            continue
        pdir.mkdir(parents=True, exist_ok=True)
        table: list[dict[str, Any]] = []
        keep = None
        if kind == "share":  # ALBERT's cross-layer sharing after pruning: groups of layers merged
            model = share_layers(model, arg)
        elif kind == "factorise":  # ALBERT's factorised embedding: V x E, then E -> H
            model = factorise_embeddings(model, arg)
        else:
            planned = pdir / "plan.json"
            if resume and planned.is_file():  # killed while recovering: the same cut, no rescoring
                info = json.loads(planned.read_text())
                keep, table = keep_from_json(info["keep"]), info["candidates"]
            else:
                scores = fisher_scores(model, data, score_batches)
                scores.layers = layer_scores(model, data, proxy)
                keep, table = choose_keep(model, scores, target, cfg.max_length, data, proxy,
                                          prune_hidden=cfg.prune_hidden)
                atomic_write_text(planned, json.dumps({"keep": keep_to_json(keep),
                                                       "candidates": table}))
            model = slice_albert(model, keep)
            origin_layers = [origin_layers[i] for i in keep.layers]
            origin_hidden = [origin_hidden[i] for i in keep.hidden]
        phase_cfg = dataclasses.replace(cfg, max_steps=per_step if k < len(plan)
                                        else steps_total - per_step * (k - 1))
        loss = DistillLoss(model, teacher, phase_cfg, layer_map=origin_layers,
                           hidden_index=origin_hidden)

        def scored(m: Any = model) -> dict[str, float]:
            r = evaluate(m)
            return {**r, "score": r["accuracy"]}

        trainer = Trainer(loss, phase_cfg, data, ckpt_dir=pdir, log_path=pdir / "train_log.jsonl",
                          config_dict={**config_dict, "prune_step": k}, evaluate=scored,
                          progress=progress)
        result = trainer.fit(resume=resume)
        if "stopped_at" in result:
            return None
        model.cpu()
        summary = {"step": k, "kind": kind, "target_flops": int(target),
                   "flops": model_flops(model, cfg.max_length), "layers": origin_layers,
                   "groups": model.config.num_hidden_groups,
                   "embedding_size": model.config.embedding_size,
                   "heads": model.config.num_attention_heads, "hidden": model.config.hidden_size,
                   "ffn": model.config.intermediate_size, "recover_steps": phase_cfg.max_steps,
                   "best_step": result["best_step"], "dev": result["best"],
                   "train_seconds": round(result["train_seconds"], 1), "candidates": table}
        phases.append(summary)
        torch.save(model.state_dict(), pdir / "student.pt")
        atomic_write_text(done, json.dumps({"keep": keep_to_json(keep) if keep else None,
                                            "summary": summary, "origin_layers": origin_layers,
                                            "origin_hidden": origin_hidden}))
    with open(ckpt / "train_log.jsonl", "w", encoding="utf-8") as log:  # the steps' logs, in order
        for k, (kind, arg) in enumerate(plan, 1):
            part = ckpt / (f"prune-{arg}" if kind == "prune" else kind) / "train_log.jsonl"
            lines = part.read_text(encoding="utf-8").splitlines() if part.is_file() else []
            log.writelines(json.dumps({"prune_step": k, **json.loads(x)}) + "\n" for x in lines)
    return model, {"phases": phases, "teacher_layers_kept": origin_layers, "steps": steps_total,
                   "device": device_name(device := resolve_device(cfg.device)),
                   "precision": resolve_precision(cfg.precision, device)}


__all__ = ["Scores", "albert_flops", "candidate_shapes", "choose_keep",
           "fisher_scores", "keep_for", "prune_and_recover", "top"]
