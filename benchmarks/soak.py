"""Memory soak: 100,000 predictions per backend through ``Classifier.predict``; does RSS stay flat?

Each backend runs alone in a fresh process that loads the file the way an app does
(``Classifier.load``) and calls ``predict`` on one dev sentence at a time, cycling through the dev
set (so every bucket's shape is used, again and again). Every window of 10,000 calls records the
process's RSS and the window's p50/p99 latency. Reported per backend: RSS after warm-up and at
the end, growth per 10k calls (least-squares slope over the windows; target: flat within 5 MB
over the run) and p99 drift (last window / first window).

    python benchmarks/soak.py                          # the SST-2 student, 100k calls each
    python benchmarks/soak.py --quick --out-dir /tmp/s    # tiny random ALBERT, 2,000 calls

Writes ``soak.json`` and ``soak.md`` (``soak.quick.*``).
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, student_parser, student_subject, write_results

FILES = ("model.int8-dynamic.onnx", "model.int8-static.ort", "model.int8-dynamic.tflite",
         "model.int8-static.tflite", "model.fp32.onnx")
TARGET_MB = 5.0

SOAK = r"""
import json, sys, time
import numpy as np
from edge_albert.data import read_dataset
from edge_albert.runtime import Classifier
from edge_albert.runtime.timing import current_rss_mb
art, name, dev, calls, window, warmup = {args!r}
texts = list(read_dataset(dev).texts)
clf = Classifier.load(art, model=name, threads=1)
for i in range(warmup):
    clf.predict([texts[i % len(texts)]])
print(json.dumps({{"start_rss_mb": current_rss_mb()}}), flush=True)
samples = []
for i in range(calls):
    t0 = time.perf_counter()
    clf.predict([texts[i % len(texts)]])
    samples.append(time.perf_counter() - t0)
    if len(samples) == window:
        a = np.asarray(samples) * 1000
        print(json.dumps({{"calls": i + 1, "rss_mb": current_rss_mb(),
                          "p50_ms": round(float(np.median(a)), 4),
                          "p99_ms": round(float(np.percentile(a, 99)), 4)}}), flush=True)
        samples = []
"""


def soak_one(art: Path, name: str, dev: Path, *, calls: int, window: int, warmup: int) -> dict:
    """One backend's soak in a fresh process."""
    code = SOAK.format(args=(str(art), name, str(dev), calls, window, warmup))
    t0 = time.time()
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False,
                       timeout=7200)
    lines = [json.loads(x) for x in r.stdout.splitlines() if x.startswith("{")]
    out: dict = {"file": name, "wall_s": round(time.time() - t0, 1)}
    if r.returncode != 0 or not lines:
        out["error"] = (r.stderr.strip().splitlines() or ["?"])[-1][:300]
        return out
    windows = lines[1:]
    start = lines[0]["start_rss_mb"]
    x = np.asarray([w["calls"] for w in windows], dtype=np.float64)
    y = np.asarray([w["rss_mb"] for w in windows], dtype=np.float64)
    slope = float(np.polyfit(x, y, 1)[0]) * 10_000 if len(windows) > 1 else 0.0
    growth = float(y[-1] - start)
    out.update({
        "calls": int(x[-1]), "start_rss_mb": start, "end_rss_mb": float(y[-1]),
        "growth_mb": round(growth, 2), "growth_mb_per_10k_calls": round(slope, 3),
        "max_rss_mb": float(y.max()),
        "p99_first_ms": windows[0]["p99_ms"], "p99_last_ms": windows[-1]["p99_ms"],
        "p99_drift": round(windows[-1]["p99_ms"] / windows[0]["p99_ms"], 3),
        "p50_first_ms": windows[0]["p50_ms"], "p50_last_ms": windows[-1]["p50_ms"],
        "flat_within_target": bool(abs(growth) <= TARGET_MB), "windows": windows})
    return out


def markdown(result: dict) -> str:
    lines = [(f"{result['calls']:,} `predict` calls per backend, one sentence each, 1 thread;"
              f" windows of {result['window']:,} calls."), "",
             ("| file | RSS start MB | RSS end MB | growth MB | MB per 10k calls (slope) |"
              " p99 first ms | p99 last ms | p99 drift | flat within 5 MB |"),
             "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in result["backends"]:
        if "error" in r:
            lines.append(f"| {r['file']} | error: {r['error']} |" + " |" * 7)
            continue
        lines.append(f"| {r['file']} | {r['start_rss_mb']:.1f} | {r['end_rss_mb']:.1f} |"
                     f" {r['growth_mb']:+.2f} | {r['growth_mb_per_10k_calls']:+.3f} |"
                     f" {r['p99_first_ms']:.3f} | {r['p99_last_ms']:.3f} | {r['p99_drift']:.2f}x |"
                     f" {'yes' if r['flat_within_target'] else 'NO'} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> dict:
    ap = student_parser(__doc__)
    ap.add_argument("--calls", type=int, default=100_000)
    ap.add_argument("--files", default=",".join(FILES))
    args = ap.parse_args(argv)

    t_start = time.time()
    subj = student_subject(args, "soak")
    dev, art, subject = subj["dev"], subj["artifact"], subj["subject"]
    calls, window, warmup = (2_000, 500, 50) if args.quick else (args.calls, 10_000, 1_000)
    rows = []
    for f in args.files.split(","):
        print(f"  {f}: {calls:,} calls ...", file=sys.stderr)
        rows.append(soak_one(art, f, dev, calls=calls, window=window, warmup=warmup))
    result = {"subject": subject, "machine": machine(), "calls": calls, "window": window,
              "warmup_calls": warmup, "target_mb": TARGET_MB,
              "command": "python benchmarks/soak.py " + " ".join(argv or sys.argv[1:]),
              "backends": rows, "wall_seconds": round(time.time() - t_start, 1)}
    stem = "soak.quick" if args.quick else "soak"
    write_results(args.out_dir, stem, result, markdown(result))
    print(markdown(result))
    return result


if __name__ == "__main__":
    main()
