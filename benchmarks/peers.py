"""Peers on the same student: Optimum, litert-torch and torch.ao beside the project's own files.

One ALBERT student, quantized and converted by

* the project (``edge_albert.converters.convert.run_convert``: ONNX and TFLite in fp32,
  int8-dynamic and int8-static, plus the files of a ``quantize`` search artifact when given);
* Hugging Face Optimum (``optimum-onnx``: ``main_export`` to ONNX, then its ``ORTQuantizer``
  dynamic and static recipes, and ``ORTOptimizer`` O2 followed by dynamic int8);
* litert-torch (``litert_torch.convert`` to fp32 TFLite, int8 through AI Edge Quantizer's
  ``dynamic_wi8_afp32`` / ``static_wi8_ai8`` recipes and through PT2E static / dynamic);
* plain ``torch.ao.quantization.quantize_dynamic`` (int8 Linear layers, run in torch).

Peers whose pins clash with the project's (Optimum wants transformers 4.x) run in their own
virtual environments under ``runs/peer-venvs/<peer>`` (built by this script, with the exact pip
requirements recorded), through this same file in ``--driver`` mode, which only writes model
files. Every file is then measured here, in one process, with the project's runtime backends
(the same ONNX Runtime and LiteRT interpreter, the same thread count), on the same tokenized
inputs: accuracy and argmax agreement with torch fp32 on the dev file (padded to the maximum
length), and batch-1 latency (median and p90) in interleaved rounds so that every file shares
the box's noise. A peer that fails on ALBERT gets a row with its error: that is a result.

Usage:
  python benchmarks/peers.py                        # the SST-2 student-small (builds the venvs)
  python benchmarks/peers.py --quick --out-dir /tmp/p  # a tiny random ALBERT, seconds (a test)

Results: ``benchmarks/results/peers.{json,md,png}`` (``peers.quick.*`` with ``--quick``).

Split by job: peer_driver.py + peer_optimum.py + peer_litert.py run in the peers' venvs,
peer_venvs.py builds them, peers_report.py renders. This module (over 400 lines) is the measuring
side, kept whole because its parts share one state: the project's and the peers' rows, one set of
tokenized inputs, and one interleaved timing of every file.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peer_common import INPUTS, PEERS, VENVS, file_size, first_lines, versions
from peer_venvs import build_venv, venv_python, venv_state
from peers_report import markdown, plot

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"
SHARED_DATA = REPO.parent / "shared" / "data"
BUDGET_POINTS = 1.0  # a file is "usable" within this many accuracy points of torch fp32



# ------------------------------------------------------------------------------------------------
# peer virtual environments


# ------------------------------------------------------------------------------------------------
# inputs: the student, the dev rows and the calibration rows


_SUBJECTS = ["the film", "this movie", "the plot", "the cast", "the ending", "the music",
             "our hero", "the script", "the director", "every scene"]
_GOOD = ["is charming", "was a delight", "feels fresh and moving", "is wonderfully acted",
         "shines", "is smart and funny", "rewards patience", "is a joy"]
_BAD = ["is dull", "was a mess", "feels flat and tired", "is badly acted", "drags",
        "is loud and empty", "wastes its cast", "is a chore"]


def _sentiment_rows(n: int, seed: int) -> list[tuple[str, str]]:
    """The generated two-class task the tests use (tests/conftest.py)."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        label = rng.randint(0, 1)
        text = f"{rng.choice(_SUBJECTS)} {rng.choice(_GOOD if label else _BAD)}"
        if rng.random() < 0.5:
            text += f" , and {rng.choice(_SUBJECTS)} {rng.choice(_GOOD if label else _BAD)}"
        rows.append((text + " .", str(label)))
    return rows


def _write_tsv(path: Path, rows: Sequence[tuple[str, str]]) -> Path:
    path.write_text("sentence\tlabel\n" + "".join(f"{t}\t{lab}\n" for t, lab in rows),
                    encoding="utf-8")
    return path


