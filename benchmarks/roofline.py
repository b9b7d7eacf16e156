"""How close each file comes to this CPU's measured peak: a compute roofline at batch 1 and 8.

1. Peaks, measured here: fp32 GEMM through torch (MKL/oneDNN), int8 GEMM
   through ONNX Runtime's ``MatMulInteger`` (the MLAS kernel the int8 ONNX files run) and torch's
   ``_int_mm``; at a large square shape (the machine's peak) and at the model's own GEMM shape
   (tokens x hidden x intermediate: what these kernels can reach on matrices this small).
2. Work, counted from the model's graph: ``torch.utils.flop_counter`` on the student at each
   (batch, sequence): weight GEMMs (``mm``/``addmm``, int8 in the int8 files) and the rest
   (attention ``bmm``, float in every file).
3. Each file's median latency (interleaved rounds) -> achieved GFLOP/s and the fraction of the
   time bound ``weight_flops / int8_peak + other_flops / fp32_peak`` (fp32 files: all at fp32).

    python benchmarks/roofline.py                        # the SST-2 student (runs/sst2/...)
    python benchmarks/roofline.py --quick --out-dir /tmp/r  # tiny random ALBERT, seconds

Writes ``roofline.json``, ``roofline.md`` and ``roofline.png`` (``roofline.quick.*``).
"""
from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    feeds_at,
    interleaved,
    machine,
    stats_ms,
    student_parser,
    student_subject,
    write_results,
)

FILES = ("model.fp32.onnx", "model.int8-dynamic.onnx", "model.int8-static.onnx",
         "model.fp32.tflite", "model.fp16.tflite", "model.int8-dynamic.tflite",
         "model.int8-static.tflite")


def _best_rate(fn, ops: float, budget_s: float) -> float:
    """Best observed operations per second of ``fn`` (the peak is the fastest call)."""
    fn()
    best, start = float("inf"), time.perf_counter()
    while time.perf_counter() - start < budget_s:
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return ops / best


def _matmul_integer_session(k: int, n: int, threads: int):
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    b = numpy_helper.from_array(rng.integers(-127, 128, size=(k, n), dtype=np.int8), "B")
    graph = helper.make_graph(
        [helper.make_node("MatMulInteger", ["A", "B"], ["Y"])], "mmi",
        [helper.make_tensor_value_info("A", TensorProto.UINT8, ["M", k])],
        [helper.make_tensor_value_info("Y", TensorProto.INT32, ["M", n])], [b])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    return ort.InferenceSession(model.SerializeToString(), so,
                                providers=["CPUExecutionProvider"])


def peaks(shapes: dict[str, tuple[int, int, int]], threads: Sequence[int],
          budget_s: float) -> list[dict[str, Any]]:
    """GEMM throughput (G op/s, one multiply-add = 2 ops) per kernel, shape and thread count."""
    import torch

    rows = []
    rng = np.random.default_rng(0)
    for t in threads:
        torch.set_num_threads(t)
        for label, (m, k, n) in shapes.items():
            ops = 2.0 * m * k * n
            a32 = torch.from_numpy(rng.standard_normal((m, k), dtype=np.float32))
            b32 = torch.from_numpy(rng.standard_normal((k, n), dtype=np.float32))
            # (numpy is left out: its BLAS picks its own thread count at import, so a
            # "1 thread" numpy peak would be a 2-core one)
            got = {"torch fp32 mm": _best_rate(lambda a32=a32, b32=b32: torch.mm(a32, b32), ops, budget_s)}
            sess = _matmul_integer_session(k, n, t)
            a8 = rng.integers(0, 256, size=(m, k), dtype=np.uint8)
            got["onnxruntime int8 MatMulInteger"] = _best_rate(
                lambda sess=sess, a8=a8: sess.run(None, {"A": a8}), ops, budget_s)
            if hasattr(torch, "_int_mm") and m > 16 and k % 8 == 0 and n % 8 == 0:
                ai = torch.from_numpy(rng.integers(-127, 128, size=(m, k), dtype=np.int8))
                bi = torch.from_numpy(rng.integers(-127, 128, size=(k, n), dtype=np.int8))
                with contextlib.suppress(RuntimeError):  # not built for this CPU
                    got["torch int8 _int_mm"] = _best_rate(lambda ai=ai, bi=bi: torch._int_mm(ai, bi), ops,
                                                           budget_s)
            for kernel, rate in got.items():
                rows.append({"kernel": kernel, "shape": label, "m": m, "k": k, "n": n,
                             "threads": t, "gops": round(rate / 1e9, 2)})
    return rows


