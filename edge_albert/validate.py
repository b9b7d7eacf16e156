"""The validate stage: every model file of every artifact on the whole eval set, against the float
model.

    manifest = run_validate(ValidateConfig(threads=1), ["conv/"], "dev.tsv", None, "report/")

Each file runs through the device runtime's :class:`~edge_albert.runtime.Classifier` (the real
tokenizer, the real interpreter) on every eval row and is compared with the float reference: a
Hugging Face model directory run in torch, or a float model file run through the runtime. Load
time, cold start (load + first inference) and peak RSS are measured per file in a fresh
subprocess that imports only the runtime (``python -m edge_albert.validate``), so one file's memory
does not pollute the next and an interpreter that crashes on a corrupt file cannot take this
process down. Latency is timed on ``backend.run`` with real encoded batches at every bucket (a
text-in ``.e2e.onnx`` file gets the texts and tokenizes inside).

One module at ~420 lines, not split: the per-file measurements (accuracy, latency, cold start)
and the stage that runs them share one config and one report entry; the reference model and the
report rendering already live in :mod:`.reference` and :mod:`.report`.

The report (``report.json``, ``report.md``, ``report.html``; see :mod:`edge_albert.report`) is
written atomically first; only then does the accuracy gate (``max_drop`` points below the
reference) raise :class:`~edge_albert.errors.AccuracyGateError`.

Top-level imports stay light (stdlib, numpy, errors, artifacts): the worker subprocess imports
this module and must load nothing but the runtime.
"""
from __future__ import annotations

import dataclasses
import json
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .artifacts import MANIFEST, Manifest, check_new_output, sha256_file, verify
from .errors import ArtifactError, ConfigError, ModelError
from .reference import (
    Reference,
    _artifact_vocab_rows,
    _native_stderr_muted,
    check_vocabulary,
    classifier_logits,
    reference_logits,
    resolve_reference,
    token_lengths,
)

HEAVY_MODULES = ("torch", "tensorflow", "transformers")


@dataclasses.dataclass(frozen=True)
class ValidateConfig:
    """``edge-albert validate``: how files are run and timed, and the accuracy budget.

    ``max_drop`` is in percentage points of accuracy below the reference. ``latency_runs`` timed
    calls (after ``warmup``) are made per (batch size, bucket) cell and for the per-request
    distribution. ``eval_batch_size`` only sets how the accuracy pass is batched.
    """

    threads: int = 1
    max_drop: float = 1.0
    batch_sizes: tuple[int, ...] = (1, 8)
    latency_runs: int = 50
    warmup: int = 5
    eval_batch_size: int = 32
    worker_timeout_s: float = 600.0
    label_map: str = ""  # "0=negative,1=positive": the eval file's labels -> the model's

    def __post_init__(self) -> None:
        object.__setattr__(self, "batch_sizes", tuple(int(b) for b in self.batch_sizes))
        for key in ("threads", "latency_runs", "eval_batch_size"):
            if getattr(self, key) < 1:
                raise ConfigError(f"must be >= 1, got {getattr(self, key)}", key=f"validate.{key}")
        if self.warmup < 0:
            raise ConfigError(f"must be >= 0, got {self.warmup}", key="validate.warmup")
        if not self.max_drop >= 0:  # also refuses NaN
            raise ConfigError(f"must be >= 0 accuracy points, got {self.max_drop}",
                              key="validate.max_drop")
        if not self.batch_sizes or min(self.batch_sizes) < 1:
            raise ConfigError(f"batch sizes must be >= 1, got {list(self.batch_sizes)}",
                              key="validate.batch_sizes")
        if self.worker_timeout_s <= 0:
            raise ConfigError("must be > 0", key="validate.worker_timeout_s")