def quick_inputs(work: Path) -> tuple[Path, Path, Path]:
    """A tiny random ALBERT (with its SentencePiece tokenizer) and a generated task."""
    from edge_albert.config import TokenizerConfig
    from edge_albert.modeling import init_model_dir
    from edge_albert.tokenizer_train import train_tokenizer, training_sentences

    train = _write_tsv(work / "train.tsv", _sentiment_rows(400, seed=1))
    dev = _write_tsv(work / "dev.tsv", _sentiment_rows(100, seed=2))
    tok = work / "tok"
    if tok.is_dir():  # a reused --work-dir: train afresh (same data, same seed)
        import shutil

        shutil.rmtree(tok)
    train_tokenizer(TokenizerConfig(vocab_size=120), training_sentences([train]), tok)
    model = work / "albert-tiny"
    init_model_dir("tiny", tok, model, label_names=["0", "1"], seed=0, force=True)
    return model, dev, train


def head_rows(src: Path, dst: Path, n: int) -> Path:
    """The header and the first ``n`` rows of a TSV."""
    with open(src, encoding="utf-8") as f:
        lines = [next(f) for _ in range(n + 1)] if n else f.readlines()
    dst.write_text("".join(lines), encoding="utf-8")
    return dst


# ------------------------------------------------------------------------------------------------
# runners: every file through the project's runtime backends, torch models in torch


class Runner:
    """``run(feeds) -> logits`` for any file or torch model, on canonical int64 feeds."""

    def __init__(self, fn: Callable[[dict], Any], *, fixed_batch: int | None = None,
                 fixed_length: int | None = None, runtime: dict | None = None) -> None:
        self.fn, self.fixed_batch, self.fixed_length = fn, fixed_batch, fixed_length
        self.runtime = runtime or {}

    def run(self, feeds: dict) -> Any:
        import numpy as np

        n = len(feeds["input_ids"])
        if self.fixed_batch and n != self.fixed_batch:
            return np.concatenate([self.fn({k: v[i:i + 1] for k, v in feeds.items()})
                                   for i in range(n)])
        return self.fn(feeds)


def backend_runner(path: Path, threads: int, *, backend=None) -> Runner:
    """A Runner over the project's runtime backend of ``path`` (input names mapped by position
    when the file names them otherwise, e.g. ``args_0``)."""
    import numpy as np
    from edge_albert.runtime.backends import open_backend

    be = backend or open_backend(path, threads=threads)
    names = list(be.input_names)
    if set(names) == set(INPUTS):
        mapping = {n: n for n in names}
    elif len(names) == len(INPUTS):
        mapping = dict(zip(sorted(names), INPUTS))
    else:
        raise RuntimeError(f"inputs {names} do not map onto {list(INPUTS)}")
    fixed_batch = be.fixed_batch
    scale, zero = 1.0, 0.0
    runtime = {"backend": be.name, **be.versions()}
    if be.format == "tflite":
        sig = be.runner.get_input_details()[names[0]].get("shape_signature")
        fixed_batch = None if sig is None or int(sig[0]) == -1 else int(sig[0])
        out = next(iter(be.runner.get_output_details().values()))
        if np.dtype(out["dtype"]).kind in "iu" and out["quantization"][0] > 0:
            # an integer output (AI Edge Quantizer / PT2E static): the runtime would hand back
            # raw int8 codes; dequantize with the file's own scale and zero point
            scale, zero = float(out["quantization"][0]), float(out["quantization"][1])
            runtime["output"] = (f"{np.dtype(out['dtype']).name} logits, dequantized here"
                                 f" (scale {scale:.3g}, zero point {zero:g})")

    def fn(feeds: dict) -> np.ndarray:
        raw = be.run({n: feeds[src] for n, src in mapping.items()})
        return raw if scale == 1.0 and zero == 0.0 else (raw - zero) * scale

    return Runner(fn, fixed_batch=fixed_batch, fixed_length=be.fixed_length, runtime=runtime)


def torch_runner(model) -> Runner:
    import torch

    def fn(feeds: dict):
        with torch.inference_mode():
            t = {k: torch.from_numpy(v) for k, v in feeds.items()}
            return model(**t).logits.float().numpy()

    return Runner(fn, runtime={"backend": "torch", "torch": torch.__version__,
                               "quantized_engine": torch.backends.quantized.engine})


def encode_rows(tok, texts: Sequence, max_length: int) -> list[dict]:
    """Batch-1 feeds padded to ``max_length`` (the latency and accuracy inputs)."""
    out = []
    for t in texts:
        a, b = (t if isinstance(t, tuple) else (t, None))
        out.append(tok.encode([a], [b] if b is not None else None, max_length=max_length,
                              pad_to=max_length).as_dict())
    return out


