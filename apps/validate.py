"""On-device validator: every model of a bundle over the bundled eval set, with the runtime only.

    python -m edge_albert.apps.validate BUNDLE_DIR          # from anywhere the package imports
    cd BUNDLE_DIR && python -m edge_albert.apps.validate .  # inside a bundle (its own copy)

It refuses a bundle whose files fail their sha256 (naming the file), then for each model file:
skips it (recorded, with the package to install) when this device has no interpreter for its
format; otherwise loads it in a fresh worker process (so load time, cold start and peak RSS are
that file's own) and measures accuracy, F1, agreement and logit error against the float model's
stored predictions, and latency at batch 1 over every eval row (tokenize + infer). Writes
``device_results.json`` (rows in the report's artifact-row schema, plus device facts and the eval
set's sha256) for ``edge-albert report --merge``.

Exit status: 0 when every runnable file ran; 1 when a file failed to load or run; 7 when nothing
could run (no interpreter for any file).
"""
from __future__ import annotations

import argparse
import datetime as _dt
import importlib.util
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..artifacts import MANIFEST, atomic_write_text, sha256_file, tool_version
from ..data import read_dataset
from ..errors import EdgeAlbertError, RuntimeBackendError
from ..runtime import Classifier, model_files
from ..runtime.backends import FORMATS
from ..runtime.metrics import accuracy, f1, mean_kl
from ..runtime.timing import measure_latency, peak_rss_mb, percentiles_ms
from ..runtime.worker import reply, run_fresh
from .bundle_layout import RESULTS, RESULTS_SCHEMA, Bundle, open_bundle
from .device import device_facts

INSTALL_HINTS = {
    "onnxruntime": "pip install onnxruntime  (the 'onnx' extra of edge-albert)",
    "tflite": "pip install ai-edge-litert  (the 'tflite' extra; tflite-runtime 2.14 cannot load"
              " files from TensorFlow >= 2.16's converter)",
}


def interpreter_for(fmt: str) -> str | None:
    """'name version' of the interpreter this device has for a format, or None."""
    if fmt in ("onnx", "ort"):
        try:
            import onnxruntime
        except ImportError:
            return None
        return f"onnxruntime {onnxruntime.__version__}"
    try:
        from importlib import metadata

        from ai_edge_litert import interpreter  # type: ignore[import-not-found]  # noqa: F401

        try:
            return f"ai-edge-litert {metadata.version('ai-edge-litert')}"
        except metadata.PackageNotFoundError:
            return "ai-edge-litert"
    except ImportError:
        pass
    try:
        from tflite_runtime import interpreter as tfl  # type: ignore[import-not-found]

        return f"tflite-runtime {getattr(tfl, '__version__', '?')}"
    except ImportError:
        pass
    try:  # the runtime falls back to tensorflow.lite; look, but do not import it
        if importlib.util.find_spec("tensorflow") is not None:
            return "tensorflow (tf.lite)"
    except (ImportError, ValueError):
        pass
    return None


def _hint(fmt: str) -> str:
    return INSTALL_HINTS["onnxruntime" if fmt in ("onnx", "ort") else "tflite"]


# ------------------------------------------------------------------------------ one model
def measure_model(bundle_dir: Path, name: str, texts: list, *, threads: int | None,
                  batch_size: int, warmup: int, latency_runs: int) -> dict[str, Any]:
    """Load one model file and run it over ``texts`` (what a worker process does)."""
    t0 = time.perf_counter()
    clf = Classifier.load(bundle_dir, model=name, threads=threads, verify=False)
    load_ms = (time.perf_counter() - t0) * 1000
    clf.logits(texts[:1], batch_size=1)
    cold_ms = (time.perf_counter() - t0) * 1000
    if batch_size == 1:
        # batch 1 over every row: the accuracy pass is also the latency sample
        for i in range(min(warmup, len(texts))):
            clf.logits([texts[i]], batch_size=1)
        rows, samples = [], []
        for text in texts:
            s = time.perf_counter()
            rows.append(clf.logits([text], batch_size=1))
            samples.append(time.perf_counter() - s)
        logits = np.concatenate(rows) if rows else np.zeros((0, len(clf.labels)), np.float32)
        latency = {**percentiles_ms(samples), "runs": len(samples)}
    else:
        logits = clf.logits(texts, batch_size=batch_size)
        cycle = iter(range(10**9))
        latency = measure_latency(
            lambda: clf.logits([texts[next(cycle) % len(texts)]], batch_size=1),
            warmup=warmup, runs=latency_runs)
    return {"name": name, "logits": logits.tolist(), "load_ms": round(load_ms, 3),
            "cold_start_ms": round(cold_ms, 3), "latency": latency, "peak_rss_mb": peak_rss_mb(),
            "info": clf.info}


