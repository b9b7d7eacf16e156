"""Kill and resume: every long stage is SIGKILLed at several points, re-run, and must end with
the artifacts of an uninterrupted run, never leaving (or consuming) a half-written directory.

Each test runs the real CLI in subprocesses and kills them two ways:

* from outside (``SIGKILL``) once a polled condition holds: the training log has passed a step,
  a checkpoint exists, the stage's temporary directory holds some file, the measurement worker
  is running, the pipeline has announced a stage;
* from inside, at the commit point of :func:`~edge_albert.artifacts.write_artifact` (``HOOK``):
  ``before`` the rename (the temporary directory is complete, manifest included: the most
  convincing half-state) or ``between`` the two renames of a ``--force`` replace (the previous
  artifact moved aside, the new one not yet in place).

After every kill the output directory must be absent or byte-identical to the previous complete
artifact; the next run must not be refused because of the leftovers; the finished artifact must
pass ``edge-albert artifact verify`` and match an uninterrupted run made in this process:
training stages byte for byte (resume is exact on CPU with one thread), convert file for file,
validate on every accuracy/agreement/logit-error number (latency is measured, so it differs).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("tensorflow")
pytest.importorskip("onnxruntime")

from edge_albert.artifacts import verify
from edge_albert.config import DistillConfig, FinetuneConfig

pytestmark = pytest.mark.slow

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
TIMEOUT = 300  # seconds any one run may take on a loaded machine

# Runs the CLI, SIGKILLing itself at the final rename of the artifact directory named NAME:
# "before" it (the temporary directory is complete, manifest and all) or "between" the two
# renames of a replace (the previous artifact moved aside, the new one not yet moved in).
HOOK = r"""
import os, signal, sys
name, when, args = sys.argv[1], sys.argv[2], sys.argv[3:]
import edge_albert.artifacts as A
move, replace = A._move_into_place, os.replace

def die():
    os.kill(os.getpid(), signal.SIGKILL)

def hooked(tmp, out):
    if out.name == name:
        if when == "before":
            die()
        def replace_then_die(src, dst):
            replace(src, dst)
            if str(src) == str(out):
                die()
        os.replace = replace_then_die
    return move(tmp, out)

