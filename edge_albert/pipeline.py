"""``edge-albert pipeline``: every stage, each into its own artifact directory under one run dir.

    tokenizer (only for a teacher trained from scratch) -> teacher (fine-tune, when asked)
    -> student (distil) -> trim_vocab (when asked) -> convert (ONNX, .ort, TFLite;
    fp32/fp16/int8) -> validate (against the distilled student) -> bundle

The stages are one table (:data:`TABLE`): each names its directory, recipe table, data files,
upstream stages and runner, all with the stage contract ``run_<stage>(config, *inputs,
out_dir, *, force, progress) -> Manifest``.

A stage whose config and inputs are unchanged is skipped as up to date: the run directory keeps a
ledger (``pipeline_state.json``) of each finished stage's fingerprint (its config plus its
inputs' fingerprints) and manifest hash. Long stages checkpoint into ``<stage>.partial/`` and a
re-run continues from there; a stage directory without a complete manifest is never trusted. A
lock file holding the owner's pid keeps two runs out of one directory.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .artifacts import MANIFEST, atomic_write_text, pid_alive, sha256_file, verify
from .bundle import BundleConfig, Target
from .config import (
    DistillConfig,
    FinetuneConfig,
    TokenizerConfig,
    read_toml,
    to_dict,
)
from .errors import ArtifactError, ConfigError
from .recipe import TaskConfig, TeacherConfig, load_pipeline_config, schema
from .trim_vocab import TrimVocabConfig

STAGES = ("tokenizer", "teacher", "student", "trim_vocab", "convert", "validate", "bundle")
STATE = "pipeline_state.json"
CONFIG_RECORD = "pipeline_config.json"
LOCK = ".lock"


def _flatten(cfg: dict[str, Any]) -> dict[str, Any]:
    return {f"{s}.{k}": v for s, c in cfg.items() for k, v in to_dict(c).items()}


def _fingerprint(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def _resume_key(cfg: Any) -> dict[str, Any]:
    """A training config less the settings a resumed run may change."""
    from .training import RESUMABLE_KEYS

    return {k: v for k, v in to_dict(cfg).items() if k not in RESUMABLE_KEYS}


class RunLock:
    """``<run>/.lock`` holding the owner's pid; a lock whose process is gone is taken over."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / LOCK

    def __enter__(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                try:
                    pid = int(self.path.read_text().strip() or 0)
                except (OSError, ValueError):
                    pid = 0
                if pid and pid_alive(pid):
                    raise ArtifactError(f"another pipeline run (pid {pid}) is using this run"
                                        " directory", where=self.path.parent,
                                        hint="wait for it to finish, or use another run directory") from None
                self.path.unlink(missing_ok=True)  # stale: its owner died
                continue
            with os.fdopen(fd, "w") as fh:
                fh.write(str(os.getpid()))
            return self

    def __exit__(self, *exc: object) -> None:
        self.path.unlink(missing_ok=True)


@dataclass
class StageResult:
    name: str
    status: str  # "ran", "up to date", "skipped"
    seconds: float
    path: Path | None


class Pipeline:
    """Runs the stages of one recipe into ``run_dir``."""

    def __init__(self, cfg: dict[str, Any], run_dir: str | Path, *,
                 echo: Callable[[str], None] = print) -> None:
        self.cfg = cfg
        self.run = Path(run_dir)
        self.echo = echo
        self.results: list[StageResult] = []

    # -- bookkeeping -------------------------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        p = self.run / STATE
        return json.loads(p.read_text()) if p.is_file() else {}

    def _record(self, stage: str, fingerprint: str) -> None:
        state = self._state()
        state[stage] = {"fingerprint": fingerprint,
                        "manifest_sha256": sha256_file(self.run / stage / MANIFEST)}
        atomic_write_text(self.run / STATE, json.dumps(state, indent=2) + "\n")

    def _up_to_date(self, stage: str, fingerprint: str) -> bool:
        entry = self._state().get(stage)
        d = self.run / stage
        if not entry or entry.get("fingerprint") != fingerprint or not (d / MANIFEST).is_file():
            return False
        if sha256_file(d / MANIFEST) != entry.get("manifest_sha256"):
            return False
        try:
            verify(d)
        except ArtifactError:
            return False
        return True

    def check_config(self, force: bool) -> None:
        """Refuse a run directory made with another config (naming the keys) unless ``force``."""
        record = self.run / CONFIG_RECORD
        new = _flatten(self.cfg)
        if record.is_file() and not force:
            old = json.loads(record.read_text())
            # a key a newer version added, at its default, is not a change of the user's
            defaults = json.loads(json.dumps(
                _flatten({s: cls() for s, cls in schema().items()}), default=str))
            diff = sorted(k for k in set(old) | set(new) if old.get(k, defaults.get(k)) != new.get(k))
            if diff:
                raise ConfigError(
                    f"this run directory was made with a different config (differing keys:"
                    f" {', '.join(diff[:8])}{' ...' if len(diff) > 8 else ''})", where=self.run,
                    hint="pass --force to re-run the stages the change affects, or use a new run"
                         " directory")
        self.run.mkdir(parents=True, exist_ok=True)
        atomic_write_text(record, json.dumps(new, indent=2, default=str) + "\n")

    def _keep_checkpoints_if(self, stage: str, *parts: Any) -> None:
        """Before a training stage: keep a killed run's checkpoints (``<stage>.partial/``) only
        when they were made from the same inputs and settings (``parts``), save those a resume
        may change (:data:`~edge_albert.training.RESUMABLE_KEYS`); else start the stage over.

        The trainer itself refuses a checkpoint made with other settings (which would stop the
        pipeline for good) and cannot tell when the same path now holds another teacher.
        """
        import shutil

        from .finetune import partial_dir

        partial = partial_dir(self.run / stage)
        mark = partial / "pipeline_inputs"
        key = _fingerprint(*parts)
        if partial.exists() and not (mark.is_file() and mark.read_text().strip() == key):
            self.echo(f"[{stage}] discarding checkpoints made with other inputs or settings")
            shutil.rmtree(partial)
        partial.mkdir(parents=True, exist_ok=True)
        atomic_write_text(mark, key + "\n")

    # -- the stages ----------------------------------------------------------------------------
    def execute(self, *, start: str | None = None, force: bool = False) -> list[StageResult]:
        if start is not None and start not in STAGES:
            raise ConfigError(f"unknown stage {start!r} (stages: {', '.join(STAGES)})", key="--from")
        with RunLock(self.run):
            self.check_config(force)
            data = self._data()
            forced = False
            prints: dict[str, str] = {}
            for stage in STAGES:
                forced = forced or stage == start
                spec = self._stage(stage, data, prints)
                if spec is None:
                    self.results.append(StageResult(stage, "skipped", 0.0, None))
                    continue
                fingerprint, fn = spec
                prints[stage] = fingerprint
                fresh = self._up_to_date(stage, fingerprint)
                if start is not None and not forced and not fresh:
                    raise ConfigError(
                        f"--from {start}: the earlier stage {stage!r} has not been built with this"
                        " config", where=self.run, hint=f"run without --from, or --from {stage}")
                if not forced and fresh:
                    self.echo(f"[{stage}] up to date")
                    self.results.append(StageResult(stage, "up to date", 0.0, self.run / stage))
                    continue
                self.echo(f"[{stage}] running")
                t0 = time.perf_counter()
                fn(self.run / stage)
                self._record(stage, fingerprint)
                self.results.append(StageResult(stage, "ran", time.perf_counter() - t0,
                                                self.run / stage))
        return self.results

    def _data(self) -> dict[str, Path]:
        task: TaskConfig = self.cfg["task"]
        if task.builtin:
            from .demo_task import write_demo_task

            d = self.run / "data" / task.builtin  # the report names the task after this folder
            paths = write_demo_task(d, seed=task.seed, n_train=task.builtin_train_rows,
                                    n_dev=task.builtin_dev_rows)
            return {"train": paths["train"], "dev": paths["dev"], "eval": paths["dev"]}
        paths = {"train": Path(task.train), "dev": Path(task.dev),
                 "eval": Path(task.eval or task.dev)}
        if task.unlabelled:  # only when set: recorded fingerprints stay valid without it
            paths["unlabelled"] = Path(task.unlabelled)
        return paths

    def _stage(self, stage: str, data: dict[str, Path], prints: dict[str, str]):
        """(fingerprint, runner) of a stage, or None when the recipe skips it (see :data:`TABLE`)."""
        spec = TABLE[stage]
        if not spec.enabled(self.cfg):
            return None
        config = spec.config(self.cfg)
        upstream = [prints.get(s) or (str(self.teacher_dir()) if s == "teacher" else None)
                    for s in spec.after(self.cfg)]
        data_print = {k: sha256_file(data[k]) for k in spec.data if k in data}
        fingerprint = _fingerprint(to_dict(config), data_print, *upstream)

        def run(out: Path) -> None:
            if spec.checkpoints:  # a killed run's checkpoints, if made from the same inputs
                self._keep_checkpoints_if(stage, _resume_key(config), data_print, *upstream)
            spec.run(self, config, data, out)
        return fingerprint, run

    # -- what each stage runs (the TABLE below names them) -----------------------------------
    def teacher_dir(self) -> Path:
        teacher: TeacherConfig = self.cfg["teacher"]
        trained = teacher.finetune or teacher.model == "scratch"
        return self.run / "teacher" if trained else Path(teacher.model)

    def run_tokenizer(self, config: TokenizerConfig, data: dict[str, Path], out: Path) -> None:
        from .tokenizer_train import run_tokenizer

        run_tokenizer(config, [data["train"]], out, force=True)

    def run_teacher(self, config: FinetuneConfig, data: dict[str, Path], out: Path) -> None:
        from .data import read_dataset
        from .finetune import run_finetune

        teacher: TeacherConfig = self.cfg["teacher"]
        train = read_dataset(data["train"])
        base: str | Path = teacher.model
        if teacher.model == "scratch":
            from .modeling import init_model_dir

            base = self.run / "teacher-init"
            init_model_dir(teacher.scratch_shape, self.run / "tokenizer", base,
                           label_names=train.label_names(), seed=config.seed, force=True)
        run_finetune(config, base, train, read_dataset(data["dev"]), out, resume=True, force=True)

    def run_student(self, config: DistillConfig, data: dict[str, Path], out: Path) -> None:
        from .data import read_dataset, read_texts
        from .distill import run_distill

        extra = read_texts(data["unlabelled"]) if "unlabelled" in data else None
        if extra is not None and extra.ignored_labels:
            self.echo(f"[student] {extra.path}: column {extra.ignored_labels!r} ignored (the"
                      " teacher labels this text)")
        run_distill(config, self.teacher_dir(), read_dataset(data["train"]),
                    read_dataset(data["dev"]), out, unlabelled=extra, resume=True, force=True)

    def run_trim_vocab(self, config: TrimVocabConfig, data: dict[str, Path], out: Path) -> None:
        from .data import read_dataset
        from .trim_vocab import run_trim_vocab

        corpus = [data[k] for k in ("train", "unlabelled") if k in data]
        run_trim_vocab(config, self.run / "student", corpus, out, dev=read_dataset(data["dev"]),
                       force=True)

    def run_convert(self, config: Any, data: dict[str, Path], out: Path) -> None:
        from .converters.convert import run_convert

        model = self.run / ("trim_vocab" if self.cfg["trim_vocab"].enabled else "student")
        run_convert(config, model, out, calibration=data["train"], force=True)

    def run_validate(self, config: Any, data: dict[str, Path], out: Path) -> None:
        from .validate import run_validate

        # against the untrimmed student: the report shows what trimming and conversion cost
        run_validate(config, [self.run / "convert"], data["eval"], self.run / "student", out,
                     force=True)

    def run_bundle(self, config: BundleConfig, data: dict[str, Path], out: Path) -> None:
        from .bundle import run_bundle

        run_bundle(config, self.run / "convert", data["eval"], out, force=True,
                   progress=self.echo)


@dataclass(frozen=True)
class Stage:
    """One row of the pipeline: its directory name, recipe table, inputs and runner.

    The fingerprint of a stage is its config, the hashes of its ``data`` files and the
    fingerprints of the stages ``after`` names; a stage whose fingerprint is unchanged is up to
    date. ``checkpoints``: a training stage whose ``<name>.partial/`` a re-run resumes.
    """

    name: str
    section: str
    data: tuple[str, ...]
    after: Callable[[dict[str, Any]], tuple[str, ...]]
    enabled: Callable[[dict[str, Any]], bool]
    config: Callable[[dict[str, Any]], Any]
    run: Callable[[Pipeline, Any, dict[str, Path], Path], None]
    checkpoints: bool = False


def _scratch(c: dict[str, Any]) -> bool:
    return bool(c["teacher"].model == "scratch")


def _section(name: str) -> Callable[[dict[str, Any]], Any]:
    return lambda c: c[name]


def _evaluating(name: str) -> Callable[[dict[str, Any]], Any]:
    """A stage that evaluates on labels: its table, with ``task.label_map`` unless it sets one."""
    def config(c: dict[str, Any]) -> Any:
        own, task = c[name], c["task"]
        if task.label_map and not own.label_map:
            return dataclasses.replace(own, label_map=task.label_map)
        return own
    return config


TABLE: dict[str, Stage] = {s.name: s for s in (
    Stage("tokenizer", "tokenizer", ("train",), lambda _c: (), _scratch,
          lambda c: dataclasses.replace(c["tokenizer"], vocab_size=c["teacher"].scratch_vocab_size),
          Pipeline.run_tokenizer),
    Stage("teacher", "finetune", ("train", "dev"), lambda _c: ("tokenizer",),
          lambda c: bool(c["teacher"].finetune or _scratch(c)),
          lambda c: c["finetune"], Pipeline.run_teacher, checkpoints=True),
    Stage("student", "distill", ("train", "dev", "unlabelled"), lambda _c: ("teacher",),
          lambda _c: True, _section("distill"), Pipeline.run_student, checkpoints=True),
    Stage("trim_vocab", "trim_vocab", ("train", "dev", "unlabelled"), lambda _c: ("student",),
          lambda c: bool(c["trim_vocab"].enabled), _section("trim_vocab"), Pipeline.run_trim_vocab),
    Stage("convert", "convert", ("train",),
          lambda c: ("trim_vocab" if c["trim_vocab"].enabled else "student",),
          lambda _c: True, _section("convert"), Pipeline.run_convert),
    Stage("validate", "validate", ("eval",), lambda _c: ("convert",), lambda _c: True,
          _evaluating("validate"), Pipeline.run_validate),
    Stage("bundle", "bundle", ("eval",), lambda _c: ("convert",),
          lambda c: c["bundle"].target is not Target.NONE, _evaluating("bundle"),
          Pipeline.run_bundle),
)}


def run_pipeline(config_path: str | Path | None, run_dir: str | Path, *,
                 overrides: tuple[str, ...] | list[str] = (), start: str | None = None,
                 force: bool = False, echo: Callable[[str], None] = print) -> Pipeline:
    """Load a recipe and run it into ``run_dir``; returns the finished :class:`Pipeline`."""
    cfg = load_pipeline_config(config_path, overrides)
    p = Pipeline(cfg, run_dir, echo=echo)
    p.execute(start=start, force=force)
    return p


def summary_rows(run_dir: str | Path) -> list[dict[str, Any]]:
    """One row per validated file: artifact, accuracy, agreement, p50 latency, size."""
    report = Path(run_dir) / "validate" / "report.json"
    if not report.is_file():
        return []
    data = json.loads(report.read_text())
    rows = []
    for a in data.get("artifacts", []):
        rows.append({"artifact": a.get("name"), "accuracy": a.get("accuracy"),
                     "agreement": a.get("agreement"),
                     "p50_ms": (a.get("latency_ms") or {}).get("p50"),
                     "size_mb": (a.get("size_bytes") or 0) / 1e6})
    return rows


def format_summary(run_dir: str | Path) -> str:
    """The one-screen table the pipeline ends with."""
    rows = summary_rows(run_dir)
    if not rows:
        return ""
    lines = [f"{'artifact':<28} {'accuracy':>9} {'agreement':>10} {'p50 ms':>8} {'size MB':>8}"]
    for r in rows:
        def pct(x: Any) -> str:
            return f"{100 * x:8.2f}%" if isinstance(x, (int, float)) else f"{'-':>9}"
        p50 = f"{r['p50_ms']:8.2f}" if isinstance(r["p50_ms"], (int, float)) else f"{'-':>8}"
        lines.append(f"{r['artifact']:<28} {pct(r['accuracy'])} {pct(r['agreement']):>10} {p50}"
                     f" {r['size_mb']:8.2f}")
    return "\n".join(lines)


__all__ = ["STAGES", "Pipeline", "format_summary", "load_pipeline_config", "read_toml", "run_pipeline", "summary_rows"]
