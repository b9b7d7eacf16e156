"""Shared pieces of the benchmark scripts: machine facts, the --quick model, real inputs, timing.

Every script measures its candidates *side by side in one run*: rounds interleave the
candidates, so a noisy neighbour on the machine slows all of them alike and the ratios hold.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
DATA = REPO.parent / "shared" / "data"
INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def machine() -> dict[str, Any]:
    """CPU model, int8/fp16 flags and ISA class (one helper: edge_albert.runtime.cpu), cores,
    OS and the versions of the libraries that ran the models."""
    from edge_albert.runtime.cpu import cpu_facts

    versions = {}
    for mod in ("numpy", "torch", "onnxruntime", "ai_edge_litert", "tensorflow"):
        try:
            versions[mod] = __import__(mod).__version__
        except (ImportError, AttributeError):  # not installed, or no __version__
            versions[mod] = "absent"
    facts = cpu_facts()
    return {"cpu": facts["cpu"], "flags": facts["flags"], "isa": facts["isa"],
            "int8_dot_product": facts["int8_dot_product"], "cores": facts["cores"],
            "os": platform.platform(), "python": platform.python_version(), "versions": versions}


def openmp_env(extra: Mapping[str, str]) -> dict[str, str]:
    """This process's environment with its OpenMP settings replaced by ``extra``: a child's wait
    policy, spin count and thread count are the condition a benchmark measures (importing
    edge_albert here set the package's default spin count)."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS")}
    return {**env, **extra}


def quick_setup(work: Path) -> dict[str, Path]:
    """A tiny random ALBERT, its tokenizer and a generated task: the --quick modes' subject."""
    from edge_albert.config import TokenizerConfig
    from edge_albert.demo_task import write_demo_task
    from edge_albert.modeling import init_model_dir
    from edge_albert.tokenizer_train import train_tokenizer, training_sentences

    work.mkdir(parents=True, exist_ok=True)
    task = work / "task"
    if not (task / "dev.tsv").is_file():
        write_demo_task(task, n_train=300, n_dev=64)
    tok, model = work / "tok", work / "model"
    if not (tok / "spiece.model").is_file():
        train_tokenizer(TokenizerConfig(vocab_size=300), training_sentences([task / "train.tsv"]),
                        tok)
    if not (model / "manifest.json").is_file():
        from edge_albert.data import read_dataset

        names = read_dataset(task / "train.tsv").label_names()
        init_model_dir("tiny", tok, model, label_names=names, seed=0)
    return {"model": model, "train": task / "train.tsv", "dev": task / "dev.tsv"}


def student_artifact(student: Path, calibration: Path, out: Path, *, quick: bool) -> Path:
    """Every file of the student (converted once and cached under ``out``)."""
    from edge_albert.converters.convert import ConvertConfig, run_convert

    if (out / "manifest.json").is_file():
        return out
    cfg = ConvertConfig(buckets=(32, 64, 128), fixed_shapes=(),
                        calibration_size=32 if quick else 256, parity_examples=32 if quick else 256)
    run_convert(cfg, student, out, calibration=calibration, progress=not quick)
    return out


def student_parser(doc: str | None) -> argparse.ArgumentParser:
    """The options every student benchmark shares: which student, data, cache and output."""
    ap = argparse.ArgumentParser(description=(doc or "").splitlines()[0])
    ap.add_argument("--student", type=Path, default=REPO / "runs" / "sst2" / "student-small")
    ap.add_argument("--dev", type=Path, default=DATA / "sst2" / "dev.tsv")
    ap.add_argument("--calibration", type=Path, default=DATA / "sst2" / "train.tsv")
    ap.add_argument("--work", type=Path, default=None, help="where converted files are cached")
    ap.add_argument("--out-dir", type=Path, default=RESULTS)
    ap.add_argument("--quick", action="store_true", help="tiny random ALBERT; seconds (a test)")
    return ap


def student_subject(args: argparse.Namespace, name: str) -> dict[str, Any]:
    """The student, its data and its converted files (cached): the tiny model with --quick."""
    if args.quick:
        root = args.work or args.out_dir / f"{name}_quick_work"
        q = quick_setup(root)
        student, dev, cal, work = q["model"], q["dev"], q["train"], root / "student"
        subject = "--quick: a tiny random ALBERT (numbers mean nothing)"
    else:
        student, dev, cal = args.student, args.dev, args.calibration
        if not student.exists() or not dev.exists():
            raise SystemExit(f"error: {student if not student.exists() else dev} not found (run"
                             " benchmarks/distill.py --task sst2 first, or pass --student/--dev)")
        work = args.work or REPO / "runs" / "bench" / f"matrix-{student.name}" / "student"
        subject = f"SST-2 student {student.parent.name}/{student.name}"
    art = student_artifact(student, cal, work, quick=args.quick)
    return {"student": student, "dev": dev, "artifact": art, "subject": subject}


def feeds_at(tokenizer: Any, texts: Sequence[str], *, seq: int, batch: int,
             n_batches: int = 4) -> list[dict[str, np.ndarray]]:
    """Real texts encoded and padded (or truncated) to exactly ``seq`` tokens, ``batch`` rows each.

    Texts shorter than ``seq`` are repeated until they fill it, so a length-128 input carries
    128 real tokens (models cost the same either way; parity of masks is checked elsewhere).
    """
    out = []
    for b in range(n_batches):
        rows = [texts[(b * batch + r) % len(texts)] for r in range(batch)]
        rows = [" ".join([t] * (1 + 4 * seq // max(len(t.split()), 1))) for t in rows]
        enc = tokenizer.encode(rows, max_length=seq, pad_to=seq)
        out.append({k: np.ascontiguousarray(v) for k, v in enc.as_dict().items()})
    return out


def texts_at(tokenizer: Any, texts: Sequence[str], *, seq: int, batch: int) -> list[str]:
    """``batch`` real texts, each repeated and cut at a word so that it encodes to at most ``seq``
    tokens (special tokens included): the text-in files' counterpart of :func:`feeds_at`."""
    out = []
    for r in range(batch):
        words = (" ".join([texts[r % len(texts)]] * (1 + 4 * seq))).split()[:4 * seq]
        lo, hi = 1, len(words)
        while lo < hi:  # the most words that still fit
            mid = (lo + hi + 1) // 2
            n = int(tokenizer.encode([" ".join(words[:mid])], max_length=16 * seq)
                    .attention_mask[0].sum())
            lo, hi = (mid, hi) if n <= seq else (lo, mid - 1)
        out.append(" ".join(words[:lo]))
    return out


def interleaved(runners: Mapping[str, Callable[[], Any]], *, rounds: int = 5,
                min_calls: int = 3, budget_s: float = 2.0) -> dict[str, list[float]]:
    """Time every runner in turn, ``rounds`` times; seconds per call, per runner.

    Each round gives every runner ``budget_s / rounds`` seconds (at least ``min_calls`` calls),
    so slow and fast candidates are sampled in the same minutes of the machine's life.
    """
    for fn in runners.values():  # warm-up: allocations, kernel selection, caches
        fn()
        fn()
    samples: dict[str, list[float]] = {k: [] for k in runners}
    per_round = budget_s / max(rounds, 1)
    for _ in range(rounds):
        for name, fn in runners.items():
            start = time.perf_counter()
            calls = 0
            while calls < min_calls or time.perf_counter() - start < per_round:
                t0 = time.perf_counter()
                fn()
                samples[name].append(time.perf_counter() - t0)
                calls += 1
    return samples


def stats_ms(samples: Sequence[float]) -> dict[str, float]:
    """Median, p90 and p99 in milliseconds, and the number of calls."""
    a = np.asarray(samples, dtype=np.float64) * 1000.0
    return {"p50_ms": round(float(np.median(a)), 4), "p90_ms": round(float(np.percentile(a, 90)), 4),
            "p99_ms": round(float(np.percentile(a, 99)), 4), "calls": int(a.size)}


def torch_runner(model: Any, feed: Mapping[str, np.ndarray]) -> Callable[[], Any]:
    """One no-grad forward pass of a transformers classifier on numpy feeds."""
    import torch

    tfeed = {k: torch.from_numpy(np.asarray(feed[k], dtype=np.int64)) for k in INPUTS}
    if getattr(model.config, "model_type", "") in ("distilbert", "roberta"):
        tfeed.pop("token_type_ids")

    def run() -> Any:
        with torch.inference_mode():
            return model(**tfeed).logits

    return run


def ort_profile(path: Path, feed: dict[str, np.ndarray], runs: int = 20) -> list[dict[str, Any]]:
    """Where an ONNX file's time goes: ONNX Runtime's profiler, summed per op type."""
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as d:
        so = ort.SessionOptions()
        so.intra_op_num_threads, so.enable_profiling = 1, True
        so.profile_file_prefix = str(Path(d) / "prof")
        s = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        for _ in range(runs):
            s.run(None, feed)
        events = json.loads(Path(s.end_profiling()).read_text())
    per: dict[str, float] = {}
    for e in events:
        if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time"):
            op = e.get("args", {}).get("op_name", "?")
            per[op] = per.get(op, 0.0) + e["dur"] / 1000.0 / runs
    total = sum(per.values()) or 1.0
    return [{"op_type": k, "ms_per_call": round(v, 4), "share": round(v / total, 4)}
            for k, v in sorted(per.items(), key=lambda kv: -kv[1])]


#: what an XNNPACK/TFLite kernel computes, from its symbol (first match wins), for perf_profile
KERNEL_KINDS = (
    (r"q[sdu]8_.*gemm|qc8w_gemm_minmax_fp32|qs8_qc8w", "int8 GEMM (weight matmuls)"),
    (r"f32_qc8w_gemm", "float x int8-weight GEMM (float-input matmuls)"),
    (r"f32_(i)?gemm|sgemm", "float GEMM (attention Q.K^T and P.V, float fallback)"),
    (r"packw|_pack_", "packing GEMM operands at run time"),
    (r"raddstoreexpminusmax|rmax|softmax|reciprocal", "softmax"),
    (r"qs8_f32_vcvt|f32_qs8_vcvt|qu8_f32_vcvt|f32_qu8_vcvt", "int8 <-> float conversion"),
    (r"q[su]8_v|x8_lut", "int8 elementwise (residual add, lookup tables)"),
    (r"f32_v|f32_rsum|f32_rdsum", "float elementwise (LayerNorm, mask add, GELU)"),
    (r"mem(move|cpy|set)|transpose", "copies and transposes"),
)


def perf_profile(path: Path, feed: dict[str, np.ndarray], seconds: float = 6.0,
                 ) -> list[dict[str, Any]]:
    """Where a model file's time goes by kernel kind: Linux ``perf`` sampling the process that
    runs it (1 thread, the project's runtime backend) on ``feed``; [] when perf cannot run.

    TFLite has no per-op profiler in its Python API; sampling the instruction pointer names the
    XNNPACK microkernel that ran (symbols ship in the wheel), even in assembly kernels a stack
    unwinder (py-spy) cannot walk. Shares are of all samples, Python and loading included.
    """
    import re
    import shutil
    import subprocess

    if shutil.which("perf") is None:
        return []
    with tempfile.TemporaryDirectory() as d:
        np.savez(Path(d) / "feed.npz", **feed)
        code = ("import sys, time, numpy as np\n"
                "from edge_albert.runtime.backends import open_backend\n"
                "b = open_backend(sys.argv[1], threads=1)\n"
                "f = dict(np.load(sys.argv[2]))\n"
                # a peer's file may name its inputs otherwise (args_0, ...): by position then
                "if set(b.input_names) != set(f):\n"
                f"    f = dict(zip(sorted(b.input_names), (f[n] for n in {INPUTS!r})))\n"
                "b.run(f)\nt = time.time()\n"
                "while time.time() - t < float(sys.argv[3]):\n    b.run(f)\n")
        data = Path(d) / "perf.data"
        rec = subprocess.run(["perf", "record", "-q", "-F", "999", "-o", str(data), "--",
                              sys.executable, "-c", code, str(path), str(Path(d) / "feed.npz"),
                              str(seconds)], capture_output=True, text=True,
                             # numpy's OpenBLAS worker threads would be sampled too
                             env=dict(os.environ, OPENBLAS_NUM_THREADS="1",
                                      OMP_NUM_THREADS="1"))
        if rec.returncode != 0 or not data.is_file():
            return []
        rep = subprocess.run(["perf", "report", "-i", str(data), "--sort", "symbol", "--stdio",
                              "--percent-limit", "0.01"], capture_output=True, text=True)
    kinds: dict[str, float] = {}
    top: dict[str, list[str]] = {}
    for line in rep.stdout.splitlines():
        m = re.match(r"\s*([\d.]+)%\s+\[[.k]\]\s+(\S+)", line)
        if not m:
            continue
        share, sym = float(m.group(1)) / 100, m.group(2)
        kind = next((k for pat, k in KERNEL_KINDS if re.search(pat, sym)), "other (Python,"
                    " interpreter, loading)")
        kinds[kind] = kinds.get(kind, 0.0) + share
        top.setdefault(kind, []).append(sym)
    return [{"kind": k, "share": round(v, 4), "top_kernels": top[k][:2]}
            for k, v in sorted(kinds.items(), key=lambda kv: -kv[1])]


def portable(obj: Any) -> Any:
    """``obj`` with this checkout's absolute paths written relative to the repo (``runs/...``,
    ``../shared/data/...``), so a committed result reads the same on every machine."""
    if isinstance(obj, str):
        return obj.replace(f"{REPO}/", "").replace(f"{REPO.parent}/", "../")
    if isinstance(obj, dict):
        return {portable(k): portable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [portable(v) for v in obj]
    return obj


def dump_json(path: Path, result: Any) -> None:
    """Write a result as portable JSON (see :func:`portable`), atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(portable(result), indent=2) + "\n")
    tmp.replace(path)


def write_results(out_dir: Path, stem: str, result: dict[str, Any], markdown: str) -> None:
    """``<stem>.json`` and ``<stem>.md`` under ``out_dir`` (paths relative to the repo)."""
    dump_json(out_dir / f"{stem}.json", result)
    (out_dir / f"{stem}.md").write_text(portable(markdown))


def publish_per_cpu(script: str, argv: Sequence[str] | None, started: float, out_dir: Path,
                    stem: str, quick: bool, fields: dict[str, Any],
                    markdown: Callable[[dict[str, Any]], str]) -> dict[str, Any]:
    """A whole-command benchmark's result: this machine, ``fields``, the command and its wall
    seconds, written as ``<stem>-<cpu class>.{json,md}`` (``<stem>.quick.*`` with --quick: the
    figures depend on the CPU) and printed."""
    import shlex

    result = {"machine": machine(), **fields,
              "command": shlex.join(["python", f"benchmarks/{script}",
                                     *(sys.argv[1:] if argv is None else argv)]),
              "wall_seconds": round(time.time() - started, 1)}
    name = f"{stem}.quick" if quick else f"{stem}-{result['machine']['isa']}"
    write_results(out_dir, name, result, markdown(result))
    print(markdown(result))
    return result