A._move_into_place = hooked
from edge_albert.cli import main
sys.argv = ["edge-albert", *args]
main()
"""

FT = {"max_steps": 120, "batch_size": 16, "max_length": 32, "learning_rate": 3e-3,
      "eval_every": 40, "checkpoint_every": 10, "seed": 3, "threads": 1, "warmup_ratio": 0.0}
DS = {**FT, "max_steps": 80, "student": "tiny"}


# ----------------------------------------------------------------------------- helpers
def _sets(section: str, cfg: dict) -> list[str]:
    out: list[str] = []
    for k, v in cfg.items():
        out += ["--set", f"{section}.{k}={json.dumps(v)}"]
    return out


class Run:
    """One CLI process, its output in a file (the kill conditions poll it)."""

    def __init__(self, tmp: Path, args: list[str], hook: tuple[str, str] | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.log = tmp / f"run-{time.monotonic_ns()}.log"
        cmd = ([sys.executable, "-m", "edge_albert", *args] if hook is None
               else [sys.executable, "-c", HOOK, *hook, *args])
        with open(self.log, "w") as fh:
            self.proc = subprocess.Popen(cmd, env={**ENV, **(env or {})}, stdout=fh,
                                         stderr=subprocess.STDOUT)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def kill_when(self, cond: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + TIMEOUT
        while not cond():
            if self.proc.poll() is not None:
                pytest.fail(f"the run ended (rc {self.proc.returncode}) before {what}:\n"
                            + self.output()[-3000:])
            if time.monotonic() > deadline:
                self.proc.kill()
                pytest.fail(f"timed out waiting for {what}")
            time.sleep(0.01)
        self.proc.send_signal(signal.SIGKILL)
        rc = self.proc.wait(TIMEOUT)
        assert rc == -signal.SIGKILL, f"the run ended (rc {rc}) before it could be killed"

    def died_by_hook(self) -> None:
        rc = self.proc.wait(TIMEOUT)
        assert rc == -signal.SIGKILL, f"rc {rc}, the hook never fired:\n{self.output()[-3000:]}"

    def finish(self) -> str:
        rc = self.proc.wait(TIMEOUT)
        assert rc == 0, self.output()[-3000:]
        return self.output()


def cli(tmp: Path, *args: str, hook: tuple[str, str] | None = None,
        env: dict[str, str] | None = None) -> Run:
    return Run(tmp, list(args), hook, env)


def logged_steps(log: Path) -> list[dict]:
    if not log.is_file():
        return []
    out = []
    for line in log.read_text().splitlines():
        with contextlib.suppress(json.JSONDecodeError):  # a line being written
            out.append(json.loads(line))
    return out


def past_step(log: Path, step: int, *, resumed: bool = False) -> Callable[[], bool]:
    """The training log shows a step >= ``step`` (written after a resume, if ``resumed``)."""
    def cond() -> bool:
        recs = logged_steps(log)
        if resumed:
            marks = [i for i, r in enumerate(recs) if "resumed_from" in r]
            recs = recs[marks[-1]:] if marks else []
        return any(r.get("step", 0) >= step for r in recs)
    return cond


def hashes(d: Path) -> dict[str, str]:
    """sha256 of every file under ``d``."""
    return {p.relative_to(d).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(d.rglob("*")) if p.is_file()}


def leftovers(out: Path) -> list[str]:
    """Temporary siblings of ``out`` a writer left (``.NAME.tmp-*``, ``.NAME.old-*``)."""
    return sorted(p.name for p in out.parent.iterdir()
                  if p.name.startswith((f".{out.name}.tmp-", f".{out.name}.old-")))


def assert_whole_or_absent(out: Path, previous: dict[str, str] | None) -> None:
    """After a kill: ``out`` is absent (no previous artifact) or exactly the previous one."""
    if previous is None:
        assert not out.exists(), f"{out} exists after a kill: {sorted(os.listdir(out))}"
    else:
        assert hashes(out) == previous, "the previous artifact changed under a killed run"
        verify(out)


def assert_verified(tmp: Path, out: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "edge_albert", "artifact", "verify", str(out)],
                       env=ENV, capture_output=True, text=True, timeout=TIMEOUT,
                       check=False)
    assert r.returncode == 0 and r.stdout.startswith("ok: "), r.stdout + r.stderr


def training_records(d: Path) -> list[dict]:
    """The train log less its resume markers (a resumed run keeps the steps up to its checkpoint
    and logs the rest again, so it must equal an uninterrupted run's log)."""
    return [r for r in logged_steps(d / "train_log.jsonl")
            if "resumed_from" not in r and "resume_changed" not in r]


def resumes(d: Path) -> list[int]:
    return [r["resumed_from"] for r in logged_steps(d / "train_log.jsonl") if "resumed_from" in r]


def assert_same_training_artifact(out: Path, ref: Path) -> None:
    """Byte-identical weights and files; same manifest but for timings; same log but markers."""
    skip = {"manifest.json", "train_log.jsonl"}
    a, b = hashes(out), hashes(ref)
    assert a["model.safetensors"] == b["model.safetensors"], "resumed weights differ"
    assert {k: v for k, v in a.items() if k not in skip} == {k: v for k, v in b.items()
                                                             if k not in skip}
    assert training_records(out) == training_records(ref)
    ma, mb = (json.loads((d / "manifest.json").read_text()) for d in (out, ref))
    for m in (ma, mb):
        m["files"].pop("train_log.jsonl")
        m["extra"].pop("train_seconds")
        m.pop("created")
    assert ma == mb


# ----------------------------------------------------------------------------- references
@pytest.fixture(scope="module")
def task(tiny_task):
    from edge_albert.data import read_dataset

    train = read_dataset(tiny_task["train"])
    return train, read_dataset(tiny_task["dev"], label_names=train.label_names())


@pytest.fixture(scope="module")
def ft_ref(tmp_path_factory, tiny_model, task) -> Path:
    """The uninterrupted fine-tune (also the teacher and the model to convert below)."""
    from edge_albert.finetune import run_finetune

    out = tmp_path_factory.mktemp("ref") / "ft"
    assert run_finetune(FinetuneConfig(**FT), str(tiny_model), *task, out, progress=False)
    return out


CONVERT = {"formats": ("onnx", "tflite"), "precisions": ("fp32", "int8-dynamic"),
           "buckets": (16, 32)}
CONVERT_ARGS = ["--formats", "onnx,tflite", "--precisions", "fp32,int8-dynamic",
                "--buckets", "16,32", "--quiet"]


@pytest.fixture(scope="module")
def conv_ref(tmp_path_factory, ft_ref, tiny_task) -> Path:
    from edge_albert.converters.convert import ConvertConfig, run_convert

    out = tmp_path_factory.mktemp("ref") / "conv"
    run_convert(ConvertConfig(**CONVERT), ft_ref, out, calibration=tiny_task["dev"],
                progress=False)
    return out


# ----------------------------------------------------------------------------- finetune
def test_finetune_killed_twice_resumes_to_identical_weights(tmp_path, tiny_model, tiny_task,
                                                            ft_ref):
    out, partial = tmp_path / "ft", tmp_path / "ft.partial"
    args = ["finetune", "--model", str(tiny_model), "--train", str(tiny_task["train"]),
            "--dev", str(tiny_task["dev"]), "--out", str(out), *_sets("finetune", FT), "--resume"]
    # 1. killed mid-training, between the checkpoints of steps 30 and 40 or so
    r = cli(tmp_path, *args)
    r.kill_when(past_step(partial / "train_log.jsonl", 36), "training reached step 36")
    assert_whole_or_absent(out, None)
    assert (partial / "checkpoint.pt").is_file()
    # 2. resumed, trained to the end, killed with the finished artifact complete but not yet
    #    renamed: a temporary directory with a valid-looking manifest is left beside --out
    r = cli(tmp_path, *args, hook=("ft", "before"))
    r.died_by_hook()
    assert_whole_or_absent(out, None)
    assert len(leftovers(out)) == 1 and (tmp_path / leftovers(out)[0] / "manifest.json").is_file()
    # 3. resumed again from the last checkpoint (step 110), runs to the end
    cli(tmp_path, *args).finish()
    assert not leftovers(out) and not partial.exists()
    assert resumes(out)[0] >= 30 and resumes(out)[1] == 110
    assert_same_training_artifact(out, ft_ref)
    assert_verified(tmp_path, out)


# ----------------------------------------------------------------------------- distill
def test_distill_killed_twice_resumes_to_identical_weights(tmp_path, task, tiny_task, ft_ref):
    from edge_albert.distill import run_distill

    ref = tmp_path / "ref"
    assert run_distill(DistillConfig(**DS), ft_ref, *task, ref, progress=False)
    out, partial = tmp_path / "st", tmp_path / "st.partial"
    args = ["distill", "--teacher", str(ft_ref), "--train", str(tiny_task["train"]),
            "--dev", str(tiny_task["dev"]), "--out", str(out), *_sets("distill", DS), "--resume"]
    log = partial / "train_log.jsonl"
    # 1. killed after the first checkpoint (step 10); the teacher's logits are cached by then
    r = cli(tmp_path, *args)
    r.kill_when(past_step(log, 16), "distillation reached step 16")
    assert_whole_or_absent(out, None)
    [npy] = partial.glob("teacher_logits-*.npy")
    cached = npy.stat().st_mtime_ns
    # 2. resumed from step 10, killed again past the checkpoint of step 50
    r = cli(tmp_path, *args)
    r.kill_when(past_step(log, 56, resumed=True), "the resumed run reached step 56")
    assert_whole_or_absent(out, None)
    assert resumes(partial)[0] >= 10
    assert npy.stat().st_mtime_ns == cached  # reused, not redone
    # 3. resumed from step 50 (the cached teacher logits reused), runs to the end
    cli(tmp_path, *args).finish()
    assert not leftovers(out) and not partial.exists()
    assert resumes(out)[-1] >= 50
    assert_same_training_artifact(out, ref)
    assert_verified(tmp_path, out)


# ----------------------------------------------------------------------------- convert
def _comparable(manifest: Path) -> dict:
    m = json.loads(manifest.read_text())
    m.pop("created")
    m["extra"].pop("seconds")  # per-step timings
    return m


def test_convert_killed_then_rerun_matches_file_for_file(tmp_path, ft_ref, tiny_task, conv_ref):
    out = tmp_path / "conv"
    args = ["convert", "--model", str(ft_ref), "--out", str(out), "--calibration",
            str(tiny_task["dev"]), *CONVERT_ARGS]

    def tflite_written() -> bool:
        return any((tmp_path / n / "model.fp32.tflite").is_file() for n in leftovers(out))

    # 1. killed halfway: the ONNX files are in the temporary directory, TFLite has begun
    system_tmp = tmp_path / "system-tmp"  # the run's TMPDIR: scratch must not land there
    system_tmp.mkdir()
    r = cli(tmp_path, *args, env={"TMPDIR": str(system_tmp)})
    r.kill_when(tflite_written, "the fp32 .tflite was written")
    assert_whole_or_absent(out, None)
    assert leftovers(out), "the kill left no temporary directory: nothing was tested"
    # ONNX scratch and TensorFlow's autograph files live inside the run's temporary directory,
    # which the next run removes: nothing of the run is left in the system's temp dir (torch's
    # per-user inductor cache and a 51-byte session-id file, made at import, are caches)
    left = sorted(p.name for p in system_tmp.iterdir()
                  if not p.name.startswith("torchinductor_") and p.name != ".ses")
    assert not left, left
    # 2. re-run without --force: not refused by the leftovers, which are cleaned up
    cli(tmp_path, *args).finish()
    assert not leftovers(out)
    # ONNX export, quantization and TFLite conversion are deterministic here: every file's
    # bytes, and the manifest (hashes, parity numbers, census) but for the timings
    assert hashes(out).keys() == hashes(conv_ref).keys()
    assert {k: v for k, v in hashes(out).items() if k != "manifest.json"} == {
        k: v for k, v in hashes(conv_ref).items() if k != "manifest.json"}
    assert _comparable(out / "manifest.json") == _comparable(conv_ref / "manifest.json")
    done = hashes(out)
    # 3. a --force re-run killed as soon as it began writing: the previous artifact stays
    r = cli(tmp_path, *args, "--force")
    r.kill_when(lambda: bool(leftovers(out)), "the --force run began writing")
    assert_whole_or_absent(out, done)
    assert_verified(tmp_path, out)


# ----------------------------------------------------------------------------- validate
VALIDATE_ARGS = ["--threads", "1", "--latency-runs", "3", "--warmup", "1", "--batch-sizes", "1",
                 "--max-drop", "100"]


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(x) for x in text.split()]