def evaluate(runner: Runner, batches: list[dict]):
    import numpy as np

    return np.concatenate([np.asarray(runner.run(b), dtype=np.float32) for b in batches])


def interleaved_latency(runners: dict[str, Runner], feeds: list[dict], *, iters: int,
                        rounds: int, warmup: int, seed: int = 0) -> dict[str, dict]:
    """Batch-1 latency of every runner: ``rounds`` rounds in shuffled order, each runner doing
    ``iters / rounds`` calls per round over ``feeds`` in turn, so all share the same noise."""
    per = max(1, iters // rounds)
    times: dict[str, list[float]] = {k: [] for k in runners}
    for _name, r in runners.items():
        for i in range(warmup):
            r.run(feeds[i % len(feeds)])
    order = list(runners)
    rng = random.Random(seed)
    for _ in range(rounds):
        rng.shuffle(order)
        for name in order:
            r = runners[name]
            for i in range(per):
                f = feeds[(len(times[name]) + i) % len(feeds)]
                t = time.perf_counter()
                r.run(f)
                times[name].append((time.perf_counter() - t) * 1000)
    out = {}
    for name, ts in times.items():
        ts = sorted(ts)
        out[name] = {"min_ms": round(ts[0], 4), "p50_ms": round(statistics.median(ts), 4),
                     "p90_ms": round(ts[min(len(ts) - 1, int(0.9 * len(ts)))], 4),
                     "calls": len(ts)}
    return out


# ------------------------------------------------------------------------------------------------
# the benchmark


def _row(tool: str, recipe: str, **kw: Any) -> dict:
    row: dict[str, Any] = {
        "tool": tool, "recipe": recipe, "short": tool, "file": None, "precision": None,
        "size_bytes": None, "accuracy": None, "agreement_with_torch_fp32": None,
        "max_abs_logit_diff": None, "p50_ms": None, "p90_ms": None, "min_ms": None,
        "status": "ok", "error": None, "versions": {}}
    row.update(kw)
    return row


def project_rows(model_dir: Path, work: Path, calibration: Path, *, buckets: tuple[int, ...],
                 threads: int, calibration_size: int, extra_artifacts: Sequence[Path],
                 log: Callable[[str], None]) -> tuple[list[dict], dict[str, Any]]:
    """Convert with the project, open each file with ``Classifier``: rows and their Runners."""
    from edge_albert.converters.convert import ConvertConfig, run_convert
    from edge_albert.converters.spec import Format, Precision
    from edge_albert.runtime import Classifier

    vers = versions(["edge-albert", "torch", "transformers", "onnx", "onnxscript",
                     "onnxruntime", "tensorflow"])
    out = work / "project"
    cfg = ConvertConfig(formats=(Format.ONNX, Format.TFLITE),
                        precisions=(Precision.FP32, Precision.INT8_DYNAMIC, Precision.INT8_STATIC),
                        buckets=buckets, threads=threads, calibration_size=calibration_size,
                        fixed_shapes=())
    t = time.perf_counter()
    manifest = run_convert(cfg, model_dir, out, calibration=calibration, force=True,
                           progress=False)
    log(f"project convert: {time.perf_counter() - t:.0f} s")
    rows, runners = [], {}
    targets = [(out, n, "run_convert defaults") for n in manifest.files
               if Path(n).suffix in (".onnx", ".tflite")]
    for art in extra_artifacts:
        from edge_albert.artifacts import load_manifest

        m = load_manifest(art)
        for n, meta in m.files.items():
            if Path(n).suffix in (".onnx", ".tflite") and "/" not in n:
                trial = (meta.get("recipe") or {}).get("search_recipe")
                targets.append((art, n, f"{m.stage} artifact {art.name}"
                                        + (f", trial {trial}" if trial else "")))
    for directory, name, how in targets:
        clf = Classifier.load(directory, model=name, threads=threads)
        meta = dict(clf.info)
        key = f"project:{directory.name}/{name}"
        rows.append(_row("edge-albert", f"{meta.get('precision')}: {meta.get('format')}, {how}",
                         short=f"edge-albert {meta.get('format')} {meta.get('precision')}"
                               + ("" if directory == out else f" ({directory.name})"),
                         source="run_convert" if directory == out else str(directory),
                         key=key, file=str(directory / name), precision=meta.get("precision"),
                         size_bytes=file_size(directory / name), versions=vers))
        runners[key] = (backend_runner(directory / name, threads, backend=clf.backend), clf)
    return rows, runners


def peer_rows(name: str, model_dir: Path, work: Path, calib_npz: Path, *, venvs: Path,
              build: bool, threads: int, log: Callable[[str], None]) -> tuple[list[dict], dict]:
    """Run a peer's driver in its venv (building it when allowed); rows for every recipe."""
    state = venv_state(name, venvs)
    info: dict[str, Any] = {"venv": str(venvs / name), "requirements": VENVS[name]["requirements"]}
    if state is None and build:
        state = build_venv(name, venvs)
        if "install_error" in state:
            info["install_error"] = state["install_error"]
            return [_row(name, "pip install", status="failed",
                         error=f"venv install failed: {state['install_error']}")], info
    if state is None:
        return [_row(name, "all recipes", status="skipped",
                     error="skipped: venv not built (run without --quick to build)")], info
    info.update({k: state.get(k) for k in ("versions", "coinstall")})
    out = work / name
    t = time.perf_counter()
    proc = subprocess.run([str(venv_python(venvs / name)),
                           str(Path(__file__).resolve().parent / "peer_driver.py"),
                           "--driver", name, "--model", str(model_dir), "--out", str(out),
                           "--calibration", str(calib_npz), "--threads", str(threads)],
                          capture_output=True, text=True, timeout=3600, check=False,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2",
                               "PYTHONPATH": "", "OMP_NUM_THREADS": str(threads)})
    log(f"{name} driver: {time.perf_counter() - t:.0f} s (rc {proc.returncode})")
    result_file = out / "driver.json"
    if not result_file.is_file():
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-8:])
        return [_row(name, "driver", status="failed",
                     error=f"driver crashed (rc {proc.returncode}): {tail}")], info
    res = json.loads(result_file.read_text())
    info["driver_python"] = res.get("python")
    versions = res.get("versions", {})
    if res.get("fatal"):
        return [_row(name, "driver", status="failed", error=res["fatal"]["error"],
                     traceback=res["fatal"]["traceback"], versions=versions)], info
    rows = []
    for r in res["rows"]:
        row = _row(name, r["recipe"], short=f"{name} {r.get('short', '')}".strip(),
                   precision=r.get("precision"), versions=versions, convert_s=r.get("seconds"))
        if r.get("error"):
            row.update(status="failed", error=f"conversion failed: {r['error']}",
                       traceback=r.get("traceback"))
        else:
            path = Path(r["file"])
            row.update(file=str(path), size_bytes=file_size(path))
        rows.append(row)
    return rows, info


