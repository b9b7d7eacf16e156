"""``edge-albert demo`` beside a second demo (#18 item 4): the issue's own scenario, whole commands.

Five conditions, each a fresh run directory, run one after the other and repeated in rounds:

* ``alone``: one demo;
* ``beside a demo, sharing cores``: two demos started together, with the trainer's default
  (``share_cores``: training drops to the cores the other leaves idle, ``edge_albert/core_share.py``);
* ``beside a demo, not sharing``: the same with ``finetune.share_cores=false`` and
  ``distill.share_cores=false`` (every stage on every core);
* ``alone, as before`` and ``beside a demo, as before``: the toolchain before its training shared
  the cores (not sharing, ``OMP_WAIT_POLICY=PASSIVE``: then the package's setting).

Each demo runs the README's main set-up (``convert.if_installed=["onnx-e2e"]``: the 13 files a
fresh ``pip install ".[all]"`` writes, even where the mediapipe extra is installed). It reports
each process's wall time, its stages' times (from the manifests' timestamps), its training
seconds and the thread changes its training logs, and the slowdown: mean wall time beside the
other demo / wall time alone with the same settings.

    python benchmarks/demo_beside.py            # ~35 minutes on 2 cores (2 rounds)
    python benchmarks/demo_beside.py --quick --out-dir /tmp/d   # the shape only: tiny runs

Writes ``demo_beside-<isa>.json`` and ``.md`` (``<isa>``: this CPU's class, as in
``headline-<isa>``: the demo's time depends on the CPU; ``demo_beside.quick.*`` with --quick).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, openmp_env, publish_per_cpu

MAIN_SETUP = ['convert.if_installed=["onnx-e2e"]']
NOT_SHARING = ["finetune.share_cores=false", "distill.share_cores=false"]
#: --quick: a few training steps, fewer rows, two formats (the shape of the result, not its numbers)
QUICK = ["task.builtin_train_rows=200", "task.builtin_dev_rows=100", "finetune.max_steps=30",
         "distill.max_steps=30", 'convert.formats=["onnx"]', "convert.if_installed=[]",
         'convert.precisions=["int8-dynamic"]', 'bundle.target="none"']
STAGES = ("tokenizer", "teacher", "student", "convert", "validate", "bundle")
PASSIVE = {"OMP_WAIT_POLICY": "PASSIVE"}
#: name -> (demos started together, extra --set values, extra environment, the alone baseline)
CONDITIONS: dict[str, tuple[int, list[str], dict[str, str], str]] = {
    "alone": (1, [], {}, "alone"),
    "beside a demo, sharing cores": (2, [], {}, "alone"),
    "beside a demo, not sharing": (2, NOT_SHARING, {}, "alone"),
    # the toolchain before training shared the cores: passive OpenMP waits, every core
    "alone, as before": (1, NOT_SHARING, PASSIVE, "alone, as before"),
    "beside a demo, as before": (2, NOT_SHARING, PASSIVE, "alone, as before"),
}


def _start(run_dir: Path, sets: Sequence[str], env: dict[str, str]) -> subprocess.Popen:
    argv = [sys.executable, "-m", "edge_albert", "demo", "--run-dir", str(run_dir)]
    for s in sets:
        argv += ["--set", s]
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    # into a file, not a pipe nobody reads while it runs; the child keeps its own copy of the fd
    with open(run_dir.with_suffix(".log"), "w") as log:
        return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, text=True,
                                env=openmp_env(env))


def _stages(run_dir: Path, started: float) -> dict[str, Any]:
    """Seconds each stage took (from its manifest's timestamp and the one before), its training
    seconds and the thread counts its training logged."""
    out: dict[str, Any] = {}
    prev = started
    for st in STAGES:
        path = run_dir / st / "manifest.json"
        if not path.is_file():
            continue
        m = json.loads(path.read_text())
        done = datetime.fromisoformat(m["created"]).timestamp()
        row: dict[str, Any] = {"seconds": round(done - prev, 1)}
        prev = done
        if "train_seconds" in m.get("extra", {}):
            row["train_seconds"] = m["extra"]["train_seconds"]
        log = run_dir / st / "train_log.jsonl"
        if log.is_file():
            row["thread_changes"] = [r for r in map(json.loads, log.read_text().splitlines())
                                     if "threads" in r]
        out[st] = row
    return out


def run_condition(n: int, sets: Sequence[str], env: dict[str, str],
                  work: Path) -> list[dict[str, Any]]:
    """``n`` demos started together; each one's own wall seconds (to its exit) and stages."""
    dirs = [work / f"demo{i}" for i in range(n)]
    t0 = time.time()
    procs = [_start(d, sets, env) for d in dirs]
    ended: dict[int, float] = {}
    while len(ended) < n:
        for i, p in enumerate(procs):
            if i not in ended and p.poll() is not None:
                ended[i] = time.time()
        time.sleep(0.2)
    for d, p in zip(dirs, procs):
        if p.returncode != 0:
            tail = d.with_suffix(".log").read_text()[-2000:]
            raise SystemExit(f"error: the demo in {d} failed:\n{tail}")
    return [{"wall_seconds": round(ended[i] - t0, 1), "stages": _stages(d, t0)}
            for i, d in enumerate(dirs)]


def main(argv: Sequence[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out-dir", type=Path, default=RESULTS)
    ap.add_argument("--quick", action="store_true", help="tiny demos (a test; numbers mean little)")
    ap.add_argument("--conditions", nargs="+", choices=list(CONDITIONS), default=list(CONDITIONS),
                    metavar="NAME", help="which conditions (default: all; each one's alone"
                    " baseline always runs)")
    ap.add_argument("--repeats", type=int, default=2,
                    help="interleaved rounds over the conditions (default 2; --quick: 1)")
    args = ap.parse_args(argv)
    base = QUICK if args.quick else MAIN_SETUP
    t0 = time.time()
    chosen = {k: v for k, v in CONDITIONS.items()
              if k in args.conditions or any(CONDITIONS[c][3] == k for c in args.conditions)}
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in chosen}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(1 if args.quick else args.repeats):
            for name, (n, extra, env, _) in chosen.items():
                work = Path(tmp) / f"{name.replace(' ', '_').replace(',', '')}-{r}"
                runs[name] += run_condition(n, base + extra, env, work)
                print(f"round {r + 1}, {name}: {[x['wall_seconds'] for x in runs[name]]}",
                      file=sys.stderr)
    # the mean over every demo of a condition (both demos of each pair, every round)
    rows: dict[str, Any] = {name: {"runs": v, "mean_wall_seconds": round(
        sum(x["wall_seconds"] for x in v) / len(v), 1)} for name, v in runs.items()}
    for name, row in rows.items():  # over the alone run of the same settings
        row["slowdown"] = round(row["mean_wall_seconds"]
                                / rows[CONDITIONS[name][3]]["mean_wall_seconds"], 2)
    return publish_per_cpu("demo_beside.py", argv, t0, args.out_dir, "demo_beside", args.quick,
                           {"sets": base, "rounds": 1 if args.quick else args.repeats,
                            "conditions": rows}, markdown)


def markdown(r: dict) -> str:
    m = r["machine"]
    md = ["# `edge-albert demo` beside a second demo", "",
          f"{m['cpu']} ({m['isa']}, {m['cores']} cores); `{r['command']}`; each demo with"
          f" `--set` {', '.join(f'`{s}`' for s in r['sets'])}.", "",
          "| condition | wall s (each demo) | slowdown | teacher s | student s | convert s |"
          " validate s | threads logged |", "|---|---|---:|---|---|---|---|---|"]
    for name, row in r["conditions"].items():
        def col(stage: str, key: str = "seconds", row: dict = row) -> str:
            return " / ".join(str(x["stages"].get(stage, {}).get(key, "-")) for x in row["runs"])
        changes = " / ".join(
            ", ".join(f"{st} {c['threads']}@{c['step']}" for st, s in x["stages"].items()
                      for c in s.get("thread_changes", [])) or "none" for x in row["runs"])
        md.append(f"| {name} | {' / '.join(str(x['wall_seconds']) for x in row['runs'])} |"
                  f" {row['slowdown']:.2f}x | {col('teacher')} | {col('student')} |"
                  f" {col('convert')} | {col('validate')} | {changes} |")
    md += ["", f"{r['rounds']} interleaved round(s); slowdown: the mean wall time of the demos in"
           " a condition (every demo of every round) over that of the demo alone with the same"
           " settings (the \"as before\" rows: over \"alone, as before\")."
           " Stage seconds run from the previous stage's manifest (the teacher's include the"
           " tokenizer and data)."]
    return "\n".join(md) + "\n"


if __name__ == "__main__":
    main()
