"""The validate stage: every model file of every artifact on the whole eval set, against the float
model.

    report = run_validate(ValidateConfig(threads=1), ["conv/"], "dev.tsv", None, "report/")

Each file runs through the device runtime's :class:`~edge_albert.runtime.Classifier` (the real
tokenizer, the real interpreter) on every eval row and is compared with the float reference: a
Hugging Face model directory run in torch, or a float model file run through the runtime. Load
time, cold start (load + first inference) and peak RSS are measured per file in a fresh
subprocess that imports only the runtime (``python -m edge_albert.validate``), so one file's memory
does not pollute the next and an interpreter that crashes on a corrupt file cannot take this
process down. Latency is timed on ``backend.run`` with real encoded batches at every bucket.

The report (``report.json``, ``report.md``, ``report.html``; see :mod:`edge_albert.report`) is
written atomically first; only then does the accuracy gate (``max_drop`` points below the
reference) raise :class:`~edge_albert.errors.AccuracyGateError`.

Top-level imports stay light (stdlib, numpy, errors, artifacts): the worker subprocess imports
this module and must load nothing but the runtime.
"""
from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .artifacts import MANIFEST, Manifest, check_new_output, load_manifest, sha256_file, verify
from .errors import (
    ArtifactError,
    ConfigError,
    EdgeAlbertError,
    ModelError,
    RuntimeBackendError,
    TokenizerError,
)

HEAVY_MODULES = ("torch", "tensorflow", "transformers")
REFERENCE_FILE_ORDER = ("onnx", "tflite", "ort")


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


# ----------------------------------------------------------------------------- inputs
@dataclasses.dataclass
class Reference:
    """The float model the files are compared with."""

    kind: str  # "torch" (a Hugging Face directory) or "file" (a float model file, via the runtime)
    path: Path
    labels: list[str]
    vocab_size: int | None = None
    format: str | None = None
    precision: str | None = None

    @property
    def name(self) -> str:
        return self.path.name if self.kind == "file" else f"{self.path.name} (torch)"


def _torch_available() -> bool:
    return all(importlib.util.find_spec(m) is not None for m in ("torch", "transformers"))


def _source_model_dir(manifest: Manifest) -> Path | None:
    """The Hugging Face directory an artifact was converted from, when it is still on disk."""
    cands = [manifest.config.get("model")] + [i.get("path") for i in manifest.inputs]
    for c in cands:
        if c and (Path(c) / "config.json").is_file():
            return Path(c)
    return None


def _hf_vocab_size(model_dir: Path) -> int | None:
    try:
        cfg = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    v = cfg.get("vocab_size") if isinstance(cfg, dict) else None
    return int(v) if isinstance(v, int) else None


def _hf_labels(model_dir: Path) -> list[str] | None:
    try:
        cfg = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
        id2label = cfg["id2label"]
        return [str(id2label[str(i)]) for i in range(len(id2label))]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _fp32_file(directory: Path, manifest: Manifest) -> Path | None:
    from .runtime import model_files

    fp32 = [n for n in model_files(directory) if manifest.files[n].get("precision") == "fp32"]
    fp32.sort(key=lambda n: REFERENCE_FILE_ORDER.index(Path(n).suffix[1:])
              if Path(n).suffix[1:] in REFERENCE_FILE_ORDER else 99)
    return directory / fp32[0] if fp32 else None


def resolve_reference(reference: str | Path | None, first: Path, manifest: Manifest) -> Reference:
    """``reference`` as given, or the torch model ``first`` was converted from (when it is on disk
    and torch is installed), or ``first``'s fp32 file."""
    if reference is None:
        src = _source_model_dir(manifest)
        if src is not None and _torch_available():
            reference = src
        else:
            fp32 = _fp32_file(first, manifest)
            if fp32 is None:
                raise ArtifactError("no fp32 model file to compare with, and the model it was"
                                    " converted from is not on disk", where=first,
                                    hint="pass --reference MODEL_DIR_OR_FLOAT_FILE")
            reference = fp32
    path = Path(reference)
    return _hf_reference(path) if path.is_dir() else _file_reference(path)


def _hf_reference(path: Path) -> Reference:
    if not (path / "config.json").is_file():
        raise ModelError("reference is not a Hugging Face model directory (no config.json)",
                         where=path, hint="pass a model directory or a float model file")
    if not _torch_available():
        raise ModelError("a Hugging Face reference needs torch and transformers", where=path,
                         hint="pip install 'edge-albert[toolchain]', or pass a float model file")
    labels = _hf_labels(path)
    if not labels:
        raise ModelError("config.json has no id2label", where=path / "config.json")
    return Reference("torch", path, labels, vocab_size=_hf_vocab_size(path))