def compare(logits: np.ndarray, ref: np.ndarray, gold: np.ndarray) -> dict[str, float]:
    """Accuracy, F1, agreement and logit error of one file against the reference."""
    from .runtime.metrics import accuracy, f1, mean_kl

    pred, ref_pred = logits.argmax(-1), ref.argmax(-1)
    diff = np.abs(logits.astype(np.float64) - ref.astype(np.float64))
    return {"accuracy": accuracy(pred, gold), "f1": f1(pred, gold, logits.shape[-1]),
            "agreement": float(np.mean(pred == ref_pred)),
            "max_abs_logit_diff": float(diff.max()), "mean_abs_logit_diff": float(diff.mean()),
            "mean_kl": max(0.0, mean_kl(ref, logits))}


# ----------------------------------------------------------------------------- latency
def _feeds(clf: Any, items: Sequence[Any], width: int) -> dict[str, Any]:
    return clf.feeds(items, width)


def bucket_of(lengths: np.ndarray, buckets: Sequence[int], max_length: int) -> np.ndarray:
    """The bucket each row is padded to when it runs alone."""
    from .runtime.tokenizer import pick_bucket

    return np.array([pick_bucket(int(n), buckets, max_length) for n in lengths])


def latency_by_bucket(clf: Any, items: Sequence[Any], lengths: np.ndarray, *,
                      config: ValidateConfig) -> dict[str, dict[str, dict[str, Any]]]:
    """``{"batch_<n>": {"<bucket>": {p50, p90, p99, mean, runs}}}`` timing ``backend.run`` on real
    rows that fall in each bucket (the longest rows, cut to the bucket, when none does)."""
    from .runtime.timing import measure_latency

    where = bucket_of(lengths, clf.buckets, clf.max_length)
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for bs in config.batch_sizes:
        cells: dict[str, dict[str, Any]] = {}
        for b in clf.buckets:
            rows = [int(i) for i in np.flatnonzero(where == b)]
            if not rows:
                rows = [int(i) for i in np.argsort(-lengths, kind="stable")]
            pick = [items[rows[k % len(rows)]] for k in range(bs)]
            feeds = _feeds(clf, pick, b)
            def run(f: dict[str, np.ndarray] = feeds) -> Any:
                return clf.backend.run(f)

            cells[str(b)] = measure_latency(run, warmup=config.warmup, runs=config.latency_runs)
        out[f"batch_{bs}"] = cells
    return out


def request_latency(clf: Any, items: Sequence[Any], lengths: np.ndarray, *,
                    config: ValidateConfig) -> tuple[dict[str, Any], list[float]]:
    """Batch-1 latency over eval rows sampled across the set, each at its own bucket: what one
    request costs with this eval set's length mix. Returns the percentiles and the samples (ms)."""
    from .runtime.timing import percentiles_ms

    rng = np.random.default_rng(0)
    perm = rng.permutation(len(items))
    n = config.latency_runs
    idx = perm[np.linspace(0, len(perm) - 1, n).astype(int)] if len(perm) else perm
    where = bucket_of(lengths, clf.buckets, clf.max_length)
    feeds = [_feeds(clf, [items[i]], int(where[i])) for i in idx]
    for k in range(config.warmup):
        clf.backend.run(feeds[k % len(feeds)])
    samples = []
    for f in feeds:
        t0 = time.perf_counter()
        clf.backend.run(f)
        samples.append(time.perf_counter() - t0)
    return {**percentiles_ms(samples), "runs": len(samples)}, [round(s * 1000, 4) for s in samples]


# ----------------------------------------------------------------------------- cold start
def _cold_start_job(job: dict[str, Any]) -> dict[str, Any]:
    """Worker side of :func:`cold_start`: load, first inference, one full batch."""
    from .runtime.timing import current_rss_mb, peak_rss_mb

    rss0 = current_rss_mb()
    t0 = time.perf_counter()
    from .runtime import Classifier

    clf = Classifier.load(job["dir"], model=job["model"], threads=job["threads"])
    t1 = time.perf_counter()
    clf.logits(job["first"], batch_size=1)
    t2 = time.perf_counter()
    clf.backend.run(_feeds(clf, job["batch"], clf.max_length))
    return {"load_ms": round((t1 - t0) * 1000, 3),
            "first_inference_ms": round((t2 - t1) * 1000, 3),
            "cold_start_ms": round((t2 - t0) * 1000, 3),
            "rss_before_load_mb": rss0, "peak_rss_mb": peak_rss_mb(),
            "heavy_modules": [m for m in HEAVY_MODULES if m in sys.modules]}