def calibration_npz(cal_tsv: Path, tok, labels: list[str], *, max_length: int, buckets, size: int,
                    seed: int, dst: Path) -> Path:
    """The project's calibration rows (same selection as run_convert), padded to max_length."""
    import numpy as np
    from edge_albert.converters.calibration import build_calibration
    from edge_albert.converters.spec import ExportSpec

    from edge_albert.data import read_dataset

    ds = read_dataset(cal_tsv, label_names=labels)
    cal = build_calibration(ds, tok, spec=ExportSpec(buckets=tuple(buckets), max_length=max_length),
                            size=size, seed=seed)
    arrays = {}
    for k in INPUTS:
        rows = []
        for f in cal.feeds:
            row = np.full((max_length,), tok.pad_id if k == "input_ids" else 0, dtype=np.int64)
            row[:f[k].shape[1]] = f[k][0]
            rows.append(row)
        arrays[k] = np.stack(rows)
    np.savez(dst, **arrays)  # type: ignore[arg-type]
    return dst


def pick_best(rows: list[dict], ref_accuracy: float) -> dict | None:
    """The fastest measured file within BUDGET_POINTS of torch fp32, else the most accurate."""
    ok = [r for r in rows if r["status"] == "ok" and r["p50_ms"] is not None
          and r["accuracy"] is not None]
    if not ok:
        return None
    within = [r for r in ok if r["accuracy"] >= ref_accuracy - BUDGET_POINTS]
    return min(within, key=lambda r: r["p50_ms"]) if within else max(
        ok, key=lambda r: (r["accuracy"], -r["p50_ms"]))


