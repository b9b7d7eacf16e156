"""The toolchain's training loop against a plain PyTorch loop on the same model (#18 item 4):
examples per second, side by side in one run.

    python benchmarks/train_loop.py             # the demo teacher's shape, ~2 minutes
    python benchmarks/train_loop.py --quick --out-dir /tmp/t   # the tiny shape (a test)

Ours is ``edge-albert finetune`` as a library call (``run_finetune``: tokenizing and batching the
TSV rows, AdamW, warm-up/decay, gradient clipping, the progress bar off, one evaluation of a small
dev file at the end, no checkpoints). The plain loop is what a user would write by hand on the
same freshly initialised model: the rows tokenized once up front, each batch padded to its
longest row (as the toolchain does), the same batch size, length, optimiser, schedule and
clipping, nothing else. The two alternate for ``--rounds`` rounds, each in
this process with the same thread count; the ratio is ours / plain examples per second (the
target is >= 0.8). Writes ``train_loop.json`` and ``.md`` (``.quick`` with ``--quick``).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, machine, write_results


def subject(work: Path, shape: str, n_train: int) -> dict[str, Path]:
    """The demo task, its SentencePiece tokenizer and a random ALBERT of ``shape``."""
    from edge_albert.config import TokenizerConfig
    from edge_albert.data import read_dataset
    from edge_albert.demo_task import write_demo_task
    from edge_albert.modeling import init_model_dir
    from edge_albert.tokenizer_train import train_tokenizer, training_sentences

    task = write_demo_task(work / "task", n_train=n_train, n_dev=32)
    train_tokenizer(TokenizerConfig(vocab_size=2000), training_sentences([task["train"]]),
                    work / "tok")
    names = read_dataset(task["train"]).label_names()
    init_model_dir(shape, work / "tok", work / "model", label_names=names, seed=0)
    return {"model": work / "model", "train": task["train"], "dev": task["dev"]}


def ours(s: dict[str, Path], steps: int, batch: int, length: int, out: Path) -> float:
    """Examples per second of run_finetune's training loop (``train_seconds``)."""
    from edge_albert.config import FinetuneConfig
    from edge_albert.data import read_dataset
    from edge_albert.finetune import run_finetune

    cfg = FinetuneConfig(max_steps=steps, batch_size=batch, max_length=length,
                         learning_rate=1e-3, eval_every=steps, checkpoint_every=0, device="cpu")
    m = run_finetune(cfg, s["model"], read_dataset(s["train"]), read_dataset(s["dev"]), out,
                     progress=False, force=True)
    assert m is not None
    return steps * batch / float(m.extra["train_seconds"])


def plain(s: dict[str, Path], steps: int, batch: int, length: int) -> float:
    """Examples per second of a hand-written loop on the same model and settings."""
    import torch
    from edge_albert.runtime.tokenizer import TextTokenizer

    from edge_albert.data import read_dataset
    from edge_albert.modeling import load_classifier

    torch.manual_seed(0)
    model = load_classifier(s["model"]).train()
    ds = read_dataset(s["train"])
    names = ds.label_names()
    enc = TextTokenizer.load(s["model"]).encode([str(t) for t in ds.inputs()], max_length=length)
    feeds = {k: torch.from_numpy(v.astype("int64")) for k, v in enc.as_dict().items()}
    labels = torch.tensor([names.index(str(y)) for y in ds.labels])
    decay = [p for n, p in model.named_parameters()
             if p.ndim >= 2 and "LayerNorm" not in n and "bias" not in n]
    other = [p for n, p in model.named_parameters() if not any(p is q for q in decay)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01},
                             {"params": other, "weight_decay": 0.0}], lr=1e-3)
    warm = int(0.06 * steps)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda i: (i + 1) / max(1, warm) if i < warm else (steps - i) / max(1, steps - warm))
    n = len(labels)
    t0 = time.perf_counter()
    for step in range(steps):
        idx = torch.arange(step * batch, (step + 1) * batch) % n
        width = int(feeds["attention_mask"][idx].sum(1).max())  # padded to the batch's longest
        out = model(**{k: v[idx, :width] for k, v in feeds.items()}, labels=labels[idx])
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
    return steps * batch / (time.perf_counter() - t0)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    import torch

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", default="demo-teacher", help="an ALBERT preset (modeling.py)")
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--length", type=int, default=48)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out-dir", type=Path, default=RESULTS)
    ap.add_argument("--quick", action="store_true", help="tiny shape, 8 steps (a test)")
    args = ap.parse_args(argv)
    if args.quick:
        args.shape, args.steps, args.rounds = "tiny", 8, 1
    t0 = time.time()
    rows: dict[str, list[float]] = {"ours": [], "plain": []}
    with tempfile.TemporaryDirectory(prefix="edge-albert-trainloop-") as d:
        s = subject(Path(d), args.shape, n_train=400 if args.quick else 2000)
        for r in range(args.rounds):
            rows["ours"].append(ours(s, args.steps, args.batch, args.length, Path(d) / "ft"))
            rows["plain"].append(plain(s, args.steps, args.batch, args.length))
            print(f"round {r + 1}: ours {rows['ours'][-1]:.1f} ex/s, plain"
                  f" {rows['plain'][-1]:.1f} ex/s", file=sys.stderr)
    med = {k: round(statistics.median(v), 2) for k, v in rows.items()}
    result = {"machine": machine(), "shape": args.shape, "steps": args.steps,
              "batch": args.batch, "length": args.length, "torch_threads": torch.get_num_threads(),
              "examples_per_s": rows, "median_examples_per_s": med,
              "ours_over_plain": round(med["ours"] / med["plain"], 3),
              "command": "python benchmarks/train_loop.py " + " ".join(argv or sys.argv[1:]),
              "wall_seconds": round(time.time() - t0, 1)}
    m = result["machine"]
    md = ["# The training loop against a plain PyTorch loop", "",
          f"{m['cpu']} ({m['isa']}, {m['cores']} cores), torch {m['versions']['torch']},"
          f" {result['torch_threads']} threads; `{result['command'].strip()}`"
          f" ({result['wall_seconds']} s). A random `{args.shape}` ALBERT on the demo task,"
          f" {args.steps} steps of batch {args.batch} x {args.length} tokens per run, the two"
          f" loops alternating {args.rounds} times.", "",
          "| loop | examples/s per round | median |", "|---|---|---:|"]
    for k, v in rows.items():
        md.append(f"| {k} | {', '.join(f'{x:.1f}' for x in v)} | {med[k]:.1f} |")
    md += ["", f"Ours / plain: {result['ours_over_plain']:.2f} (target >= 0.8). Ours includes"
           " tokenizing and batching each step's rows and one evaluation of 32 dev rows at the"
           " end; the plain loop tokenized everything before its clock started."]
    write_results(args.out_dir, "train_loop.quick" if args.quick else "train_loop", result,
                  "\n".join(md) + "\n")
    print("\n".join(md))
    return result


if __name__ == "__main__":
    main()