def cold_start(directory: str | Path, model: str, *, threads: int, first: Sequence[Any],
               batch: Sequence[Any], timeout_s: float = 600.0) -> dict[str, Any]:
    """Load ``model`` of ``directory`` in a fresh Python that imports only the runtime, run one
    row, then one batch at the longest bucket. Returns load/first-inference/cold-start times (ms),
    peak RSS (MiB) and which heavy modules the worker had loaded (should be none).

    An interpreter error comes back as the runtime's own error; a crash (segfault) or a hang as a
    :class:`RuntimeBackendError` naming the file.
    """
    from .runtime.worker import run_fresh

    job = json.dumps({"dir": str(directory), "model": model, "threads": threads,
                      "first": [list(x) if isinstance(x, tuple) else x for x in first],
                      "batch": [list(x) if isinstance(x, tuple) else x for x in batch]})
    return run_fresh(["edge_albert.validate", job], where=Path(directory) / model,
                     timeout_s=timeout_s)


# ----------------------------------------------------------------------------- the stage
@dataclasses.dataclass
class _Artifact:
    path: Path
    manifest: Manifest
    files: list[str]


def _open_artifacts(paths: Sequence[str | Path]) -> list[_Artifact]:
    from .runtime import model_files

    if not paths:
        raise ConfigError("names no artifact directory", key="--artifacts")
    out: list[_Artifact] = []
    seen: set[Path] = set()
    for p in paths:
        d = Path(p)
        if d.resolve() in seen:
            continue
        seen.add(d.resolve())
        manifest = verify(d)  # re-hashes every file: names the first that changed
        files = model_files(d)
        if not files:
            raise ArtifactError("the manifest lists no model file (.onnx, .ort, .tflite, .pte)", where=d)
        out.append(_Artifact(d, manifest, files))
    return out


def _unique_names(arts: list[_Artifact]) -> list[tuple[_Artifact, str, str]]:
    if len(arts) == 1:
        return [(arts[0], f, f) for f in arts[0].files]
    dirs = [a.path.name for a in arts]
    prefix = dirs if len(set(dirs)) == len(dirs) else [f"{i}-{n}" for i, n in enumerate(dirs)]
    return [(a, f, f"{pre}/{f}") for a, pre in zip(arts, prefix) for f in a.files]


def _json_safe(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    if isinstance(x, (np.floating, float)):
        return float(x) if np.isfinite(x) else None
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, Path):
        return str(x)
    return x


def _progress(items: list[Any], desc: str, enabled: bool | None) -> Iterator[Any]:
    """Iterate ``items`` of (artifact, file, name) under a tqdm bar named by the current file."""
    try:
        from tqdm.auto import tqdm
    except ImportError:  # tqdm is a toolchain extra
        yield from items
        return
    bar = tqdm(items, desc=desc, unit="file", disable=enabled is False, leave=False)
    try:
        for item in bar:
            bar.set_postfix_str(item[2])
            yield item
    finally:
        bar.close()


def validate_file(clf: Any, items: Sequence[Any], gold: np.ndarray, ref: np.ndarray, *,
                  config: ValidateConfig) -> dict[str, Any]:
    """Accuracy and agreement on every row, then latency, for one loaded classifier."""
    t0 = time.perf_counter()
    logits = classifier_logits(clf, items, batch_size=config.eval_batch_size)
    eval_s = time.perf_counter() - t0
    if logits.shape != ref.shape:
        raise ModelError(f"returns {logits.shape[-1]} logits per row, the reference"
                         f" {ref.shape[-1]}", where=clf.path)
    if getattr(clf.backend, "log_probabilities", False):  # compare like with like
        shifted = ref - ref.max(-1, keepdims=True)
        ref = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    lengths = token_lengths(clf.tokenizer, items, clf.max_length)
    lat, samples = request_latency(clf, items, lengths, config=config)
    return {**compare(logits, ref, gold), "latency_ms": lat, "latency_samples_ms": samples,
            "latency_by_bucket": latency_by_bucket(clf, items, lengths, config=config),
            "eval_seconds": round(eval_s, 3),
            "eval_rows_per_s": round(len(items) / eval_s, 1) if eval_s > 0 else None}


