"""The latency matrix: teacher and student, every file, every shape, side by side in one run.

Rows: the teacher in torch fp32 and ONNX Runtime fp32; the student in torch fp32; every file the
project's converter writes for the student (ONNX fp32 / int8-dynamic / int8-static QDQ, the same
three as .ort, TFLite fp32 / fp16 / int8-dynamic / full-integer int8-static), and the files the
mobile clients load as they are: ExecuTorch ``.pte`` (fp32, int8-dynamic, int8-static; when the
executorch extra is installed) and text-in ``.e2e.onnx`` (fp32, int8-dynamic; WordPiece students:
text in, so its cells include tokenization, one text per call). Columns: sequence
length 32, 64, 128 x batch 1, 8 x 1, 2 threads: median and p90 latency and throughput; plus file
size, peak RSS (each model alone in a fresh process) and dev accuracy (all rows through the real
tokenizer). Candidates are timed in interleaved rounds, so load on the machine hits all alike.

    python benchmarks/latency_matrix.py                       # the SST-2 teacher and student
    python benchmarks/latency_matrix.py --student runs/sst2/student-small-aug2
    python benchmarks/latency_matrix.py --quick --out-dir /tmp/m   # tiny random model, seconds

Writes ``latency_matrix.json``, ``latency_matrix.md`` and ``latency_matrix.png`` into
``--out-dir`` (``benchmarks/results`` by default; ``latency_matrix.quick.*`` with --quick).
"""
from __future__ import annotations

import argparse
import json
import subprocess
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
    quick_setup,
    stats_ms,
    student_artifact,
    torch_runner,
    write_results,
)

STUDENT_FILES = ("model.fp32.onnx", "model.int8-dynamic.onnx", "model.int8-static.onnx",
                 "model.fp32.ort", "model.int8-dynamic.ort", "model.int8-static.ort",
                 "model.fp32.tflite", "model.fp16.tflite", "model.int8-dynamic.tflite",
                 "model.int8-static.tflite")

#: the mobile clients' files, converted into their own cached artifact (see client_artifact)
CLIENT_FILES = ("model.fp32.pte", "model.int8-dynamic.pte", "model.int8-static.pte",
                "model.fp32.e2e.onnx", "model.int8-dynamic.e2e.onnx")

RSS_PROBE = r"""
import json, sys, numpy as np
sys.path.insert(0, {bench!r})
from _common import feeds_at
from edge_albert.runtime.timing import current_rss_mb, peak_rss_mb
kind, path, tok_dir, threads = {kind!r}, {path!r}, {tok!r}, {threads}
from edge_albert.runtime.tokenizer import TextTokenizer
tok = TextTokenizer.load(tok_dir)
feed = feeds_at(tok, ["a fine and moving film"], seq=128, batch=8, n_batches=1)[0]
if kind == "torch":
    import torch
    torch.set_num_threads(threads)
    from edge_albert.modeling import load_classifier
    base = current_rss_mb()
    model = load_classifier(path)
    with torch.inference_mode():
        model(**{{k: torch.from_numpy(v) for k, v in feed.items()}})
else:
    from edge_albert.runtime.backends import open_backend
    base = current_rss_mb()
    be = open_backend(path, threads=threads)
    be.run({{"text": ["a fine and moving film " * 20] * 8}} if be.takes_text else feed)
print(json.dumps({{"baseline_rss_mb": base, "peak_rss_mb": peak_rss_mb()}}))
"""


def peak_rss(kind: str, path: Path, tokenizer: Path, threads: int) -> dict[str, float]:
    """Peak RSS of a fresh process that loads one model and runs batch 8 x 128 once."""
    code = RSS_PROBE.format(bench=str(Path(__file__).resolve().parent), kind=kind,
                            path=str(path), tok=str(tokenizer), threads=threads)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=600)
    if r.returncode != 0:
        return {"error": (r.stderr.strip().splitlines() or ["?"])[-1][:300]}
    got = json.loads(r.stdout.strip().splitlines()[-1])
    got["model_rss_mb"] = round(got["peak_rss_mb"] - got["baseline_rss_mb"], 1)
    return got


def client_artifact(student: Path, calibration: Path, out: Path, *, quick: bool) -> Path | None:
    """The student's ExecuTorch and text-in files (converted once and cached under ``out``):
    ``.pte`` when executorch is installed, ``.e2e.onnx`` when the tokenizer is WordPiece. With
    --quick, the fp32 ``.pte`` only (a test of the path, in seconds)."""
    import importlib.util

    from edge_albert.converters.convert import ConvertConfig, run_convert
    from edge_albert.converters.onnx_e2e import e2e_refusal

    if (out / "manifest.json").is_file():
        return out
    formats = (["pte"] if importlib.util.find_spec("executorch") else []) + (
        [] if quick or e2e_refusal(student) else ["onnx-e2e"])
    if not formats:
        return None
    precisions = ("fp32",) if quick else ("fp32", "int8-dynamic", "int8-static")
    cfg = ConvertConfig(formats=tuple(formats), precisions=precisions, buckets=(32, 64, 128),
                        fixed_shapes=(), calibration_size=32 if quick else 256,
                        parity_examples=32 if quick else 256)
    run_convert(cfg, student, out, calibration=calibration, progress=not quick)
    return out