def _run_worker(bundle_dir: Path, name: str, opts: dict[str, Any]) -> dict[str, Any]:
    """``measure_model`` in a fresh interpreter process, so memory and cold start are its own."""
    args = ["edge_albert.apps.validate", str(bundle_dir), "--worker", name,
            "--batch-size", str(opts["batch_size"]), "--warmup", str(opts["warmup"]),
            "--latency-runs", str(opts["latency_runs"])]
    if opts.get("threads"):
        args += ["--threads", str(opts["threads"])]
    return run_fresh(args, where=bundle_dir / name)


# ------------------------------------------------------------------------------ the bundle
def _row(bundle: Bundle, name: str, res: dict[str, Any], gold: np.ndarray, ref,
         num_labels: int) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    entry = bundle.manifest.files[name]
    logits = np.asarray(res["logits"], dtype=np.float32).reshape(len(gold), -1)
    pred = logits.argmax(-1)
    row: dict[str, Any] = {
        "name": name,
        "path": name,
        "format": entry.get("format", FORMATS.get(Path(name).suffix)),
        "precision": entry.get("precision"),
        "size_bytes": int(entry["size_bytes"]),
        "accuracy": round(accuracy(pred, gold), 6),
        "f1": round(f1(pred, gold, num_labels), 6),
        "agreement": round(float(np.mean(pred == ref.predictions)), 6),
        "max_abs_logit_diff": None,
        "mean_abs_logit_diff": None,
        "mean_kl": None,
        "latency_ms": {k: res["latency"][k] for k in ("p50", "p90", "p99")},
        "load_ms": res["load_ms"],
        "cold_start_ms": res["cold_start_ms"],
        "peak_rss_mb": res["peak_rss_mb"],
    }
    if ref.logits is not None:
        diff = np.abs(logits - ref.logits)
        row["max_abs_logit_diff"] = float(diff.max()) if diff.size else 0.0
        row["mean_abs_logit_diff"] = float(diff.mean()) if diff.size else 0.0
        row["mean_kl"] = float(mean_kl(ref.logits, logits))
    return row, pred, logits