def _file_entry(a: _Artifact, file: str, name: str, clf: Any, res: dict[str, Any],
                start: dict[str, Any], ref_acc: float) -> dict[str, Any]:
    meta = a.manifest.files[file]
    info = clf.info
    return {
        "name": name, "artifact": str(a.path), "path": str(a.path / file),
        "format": info.get("format"), "precision": info.get("precision"),
        "backend": info.get("backend"),
        "interpreter": {k: v for k, v in info.items()
                        if k not in ("format", "precision", "size_bytes", "backend")},
        "size_bytes": info.get("size_bytes"), "int8_ops": meta.get("int8_ops"),
        "seq_len": clf.max_length, "buckets": list(clf.buckets),
        **res, "accuracy_drop_pts": round((ref_acc - res["accuracy"]) * 100, 4),
        **{k: start[k] for k in ("load_ms", "first_inference_ms", "cold_start_ms",
                                 "rss_before_load_mb", "peak_rss_mb", "heavy_modules")}}


def _check_pairing(arts: list[_Artifact], ref: Reference) -> list[str]:
    """Every artifact has the reference's labels and a tokenizer its model can embed; the labels."""
    from .runtime import Classifier, TextTokenizer

    for a in arts:
        labels = Classifier.labels_of(a.path, a.manifest)
        if labels and ref.labels and labels != ref.labels:
            raise ModelError(f"labels {labels} differ from the reference's {ref.labels}",
                             where=a.path, hint="validate artifacts of the reference model only")
        rows, source = _artifact_vocab_rows(a.manifest, ref)
        check_vocabulary(TextTokenizer.load(a.path).vocab_size, rows, tokenizer_dir=a.path,
                         source=source)
    return ref.labels or Classifier.labels_of(arts[0].path, arts[0].manifest)


def run_validate(config: ValidateConfig, artifacts: Sequence[str | Path], data: str | Path,
                 reference: str | Path | None, out_dir: str | Path, *, force: bool = False,
                 progress: bool | None = None) -> Manifest:
    """Validate every model file of ``artifacts`` on ``data``; write the report to ``out_dir``.

    ``reference``: a Hugging Face model directory, a float model file, or None (the torch model
    the first artifact was converted from when on disk, else its fp32 file). Checks everything
    cheap first (manifests and hashes, the eval file, labels, vocabulary, then a cold start of
    every file in its own process) before the long evaluation. Returns the artifact's manifest
    (the report is its ``report.json``, see :func:`read_report`); raises AccuracyGateError after
    writing it when a file lost more than ``max_drop`` accuracy points.
    """
    from .data import label_mapping, read_dataset
    from .report import check_gate, write_report
    from .runtime import Classifier

    out_dir = Path(out_dir)
    check_new_output(out_dir, force)
    arts = _open_artifacts(artifacts)
    ds = read_dataset(data)
    ref = resolve_reference(reference, arts[0].path, arts[0].manifest)
    labels = _check_pairing(arts, ref)
    mapping = label_mapping(ds.labels, labels, config.label_map, where=data)
    gold = np.asarray(ds.label_ids(labels, mapping))
    items = ds.inputs()
    named = _unique_names(arts)
    batch = [items[i % len(items)] for i in range(max(config.batch_sizes))]
    starts = {name: cold_start(a.path, file, threads=config.threads, first=items[:1],
                               batch=batch, timeout_s=config.worker_timeout_s)
              for a, file, name in _progress(named, "cold start", progress)}

    meta0 = arts[0].manifest.files[arts[0].files[0]]
    max_length = int(meta0.get("seq_len") or 128)
    buckets = tuple(int(b) for b in meta0.get("buckets") or (max_length,))
    t0 = time.perf_counter()
    ref_logits = reference_logits(ref, items, max_length=max_length, buckets=buckets,
                                  threads=config.threads, batch_size=config.eval_batch_size)
    ref_seconds = time.perf_counter() - t0
    from .runtime.metrics import accuracy

    ref_acc = accuracy(ref_logits.argmax(-1), gold)
    entries = []
    for a, file, name in _progress(named, "validate", progress):
        with _native_stderr_muted():  # LiteRT logs from C++ at load and first run
            clf = Classifier.load(a.path, model=file, threads=config.threads)
            res = validate_file(clf, items, gold, ref_logits, config=config)
        entries.append(_file_entry(a, file, name, clf, res, starts[name], ref_acc))
        del clf

    report = build_report(config, ds, gold, labels, ref, ref_logits, ref_seconds, entries,
                          max_length=max_length, buckets=buckets, tokenizer_dir=arts[0].path)
    report["task"]["label_map"] = mapping
    record = {**report["config"], "artifacts": [str(a.path) for a in arts], "data": str(data),
              "reference": str(ref.path)}
    inputs = [a.path for a in arts] + ([ref.path] if (ref.path / MANIFEST).is_file() else [])
    manifest = write_report(report, out_dir, config=record, inputs=inputs, force=force)
    check_gate(report, out_dir=out_dir)
    return manifest