def teacher_onnx(teacher: Path, out: Path) -> Path:
    """The teacher exported to fp32 ONNX with the project's exporter (cached)."""
    from edge_albert.converters.onnx_export import export_onnx
    from edge_albert.converters.spec import ExportSpec

    from edge_albert.modeling import load_classifier, parameter_count

    path = out / "teacher.fp32.onnx"
    if path.is_file():
        return path
    out.mkdir(parents=True, exist_ok=True)
    model = load_classifier(teacher)
    ids = np.full((2, 16), 1000, dtype=np.int64)
    mask = np.ones_like(ids)
    ids[1, 8:], mask[1, 8:] = 0, 0
    example = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
    export_onnx(model, path, example, spec=ExportSpec(buckets=(128,), max_length=128),
                parameters=parameter_count(model))
    return path


def accuracy_rows(models: dict[str, dict], dev: Path) -> None:
    """Dev accuracy (and agreement with torch fp32 of the same model) for every row, in place."""
    from edge_albert.runtime import Classifier
    from edge_albert.runtime.tokenizer import TextTokenizer

    from edge_albert.data import read_dataset
    from edge_albert.modeling import label_names_of, load_classifier
    from edge_albert.training import predict_logits, tokenize

    ref: dict[str, np.ndarray] = {}
    for m in models.values():
        if m["kind"] != "torch":
            continue
        model = load_classifier(m["path"])
        names = label_names_of(model)
        ds = read_dataset(dev, label_names=names)
        logits = predict_logits(model, tokenize(TextTokenizer.load(m["tokenizer"]), ds, names,
                                                m["max_length"]))
        y = np.asarray(ds.label_ids(names))
        m["accuracy"] = round(float((logits.argmax(-1) == y).mean()), 4)
        ref[m["role"]] = logits.argmax(-1)
        m["agreement_with_torch"] = 1.0
        m["_names"] = names
    for m in models.values():
        if m["kind"] == "torch":
            continue
        names = next(x["_names"] for x in models.values() if x["kind"] == "torch"
                     and x["role"] == m["role"])
        ds = read_dataset(dev, label_names=names)
        clf = Classifier.load(m["path"], tokenizer=m["tokenizer"], threads=2)
        clf.max_length = min(clf.max_length, m["max_length"])
        texts = list(zip(ds.texts, ds.pairs)) if ds.pairs else list(ds.texts)
        pred = clf.logits(texts, batch_size=32).argmax(-1)
        m["accuracy"] = round(float((pred == np.asarray(ds.label_ids(names))).mean()), 4)
        m["agreement_with_torch"] = round(float((pred == ref[m["role"]]).mean()), 4)
    for m in models.values():
        m.pop("_names", None)


def measure(models: dict[str, dict], dev: Path, *, seqs: Sequence[int], batches: Sequence[int],
            threads: Sequence[int], budget_s: float, rounds: int) -> list[dict]:
    """Latency cells: every model at every (threads, seq, batch), interleaved per cell."""
    import torch
    from _common import texts_at
    from edge_albert.runtime.backends import open_backend
    from edge_albert.runtime.tokenizer import TextTokenizer

    from edge_albert.data import read_dataset
    from edge_albert.modeling import load_classifier

    texts = list(read_dataset(dev).texts)
    toks = {m["tokenizer"]: TextTokenizer.load(m["tokenizer"]) for m in models.values()}
    cells = []
    torch_models = {n: load_classifier(m["path"]) for n, m in models.items() if m["kind"] == "torch"}
    for t in threads:
        torch.set_num_threads(t)
        backends = {n: open_backend(m["path"], threads=t) for n, m in models.items()
                    if m["kind"] != "torch"}
        for seq in seqs:
            for b in batches:
                runners = {}
                for n, m in models.items():
                    feed = feeds_at(toks[m["tokenizer"]], texts, seq=seq, batch=b, n_batches=1)[0]
                    if m["kind"] == "torch":
                        runners[n] = torch_runner(torch_models[n], feed)
                    else:
                        be = backends[n]
                        if be.takes_text:  # text in: the same texts, cut to seq tokens
                            feed = {"text": texts_at(toks[m["tokenizer"]], texts, seq=seq,
                                                     batch=b)}
                        runners[n] = (lambda be=be, feed=feed: be.run(feed))
                samples = interleaved(runners, rounds=rounds, budget_s=budget_s)
                for n, s in samples.items():
                    st = stats_ms(s)
                    cells.append({"model": n, "threads": t, "seq": seq, "batch": b, **st,
                                  "rows_per_s": round(b / (st["p50_ms"] / 1000.0), 1)})
                print(f"  threads {t} seq {seq} batch {b}: "
                      + ", ".join(f"{n} {stats_ms(s)['p50_ms']:.2f}" for n, s in samples.items()),
                      file=sys.stderr)
    return cells


