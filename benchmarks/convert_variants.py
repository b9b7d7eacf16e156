"""File size, conversion time, parity and latency of converted ALBERT variants, side by side.

For each published ALBERT v2 shape (random weights: sizes and speeds do not depend on training),
this converts ONNX fp32 + int8-dynamic and TFLite fp32 + int8-dynamic with the project's
converters, then measures for torch fp32 and every file: size against the parameter count,
conversion seconds, max abs logit difference and top-1 agreement against torch on padded inputs,
and median latency at batch 1, sequence 128, 2 threads. Results go to
``benchmarks/results/convert_variants.json`` and a markdown table next to it.

Usage:
  python benchmarks/convert_variants.py --shapes base            # one shape (~minutes)
  python benchmarks/convert_variants.py                          # base, large, xlarge, xxlarge
  python benchmarks/convert_variants.py --quick --out-dir /tmp/b # tiny shape, seconds (a test)

A shape whose estimated peak memory (~14 x its fp32 weights, measured on the exporter and the
TFLite converter) exceeds the available RAM is skipped and reported as skipped.
"""
from __future__ import annotations

import argparse
import gc
import os
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
SHAPES = ("base", "large", "xlarge", "xxlarge")
PEAK_FACTOR = 14  # peak RSS / fp32 weight bytes during export + conversion (estimate)


def _available_bytes() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 1 << 40