def build_report(config: ValidateConfig, ds: Any, gold: np.ndarray, labels: list[str],
                 ref: Reference, ref_logits: np.ndarray, ref_seconds: float,
                 entries: list[dict[str, Any]], *, max_length: int, buckets: Sequence[int],
                 tokenizer_dir: Path) -> dict[str, Any]:
    """The ``edge-albert/report/v1`` dict (JSON-ready: NaN becomes null)."""
    from .config import to_dict
    from .report import SCHEMA, host_info
    from .runtime import TextTokenizer
    from .runtime.metrics import accuracy, f1

    ref_pred = ref_logits.argmax(-1)
    items = ds.inputs()
    mix = bucket_of(token_lengths(TextTokenizer.load(tokenizer_dir), items, max_length),
                    buckets, max_length)
    return _json_safe({
        "schema": SCHEMA,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "task": {"name": Path(ds.path).resolve().parent.name,
                 "kind": "pair" if ds.is_pair else "single", "labels": labels,
                 "f1": f"F1 of label {labels[1]!r}" if len(labels) == 2 else "macro-F1"},
        "eval": {"path": str(ds.path), "rows": len(ds), "sha256": sha256_file(ds.path),
                 "label_counts": {n: int(np.sum(gold == i)) for i, n in enumerate(labels)},
                 "bucket_rows": {str(b): int(np.sum(mix == b)) for b in buckets}},
        "reference": {"name": ref.name, "kind": ref.kind, "path": str(ref.path),
                      "format": ref.format if ref.kind == "file" else "torch",
                      "precision": ref.precision or "fp32",
                      "accuracy": accuracy(ref_pred, gold),
                      "f1": f1(ref_pred, gold, ref_logits.shape[-1]),
                      "seconds": round(ref_seconds, 3)},
        "host": host_info(config.threads),
        "config": to_dict(config),
        "measurement": {
            "latency_ms": "batch 1, eval rows sampled across the set, each padded to its own"
                          " bucket; backend.run only (tokenization excluded; a text-in"
                          " onnx-e2e file tokenizes inside, one row per call, unpadded)",
            "latency_by_bucket": "backend.run on real eval rows of that bucket, per batch size",
            "cold_start_ms": "fresh process: Classifier.load (hash check, interpreter, tokenizer)"
                             " + first single-row inference",
            "peak_rss_mb": "peak RSS (VmHWM) of that fresh process after one batch at the"
                           " longest bucket",
        },
        "gate": {"max_drop_pts": config.max_drop,
                 "failed": [e["name"] for e in entries
                            if e["accuracy_drop_pts"] > config.max_drop]},
        "artifacts": entries,
    })


if __name__ == "__main__":  # the cold-start worker: python -m edge_albert.validate JOB_JSON
    from .runtime.worker import reply

    sys.exit(reply(lambda: _cold_start_job(json.loads(sys.argv[1]))))