def _file_reference(path: Path) -> Reference:
    if not path.is_file():
        raise ModelError("reference does not exist", where=path)
    if path.suffix not in (".onnx", ".ort", ".tflite"):
        raise ModelError(f"reference {path.suffix!r} is neither a model directory nor a .onnx,"
                         " .ort or .tflite file", where=path)
    meta: dict[str, Any] = {}
    labels: list[str] = []
    if (path.parent / MANIFEST).is_file():
        m = load_manifest(path.parent)
        meta = m.files.get(path.name, {})
        labels = [str(x) for x in m.extra.get("labels") or []]
    if not labels and (path.parent / "labels.txt").is_file():
        labels = [x for x in (path.parent / "labels.txt").read_text("utf-8").splitlines() if x]
    if str(meta.get("precision", "")).startswith("int8"):
        raise ModelError(f"reference must be a float file, this one is {meta['precision']}",
                         where=path, hint="pass the fp32 file or the model directory")
    return Reference("file", path, labels, format=meta.get("format", path.suffix[1:]),
                     precision=meta.get("precision", "fp32"))


def check_vocabulary(tokenizer_vocab: int, rows: int | None, *, tokenizer_dir: Path,
                     source: str) -> None:
    """TokenizerError when the tokenizer can emit ids past the model's embedding rows."""
    if rows is not None and tokenizer_vocab > rows:
        raise TokenizerError(
            f"tokenizer can emit token ids up to {tokenizer_vocab - 1}, but the model's embedding"
            f" table has {rows} rows (vocab_size from {source})", where=tokenizer_dir,
            hint="use the tokenizer the model was trained with")


def _artifact_vocab_rows(manifest: Manifest, ref: Reference) -> tuple[int | None, str]:
    """The artifact model's vocabulary size: its manifest, the model it came from, the reference."""
    if manifest.extra.get("vocab_size"):
        return int(manifest.extra["vocab_size"]), f"{manifest.path}/{MANIFEST}"
    src = _source_model_dir(manifest)
    if src is not None and (v := _hf_vocab_size(src)) is not None:
        return v, str(src / "config.json")
    if ref.kind == "torch" and ref.vocab_size is not None:
        return ref.vocab_size, str(ref.path / "config.json")
    return None, ""


@contextlib.contextmanager
def _native_stderr_muted() -> Iterator[None]:
    """LiteRT's C++ code prints an INFO line to file descriptor 2 per interpreter: send fd 2 to
    /dev/null while a model loads (Python errors are exceptions, not affected)."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def open_classifier(path: str | Path, *, model: str | None = None, threads: int) -> Any:
    """``Classifier.load`` with the interpreter's native log lines muted."""
    from .runtime import Classifier

    with _native_stderr_muted():
        return Classifier.load(path, model=model, threads=threads)


# ----------------------------------------------------------------------------- logits
def _split(items: Sequence[Any]) -> tuple[list[str], list[str] | None]:
    if items and isinstance(items[0], (tuple, list)):
        return [str(x[0]) for x in items], [str(x[1]) for x in items]
    return [str(x) for x in items], None


def token_lengths(tokenizer: Any, items: Sequence[Any], max_length: int) -> np.ndarray:
    """Token count of every row (special tokens included, truncated to ``max_length``)."""
    a, b = _split(items)
    return tokenizer.encode(a, b, max_length=max_length, pad_to=max_length).lengths


def classifier_logits(clf: Any, items: Sequence[Any], *, batch_size: int) -> np.ndarray:
    """Logits of every row, batched in length order (less padding), returned in row order."""
    order = np.argsort(token_lengths(clf.tokenizer, items, clf.max_length), kind="stable")
    out = clf.logits([items[i] for i in order], batch_size=batch_size)
    logits = np.empty_like(out)
    logits[order] = out
    return logits