def _numbers(report: Path) -> list[dict]:
    """What must not change between runs: per file accuracy, F1, agreement, logit error, KL,
    size; the reference's accuracy; the eval set (latency, load time and RSS are measured)."""
    data = json.loads(report.read_text())
    keep = ("name", "format", "precision", "size_bytes", "int8_ops", "seq_len", "buckets",
            "accuracy", "f1", "agreement", "max_abs_logit_diff", "mean_abs_logit_diff", "mean_kl",
            "accuracy_drop_pts")
    rows = [{k: a[k] for k in keep} for a in data["artifacts"]]
    ref = {k: data["reference"][k] for k in ("name", "kind", "precision", "accuracy", "f1")}
    return [ref, {k: v for k, v in data["eval"].items() if k != "path"}, *rows]


def test_validate_killed_then_rerun_reports_the_same_numbers(tmp_path, conv_ref, ft_ref,
                                                             tiny_task):
    from edge_albert.validate import ValidateConfig, run_validate

    ref = tmp_path / "ref"
    run_validate(ValidateConfig(threads=1, latency_runs=3, warmup=1, batch_sizes=(1,),
                                max_drop=100.0),
                 [conv_ref], tiny_task["dev"], ft_ref, ref, progress=False)
    out = tmp_path / "val"
    args = ["validate", "--artifacts", str(conv_ref), "--data", str(tiny_task["dev"]),
            "--reference", str(ft_ref), *VALIDATE_ARGS, "--out", str(out)]
    # 1. killed while a cold-start worker (a child process) measures a file
    r = cli(tmp_path, *args)
    r.kill_when(lambda: bool(_children(r.proc.pid)), "a cold-start worker started")
    assert_whole_or_absent(out, None)
    # 2. re-run: not refused, same numbers as the uninterrupted run
    cli(tmp_path, *args).finish()
    assert not leftovers(out)
    assert _numbers(out / "report.json") == _numbers(ref / "report.json")
    done = hashes(out)
    # 3. a --force re-run killed between moving the old report aside and moving the new one in
    r = cli(tmp_path, *args, "--force", hook=("val", "between"))
    r.died_by_hook()
    assert not out.exists() and len(leftovers(out)) == 2  # the old one aside, the new one
    # 4. the next run puts the previous report back before anything else, so without --force
    #    it is refused as usual, and the report is the one of run 2
    r = cli(tmp_path, *args)
    assert r.proc.wait(TIMEOUT) != 0 and "already exists" in r.output()
    assert_whole_or_absent(out, done)
    assert not leftovers(out)
    assert_verified(tmp_path, out)