def headline(rows: list[dict], ref_accuracy: float) -> dict:
    """The project's best file against each peer's best: over all the project's files (with a
    quantize search artifact's, when measured) and over run_convert's default files alone."""
    out: dict[str, Any] = {"rule": (f"best = fastest file within {BUDGET_POINTS:g} point(s) of"
                                    " torch fp32 accuracy, else the most accurate"),
                           "torch_fp32_accuracy": ref_accuracy}
    pools = {"all_project_files": [r for r in rows if r["tool"] == "edge-albert"],
             "run_convert_defaults": [r for r in rows if r["tool"] == "edge-albert"
                                      and r.get("source") == "run_convert"]}
    for pool, prows in pools.items():
        proj = pick_best(prows, ref_accuracy)
        entry: dict[str, Any] = {"project": proj and {k: proj[k] for k in (
            "short", "recipe", "file", "p50_ms", "size_bytes", "accuracy")}, "peers": {}}
        for tool in PEERS:
            best = pick_best([r for r in rows if r["tool"] == tool], ref_accuracy)
            if best is None or proj is None:
                entry["peers"][tool] = {"best": None, "note": "no measured file"}
                continue
            entry["peers"][tool] = {
                "best": {k: best[k] for k in ("short", "recipe", "file", "p50_ms", "size_bytes",
                                              "accuracy")},
                "speed_ratio": round(best["p50_ms"] / proj["p50_ms"], 3),
                "speed_ratio_min": round(best["min_ms"] / proj["min_ms"], 3),
                "size_ratio": round(best["size_bytes"] / proj["size_bytes"], 3),
                "accuracy_diff_points": round(proj["accuracy"] - best["accuracy"], 2)}
        out[pool] = entry
    return out


def auto_notes(rows: list[dict]) -> list[str]:
    """Facts the table implies: each int8 file's size against its own tool's fp32 file, files
    that pin their shapes, integer outputs."""
    notes = []
    own = [r for r in rows if r.get("source") in (None, "run_convert")]  # not a search's files
    for tool in ("edge-albert", "optimum", "litert-torch", "torch.ao"):
        base = "torch" if tool == "torch.ao" else tool
        fp32 = next((r for r in own if r["tool"] == base and r["precision"] == "fp32"
                     and r["size_bytes"]), None)
        sized = [f"{r['short'].removeprefix(tool).strip()}"
                 f" {r['size_bytes'] / fp32['size_bytes']:.0%}"
                 for r in own if fp32 and r["tool"] == tool and r["precision"] != "fp32"
                 and r["size_bytes"]]
        if sized and fp32 is not None:
            notes.append(f"{tool}: int8 file size as a share of its fp32 file"
                         f" ({fp32['size_bytes'] / 1e6:.2f} MB): {', '.join(sized)}")
    ref = next((r["census"]["stored_weight_bytes"] for r in rows if r["tool"] == "edge-albert"
                and r.get("source") == "run_convert" and r["precision"] == "int8-dynamic"
                and Path(r["file"]).suffix == ".onnx" and "stored_weight_bytes"
                in (r.get("census") or {})), None)
    for r in rows:
        c = r.get("census") or {}
        if not (r["precision"] or "").startswith("int8") or "int8_weight_ops" not in c:
            continue
        if c["float_weight_ops"]:
            notes.append(f"{r['short']}: weight ops kept in float:"
                         f" {', '.join(c['float_weight_ops'][:6])}")
        done, total = (int(x) for x in c["int8_weight_ops"].split("/"))
        if ref and done == total and c["stored_weight_bytes"] > 1.3 * ref:
            notes.append(f"{r['short']}: every weight op is int8, yet the file stores"
                         f" {c['stored_weight_bytes'] / 1e6:.2f} MB of constants against"
                         f" {ref / 1e6:.2f} MB in the project's int8-dynamic ONNX file: float"
                         " copies of weights stay in the file beside their int8 versions")
    for r in rows:
        out = (r["versions"].get("runtime") or {}).get("output")
        if out:
            notes.append(f"{r['short']}: {out}")
    pinned: dict[str, list[str]] = {}
    for r in rows:
        if r.get("fixed_shape"):
            pinned.setdefault(str(r["fixed_shape"]), []).append(r["short"])
    for shape, names in pinned.items():
        notes.append(f"input shape pinned to {shape} by the converter: {', '.join(names)}")
    return notes