def headline(models: dict[str, dict], cells: list[dict]) -> dict[str, Any]:
    """Best int8 student file vs the float teacher in torch, per cell, and overall."""
    cell = {(c["model"], c["threads"], c["seq"], c["batch"]): c["p50_ms"] for c in cells}
    int8 = [n for n, m in models.items() if m["role"] == "student" and "int8" in n]
    teacher = "teacher torch fp32"
    per_cell = []
    for (_, t, s, b) in sorted({k for k in cell if k[0] == teacher}):
        best = min(int8, key=lambda n: cell[(n, t, s, b)])
        per_cell.append({"threads": t, "seq": s, "batch": b, "best_int8_file": best,
                         "speedup_vs_teacher_torch": round(cell[(teacher, t, s, b)]
                                                           / cell[(best, t, s, b)], 2)})
    best_acc = max(int8, key=lambda n: models[n]["accuracy"])
    speedups = [c["speedup_vs_teacher_torch"] for c in per_cell]
    return {
        "int8_student_vs_float_teacher": {
            "speedup_min": min(speedups), "speedup_median": float(np.median(speedups)),
            "speedup_max": max(speedups),
            "size_ratio": round(models[teacher]["size_bytes"] / min(
                models[n]["size_bytes"] for n in int8), 1),
            "accuracy_teacher": models[teacher]["accuracy"],
            "accuracy_best_int8": models[best_acc]["accuracy"], "best_int8_by_accuracy": best_acc,
            "accuracy_diff_points": round(100 * (models[best_acc]["accuracy"]
                                                 - models[teacher]["accuracy"]), 2)},
        "per_cell": per_cell}