def _torch_logits(ref: Reference, items: Sequence[Any], *, max_length: int,
                  buckets: Sequence[int], threads: int, batch_size: int) -> np.ndarray:
    import inspect

    import torch

    from .modeling import load_classifier
    from .runtime.tokenizer import TextTokenizer

    tok = TextTokenizer.load(ref.path)
    check_vocabulary(tok.vocab_size, ref.vocab_size, tokenizer_dir=ref.path,
                     source=str(ref.path / "config.json"))
    model = load_classifier(ref.path)
    max_pos = getattr(model.config, "max_position_embeddings", max_length)
    max_length = min(max_length, int(max_pos))
    takes_types = "token_type_ids" in inspect.signature(model.forward).parameters
    order = np.argsort(token_lengths(tok, items, max_length), kind="stable")
    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    out = []
    try:
        with torch.no_grad():
            for s in range(0, len(order), batch_size):
                a, b = _split([items[i] for i in order[s:s + batch_size]])
                enc = tok.encode(a, b, max_length=max_length, buckets=buckets)
                feed = {k: torch.from_numpy(v) for k, v in enc.as_dict().items()
                        if takes_types or k != "token_type_ids"}
                out.append(model(**feed).logits.float().numpy())
    finally:
        torch.set_num_threads(saved)
    logits = np.empty((len(order), out[0].shape[-1]), dtype=np.float32)
    logits[order] = np.concatenate(out)
    return logits


def reference_logits(ref: Reference, items: Sequence[Any], *, max_length: int,
                     buckets: Sequence[int], config: ValidateConfig) -> np.ndarray:
    """The reference's logits on every row (row order)."""
    if ref.kind == "torch":
        logits = _torch_logits(ref, items, max_length=max_length, buckets=buckets,
                               threads=config.threads, batch_size=config.eval_batch_size)
    else:
        clf = open_classifier(ref.path, threads=config.threads)
        logits = classifier_logits(clf, items, batch_size=config.eval_batch_size)
    if not np.isfinite(logits).all():
        raise ModelError("the reference returns non-finite logits", where=ref.path)
    return logits


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
def _feeds(clf: Any, items: Sequence[Any], width: int) -> dict[str, np.ndarray]:
    a, b = _split(items)
    return clf.tokenizer.encode(a, b, max_length=clf.max_length, pad_to=width).as_dict()


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
            cells[str(b)] = measure_latency(lambda f=feeds: clf.backend.run(f),
                                            warmup=config.warmup, runs=config.latency_runs)
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
def _peak_rss_mb() -> float:
    """This process's peak RSS (MiB) from ``VmHWM``, which exec resets.

    ``getrusage``'s ``ru_maxrss`` is not used on Linux: it survives fork + exec, so a worker
    started by a parent that holds torch would report the parent's peak.
    """
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except (OSError, ValueError, IndexError):
        pass
    from .runtime.timing import peak_rss_mb

    return peak_rss_mb()