def weight_census(path: Path) -> dict:
    """What the file holds in int8, by the project's own census (ONNX and TFLite): weight ops
    in int8 / all, the float ones by name, and the bytes of stored constants."""
    from edge_albert.converters.census import census

    try:
        c = census(path)
    except Exception as exc:
        return {"error": first_lines(exc)}
    return {"int8_weight_ops": f"{sum(w.int8 for w in c.weight_ops)}/{len(c.weight_ops)}",
            "float_weight_ops": sorted({f"{w.part}:{w.weight}" for w in c.weight_ops
                                        if not w.int8}),
            "stored_weight_bytes": c.stored_weight_bytes, "int8_ops": c.int8_ops}


def measure(rows: list[dict], runners: dict[str, Runner], batches: list[dict],
            latency_feeds: list[dict], gold, *, iters: int, rounds: int, warmup: int,
            log: Callable[[str], None]) -> None:
    """Accuracy/agreement on ``batches`` and interleaved latency on ``latency_feeds``."""
    import numpy as np

    ref = None
    live = {}
    for row in rows:
        key = row.get("key")
        if key not in runners:
            continue
        try:
            logits = evaluate(runners[key], batches)
            if not np.isfinite(logits).all():
                raise RuntimeError("non-finite logits")
        except Exception as exc:
            row.update(status="failed", error=f"runtime failed: {first_lines(exc)}")
            continue
        if key == "torch:fp32":
            ref = logits
        row["_logits"] = logits
        live[key] = runners[key]
    assert ref is not None, "torch fp32 reference missing"
    for row in rows:
        logits = row.pop("_logits", None)
        if logits is None:
            continue
        pred = logits.argmax(-1)
        row["accuracy"] = round(float((pred == gold).mean() * 100), 2)
        row["agreement_with_torch_fp32"] = round(float((pred == ref.argmax(-1)).mean() * 100), 2)
        row["max_abs_logit_diff"] = float(f"{np.abs(logits - ref).max():.3g}")
    log(f"accuracy: {len(live)} files on {len(gold)} rows")
    for row in rows:
        if row["file"] and Path(row["file"]).suffix in (".onnx", ".tflite"):
            row["census"] = weight_census(Path(row["file"]))
    lat = interleaved_latency(live, latency_feeds, iters=iters, rounds=rounds, warmup=warmup)
    for row in rows:
        if row.get("key") in lat:
            row.update(p50_ms=lat[row["key"]]["p50_ms"], p90_ms=lat[row["key"]]["p90_ms"],
                       min_ms=lat[row["key"]]["min_ms"], latency_calls=lat[row["key"]]["calls"])