def validate_bundle(
    bundle_dir: str | Path,
    *,
    out: str | Path | None = None,
    models: list[str] | None = None,
    threads: int | None = None,
    batch_size: int = 1,
    warmup: int = 5,
    latency_runs: int = 100,
    isolate: bool = True,
    save_logits: bool = False,
    device_name: str | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Validate a bundle on this device; writes and returns the device results.

    Raises ArtifactError for a bundle whose files fail their sha256, RuntimeBackendError when no
    file could run. Files that fail to load or run are recorded under ``failed``.
    """
    say = log or (lambda _s: None)
    bundle_dir = Path(bundle_dir)
    bundle = open_bundle(bundle_dir)  # re-hashes every file: refuses a changed one by name
    ev = bundle.extra["eval"]
    ds = read_dataset(bundle.eval_path, text_columns=ev.get("text_columns"),
                      label_column=ev.get("label_column"))
    labels = bundle.labels or ds.label_names()
    gold = np.asarray(ds.label_ids(labels, ev.get("label_map")), dtype=np.int64)
    texts = ds.inputs()
    ref = bundle.reference()
    if len(ref.predictions) != len(gold):
        raise RuntimeBackendError(
            f"stored reference has {len(ref.predictions)} rows, the eval set {len(gold)}",
            where=bundle.path / "eval")
    names = model_files(bundle_dir)
    if models:
        unknown = [m for m in models if m not in names]
        if unknown:
            raise RuntimeBackendError(f"no model file(s) {', '.join(unknown)} in the bundle"
                                      f" (it has: {', '.join(names)})", where=bundle_dir)
        names = [n for n in names if n in models]
    opts: dict[str, Any] = {"threads": threads, "batch_size": batch_size, "warmup": warmup,
                           "latency_runs": latency_runs}
    rows, skipped, failed = [], [], []
    predictions: dict[str, list[int]] = {}
    all_logits: dict[str, np.ndarray] = {}
    interpreters: dict[str, str] = {}
    for name in names:
        fmt = bundle.manifest.files[name].get("format", FORMATS.get(Path(name).suffix, ""))
        interp = interpreter_for(fmt)
        if interp is None:
            reason = ("no ONNX Runtime on this device" if fmt in ("onnx", "ort")
                      else "no TFLite interpreter on this device")
            skipped.append({"name": name, "format": fmt, "reason": reason, "install": _hint(fmt)})
            say(f"skip  {name}: {reason}; {_hint(fmt)}")
            continue
        interpreters[fmt] = interp
        try:
            res = (_run_worker(bundle_dir, name, opts) if isolate else
                   measure_model(bundle_dir, name, texts, **opts))
        except EdgeAlbertError as exc:
            failed.append({"name": name, "format": fmt, "error": exc.one_line(),
                           "interpreter": interp})
            say(f"FAIL  {name}: {exc.one_line()}")
            continue
        row, pred, logits = _row(bundle, name, res, gold, ref, len(labels))
        rows.append(row)
        predictions[name] = pred.tolist()
        all_logits[name] = logits
        lat = row["latency_ms"]
        say(f"ok    {name}: accuracy {row['accuracy']:.4f}  agreement {row['agreement']:.4f}"
            f"  p50 {lat['p50']:.3f} ms  p99 {lat['p99']:.3f} ms  load {row['load_ms']:.0f} ms"
            f"  peak RSS {row['peak_rss_mb']:.0f} MB")
    result = {
        "schema": RESULTS_SCHEMA,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "tool_version": tool_version(),
        "task": bundle.extra.get("task"),
        "bundle": {"path": str(bundle_dir.resolve()), "target": bundle.extra.get("target"),
                   "manifest_sha256": sha256_file(bundle_dir / MANIFEST),
                   "created": bundle.manifest.created},
        "eval": {"path": str(ev["path"]), "rows": len(gold), "sha256": sha256_file(bundle.eval_path)},
        "reference": {"name": ref.name, "accuracy": ref.meta.get("accuracy"),
                      "f1": ref.meta.get("f1"), "produced_by": ref.meta.get("produced_by"),
                      "source": "stored in the bundle"},
        "device": {**device_facts(threads=threads, name=device_name),
                   "interpreters": interpreters},
        "settings": {"threads": threads, "batch_size": batch_size, "warmup": warmup,
                     "latency": "batch 1, tokenize + infer, " + (
                         "every eval row" if batch_size == 1 else f"{latency_runs} runs"),
                     "isolated_processes": isolate},
        "artifacts": rows,
        "skipped": skipped,
        "failed": failed,
        "predictions": predictions,
    }
    dest = Path(out) if out is not None else bundle_dir / RESULTS
    dest.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(dest, json.dumps(result, indent=1) + "\n")
    if save_logits and all_logits:
        np.savez(dest.with_name(dest.stem + ".logits.npz"), **all_logits)  # type: ignore[arg-type]
    say(f"wrote {dest}")
    if not rows and not failed:
        raise RuntimeBackendError(
            "nothing ran: this device has no interpreter for any model in the bundle"
            f" ({', '.join(s['name'] for s in skipped) or 'no model files'})",
            where=bundle_dir, hint="; ".join(sorted({s["install"] for s in skipped})) or None)
    return result


# ------------------------------------------------------------------------------ command line
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m edge_albert.apps.validate",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("bundle", type=Path, help="bundle directory ('.' inside a bundle)")
    p.add_argument("--out", type=Path, default=None,
                   help=f"results file (default: BUNDLE/{RESULTS})")
    p.add_argument("--models", default=None, help="comma-separated model files (default: all)")
    p.add_argument("--threads", type=int, default=None, help="interpreter threads")
    p.add_argument("--batch-size", type=int, default=1,
                   help="batch size of the accuracy pass (1: also the latency sample)")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--latency-runs", type=int, default=100, help="when --batch-size > 1")
    p.add_argument("--in-process", action="store_true",
                   help="run every file in this process (peak RSS then accumulates)")
    p.add_argument("--save-logits", action="store_true",
                   help="also write the logits next to the results (.logits.npz)")
    p.add_argument("--device-name", default=None, help="name recorded for this device")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    return p


def _worker_main(args: argparse.Namespace) -> dict[str, Any]:
    bundle = open_bundle(args.bundle, check=False)
    ev = bundle.extra["eval"]
    ds = read_dataset(bundle.eval_path, text_columns=ev.get("text_columns"),
                      label_column=ev.get("label_column"))
    return measure_model(args.bundle, args.worker, ds.inputs(), threads=args.threads,
                         batch_size=args.batch_size, warmup=args.warmup,
                         latency_runs=args.latency_runs)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.threads is not None and args.threads < 1:
            raise RuntimeBackendError(f"--threads must be >= 1, got {args.threads}")
        if args.batch_size < 1:
            raise RuntimeBackendError(f"--batch-size must be >= 1, got {args.batch_size}")
        if args.worker:
            return reply(lambda: _worker_main(args))
        log = None if args.quiet else (lambda s: print(s, file=sys.stderr, flush=True))
        result = validate_bundle(
            args.bundle, out=args.out, models=args.models.split(",") if args.models else None,
            threads=args.threads, batch_size=args.batch_size, warmup=args.warmup,
            latency_runs=args.latency_runs, isolate=not args.in_process,
            save_logits=args.save_logits, device_name=args.device_name, log=log)
    except EdgeAlbertError as exc:
        print(f"error: {exc.one_line()}", file=sys.stderr)
        if exc.hint:
            print(f"hint: {exc.hint}", file=sys.stderr)
        return exc.exit_code
    return 1 if result["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
