"""Training beside a busy neighbour (#18 item 4): how much slower the toolchain's torch work gets
when another busy process shares the cores, under each OpenMP wait policy.

The workload is what dominates ``edge-albert demo``: training steps of the demo teacher's shape
(``demo-teacher``; batch 32 x 48 tokens, AdamW) in a fresh process. The neighbour is the same
workload in a second process (another demo, another training job: what the issue saw). Each
condition runs the workload alone, then beside the neighbour, and reports steps/s and the
slowdown; the policies are libgomp's default (spin, then sleep) and ``OMP_WAIT_POLICY=PASSIVE``
(threads sleep at once when they wait) and shorter spins (``GOMP_SPINCOUNT``), each with torch's
default thread count (every core), and with the trainer sharing the cores
(``edge_albert/core_share.py``: every 2 s a job drops to the cores the others leave idle): with
passive waits, and with edge-albert's default (10,000 spins, sharing), beside a neighbour that
shares too (a second demo) and one that does not.

It also times the workload alone on one thread: beside a neighbour as busy as itself, a job that
uses every core gets half of them, so no thread count or wait policy can make it less than
``alone rate on every core / alone rate on half of them`` slower (the fair-share bound).

    python benchmarks/neighbours.py                 # ~12 minutes on 2 cores (3 rounds)
    python benchmarks/neighbours.py --quick --out-dir /tmp/n   # seconds (a test)

Writes ``neighbours.json`` and ``neighbours.md`` (``neighbours.quick.*`` with --quick).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, machine, openmp_env, write_results

WORKLOAD = r"""
import json, sys, time, torch
from edge_albert.modeling import albert_config, build_albert_classifier
steps, seconds = int(sys.argv[1]), float(sys.argv[2])
share = None
if sys.argv[3:] == ["share"]:  # what edge-albert's trainer does (edge_albert/core_share.py)
    from edge_albert.core_share import CoreShare
    share = CoreShare(torch.get_num_threads(), torch.set_num_threads)
model = build_albert_classifier(albert_config("demo-teacher", vocab_size=2000, num_labels=8)).train()
opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
ids = torch.randint(5, 2000, (32, 48)); mask = torch.ones_like(ids); y = torch.randint(0, 8, (32,))
def step():
    opt.zero_grad(); model(input_ids=ids, attention_mask=mask, labels=y).loss.backward(); opt.step()
    if share is not None:
        share.tick()
for _ in range(3):
    step()
t0, n = time.perf_counter(), 0
while n < steps or (seconds and time.perf_counter() - t0 < seconds):
    step(); n += 1
    if seconds and time.perf_counter() - t0 >= seconds:
        break
print(json.dumps({"steps": n, "seconds": time.perf_counter() - t0,
                  "threads": share.max_threads if share else torch.get_num_threads(),
                  "threads_at_end": torch.get_num_threads()}))
"""

#: the device runtime's side: ONNX Runtime (its own thread pool, not OpenMP) running an int8
#: file with 2 threads, batch 8 x 64; argv: path, steps, seconds, allow_spinning ("1"/"0")
RUNTIME_WORKLOAD = r"""
import json, sys, time, numpy as np, onnxruntime as ort
path, steps, seconds, spin = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
o = ort.SessionOptions(); o.intra_op_num_threads = 2; o.inter_op_num_threads = 1
o.add_session_config_entry("session.intra_op.allow_spinning", spin)
s = ort.InferenceSession(path, o, providers=["CPUExecutionProvider"])
ids = np.random.default_rng(0).integers(5, 200, (8, 64)).astype(np.int64)  # any vocab >= 200
feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
for _ in range(5):
    s.run(None, feeds)
t0, n = time.perf_counter(), 0
while n < steps or (seconds and time.perf_counter() - t0 < seconds):
    s.run(None, feeds); n += 1
    if seconds and time.perf_counter() - t0 >= seconds:
        break