def markdown(result: dict) -> str:
    models, cells = result["models"], result["cells"]
    cell = {(c["model"], c["threads"], c["seq"], c["batch"]): c for c in cells}
    keys = sorted({(c["threads"], c["seq"], c["batch"]) for c in cells})
    lines = ["| model | size MB | dev acc | agree | peak RSS MB | "
             + " | ".join(f"t{t} s{s} b{b}" for t, s, b in keys) + " |",
             "|---|---:|---:|---:|---:|" + "---:|" * len(keys)]
    for n, m in models.items():
        lat = " | ".join(f"{cell[(n, *k)]['p50_ms']:.2f}" for k in keys)
        lines.append(f"| {n} | {m['size_bytes'] / 1e6:.2f} | {m.get('accuracy', float('nan')):.2%} |"
                     f" {m.get('agreement_with_torch', float('nan')):.1%} |"
                     f" {m.get('rss', {}).get('peak_rss_mb', '')} | {lat} |")
    h = result["headline"]["int8_student_vs_float_teacher"]
    lines += ["", ("Cells: median ms per call (t threads, s sequence length, b batch); p90 and"
                   " throughput are in the JSON."), "",
              (f"Headline: best int8 student file vs the teacher in torch fp32: {h['speedup_min']}-"
              f"{h['speedup_max']}x faster (median {h['speedup_median']}x over the cells),"
              f" {h['size_ratio']}x smaller, accuracy {h['accuracy_diff_points']:+.2f} points"
              f" ({h['best_int8_by_accuracy']}: {h['accuracy_best_int8']:.2%} vs"
              f" {h['accuracy_teacher']:.2%}).")]
    return "\n".join(lines) + "\n"


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cells = result["cells"]
    fig, axes = plt.subplots(1, 2, figsize=(13, 5))
    colors = plt.get_cmap("tab20").colors
    sizes = sorted({c["batch"] for c in cells})
    for ax, batch in zip(axes, (sizes[0], sizes[-1])):
        for i, n in enumerate(result["models"]):
            pts = sorted((c["seq"], c["p50_ms"]) for c in cells
                         if c["model"] == n and c["batch"] == batch and c["threads"] == 1)
            if pts:
                ax.plot(*zip(*pts), marker="os^vD<>"[i % 7], label=n, color=colors[i % 20],
                        linestyle="--" if "teacher" in n else "-")
        ax.set(xlabel="sequence length", ylabel="median latency, ms (1 thread)", yscale="log",
               title=f"batch {batch}")
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.suptitle(f"latency matrix ({result['subject']}; {result['machine']['cpu']})", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--teacher", type=Path, default=REPO / "runs" / "sst2" / "teacher")
    ap.add_argument("--student", type=Path, default=REPO / "runs" / "sst2" / "student-small")
    ap.add_argument("--dev", type=Path, default=DATA / "sst2" / "dev.tsv")
    ap.add_argument("--calibration", type=Path, default=DATA / "sst2" / "train.tsv")
    ap.add_argument("--work", type=Path, default=None, help="where converted files are cached")
    ap.add_argument("--out-dir", type=Path, default=RESULTS)
    ap.add_argument("--budget", type=float, default=1.0, help="seconds per model per cell")
    ap.add_argument("--quick", action="store_true", help="tiny random ALBERT; seconds (a test)")
    args = ap.parse_args(argv)

    t_start = time.time()
    if args.quick:
        work = args.work or args.out_dir / "latency_matrix_quick_work"
        q = quick_setup(work)
        teacher, student, dev, cal = q["model"], q["model"], q["dev"], q["train"]
        seqs, batches, threads, rounds, budget = (16, 32), (1, 2), (1,), 2, 0.02
        subject = "--quick: a tiny random ALBERT as both teacher and student (numbers mean nothing)"
    else:
        for p in (args.teacher, args.student, args.dev):
            if not p.exists():
                raise SystemExit(f"error: {p} not found (run benchmarks/distill.py --task sst2"
                                 " first, or pass --teacher/--student/--dev)")
        work = args.work or REPO / "runs" / "bench" / f"matrix-{args.student.name}"
        teacher, student, dev, cal = args.teacher, args.student, args.dev, args.calibration
        seqs, batches, threads, rounds, budget = (32, 64, 128), (1, 8), (1, 2), 5, args.budget
        subject = f"SST-2: {teacher.parent.name}/{teacher.name} vs {student.parent.name}/{student.name}"
    art = student_artifact(student, cal, work / "student", quick=args.quick)
    t_onnx = teacher_onnx(teacher, work / "teacher")
    max_len = 128

    models: dict[str, dict] = {
        "teacher torch fp32": {"role": "teacher", "kind": "torch", "path": str(teacher),
                               "tokenizer": str(teacher),
                               "size_bytes": (teacher / "model.safetensors").stat().st_size},
        "teacher onnx fp32": {"role": "teacher", "kind": "onnx", "path": str(t_onnx),
                              "tokenizer": str(teacher), "size_bytes": t_onnx.stat().st_size},
        "student torch fp32": {"role": "student", "kind": "torch", "path": str(student),
                               "tokenizer": str(student),
                               "size_bytes": (student / "model.safetensors").stat().st_size},
    }
    for f in STUDENT_FILES:
        if (art / f).is_file():
            models[f"student {f.removeprefix('model.')}"] = {
                "role": "student", "kind": f.rsplit(".", 1)[1], "path": str(art / f),
                "tokenizer": str(art), "size_bytes": (art / f).stat().st_size}
    clients = client_artifact(student, cal, work / "clients", quick=args.quick)
    for f in CLIENT_FILES if clients else ():
        if (clients / f).is_file():
            kind = "e2e" if f.endswith(".e2e.onnx") else "pte"
            models[f"student {f.removeprefix('model.')}"] = {
                "role": "student", "kind": kind, "path": str(clients / f),
                "tokenizer": str(clients), "size_bytes": (clients / f).stat().st_size}
    for m in models.values():
        m["max_length"] = max_len
    print("accuracy on the dev set ...", file=sys.stderr)
    accuracy_rows(models, dev)
    print("peak RSS, one fresh process per model ...", file=sys.stderr)
    for m in models.values():
        m["rss"] = peak_rss("torch" if m["kind"] == "torch" else "file", Path(m["path"]),
                            Path(m["tokenizer"]), 1)
    print("latency cells ...", file=sys.stderr)
    cells = measure(models, dev, seqs=seqs, batches=batches, threads=threads, budget_s=budget,
                    rounds=rounds)
    result = {"subject": subject, "machine": machine(), "dev": str(dev),
              "command": "python benchmarks/latency_matrix.py " + " ".join(argv or sys.argv[1:]),
              "timing": {"rounds": rounds, "seconds_per_model_per_cell": budget,
                         "inputs": "real dev texts, repeated to fill the sequence length"},
              "models": models, "cells": cells}
    result["headline"] = headline(models, cells)
    result["wall_seconds"] = round(time.time() - t_start, 1)
    stem = "latency_matrix.quick" if args.quick else "latency_matrix"
    write_results(args.out_dir, stem, result, markdown(result))
    plot(result, args.out_dir / f"{stem}.png")
    print(markdown(result))
    return result


if __name__ == "__main__":
    main()
