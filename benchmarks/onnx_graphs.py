"""Plain vs fused ONNX graphs (#18 item 1): the same student converted both ways, timed side by
side in one run, with dev accuracy and where each int8 file's time goes.

    python benchmarks/onnx_graphs.py             # the default SST-2 student
    python benchmarks/onnx_graphs.py --quick --out-dir /tmp/g   # tiny random ALBERT (a test)

Converts the student with ``--onnx-graph plain`` and ``fused`` (fp32 and int8-dynamic ONNX,
cached under ``--work``), times the four files interleaved at batch 1 and 8 x 32, 64, 128 tokens
with 1 thread, and 1 x 64 and 8 x 128 with 2 threads, scores each on the dev set, and profiles
both int8 files with ONNX Runtime's profiler at 8 x 128. Writes ``onnx-graphs-<isa>.json`` and
``.md`` (``.quick`` with ``--quick``): ``fused_over_plain`` > 1 means the fused file is slower.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    DATA,
    REPO,
    RESULTS,
    feeds_at,
    interleaved,
    machine,
    ort_profile,
    quick_setup,
    stats_ms,
    write_results,
)

GRAPHS = ("plain", "fused")
PRECISIONS = ("fp32", "int8-dynamic")
SHAPES = [(1, b, s) for b in (1, 8) for s in (32, 64, 128)] + [(2, 1, 64), (2, 8, 128)]


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--student", type=Path,
                    default=REPO / "runs" / "sst2" / "student-pruned-f33-trim")
    ap.add_argument("--dev", type=Path, default=DATA / "sst2" / "dev.tsv")
    ap.add_argument("--work", type=Path, default=None,
                    help="converted files are cached here (default runs/bench/onnx-graphs)")
    ap.add_argument("--out-dir", type=Path, default=RESULTS)
    ap.add_argument("--budget", type=float, default=2.0, help="timing seconds per shape")
    ap.add_argument("--quick", action="store_true", help="tiny random ALBERT; seconds (a test)")
    return ap.parse_args(argv)


def convert_both(student: Path, work: Path, quick: bool) -> dict[str, Path]:
    from edge_albert.converters.convert import ConvertConfig, run_convert

    out = {}
    for graph in GRAPHS:
        d = work / graph
        if not (d / "manifest.json").is_file():
            cfg = ConvertConfig(formats=("onnx",), precisions=PRECISIONS, onnx_graph=graph,
                                buckets=(32, 64, 128), fixed_shapes=(),
                                parity_examples=32 if quick else 256)
            run_convert(cfg, student, d, progress=not quick)
        out[graph] = d
    return out


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    from edge_albert.runtime import Classifier
    from edge_albert.runtime.backends import open_backend
    from edge_albert.runtime.tokenizer import TextTokenizer

    from edge_albert.artifacts import load_manifest
    from edge_albert.data import read_dataset

    args = parse(argv)
    t0 = time.perf_counter()
    work = args.work or (args.out_dir / "onnx_graphs_quick_work" if args.quick
                         else REPO / "runs" / "bench" / "onnx-graphs")
    if args.quick:
        q = quick_setup(work)
        args.student, args.dev = q["model"], q["dev"]
    if not args.student.exists() or not args.dev.exists():
        raise SystemExit(f"error: {args.student if not args.student.exists() else args.dev}"
                         " not found (pass --student/--dev)")
    dirs = convert_both(args.student, work, args.quick)
    dev = read_dataset(args.dev)
    inputs, gold = list(dev.inputs()), np.asarray([str(y) for y in dev.labels])
    if args.quick:
        inputs, gold = inputs[:32], gold[:32]
    texts = [x if isinstance(x, str) else x[0] for x in inputs]  # timing feeds: first texts
    files = {f"{g} {p}": dirs[g] / f"model.{p}.onnx" for g in GRAPHS for p in PRECISIONS}
    facts: dict[str, dict[str, Any]] = {}
    preds = {}
    for name, path in files.items():
        meta = load_manifest(path.parent).files[path.name]
        labels, _ = Classifier.load(path.parent, model=path.name, threads=1).predict(
            inputs, batch_size=32)
        preds[name] = np.asarray(labels)
        facts[name] = {"file": str(path), "size_mb": round(path.stat().st_size / 1e6, 3),
                       "dev_accuracy": round(float((preds[name] == gold).mean()), 4),
                       "ops": meta["census"]["ops"],
                       "max_abs_logit_diff_vs_torch": meta["parity"]["max_abs_logit_diff"]}
    for p in PRECISIONS:
        facts[f"fused {p}"]["agreement_with_plain"] = round(float(
            (preds[f"fused {p}"] == preds[f"plain {p}"]).mean()), 4)
    tok = TextTokenizer.load(dirs["plain"])
    rows = []
    for threads, batch, seq in SHAPES:
        feed = feeds_at(tok, texts, seq=seq, batch=batch, n_batches=1)[0]
        backends = {n: open_backend(f, threads=threads) for n, f in files.items()}
        runners = {n: (lambda be=be, feed=feed: be.run(feed)) for n, be in backends.items()}
        p50 = {k: stats_ms(v)["p50_ms"] for k, v in interleaved(
            runners, rounds=5, budget_s=args.budget).items()}
        ratio = {p: round(p50[f"fused {p}"] / p50[f"plain {p}"], 3) for p in PRECISIONS}
        rows.append({"threads": threads, "batch": batch, "seq": seq, "p50_ms": p50,
                     "fused_over_plain": ratio})
        print(f"  {threads} thr b{batch} x {seq}: " + ", ".join(
            f"{k} {v:.3f}" for k, v in p50.items()), file=sys.stderr)
    feed8 = feeds_at(tok, texts, seq=128, batch=8, n_batches=1)[0]
    profiles = {g: ort_profile(files[f"{g} int8-dynamic"], feed8, runs=3 if args.quick else 20)[:10]
                for g in GRAPHS}
    result = {"machine": machine(), "student": str(args.student), "files": facts, "shapes": rows,
              "median_fused_over_plain": {p: round(statistics.median(
                  r["fused_over_plain"][p] for r in rows), 3) for p in PRECISIONS},
              "ort_profile_int8_b8x128": profiles,
              "command": "python benchmarks/onnx_graphs.py" + (" --quick" if args.quick else ""),
              "seconds": round(time.perf_counter() - t0, 1)}
    stem = f"onnx-graphs-{result['machine']['isa']}" + (".quick" if args.quick else "")
    write_results(args.out_dir, stem, result, markdown(result))
    return result


def markdown(r: dict[str, Any]) -> str:
    m = r["machine"]
    lines = [f"# Plain vs fused ONNX graphs on {m['cpu']} ({m['isa']}, {m['cores']} cores)", "",
             f"Flags: {', '.join(m['flags'])}. onnxruntime {m['versions']['onnxruntime']}."
             f" Command: `{r['command']}` ({r['seconds']} s). Student `{r['student']}`.", "",
             "| file | MB | dev acc | agree w/ plain | max abs logit diff vs torch | key ops |",
             "|---|---:|---:|---:|---:|---|"]
    for name, f in r["files"].items():
        key = {k: v for k, v in f["ops"].items() if k in (
            "Attention", "QAttention", "SkipLayerNormalization", "BiasGelu", "FastGelu",
            "Softmax", "MatMul", "MatMulInteger")}
        lines.append(f"| {name} | {f['size_mb']:.2f} | {100 * f['dev_accuracy']:.2f} % |"
                     f" {f.get('agreement_with_plain', 1.0):.2%} |"
                     f" {f['max_abs_logit_diff_vs_torch']:.1e} | {key} |")
    lines += ["", "Median ms per call (interleaved); fused / plain above 1 means fused is slower:",
              "", "| threads | batch x seq | plain fp32 | fused fp32 | fused/plain | plain int8"
              " | fused int8 | fused/plain |", "|---:|---|---:|---:|---:|---:|---:|---:|"]
    for row in r["shapes"]:
        p, q = row["p50_ms"], row["fused_over_plain"]
        lines.append(f"| {row['threads']} | {row['batch']} x {row['seq']} | {p['plain fp32']:.3f}"
                     f" | {p['fused fp32']:.3f} | {q['fp32']:.2f} |"
                     f" {p['plain int8-dynamic']:.3f} | {p['fused int8-dynamic']:.3f} |"
                     f" {q['int8-dynamic']:.2f} |")
    med = r["median_fused_over_plain"]
    lines += ["", f"Median fused / plain: fp32 {med['fp32']:.2f}, int8-dynamic"
              f" {med['int8-dynamic']:.2f}.", "",
              "Where the int8 time goes (ONNX Runtime's profiler, batch 8 x 128, 1 thread):", ""]
    for g, prof in r["ort_profile_int8_b8x128"].items():
        lines.append(f"- {g}: " + ", ".join(f"{p['op_type']} {p['ms_per_call']:.2f} ms"
                                            f" ({p['share']:.0%})" for p in prof[:7]))
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