print(json.dumps({"steps": n, "seconds": time.perf_counter() - t0, "threads": 2}))
"""
SPINNING = {"ONNX Runtime default (spinning)": "1", "allow_spinning=0": "0"}

PASSIVE = {"OMP_WAIT_POLICY": "PASSIVE"}
SHORT_SPIN = {"GOMP_SPINCOUNT": "10000"}
DEFAULT = "GOMP_SPINCOUNT=10000 + sharing cores (edge-albert's default)"
#: row name -> (environment, whether the measured job shares the cores, whether the neighbour does)
POLICIES = {"libgomp default": ({}, False, False),
            "OMP_WAIT_POLICY=PASSIVE": (PASSIVE, False, False),
            "GOMP_SPINCOUNT=10000": (SHORT_SPIN, False, False),
            "GOMP_SPINCOUNT=100000": ({"GOMP_SPINCOUNT": "100000"}, False, False),
            "PASSIVE + sharing cores": (PASSIVE, True, True),
            DEFAULT: (SHORT_SPIN, True, True),
            "the default, beside a neighbour that does not share": (SHORT_SPIN, True, False)}
#: the rows --quick runs
QUICK = ("libgomp default", "OMP_WAIT_POLICY=PASSIVE", DEFAULT)


def measure(policy: dict[str, str], steps: int, beside: bool = True, *,
            workload: str = WORKLOAD, args: Sequence[str] = (),
            neighbour_args: Sequence[str] | None = None) -> dict[str, float]:
    """Steps/s of the workload alone, then beside a neighbour running the same workload (with
    ``neighbour_args`` in place of ``args`` when given) until the measured run ends."""
    def run(n: int, seconds: float = 0.0, a: Sequence[str] = args) -> subprocess.Popen:
        # the runtime workload takes path, steps, seconds, spinning; training steps, seconds,
        # then "share" when it shares the cores
        argv = ([a[0], str(n), str(seconds), *a[1:]] if workload is RUNTIME_WORKLOAD
                else [str(n), str(seconds), *a])
        return subprocess.Popen([sys.executable, "-c", workload, *argv],
                                env=openmp_env(policy), stdout=subprocess.PIPE, text=True)

    alone = json.loads(run(steps).communicate()[0])
    if not beside:
        return {"alone_steps_per_s": round(alone["steps"] / alone["seconds"], 3),
                "threads": alone["threads"]}
    neighbour = run(0, 3600.0, args if neighbour_args is None else neighbour_args)
    try:
        time.sleep(3.0)  # the neighbour is past its imports and warm-up: busy
        near = json.loads(run(steps).communicate()[0])
    finally:
        neighbour.terminate()
        neighbour.communicate()
    a, b = alone["steps"] / alone["seconds"], near["steps"] / near["seconds"]
    out = {"alone_steps_per_s": round(a, 3), "beside_steps_per_s": round(b, 3),
           "threads": alone["threads"]}
    if "threads_at_end" in near:
        out["threads_beside_at_end"] = near["threads_at_end"]
    return out


def summary(samples: list[dict[str, float]]) -> dict[str, Any]:
    """Medians over the repeats (this machine's rates swing by a third from run to run: only
    interleaved repeats compare), the slowdown of the medians, and every sample."""
    row: dict[str, Any] = {k: round(float(np.median([s[k] for s in samples])), 3)
                           for k in ("alone_steps_per_s", "beside_steps_per_s") if k in samples[0]}
    if "beside_steps_per_s" in row:
        row["slowdown"] = round(row["alone_steps_per_s"] / row["beside_steps_per_s"], 2)
    row["threads"] = samples[0]["threads"]
    if "threads_beside_at_end" in samples[0]:
        row["threads_beside_at_end"] = samples[-1]["threads_beside_at_end"]
    row["samples"] = samples
    return row


def main(argv: Sequence[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=3,
                    help="rounds over every row, interleaved; medians reported (default 3)")
    ap.add_argument("--out-dir", type=Path, default=RESULTS)
    ap.add_argument("--onnx", type=Path,
                    default=Path(__file__).resolve().parents[1] / "runs" / "sst2" / "default-convert"
                    / "model.int8-dynamic.onnx",
                    help="the int8 file the runtime rows run (absent: those rows are skipped)")
    ap.add_argument("--rows", nargs="+", choices=list(POLICIES), metavar="ROW",
                    help="only these OpenMP rows (default: all); the bound and runtime rows always")
    ap.add_argument("--quick", action="store_true",
                    help="4 steps, three rows, one round (a test; numbers mean little)")
    args = ap.parse_args(argv)
    steps, repeats = (4, 1) if args.quick else (args.steps, args.repeats)
    t0 = time.time()
    chosen = {k: v for k, v in POLICIES.items()
              if k in (QUICK if args.quick else args.rows or POLICIES)}
    # the fair-share bound's denominator: on half the cores (here one thread), alone
    half = max(1, (os.cpu_count() or 2) // 2)
    samples: dict[str, list[dict[str, float]]] = {k: [] for k in [*chosen, "half"]}
    for r in range(repeats):
        for name, (policy, share, neighbour_shares) in chosen.items():
            samples[name].append(measure(policy, steps, args=("share",) if share else (),
                                         neighbour_args=("share",) if neighbour_shares else ()))
            print(f"round {r + 1}, {name}: {samples[name][-1]}", file=sys.stderr)
        samples["half"].append(measure({"OMP_WAIT_POLICY": "PASSIVE",
                                        "OMP_NUM_THREADS": str(half)}, steps, beside=False))
    rows = {name: summary(samples[name]) for name in chosen}
    single = summary(samples["half"])
    for row in rows.values():  # each row's own bound: its alone rate over the one-core rate
        row["fair_share_bound"] = round(row["alone_steps_per_s"] / single["alone_steps_per_s"], 2)
    bound = rows.get(DEFAULT, next(iter(rows.values())))["fair_share_bound"]
    print(f"half the cores, alone: {single}; fair-share bound {bound}x", file=sys.stderr)
    runtime = {}
    onnx = args.onnx
    if args.quick:
        onnx = _tiny_onnx(args.out_dir)
    if onnx.is_file():
        rt: dict[str, list[dict[str, float]]] = {name: [] for name in SPINNING}
        for _ in range(repeats):
            for name, spin in SPINNING.items():
                rt[name].append(measure({}, 20 if args.quick else 200, workload=RUNTIME_WORKLOAD,
                                        args=(str(onnx), spin)))
                print(f"{name}: {rt[name][-1]}", file=sys.stderr)
        runtime = {name: summary(v) for name, v in rt.items()}
    result = {"machine": machine(), "workload": "demo-teacher training steps, batch 32 x 48",
              "steps": steps, "repeats": repeats, "policies": rows, "half_cores_alone": single,
              "fair_share_bound": bound, "runtime_onnx": _shown(onnx),
              "runtime_workload": "ONNX Runtime, 2 threads, batch 8 x 64 calls of the int8 file",
              "runtime": runtime,
              "command": "python benchmarks/neighbours.py " + " ".join(argv or sys.argv[1:]),
              "wall_seconds": round(time.time() - t0, 1)}
    md = ["# Training beside a busy neighbour", "",
          f"{result['machine']['cpu']} ({result['machine']['isa']}, {result['machine']['cores']}"
          f" cores); `{result['command']}`; {steps} steps of {result['workload']}, each run in a"
          f" fresh process, medians of {repeats} interleaved round(s) (every sample in the .json);"
          " the neighbour runs the same workload from 3 s before until the measured run ends.", "",
          "| OpenMP policy | threads | alone steps/s | beside a neighbour | slowdown |"
          " fair-share bound |", "|---|---:|---:|---:|---:|---:|"]
    md += [f"| {k} | {v['threads']}" + (f" (beside: {v['threads_beside_at_end']})"
                                          if v.get("threads_beside_at_end", v["threads"])
                                          != v["threads"] else "")
           + f" | {v['alone_steps_per_s']:.2f} | {v['beside_steps_per_s']:.2f} |"
           f" {v['slowdown']:.2f}x | {v['fair_share_bound']:.2f}x |" for k, v in rows.items()]
    md += ["", f"Alone on {single['threads']} thread(s) (half the cores, PASSIVE):"
           f" {single['alone_steps_per_s']:.2f} steps/s, so beside a neighbour as busy as itself"
           " a job cannot be less than (its rate alone) / (this rate) slower than alone: the"
           " fair-share bound of each row (it gets half the cores). A job that shares the cores"
           " runs on one thread beside the neighbour (\"beside: 1\"), at most 2 s after it"
           " starts."]
    if runtime:
        md += ["", f"The runtime: {result['runtime_workload']} (`{result['runtime_onnx']}`), the"
               " neighbour the same calls in a second process:", "",
               "| ONNX Runtime threads | alone calls/s | beside a neighbour | slowdown |",
               "|---|---:|---:|---:|"]
        md += [f"| {k} | {v['alone_steps_per_s']:.1f} | {v['beside_steps_per_s']:.1f} |"
               f" {v['slowdown']:.2f}x |" for k, v in runtime.items()]
    write_results(args.out_dir, "neighbours.quick" if args.quick else "neighbours", result,
                  "\n".join(md) + "\n")
    print("\n".join(md))
    return result


def _shown(path: Path) -> str:
    """``path`` relative to the repository when it is inside it (results name no local layout)."""
    root = Path(__file__).resolve().parents[1]
    return str(path.resolve().relative_to(root)) if path.resolve().is_relative_to(root) else str(path)


def _tiny_onnx(out_dir: Path) -> Path:
    """--quick: a tiny random ALBERT's int8 ONNX file (built once under ``out_dir``)."""
    from _common import quick_setup
    from edge_albert.converters.convert import ConvertConfig, run_convert

    work = out_dir / "neighbours_quick_work"
    q = quick_setup(work)
    art = work / "onnx"
    if not (art / "manifest.json").is_file():
        run_convert(ConvertConfig(formats=("onnx",), precisions=("int8-dynamic",),
                                  fixed_shapes=()), q["model"], art, progress=False)
    return art / "model.int8-dynamic.onnx"


if __name__ == "__main__":
    main()
