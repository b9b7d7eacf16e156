"""Training precision on the built-in demo (#18 item 4): fp32 against bf16 autocast.

Runs ``edge-albert demo`` once per seed and precision, the precisions interleaved within each
seed (``finetune.precision`` and ``distill.precision`` set alike; ``finetune.seed`` and
``distill.seed`` set to the seed), and reads each run's teacher and student manifests: dev
accuracy, training seconds and the precision the run resolved. Conversion is cut to one file
(``convert.formats=["onnx"]``, int8-dynamic): only the training stages are compared.

    python benchmarks/precision.py             # ~12 minutes on 2 cores (3 seeds x 2 precisions)
    python benchmarks/precision.py --quick --out-dir /tmp/p   # the shape only: tiny runs

Writes ``precision_demo-<isa>.json`` and ``.md`` (bf16 is fast only where the CPU computes it:
``<isa>`` names the CPU class; ``precision_demo.quick.*`` with --quick).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, publish_per_cpu
from demo_beside import QUICK, run_condition

ONE_FILE = ['convert.formats=["onnx"]', 'convert.precisions=["int8-dynamic"]',
            "convert.if_installed=[]", 'bundle.target="none"']
PRECISIONS = ("fp32", "bf16")
TRAINED = ("teacher", "student")


def one_run(precision: str, seed: int, base: Sequence[str], work: Path) -> dict[str, Any]:
    """One demo; per trained stage: dev accuracy, training seconds, resolved precision."""
    sets = [*base, *(f"{st}.{k}={v}" for st in ("finetune", "distill")
                     for k, v in (("precision", precision), ("seed", seed)))]
    run = run_condition(1, sets, {}, work)[0]
    out: dict[str, Any] = {"precision": precision, "seed": seed,
                           "wall_seconds": run["wall_seconds"]}
    for st in TRAINED:
        extra = json.loads((work / "demo0" / st / "manifest.json").read_text())["extra"]
        out[st] = {"accuracy": extra["dev"]["accuracy"], "train_seconds": extra["train_seconds"],
                   "resolved": extra["precision"]}
    return out


def main(argv: Sequence[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out-dir", type=Path, default=RESULTS)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--quick", action="store_true", help="tiny demos, one seed (a test)")
    args = ap.parse_args(argv)
    seeds = [0] if args.quick else args.seeds
    base = [*QUICK] if args.quick else ONE_FILE
    t0 = time.time()
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in seeds:
            for p in PRECISIONS:
                runs.append(one_run(p, seed, base, Path(tmp) / f"{p}-{seed}"))
                print(f"seed {seed}, {p}: {runs[-1]}", file=sys.stderr)
    summary = {p: {st: {k: round(statistics.mean(r[st][k] for r in runs if r["precision"] == p), 4)
                        for k in ("accuracy", "train_seconds")} for st in TRAINED}
               for p in PRECISIONS}
    for st in TRAINED:
        summary[f"{st}_speedup"] = round(summary["fp32"][st]["train_seconds"]
                                         / summary["bf16"][st]["train_seconds"], 3)
    return publish_per_cpu("precision.py", argv, t0, args.out_dir, "precision_demo", args.quick,
                           {"sets": base, "seeds": seeds, "runs": runs, "summary": summary},
                           markdown)


def markdown(r: dict) -> str:
    m, s = r["machine"], r["summary"]
    md = ["# Training precision on the demo: fp32 against bf16 autocast", "",
          f"{m['cpu']} ({m['isa']}, {m['cores']} cores; flags {', '.join(m['flags'])});"
          f" `{r['command']}` ({r['wall_seconds']} s); each demo with `--set`"
          f" {', '.join(f'`{x}`' for x in r['sets'])}.", "",
          "| seed | precision (resolved) | teacher dev % | teacher train s | student dev % |"
          " student train s |", "|---:|---|---:|---:|---:|---:|"]
    for x in r["runs"]:
        md.append(f"| {x['seed']} | {x['precision']} ({x['student']['resolved']}) |"
                  f" {100 * x['teacher']['accuracy']:.1f} | {x['teacher']['train_seconds']} |"
                  f" {100 * x['student']['accuracy']:.1f} | {x['student']['train_seconds']} |")
    for p in PRECISIONS:
        md.append(f"| mean | {p} | {100 * s[p]['teacher']['accuracy']:.2f} |"
                  f" {s[p]['teacher']['train_seconds']:.1f} |"
                  f" {100 * s[p]['student']['accuracy']:.2f} |"
                  f" {s[p]['student']['train_seconds']:.1f} |")
    md += ["", f"bf16 training steps: teacher {s['teacher_speedup']:.2f}x, student"
           f" {s['student_speedup']:.2f}x the fp32 speed (mean training seconds)."]
    return "\n".join(md) + "\n"


if __name__ == "__main__":
    main()