def _worker_main(argv: list[str]) -> int:
    """Subprocess side of :func:`cold_start`: load, first inference, one full batch; print JSON."""
    job = json.loads(argv[0])
    try:
        from .runtime.timing import current_rss_mb

        rss0 = current_rss_mb()
        t0 = time.perf_counter()
        from .runtime import Classifier

        clf = Classifier.load(job["dir"], model=job["model"], threads=job["threads"])
        t1 = time.perf_counter()
        clf.logits(job["first"], batch_size=1)
        t2 = time.perf_counter()
        clf.backend.run(_feeds(clf, job["batch"], clf.max_length))
        result = {"load_ms": round((t1 - t0) * 1000, 3),
                  "first_inference_ms": round((t2 - t1) * 1000, 3),
                  "cold_start_ms": round((t2 - t0) * 1000, 3),
                  "rss_before_load_mb": rss0, "peak_rss_mb": _peak_rss_mb(),
                  "heavy_modules": [m for m in HEAVY_MODULES if m in sys.modules]}
    except EdgeAlbertError as exc:
        result = {"error": {"type": type(exc).__name__, "message": exc.message,
                            "where": exc.where, "hint": exc.hint}}
    sys.stdout.write("\n" + json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


def _raise_worker_error(err: dict[str, Any]) -> None:
    from . import errors

    cls = getattr(errors, str(err.get("type")), None)
    if not (isinstance(cls, type) and issubclass(cls, EdgeAlbertError)):
        cls = RuntimeBackendError
    raise cls(str(err.get("message")), where=err.get("where"), hint=err.get("hint"))


def cold_start(directory: str | Path, model: str, *, threads: int, first: Sequence[Any],
               batch: Sequence[Any], timeout_s: float = 600.0) -> dict[str, Any]:
    """Load ``model`` of ``directory`` in a fresh Python that imports only the runtime, run one
    row, then one batch at the longest bucket. Returns load/first-inference/cold-start times (ms),
    peak RSS (MiB) and which heavy modules the worker had loaded (should be none).

    An interpreter error comes back as the runtime's own error; a crash (segfault) or a hang as a
    :class:`RuntimeBackendError` naming the file.
    """
    file = Path(directory) / model
    job = json.dumps({"dir": str(directory), "model": model, "threads": threads,
                      "first": [list(x) if isinstance(x, tuple) else x for x in first],
                      "batch": [list(x) if isinstance(x, tuple) else x for x in batch]})
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    try:
        proc = subprocess.run([sys.executable, "-m", "edge_albert.validate", job],
                              capture_output=True, text=True, timeout=timeout_s, env=env,
                              check=False)
    except subprocess.TimeoutExpired:
        raise RuntimeBackendError(f"loading and running this file took over {timeout_s:g} s",
                                  where=file) from None
    if proc.returncode < 0:
        try:
            sig = signal.Signals(-proc.returncode).name
        except ValueError:
            sig = f"signal {-proc.returncode}"
        raise RuntimeBackendError(f"the interpreter crashed ({sig}) loading or running this file"
                                  " (corrupt or truncated?)", where=file)
    lines = [x for x in proc.stdout.splitlines() if x.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1][:200]
        raise RuntimeBackendError(f"the measurement worker failed ({tail})", where=file)
    result = json.loads(lines[-1])
    if "error" in result:
        _raise_worker_error(result["error"])
    return result


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
            raise ArtifactError("the manifest lists no model file (.onnx, .ort, .tflite)", where=d)
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


def _progress(items: list[Any], desc: str, enabled: bool) -> Iterator[Any]:
    """Iterate ``items`` of (artifact, file, name) under a tqdm bar named by the current file."""
    try:
        from tqdm.auto import tqdm
    except ImportError:  # tqdm is a toolchain extra
        yield from items
        return
    bar = tqdm(items, desc=desc, unit="file", disable=not enabled, leave=False)
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
                                 "rss_before_load_mb", "peak_rss_mb")}}


def _check_pairing(arts: list[_Artifact], ref: Reference) -> list[str]:
    """Every artifact has the reference's labels and a tokenizer its model can embed; the labels."""
    from .runtime import Classifier, TextTokenizer

    for a in arts:
        labels = Classifier._labels(a.path, a.manifest)
        if labels and ref.labels and labels != ref.labels:
            raise ModelError(f"labels {labels} differ from the reference's {ref.labels}",
                             where=a.path, hint="validate artifacts of the reference model only")
        rows, source = _artifact_vocab_rows(a.manifest, ref)
        check_vocabulary(TextTokenizer.load(a.path).vocab_size, rows, tokenizer_dir=a.path,
                         source=source)
    return ref.labels or Classifier._labels(arts[0].path, arts[0].manifest)


def run_validate(config: ValidateConfig, artifacts: Sequence[str | Path], data: str | Path,
                 reference: str | Path | None, out_dir: str | Path, *, force: bool = False,
                 progress: bool = True) -> dict[str, Any]:
    """Validate every model file of ``artifacts`` on ``data``; write the report to ``out_dir``.

    ``reference``: a Hugging Face model directory, a float model file, or None (the torch model
    the first artifact was converted from when on disk, else its fp32 file). Checks everything
    cheap first (manifests and hashes, the eval file, labels, vocabulary, then a cold start of
    every file in its own process) before the long evaluation. Returns the report dict; raises
    AccuracyGateError after writing it when a file lost more than ``max_drop`` accuracy points.
    """
    from .data import read_dataset
    from .report import check_gate, write_report
    from .runtime import Classifier

    out_dir = Path(out_dir)
    check_new_output(out_dir, force)
    arts = _open_artifacts(artifacts)
    ds = read_dataset(data)
    ref = resolve_reference(reference, arts[0].path, arts[0].manifest)
    labels = _check_pairing(arts, ref)
    gold = np.asarray(ds.label_ids(labels))
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
                                  config=config)
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
    record = {**report["config"], "artifacts": [str(a.path) for a in arts], "data": str(data),
              "reference": str(ref.path)}
    inputs = [a.path for a in arts] + ([ref.path] if (ref.path / MANIFEST).is_file() else [])
    write_report(report, out_dir, config=record, inputs=inputs, force=force)
    check_gate(report, out_dir=out_dir)
    return report


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
                          " bucket; backend.run only (tokenization excluded)",
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
    sys.exit(_worker_main(sys.argv[1:]))