# ----------------------------------------------------------------------------- pipeline
BUILT = ("tokenizer", "teacher", "student", "convert", "validate")


def test_pipeline_killed_three_times_ends_like_an_uninterrupted_run(tmp_path, tiny_recipe):
    from edge_albert.pipeline import STATE, run_pipeline

    cfg = tiny_recipe(tmp_path, finetune_ckpt=10, distill_steps=60, ckpt=10, formats=["onnx"],
                      max_drop=100.0)
    ref = tmp_path / "ref"
    run_pipeline(cfg, ref, echo=lambda _m: None)
    run = tmp_path / "run"
    args = ["pipeline", str(cfg), "--run-dir", str(run)]
    log = run / "student.partial" / "train_log.jsonl"
    # 1. another teacher setting; killed during distillation, after its first checkpoint
    r = cli(tmp_path, *args, "--set", "finetune.learning_rate=1e-3")
    r.kill_when(past_step(log, 12), "distillation reached step 12")
    assert not (run / "student").exists() and (run / "student.partial" / "checkpoint.pt").is_file()
    # 2. the recipe's setting (--force): the teacher is retrained, so the student's checkpoints,
    #    distilled from the old teacher, must be discarded, not resumed; killed past step 24
    r = cli(tmp_path, *args, "--force")
    r.kill_when(past_step(log, 24), "distillation reached step 24 again")
    assert not resumes(run / "student.partial"), "resumed a student of the old teacher"
    assert "[teacher] running" in r.output() and "discarding checkpoints" in r.output()
    assert not (run / "student").exists()
    # 3. resumes the student from its checkpoint, converts, killed as validation starts
    r = cli(tmp_path, *args)
    r.kill_when(lambda: "[validate] running" in r.output(), "validation started")
    for stage in ("tokenizer", "teacher", "student", "convert"):
        verify(run / stage)
    assert not (run / "validate").exists()
    # 4. only validation runs again
    text = cli(tmp_path, *args).finish()
    for stage in ("tokenizer", "teacher", "student", "convert"):
        assert f"[{stage}] up to date" in text
    assert "[validate] running" in text
    assert len(resumes(run / "student")) == 1 and resumes(run / "student")[0] >= 20

    # the same artifacts as the uninterrupted run, every stage consumed complete inputs only
    state = json.loads((run / STATE).read_text())
    for stage in BUILT:
        assert_verified(tmp_path, run / stage)
        m = json.loads((run / stage / "manifest.json").read_text())
        assert state[stage]["manifest_sha256"] == hashlib.sha256(
            (run / stage / "manifest.json").read_bytes()).hexdigest()
        for inp in m["inputs"]:
            d = Path(inp["path"])
            assert d.parent == run.resolve() and inp["manifest_sha256"] == hashlib.sha256(
                (d / "manifest.json").read_bytes()).hexdigest(), (stage, d.name)
        if stage == "validate":
            assert _numbers(run / stage / "report.json") == _numbers(ref / stage / "report.json")
            continue
        a, b = hashes(run / stage), hashes(ref / stage)
        skip = {"manifest.json", "train_log.jsonl"}  # times and resume markers differ
        assert a.keys() == b.keys()
        assert {k: v for k, v in a.items() if k not in skip} == {
            k: v for k, v in b.items() if k not in skip}, stage
    assert training_records(run / "student") == training_records(ref / "student")
    assert not any(leftovers(run / s) for s in BUILT)
    assert not any((run / f"{s}.partial").exists() for s in BUILT)