def count_flops(model_dir: Path, *, batch: int, seq: int) -> dict[str, int]:
    """Forward-pass FLOPs of the classifier from torch's flop counter, split by kind: the
    forward the converted files run (an ALBERT's last pass for the first token only, see
    ``edge_albert.converters.onnx_export.logits_module``), so a fraction of the limit counts
    the work a file does, not work it skips."""
    import torch
    from edge_albert.converters.onnx_export import logits_module
    from torch.utils.flop_counter import FlopCounterMode

    from edge_albert.modeling import load_classifier

    model = load_classifier(model_dir)
    model.config._attn_implementation = "eager"  # count attention as the bmm the files run
    ids = torch.full((batch, seq), 5, dtype=torch.long)
    with torch.inference_mode(), FlopCounterMode(display=False) as fc:
        logits_module(model)(ids, torch.ones_like(ids), torch.zeros_like(ids))
    per_op = {str(k).split(".")[-1] if not hasattr(k, "__name__") else k.__name__: int(v)
              for k, v in fc.get_flop_counts()["Global"].items()}
    weight = sum(v for k, v in per_op.items() if k.startswith(("mm", "addmm")))
    return {"total": sum(per_op.values()), "weight_gemm": weight,
            "other": sum(per_op.values()) - weight, "by_op": per_op}  # type: ignore[dict-item]


def main(argv: Sequence[str] | None = None) -> dict:
    ap = student_parser(__doc__)
    ap.add_argument("--seq", type=int, default=128)
    args = ap.parse_args(argv)
    from edge_albert.runtime.backends import open_backend
    from edge_albert.runtime.tokenizer import TextTokenizer

    from edge_albert.data import read_dataset

    t_start = time.time()
    subj = student_subject(args, "roofline")
    student, dev, art, subject = subj["student"], subj["dev"], subj["artifact"], subj["subject"]
    if args.quick:
        seq, threads, budget, rounds, peak_budget = 32, (1,), 0.05, 2, 0.05
    else:
        seq, threads, budget, rounds, peak_budget = args.seq, (1, 2), 1.5, 5, 2.0
    from transformers import AutoConfig

    cfg = AutoConfig.from_pretrained(student)
    h, inter = cfg.hidden_size, cfg.intermediate_size
    shapes = {"large square": (1024, 1024, 1024) if not args.quick else (256, 256, 256),
              "model FFN, batch 1": (seq, h, inter), "model FFN, batch 8": (8 * seq, h, inter)}
    print("peaks ...", file=sys.stderr)
    peak_rows = peaks(shapes, threads, peak_budget)

    def peak(kind: str, shape: str, t: int) -> float:
        """The fastest kernel of a kind ("fp32" or "int8") at a shape: the attainable peak."""
        return max(r["gops"] for r in peak_rows if kind in r["kernel"]
                   and r["shape"] == shape and r["threads"] == t)

    tok = TextTokenizer.load(art)
    texts = list(read_dataset(dev).texts)
    rows = []
    for batch in (1, 8):
        flops = count_flops(student, batch=batch, seq=seq)
        for t in threads:
            files = {f: open_backend(art / f, threads=t) for f in FILES if (art / f).is_file()}
            feed = feeds_at(tok, texts, seq=seq, batch=batch, n_batches=1)[0]
            samples = interleaved({f: (lambda be=be, feed=feed: be.run(feed)) for f, be in files.items()},
                                  rounds=rounds, budget_s=budget)
            for f, s in samples.items():
                st = stats_ms(s)
                sec = st["p50_ms"] / 1000
                int8 = "int8" in f
                for ref in ("large square", f"model FFN, batch {batch}"):
                    p32 = peak("fp32", ref, t) * 1e9
                    p8 = peak("int8", ref, t) * 1e9 if int8 else p32
                    bound = flops["weight_gemm"] / p8 + flops["other"] / p32
                    rows.append({"file": f, "batch": batch, "seq": seq, "threads": t,
                                 "p50_ms": st["p50_ms"], "gflops_total": flops["total"] / 1e9,
                                 "int8_gops": flops["weight_gemm"] / 1e9 if int8 else 0.0,
                                 "achieved_gops": round(flops["total"] / sec / 1e9, 2),
                                 "peak_reference": ref,
                                 "bound_ms": round(bound * 1000, 4),
                                 "fraction_of_peak": round(bound / sec, 4)})
        print(f"  batch {batch}: {flops['total'] / 1e9:.3f} GFLOP per call", file=sys.stderr)
    result = {"subject": subject, "machine": machine(),
              "command": "python benchmarks/roofline.py " + " ".join(argv or sys.argv[1:]),
              "peaks": peak_rows, "flops": {b: count_flops(student, batch=b, seq=seq)
                                            for b in (1, 8)},
              "rows": rows, "wall_seconds": round(time.time() - t_start, 1),
              "method": ("fraction_of_peak = (weight GEMM ops / int8 peak + other ops / fp32 peak)"
                         " / measured median; fp32 and fp16 files use the fp32 peak for all"
                         " ops; a peak is the fastest call of the fastest kernel of its kind (fp32: torch.mm;"
                         " int8: ONNX Runtime MatMulInteger, torch._int_mm) at each"
                         " reference shape and thread count. Over 100 % means the file's own"
                         " kernels (e.g. XNNPACK in TFLite) beat every reference kernel at that"
                         " shape")}
    stem = "roofline.quick" if args.quick else "roofline"
    write_results(args.out_dir, stem, result, markdown(result))
    plot(result, args.out_dir / f"{stem}.png")
    print(markdown(result))
    return result


