"""The one-command pipeline on a tiny built-in recipe: skip when up to date, refuse, resume."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

pytest.importorskip("torch")
pytest.importorskip("tensorflow")

from click.testing import CliRunner

from edge_albert.cli import cli
from edge_albert.errors import ArtifactError, ConfigError
from edge_albert.pipeline import STAGES, RunLock, run_pipeline
from edge_albert.recipe import load_pipeline_config


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, tiny_recipe):
    d = tmp_path_factory.mktemp("pipe")
    cfg = tiny_recipe(d)
    run_pipeline(cfg, d / "run", echo=lambda _m: None)
    return cfg, d / "run"


def test_runs_every_stage_then_skips_them(finished_run):
    cfg, run = finished_run
    for stage in ("tokenizer", "teacher", "student", "convert", "validate"):
        assert (run / stage / "manifest.json").is_file(), stage
    report = json.loads((run / "validate" / "report.json").read_text())
    assert {a["name"] for a in report["artifacts"]} >= {"model.fp32.onnx", "model.int8-dynamic.tflite"}
    r = CliRunner().invoke(cli, ["pipeline", str(cfg), "--run-dir", str(run)])
    assert r.exit_code == 0, r.output
    assert r.output.count("up to date") >= 5 and "running" not in r.output
    assert "report: " in r.output and "model.fp32.onnx" in r.output  # the summary table


def test_changed_config_is_refused_then_forced(finished_run):
    cfg, run = finished_run
    with pytest.raises(ConfigError, match=r"differing keys: validate.latency_runs"):
        run_pipeline(cfg, run, overrides=["validate.latency_runs=4"], echo=lambda _m: None)
    said: list[str] = []
    p = run_pipeline(cfg, run, overrides=["validate.latency_runs=4"], force=True, echo=said.append)
    status = {r.name: r.status for r in p.results}
    assert status["student"] == "up to date" and status["convert"] == "up to date"
    assert status["validate"] == "ran"


def test_a_run_made_before_a_new_setting_existed_is_not_a_changed_config(finished_run):
    cfg, run = finished_run
    run_pipeline(cfg, run, force=True, echo=lambda _m: None)  # the record: this recipe as it is
    record = run / "pipeline_config.json"
    saved = record.read_text()
    old = json.loads(saved)
    try:  # as written by a version without the trim stage
        record.write_text(json.dumps({k: v for k, v in old.items()
                                      if not k.startswith("trim_vocab.")}))
        p = run_pipeline(cfg, run, echo=lambda _m: None)
        assert {r.status for r in p.results} <= {"up to date", "skipped"}
        with pytest.raises(ConfigError, match=r"differing keys: trim_vocab.min_count"):
            run_pipeline(cfg, run, overrides=["trim_vocab.min_count=2"], echo=lambda _m: None)
    finally:
        record.write_text(saved)


def test_from_a_stage_whose_inputs_were_never_built(tmp_path, tiny_recipe):
    with pytest.raises(ConfigError, match="earlier stage 'tokenizer' has not been built"):
        run_pipeline(tiny_recipe(tmp_path), tmp_path / "run", start="convert",
                     echo=lambda _m: None)


def test_bad_recipes(tmp_path, tiny_recipe):
    bad = tmp_path / "bad.toml"
    bad.write_text('[task]\ntrain = "missing.tsv"\ndev = "missing.tsv"\n')
    with pytest.raises(ConfigError, match=r"task.train: data file .*missing.tsv does not exist"):
        load_pipeline_config(bad)
    bad.write_text('[quantise]\nx = 1\n')
    with pytest.raises(ConfigError, match="unknown section"):
        load_pipeline_config(bad)
    with pytest.raises(ConfigError, match="unknown stage 'distil'"):
        run_pipeline(tiny_recipe(tmp_path), tmp_path / "run", start="distil", echo=lambda _m: None)


def test_second_run_in_the_same_directory_is_refused(tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        (tmp_path / "run").mkdir()
        (tmp_path / "run" / ".lock").write_text(str(sleeper.pid))
        with pytest.raises(ArtifactError, match=f"another pipeline run \\(pid {sleeper.pid}\\)"), \
                RunLock(tmp_path / "run"):
            pass
    finally:
        sleeper.kill()
    sleeper.wait()
    with RunLock(tmp_path / "run"):  # a stale lock (dead pid) is taken over
        assert (tmp_path / "run" / ".lock").read_text() == str(os.getpid())


def test_killed_during_distillation_resumes(tmp_path, tiny_recipe):
    cfg = tiny_recipe(tmp_path, distill_steps=400, ckpt=20)
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "edge_albert", "pipeline", str(cfg), "--run-dir", str(run)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = run / "student.partial" / "checkpoint.pt"
    deadline = time.time() + 240
    while not ckpt.is_file() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert ckpt.is_file(), "distillation never checkpointed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (run / "student" / "manifest.json").exists()  # nothing half-written was trusted
    r = subprocess.run(cmd, env=env, check=False, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "[teacher] up to date" in r.stderr and "[student] running" in r.stderr
    log = [json.loads(x) for x in (run / "student" / "train_log.jsonl").read_text().splitlines()]
    resumed = [x["resumed_from"] for x in log if "resumed_from" in x]
    assert resumed and resumed[0] >= 20
    assert [s for s in STAGES if (run / s / "manifest.json").is_file()] == [
        "tokenizer", "teacher", "student", "convert", "validate"]


def test_ctrl_c_during_distillation_exits_cleanly(tmp_path, tiny_recipe):
    # far more steps than the test waits for: Ctrl-C must land mid-distillation even when a
    # loaded machine lets the poll below see the first checkpoint late
    cfg = tiny_recipe(tmp_path, distill_steps=20000, ckpt=20)
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # the child takes Ctrl-C as a terminal's foreground process does, even where the tests were
    # started with SIGINT ignored (a background job of a non-interactive shell: its children
    # inherit that, and Python then installs no KeyboardInterrupt handler)
    launch = ("import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler);"
              " sys.argv[0] = 'edge_albert'; runpy.run_module('edge_albert', run_name='__main__')")
    proc = subprocess.Popen([sys.executable, "-c", launch, "pipeline", str(cfg), "--run-dir",
                             str(run)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    ckpt = run / "student.partial" / "checkpoint.pt"
    deadline = time.time() + 240
    while not ckpt.is_file() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert proc.poll() is None, "the pipeline ended before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    try:
        _out, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:  # stop it here: a live child would fail a later test too
        proc.kill()
        _out, err = proc.communicate()
        pytest.fail(f"the pipeline ran on 120 s after Ctrl-C; its stderr ends: {err[-1500:]!r}")
    assert proc.returncode == 130
    assert "error: interrupted" in err and "Traceback" not in err
    assert ckpt.is_file() and not (run / "student").exists()  # resumable, nothing half-written
    assert not (run / ".lock").exists()


def test_demo_command_runs_the_packaged_recipe(tmp_path):
    sets = ["task.builtin_train_rows=240", "task.builtin_dev_rows=48", "teacher.scratch_shape=tiny",
            "teacher.scratch_vocab_size=200", "finetune.max_steps=20", "finetune.max_length=24",
            "distill.max_steps=20", "distill.max_length=24", "convert.formats=onnx",
            "convert.precisions=fp32", "convert.buckets=[24]", "validate.latency_runs=2",
            "validate.batch_sizes=[1]", "bundle.target=rpi"]
    args = ["demo", "--run-dir", str(tmp_path / "demo")]
    for s in sets:
        args += ["--set", s]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    assert "report: " in r.output and (tmp_path / "demo" / "validate" / "report.html").is_file()
    assert (tmp_path / "demo" / "bundle" / "run.sh").is_file()
    assert "model.fp32.onnx" in r.output
    import importlib.util

    if importlib.util.find_spec("mediapipe"):  # the recipe's if_installed: MediaPipe's file too
        assert "model.fp32.mediapipe.tflite" in r.output


def test_demo_with_a_bad_set_names_the_key_and_leaves_no_run_dir(tmp_path):
    run = tmp_path / "demo"
    r = CliRunner().invoke(cli, ["demo", "--run-dir", str(run), "--set", "distill.epochs=many"])
    assert r.exit_code == 2, r.output
    assert "distill.epochs" in r.output and "Traceback" not in r.output
    assert not run.exists()  # nothing half-made: a fixed command starts clean
    run.mkdir()
    (run / "keep.txt").write_text("mine")
    r = CliRunner().invoke(cli, ["demo", "--run-dir", str(run), "--set", "nosuch.key=1"])
    assert r.exit_code == 2 and "nosuch" in r.output
    assert sorted(p.name for p in run.iterdir()) == ["keep.txt"]  # a user's dir is kept as it was
