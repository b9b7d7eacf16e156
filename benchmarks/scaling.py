"""How cost grows with work: latency and peak memory as sequence length and batch grow.

Per backend (the student in torch fp32, ONNX fp32 / int8-dynamic, TFLite fp32 / int8-dynamic /
full-integer), two sweeps: sequence length 16 -> 512 at batch 1, and batch 1 -> 64 at
sequence 128. Each backend's sweep runs alone in a fresh process, in increasing order of work,
so the process's peak RSS after each point is the peak that point needed.

    python benchmarks/scaling.py                         # the SST-2 student
    python benchmarks/scaling.py --quick --out-dir /tmp/s   # tiny random ALBERT, seconds

Writes ``scaling.json``, ``scaling.md`` and ``scaling.png`` (``scaling.quick.*``).
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, student_parser, student_subject, write_results

BACKENDS = {"torch fp32": None, "onnx fp32": "model.fp32.onnx",
            "onnx int8-dynamic": "model.int8-dynamic.onnx", "tflite fp32": "model.fp32.tflite",
            "tflite int8-dynamic": "model.int8-dynamic.tflite",
            "tflite int8-static": "model.int8-static.tflite"}

SWEEP = r"""
import json, sys, time
sys.path.insert(0, {bench!r})
from _common import feeds_at, stats_ms
from edge_albert.runtime.timing import current_rss_mb, peak_rss_mb
from edge_albert.runtime.tokenizer import TextTokenizer
kind, path, tok_dir, threads, points, texts, budget = {args!r}
tok = TextTokenizer.load(tok_dir)
if kind == "torch":
    import torch
    torch.set_num_threads(threads)
    from edge_albert.modeling import load_classifier
    base = current_rss_mb()
    model = load_classifier(path)
    def make(feed):
        t = {{k: torch.from_numpy(v) for k, v in feed.items()}}
        def run():
            with torch.inference_mode():
                model(**t)
        return run
else:
    from edge_albert.runtime.backends import open_backend
    base = current_rss_mb()
    be = open_backend(path, threads=threads)
    make = lambda feed: (lambda: be.run(feed))
print(json.dumps({{"baseline_rss_mb": base}}), flush=True)
for seq, batch in points:
    run = make(feeds_at(tok, texts, seq=seq, batch=batch, n_batches=1)[0])
    run()
    samples, start = [], time.perf_counter()
    while len(samples) < 3 or time.perf_counter() - start < budget:
        t0 = time.perf_counter(); run(); samples.append(time.perf_counter() - t0)
    print(json.dumps({{"seq": seq, "batch": batch, **stats_ms(samples),
                      "peak_rss_mb": peak_rss_mb()}}), flush=True)
"""


def sweep(kind: str, path: Path, tokenizer: Path, points: list[tuple[int, int]], texts: list[str],
          *, threads: int, budget: float) -> dict:
    """One backend's sweep in a fresh process: baseline RSS and one row per point."""
    args = (kind, str(path), str(tokenizer), threads, points, texts, budget)
    code = SWEEP.format(bench=str(Path(__file__).resolve().parent), args=args)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=1800)
    lines = [json.loads(x) for x in r.stdout.splitlines() if x.startswith("{")]
    out = {"baseline_rss_mb": lines[0]["baseline_rss_mb"] if lines else None, "points": lines[1:]}
    if r.returncode != 0:  # e.g. out of memory at a large batch: keep what was measured
        out["error"] = (r.stderr.strip().splitlines() or ["?"])[-1][:300]
    return out


def main(argv: Sequence[str] | None = None) -> dict:
    ap = student_parser(__doc__)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    from edge_albert.data import read_dataset

    t_start = time.time()
    subj = student_subject(args, "scaling")
    student, dev, art, subject = subj["student"], subj["dev"], subj["artifact"], subj["subject"]
    if args.quick:
        seqs, batches, batch_seq, budget = (16, 32, 64), (1, 2, 4), 32, 0.02
    else:
        seqs, batches = (16, 32, 64, 128, 256, 512), (1, 2, 4, 8, 16, 32, 64)
        batch_seq, budget = 128, 1.0
    texts = list(read_dataset(dev).texts)[:256]
    results = {}
    for name, f in BACKENDS.items():
        path, tok = (student, student) if f is None else (art / f, art)
        print(f"  {name} ...", file=sys.stderr)
        results[name] = {
            "sequence": sweep("torch" if f is None else "file", path, tok,
                              [(s, 1) for s in seqs], texts, threads=args.threads, budget=budget),
            "batch": sweep("torch" if f is None else "file", path, tok,
                           [(batch_seq, b) for b in batches], texts, threads=args.threads,
                           budget=budget)}
    result = {"subject": subject, "machine": machine(), "threads": args.threads,
              "command": "python benchmarks/scaling.py " + " ".join(argv or sys.argv[1:]),
              "batch_sweep_seq": batch_seq, "backends": results,
              "wall_seconds": round(time.time() - t_start, 1)}
    stem = "scaling.quick" if args.quick else "scaling"
    write_results(args.out_dir, stem, result, markdown(result))
    plot(result, args.out_dir / f"{stem}.png")
    print(markdown(result))
    return result


def markdown(result: dict) -> str:
    out = []
    for sweep_name, key in (("sequence length (batch 1)", "seq"),
                            (f"batch (sequence {result['batch_sweep_seq']})", "batch")):
        kind = "sequence" if key == "seq" else "batch"
        xs = sorted({p[key] for b in result["backends"].values() for p in b[kind]["points"]})
        out += [f"Median ms per call / peak RSS MB vs {sweep_name}, {result['threads']} thread(s):",
                "", "| backend | " + " | ".join(str(x) for x in xs) + " |",
                "|---|" + "---:|" * len(xs)]
        for name, b in result["backends"].items():
            pts = {p[key]: p for p in b[kind]["points"]}
            out.append(f"| {name} | " + " | ".join(
                f"{pts[x]['p50_ms']:.2f} / {pts[x]['peak_rss_mb']:.0f}" if x in pts else "-"
                for x in xs) + " |")
        out.append("")
    return "\n".join(out)


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(12, 8))
    for col, (kind, key, label) in enumerate((("sequence", "seq", "sequence length (batch 1)"),
                                              ("batch", "batch",
                                               f"batch (sequence {result['batch_sweep_seq']})"))):
        for name, b in result["backends"].items():
            pts = b[kind]["points"]
            xs = [p[key] for p in pts]
            style = "--" if name.startswith("torch") else "-"
            axes[0][col].plot(xs, [p["p50_ms"] for p in pts], style, marker="o", label=name)
            axes[1][col].plot(xs, [p["peak_rss_mb"] - (b[kind]["baseline_rss_mb"] or 0)
                                   for p in pts], style, marker="o", label=name)
        axes[0][col].set(yscale="log", xlabel=label, ylabel="median latency, ms")
        axes[1][col].set(xlabel=label, ylabel="peak RSS above the process's baseline, MB")
        ticks = sorted({p[key] for b in result["backends"].values() for p in b[kind]["points"]})
        for ax in (axes[0][col], axes[1][col]):
            ax.set_xscale("log", base=2)
            ax.set_xticks(ticks, [str(t) for t in ticks])
            ax.minorticks_off()
            ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(f"scaling: {result['subject']}, {result['threads']} thread(s),"
                 f" {result['machine']['cpu']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