def markdown(result: dict) -> str:
    lines = ["| kernel | shape (m x k x n) | threads | G op/s |", "|---|---|---:|---:|"]
    lines += [f"| {r['kernel']} | {r['shape']} ({r['m']}x{r['k']}x{r['n']}) | {r['threads']} |"
              f" {r['gops']:.1f} |" for r in result["peaks"]]
    lines += ["", ("| file | batch | threads | p50 ms | achieved G op/s | % of large-square peak |"
                   " % of model-shape peak |"), "|---|---:|---:|---:|---:|---:|---:|"]
    by = {}
    for r in result["rows"]:
        by.setdefault((r["file"], r["batch"], r["threads"]), {})[r["peak_reference"]] = r
    for (f, b, t), refs in by.items():
        sq = refs["large square"]
        model = next(v for k, v in refs.items() if k != "large square")
        lines.append(f"| {f} | {b} | {t} | {sq['p50_ms']:.2f} | {sq['achieved_gops']:.1f} |"
                     f" {sq['fraction_of_peak']:.1%} | {model['fraction_of_peak']:.1%} |")
    lines += ["", result["method"] + "."]
    return "\n".join(lines) + "\n"


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in result["rows"] if r["peak_reference"] == "large square"]
    threads = sorted({r["threads"] for r in rows})
    fig, ax = plt.subplots(figsize=(10, 4.5))
    labels = sorted({r["file"] for r in rows}, key=lambda f: [x["file"] for x in rows].index(f))
    width = 0.8 / (2 * len(threads))
    for i, (b, t) in enumerate((b, t) for b in (1, 8) for t in threads):
        vals = [next((r["fraction_of_peak"] * 100 for r in rows if r["file"] == f
                      and r["batch"] == b and r["threads"] == t), 0) for f in labels]
        ax.bar(np.arange(len(labels)) + i * width, vals, width, label=f"batch {b}, {t} thread(s)")
    ax.set_xticks(np.arange(len(labels)) + 0.4 - width / 2)
    ax.set_xticklabels([x.removeprefix("model.") for x in labels], rotation=20, fontsize=8)
    ax.set(ylabel="% of measured peak (time bound / median)",
           title=f"roofline: {result['subject']}")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