def main(argv: Sequence[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true",
                    help="a tiny random ALBERT and a generated task (seconds; for tests); peer"
                         " venvs are used only when already built")
    ap.add_argument("--model", type=Path, default=REPO / "runs" / "sst2" / "student-small")
    ap.add_argument("--dev", type=Path, default=SHARED_DATA / "sst2" / "dev.tsv")
    ap.add_argument("--calibration", type=Path, default=SHARED_DATA / "sst2" / "train.tsv",
                    help="labelled file whose first --calibration-rows rows calibrate int8-static")
    ap.add_argument("--calibration-rows", type=int, default=2000)
    ap.add_argument("--calibration-size", type=int, default=200,
                    help="calibration examples drawn from those rows (the project's default)")
    ap.add_argument("--max-length", type=int, default=64)
    ap.add_argument("--buckets", default="32,64", help="the project's sequence buckets")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--iters", type=int, default=None,
                    help="latency calls per file (400; quick 10)")
    ap.add_argument("--rounds", type=int, default=None, help="interleaved rounds (20; quick 2)")
    ap.add_argument("--peers", default=",".join(PEERS))
    ap.add_argument("--venvs", type=Path, default=REPO / "runs" / "peer-venvs")
    ap.add_argument("--no-build", action="store_true", help="never build missing peer venvs")
    ap.add_argument("--project-artifact", type=Path, action="append", default=None,
                    help="also measure the model files of this artifact (e.g. a quantize search);"
                         " default: runs/sst2/quantized when measuring its student")
    ap.add_argument("--work-dir", type=Path, default=None,
                    help="where converted files go (default runs/peers/<model>; quick: a temp dir)")
    ap.add_argument("--out-dir", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    t0 = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[peers {time.perf_counter() - t0:6.0f}s] {msg}", file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="peers-") as tmp:
        return _main(args, Path(tmp), log, t0)


def _main(args, tmp: Path, log: Callable[[str], None], t0: float) -> dict:
    import numpy as np
    import torch
    from edge_albert.runtime.tokenizer import TextTokenizer

    from edge_albert.data import read_dataset
    from edge_albert.modeling import label_names_of, load_classifier

    torch.set_num_threads(args.threads)
    peers = [p.strip() for p in args.peers.split(",") if p.strip()]
    unknown = set(peers) - set(PEERS)
    if unknown:
        raise SystemExit(f"unknown peer(s) {sorted(unknown)} (known: {', '.join(PEERS)})")
    if args.quick:
        work = args.work_dir or tmp
        work.mkdir(parents=True, exist_ok=True)
        model_dir, dev, cal_src = quick_inputs(work)
        max_length = 32
        buckets: tuple[int, ...] = (16, 32)
        iters, rounds = args.iters or 10, args.rounds or 2
        cal_tsv, cal_size = cal_src, min(args.calibration_size, 50)
        extra: list[Path] = list(args.project_artifact or [])
    else:
        model_dir, dev = args.model.resolve(), args.dev.resolve()
        work = (args.work_dir or REPO / "runs" / "peers" / model_dir.name).resolve()
        work.mkdir(parents=True, exist_ok=True)
        max_length = args.max_length
        buckets = tuple(sorted(int(b) for b in args.buckets.split(",")))
        iters, rounds = args.iters or 400, args.rounds or 20
        cal_tsv = head_rows(args.calibration, work / "calibration.tsv", args.calibration_rows)
        cal_size = args.calibration_size
        extra = list(args.project_artifact) if args.project_artifact is not None else []
        default_q = REPO / "runs" / "sst2" / "quantized"
        if args.project_artifact is None and (default_q / "manifest.json").is_file():
            from edge_albert.artifacts import load_manifest

            src = str(load_manifest(default_q).config.get("model", ""))
            if src and (REPO / src).resolve() == model_dir:
                extra.append(default_q)
    log(f"model {model_dir}, dev {dev}, work {work}")

    model = load_classifier(model_dir)
    labels = label_names_of(model)
    tok = TextTokenizer.load(model_dir)
    ds = read_dataset(dev, label_names=labels)
    gold = np.array(ds.label_ids(labels))
    feeds = encode_rows(tok, ds.inputs(), max_length)
    # accuracy row by row (batch 1, as latency): a dynamic-int8 file quantizes activations per
    # batch, so batching would let other rows (and their padding) change a row's answer
    batches = feeds
    rng = random.Random(0)
    latency_feeds = [feeds[i] for i in rng.sample(range(len(feeds)), min(16, len(feeds)))]
    calib = calibration_npz(cal_tsv, tok, labels, max_length=max_length, buckets=buckets,
                            size=cal_size, seed=0, dst=work / "calibration.npz")

    rows: list[dict] = []
    runners: dict[str, Any] = {}
    torch_versions = versions(["torch", "transformers"])
    ref_path = work / "torch.fp32.pt"
    torch.save(model.state_dict(), ref_path)
    rows.append(_row("torch", "fp32 reference (transformers AlbertForSequenceClassification)",
                     short="torch fp32", key="torch:fp32", file=str(ref_path), precision="fp32",
                     size_bytes=file_size(ref_path), versions=torch_versions))
    runners["torch:fp32"] = torch_runner(model)

    if "torch.ao" in peers:
        import copy
        import warnings

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                q = torch.ao.quantization.quantize_dynamic(copy.deepcopy(model), {torch.nn.Linear},
                                                           dtype=torch.qint8)
                path = work / "torch.ao-dynamic-int8.pt"
                torch.save(q.state_dict(), path)
                rows.append(_row("torch.ao", "int8-dynamic: torch.ao.quantization.quantize_dynamic"
                                 "({nn.Linear}, qint8), run in torch", short="torch.ao dynamic",
                                 key="torch.ao:dynamic",
                                 file=str(path), precision="int8-dynamic", size_bytes=file_size(path),
                                 versions=torch_versions))
                runners["torch.ao:dynamic"] = torch_runner(q)
            except Exception as exc:
                rows.append(_row("torch.ao", "int8-dynamic: torch.ao.quantization.quantize_dynamic",
                                 status="failed", error=f"quantize failed: {first_lines(exc)}",
                                 versions=torch_versions))
        dep = sorted({str(w.message).splitlines()[0][:200] for w in caught
                      if issubclass(w.category, (DeprecationWarning, FutureWarning))})
        if dep and rows[-1]["tool"] == "torch.ao":
            rows[-1]["warnings"] = dep

    proj, proj_runners = project_rows(model_dir, work, cal_tsv, buckets=buckets,
                                      threads=args.threads, calibration_size=cal_size,
                                      extra_artifacts=extra, log=log)
    rows += proj
    classifiers = {}
    for key, (runner, clf) in proj_runners.items():
        runners[key] = runner
        classifiers[key] = clf

    venvs: dict[str, dict] = {}
    for name in [p for p in peers if p in VENVS]:
        prow, info = peer_rows(name, model_dir, work, calib, venvs=args.venvs.resolve(),
                               build=not args.quick and not args.no_build, threads=args.threads,
                               log=log)
        venvs[name] = info
        for i, r in enumerate(prow):
            if r["status"] == "ok":
                r["key"] = f"{name}:{i}"
                try:
                    runners[r["key"]] = backend_runner(Path(r["file"]), args.threads)
                    fixed = [runners[r["key"]].fixed_batch, runners[r["key"]].fixed_length]
                    if any(fixed):
                        r["fixed_shape"] = fixed
                except Exception as exc:
                    r.update(status="failed", error=f"runtime cannot load: {first_lines(exc)}")
        rows += prow

    measure(rows, runners, batches, latency_feeds, gold, iters=iters, rounds=rounds, warmup=3,
            log=log)
    # the project's own path as a device runs it (bucketed padding, Classifier.predict)
    for r in rows:
        clf = classifiers.get(r.get("key") or "")
        if clf is not None and r["status"] == "ok":
            pred, _ = clf.predict(ds.inputs(), batch_size=32)
            r["accuracy_classifier_buckets"] = round(
                float(np.mean([p == g for p, g in zip(pred, ds.labels)]) * 100), 2)
    for r in rows:
        rt = runners.get(r.get("key") or "")
        if rt is not None:
            r["versions"] = {**r["versions"], "runtime": rt.runtime}
    ref_acc = next(r["accuracy"] for r in rows if r.get("key") == "torch:fp32")
    result = {
        "benchmark": "peers", "quick": args.quick, "model": str(model_dir), "dev": str(dev),
        "n_dev": len(ds), "calibration": {"file": str(cal_tsv), "examples": cal_size,
                                          "rows_from": str(args.calibration) if not args.quick
                                          else "generated"},
        "max_length": max_length, "buckets": list(buckets), "threads": args.threads,
        "latency": {"batch": 1, "seq_len": max_length, "calls": iters - iters % rounds,
                    "rounds": rounds, "warmup": 3, "inputs": f"{len(latency_feeds)} dev rows"},
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "cpus": os.cpu_count(), "load_average_1m": round(os.getloadavg()[0], 2)},
        "versions": versions(["edge-albert", "torch", "transformers", "onnx", "onnxruntime",
                               "tensorflow", "ai-edge-litert", "numpy"]),
        "torch_fp32_accuracy": ref_acc,
        "rows": [{k: v for k, v in r.items() if k not in ("key", "traceback")} for r in rows],
        "headline": headline(rows, ref_acc), "venvs": venvs, "notes": auto_notes(rows),
        "tracebacks": {f"{r['tool']}: {r['recipe']}": r["traceback"] for r in rows
                       if r.get("traceback")},
    }
    result["seconds"] = round(time.perf_counter() - t0, 1)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    stem = "peers.quick" if args.quick else "peers"
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _common import dump_json

    dump_json(args.out_dir / f"{stem}.json", result)
    (args.out_dir / f"{stem}.md").write_text(markdown(result))
    plot(result, args.out_dir / f"{stem}.png")
    log(f"done: {args.out_dir / stem}.{{json,md,png}}")
    return result


if __name__ == "__main__":
    main()