def _median_ms(fn: Callable[[], Any], iters: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return round(statistics.median(times), 3)


def _feeds(vocab: int, seq: int, rows: int, batches: int, seed: int = 0) -> list[dict]:
    """Padded batches of random ids (weights are random too, so text would add nothing)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(batches):
        ids = rng.integers(5, vocab, size=(rows, seq)).astype(np.int64)
        mask = np.ones_like(ids)
        for r in range(rows):
            n = int(rng.integers(seq // 4, seq + 1))
            ids[r, n:] = 0
            mask[r, n:] = 0
        out.append({"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)})
    return out


def bench_shape(shape: str, *, seq: int, threads: int, iters: int, vocab: int,
                work: Path) -> list[dict]:
    import torch
    from edge_albert.converters.census import census
    from edge_albert.converters.onnx_export import export_onnx
    from edge_albert.converters.onnx_quant import quantize_dynamic
    from edge_albert.converters.parity import compare, run_file, torch_logits
    from edge_albert.converters.spec import ExportSpec, Format, Precision
    from edge_albert.converters.tf_albert import make_tf_albert
    from edge_albert.converters.tflite_convert import convert_tflite

    from edge_albert.modeling import albert_config, build_albert_classifier, parameter_count

    torch.set_num_threads(threads)
    model = build_albert_classifier(albert_config(shape, vocab_size=vocab))
    params = parameter_count(model)
    spec = ExportSpec(buckets=(seq,), max_length=seq)
    batches = _feeds(vocab, seq, rows=8, batches=4)
    ref = torch_logits(model, batches)
    one = {k: v[:1] for k, v in _feeds(vocab, seq, rows=1, batches=1, seed=1)[0].items()}
    rows: list[dict] = []

    with torch.no_grad():
        tfeed = {k: torch.from_numpy(v) for k, v in one.items()}
        lat = _median_ms(lambda: model(**tfeed), iters)
    rows.append({"shape": shape, "parameters": params, "format": "torch", "precision": "fp32",
                 "size_bytes": 4 * params, "bytes_per_parameter": 4.0, "convert_s": None,
                 "max_abs_logit_diff": 0.0, "agreement": 1.0, "latency_ms_p50": lat})

    def measure(path: Path, fmt: Format, prec: Precision, seconds: float) -> None:
        par = compare(ref, run_file(path, batches, threads=threads), fmt=fmt, precision=prec)
        c = census(path)
        enc = [w for w in c.weight_ops if w.part == "encoder"]
        runner = _runner(path, one, threads)
        rows.append({
            "shape": shape, "parameters": params, "format": fmt.value, "precision": prec.value,
            "size_bytes": path.stat().st_size,
            "bytes_per_parameter": round(path.stat().st_size / params, 3),
            "convert_s": round(seconds, 2), "max_abs_logit_diff": par.max_abs_logit_diff,
            "agreement": par.agreement, "latency_ms_p50": _median_ms(runner, iters),
            "encoder_weights_int8": f"{sum(w.int8 for w in enc)}/{len(enc)}",
            "int8_ops": c.int8_ops})

    onnx32 = work / f"{shape}.fp32.onnx"
    t = time.perf_counter()
    example = _feeds(vocab, 16, rows=2, batches=1, seed=2)[0]
    example["attention_mask"][1, 8:] = 0
    export_onnx(model, onnx32, example, spec=spec, parameters=params)
    measure(onnx32, Format.ONNX, Precision.FP32, time.perf_counter() - t)
    onnx8 = work / f"{shape}.int8-dynamic.onnx"
    t = time.perf_counter()
    quantize_dynamic(onnx32, onnx8, per_channel=True, fallbacks=("classifier",))
    measure(onnx8, Format.ONNX, Precision.INT8_DYNAMIC, time.perf_counter() - t)
    for p in (onnx32, onnx8):
        p.unlink()

    t = time.perf_counter()
    module = make_tf_albert(model)
    graph_s = time.perf_counter() - t
    for prec in (Precision.FP32, Precision.INT8_DYNAMIC):
        t = time.perf_counter()
        data, _ = convert_tflite(module, prec)
        path = work / f"{shape}.{prec.value}.tflite"
        path.write_bytes(data)
        del data
        measure(path, Format.TFLITE, prec, time.perf_counter() - t + graph_s)
        path.unlink()
    return rows


def _runner(path: Path, feed: dict, threads: int) -> Callable[[], Any]:
    if path.suffix == ".tflite":
        from ai_edge_litert.interpreter import Interpreter

        interp = Interpreter(model_path=str(path), num_threads=threads)
        runner = interp.get_signature_runner("serving_default")
        f32 = {k: v.astype(np.int32) for k, v in feed.items()}
        return lambda: runner(**f32)
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    return lambda: sess.run(["logits"], feed)


def _parameters(shape: str, vocab: int) -> int:
    """Parameter count of a shape, built on torch's meta device (no memory, no time)."""
    import torch
    from transformers import AlbertForSequenceClassification

    from edge_albert.modeling import SHAPES as KNOWN
    from edge_albert.modeling import albert_config, parameter_count

    if shape not in KNOWN:
        raise SystemExit(f"unknown shape {shape!r} (known: {', '.join(KNOWN)})")
    with torch.device("meta"):
        return parameter_count(AlbertForSequenceClassification(albert_config(shape,
                                                                             vocab_size=vocab)))


def markdown(rows: Sequence[dict], skipped: dict[str, str]) -> str:
    head = ("| shape | params | file | size MB | bytes/param | convert s | max abs dlogit |"
            " agree | p50 ms | encoder int8 |\n|---|---:|---|---:|---:|---:|---:|---:|---:|---|\n")
    body = "".join(
        f"| {r['shape']} | {r['parameters'] / 1e6:.2f} M | {r['format']} {r['precision']} |"
        f" {r['size_bytes'] / 1e6:.1f} | {r['bytes_per_parameter']:.2f} |"
        f" {'' if r['convert_s'] is None else r['convert_s']} | {r['max_abs_logit_diff']:.1e} |"
        f" {r['agreement']:.1%} | {r['latency_ms_p50']:.1f} | {r.get('encoder_weights_int8', '')} |\n"
        for r in rows)
    tail = "".join(f"\n- {s}: skipped ({why})" for s, why in skipped.items())
    return head + body + tail + "\n"


def main(argv: Sequence[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shapes", default=",".join(SHAPES),
                    help="comma-separated ALBERT shapes (base, large, xlarge, xxlarge)")
    ap.add_argument("--quick", action="store_true",
                    help="the tiny shape only, few iterations (for tests)")
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--iters", type=int, default=None, help="latency iterations (20; quick 5)")
    ap.add_argument("--out-dir", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    shapes = ["tiny"] if args.quick else [s.strip() for s in args.shapes.split(",") if s.strip()]
    vocab = 1000 if args.quick else 30000
    iters = args.iters or (5 if args.quick else 20)
    rows: list[dict] = []
    skipped: dict[str, str] = {}
    for shape in shapes:
        params = _parameters(shape, vocab)
        need, have = PEAK_FACTOR * 4 * params, _available_bytes()
        if need > have:
            skipped[shape] = (f"estimated peak {need / 2**30:.1f} GiB > available"
                              f" {have / 2**30:.1f} GiB")
            print(f"{shape}: {skipped[shape]}", file=sys.stderr)
            continue
        t = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix=f"bench-{shape}-") as work:
            new = bench_shape(shape, seq=args.seq_len, threads=args.threads, iters=iters,
                              vocab=vocab, work=Path(work))
        # the process's peak RSS so far: shapes run smallest first, so it is this shape's peak
        peak = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
        rows += [{**r, "process_peak_rss_mb": peak} for r in new]
        gc.collect()
        print(f"{shape}: done in {time.perf_counter() - t:.0f} s", file=sys.stderr)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _common import dump_json, machine

    result = {"benchmark": "convert_variants", "quick": args.quick, "seq_len": args.seq_len,
              "batch": 1, "threads": args.threads, "iters": iters,
              "command": "python benchmarks/convert_variants.py " + " ".join(argv or sys.argv[1:]),
              # load > 1 per core means shared cores: OpenMP (torch) latencies suffer most
              "machine": {**machine(), "load_average_1m": round(os.getloadavg()[0], 2)},
              "rows": rows, "skipped": skipped}
    args.out_dir.mkdir(parents=True, exist_ok=True)
    stem = "convert_variants.quick" if args.quick else "convert_variants"

    dump_json(args.out_dir / f"{stem}.json", result)
    (args.out_dir / f"{stem}.md").write_text(markdown(rows, skipped))
    print(markdown(rows, skipped))
    return result


if __name__ == "__main__":
    main()
