"""Two pipeline runs into one run directory, end to end through the command line.

While the first run works, a second one into the same ``--run-dir`` must exit quickly and
non-zero with one ``error:`` line naming the first run's pid, write nothing, and leave the first
run's lock alone; the first run must then finish with complete, verifiable artifacts.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from edge_albert.artifacts import verify


def test_second_run_into_the_same_directory_is_refused(tmp_path, tiny_recipe):
    # cut to what still holds the lock for some seconds
    cfg = tiny_recipe(tmp_path, train_rows=160, dev_rows=32, finetune_steps=40, distill_steps=40,
                      formats=["onnx"], precisions=["fp32"], buckets=[24], latency_runs=2)
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "edge_albert", "pipeline", str(cfg), "--run-dir", str(run)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}
    with open(tmp_path / "first.out", "w") as fout, open(tmp_path / "first.err", "w") as ferr:
        first = subprocess.Popen(cmd, env=env, stdout=fout, stderr=ferr)  # files: no pipe to fill
    try:
        lock = run / ".lock"
        deadline = time.time() + 120
        while time.time() < deadline and first.poll() is None and not lock.is_file():
            time.sleep(0.05)
        assert lock.is_file(), "the first run never took the lock"
        while not lock.read_text().strip():  # written right after the exclusive create
            time.sleep(0.01)
        assert lock.read_text() == str(first.pid)
        before = {p.relative_to(run).as_posix() for p in run.rglob("*")}

        t0 = time.perf_counter()
        second = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120,
                                check=False)
        took = time.perf_counter() - t0
        assert first.poll() is None, "the first run ended before the second one was refused"
        assert second.returncode == 8, second.stderr
        errors = [x for x in second.stderr.splitlines() if x.startswith("error:")]
        assert errors == [(f"error: {run}: another pipeline run (pid {first.pid}) is using this"
                           " run directory")], second.stderr
        assert "hint: wait for it to finish, or use another run directory" in second.stderr
        assert "Traceback" not in second.stderr and "running" not in second.stderr
        assert second.stdout == ""
        assert took < 30  # refused at once: only the interpreter's start-up time
        assert lock.read_text() == str(first.pid)  # the first run's lock is untouched
        # nothing the second run could have written: no stage it started, no config it recorded
        during = {p.relative_to(run).as_posix() for p in run.rglob("*")}
        assert not any(".tmp-" in p for p in during - before)

        first.wait(timeout=600)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    out, err = (tmp_path / "first.out").read_text(), (tmp_path / "first.err").read_text()
    assert first.returncode == 0, err[-3000:]
    assert err.count("[tokenizer] running") == 1 and "[convert] running" in err
    assert "model.fp32.onnx" in out  # the summary table
    assert not (run / ".lock").exists()
    state = json.loads((run / "pipeline_state.json").read_text())
    assert list(state) == ["tokenizer", "teacher", "student", "convert", "validate"]
    for stage in state:
        verify(run / stage)  # every file matches its manifest: no half-written artifact
    report = json.loads((run / "validate" / "report.json").read_text())
    assert [a["name"] for a in report["artifacts"]] == ["model.fp32.onnx"]
    assert not [p.name for p in run.iterdir() if ".tmp-" in p.name or ".old-" in p.name]
