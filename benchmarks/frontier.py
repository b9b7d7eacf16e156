"""The accuracy / latency / size frontier: the teacher and every student, side by side in one run.

    python benchmarks/frontier.py --task sst2        # every model in distill_sst2.json
    python benchmarks/frontier.py --quick --out-dir /tmp/f    # tiny random models, seconds

Points: the teacher (fp32 in torch and ONNX; int8 through its ALBERT form, which converts like
any student) and every student in ``benchmarks/results/distill_<task>.json`` whose directory
exists (pruned, from-scratch presets, shared and trimmed variants). Each is converted once
(cached under ``runs/bench/frontier/<task>/``) to int8-dynamic ONNX and TFLite at the task's
length; then, through the device runtime and the real tokenizer, dev and held-out accuracy of
each int8 file, and the batch-1 latency of every file at the task's length on 1 thread, all
timed in interleaved rounds in this one run. Writes ``frontier_<task>.{json,md,png}``.
"""
from __future__ import annotations

import argparse
import json
import sys
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
    torch_runner,
    write_results,
)

LENGTH = {"sst2": 64, "mrpc": 128, "agnews": 128}
HELDOUT = {"sst2": "sentiment_heldout.tsv", "mrpc": "mrpc_heldout.tsv",
           "agnews": "agnews_heldout.tsv"}
FILES = {"onnx int8": "model.int8-dynamic.onnx", "tflite int8": "model.int8-dynamic.tflite"}
#: from-scratch presets whose trained directories are gone: timed on a random model of their shape
#: (``distill.py --only sizes`` writes it; latency and size depend on shapes only), placed at the
#: fp32 accuracy their row recorded
PRESETS = ("tiny", "small", "medium", "large")


def convert_point(model_dir: Path, calibration: Path, out: Path, seq: int, *,
                  albert_form: bool, quick: bool) -> Path:
    """int8-dynamic ONNX and TFLite of a model (an ALBERT form first for a BERT teacher)."""
    from edge_albert.converters.convert import ConvertConfig, run_convert

    if (out / "manifest.json").is_file():
        return out
    source = model_dir
    if albert_form:
        from edge_albert.albert_form import write_albert_form

        source = out.with_name(out.name + "-albert")
        if not (source / "manifest.json").is_file():
            write_albert_form(model_dir, source, force=True)
    cfg = ConvertConfig(formats=("onnx", "tflite"), precisions=("fp32", "int8-dynamic"),
                        buckets=(seq,), fixed_shapes=(), parity_examples=32 if quick else 128)
    run_convert(cfg, source, out, calibration=calibration, progress=not quick)
    return out


def file_accuracy(path: Path, data: Path, names: list[str]) -> float:
    from edge_albert.runtime import Classifier

    from edge_albert.data import read_dataset

    ds = read_dataset(data, label_names=names)
    clf = Classifier.load(path, threads=2)
    texts = list(zip(ds.texts, ds.pairs)) if ds.pairs else list(ds.texts)
    pred = clf.logits(texts, batch_size=32).argmax(-1)
    return round(float((pred == np.asarray(ds.label_ids(names))).mean()), 4)


def points(task: str, keys: list[str] | None, quick: bool, work: Path) -> tuple[dict, Path, Path]:
    """The models to place, as {name: {dir, role, ...}}, and the task's dev and train files."""
    if quick:
        q = quick_setup(work / "quick")
        return ({"teacher": {"dir": q["model"], "role": "teacher", "albert_form": False},
                 "student": {"dir": q["model"], "role": "student", "albert_form": False}},
                q["dev"], q["train"])
    results = json.loads((RESULTS / f"distill_{task}.json").read_text())
    teacher = results["teacher"]
    out = {"teacher": {"dir": REPO / teacher["path"], "role": "teacher", "albert_form": True,
                       "dev_accuracy_fp32": teacher["dev_accuracy"],
                       "heldout_accuracy_fp32": teacher.get("heldout_accuracy"),
                       "flops_per_seq_128": teacher["flops_per_seq_128"]}}
    for key, row in results.get("students", {}).items():
        d = REPO / row["path"]
        if (keys and key not in keys) or not (d / "manifest.json").is_file():
            continue
        out[key] = {"dir": d, "role": "student", "albert_form": False,
                    "default": bool(row.get("default")),
                    "dev_accuracy_fp32": row["dev_accuracy"],
                    "heldout_accuracy_fp32": row.get("heldout_accuracy"),
                    "flops_per_seq_128": row["flops_per_seq_128"],
                    "parameters": row["parameters"]}
    for key in PRESETS:  # from-scratch presets of earlier sessions: their shape, their accuracy
        row = results.get("students", {}).get(key)
        d = REPO / "runs" / task / "shapes" / key / "model"
        if row is None or (keys and key not in keys) or key in out or not d.is_dir():
            continue
        out[key] = {"dir": d, "role": "preset", "albert_form": False, "shape_only": True,
                    "dev_accuracy_fp32": row["dev_accuracy"],
                    "heldout_accuracy_fp32": row.get("heldout_accuracy"),
                    "flops_per_seq_128": row["flops_per_seq_128"],
                    "parameters": row["parameters"]}
    return out, DATA / task / "dev.tsv", DATA / task / "train.tsv"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", choices=sorted(LENGTH), default="sst2")
    ap.add_argument("--students", default=None, help="comma-separated keys (default: all)")
    ap.add_argument("--work", type=Path, default=REPO / "runs" / "bench" / "frontier")
    ap.add_argument("--out-dir", type=Path, default=RESULTS)
    ap.add_argument("--budget", type=float, default=3.0, help="seconds of timing per file (over 5 interleaved rounds)")
    ap.add_argument("--quick", action="store_true", help="tiny random models; seconds (a test)")
    ap.add_argument("--convert-only", action="store_true",
                    help="only fill the conversion cache (while training jobs still run);"
                         " no accuracy, no timing, nothing written to --out-dir")
    args = ap.parse_args(argv)
    import torch
    from edge_albert.runtime.backends import open_backend
    from edge_albert.runtime.tokenizer import TextTokenizer

    from edge_albert.data import read_dataset
    from edge_albert.modeling import label_names_of, load_classifier

    seq = 32 if args.quick else LENGTH[args.task]
    work = args.work / ("quick" if args.quick else args.task)
    models, dev, train = points(args.task, args.students.split(",") if args.students else None,
                                args.quick, work)
    held = None if args.quick else REPO / "benchmarks" / "heldout" / HELDOUT[args.task]
    torch.set_num_threads(1)
    texts = list(read_dataset(dev).texts)
    runners: dict[str, Any] = {}
    for name, m in models.items():
        art = convert_point(m["dir"], train, work / name, seq, albert_form=m["albert_form"],
                            quick=args.quick)
        if args.convert_only:
            print(f"converted {name}", file=sys.stderr)
            continue
        man = json.loads((art / "manifest.json").read_text())
        names = man["extra"]["labels"]
        tok = TextTokenizer.load(art)
        feed = feeds_at(tok, texts, seq=seq, batch=1, n_batches=1)[0]
        m["files"] = {}
        for label, fname in FILES.items():
            path = art / fname
            shape_only = m.get("shape_only", False)  # random weights: accuracy means nothing
            m["files"][label] = {
                "size_bytes": path.stat().st_size,
                "dev_accuracy": None if shape_only else file_accuracy(path, dev, names),
                "heldout_accuracy": (file_accuracy(path, held, names)
                                     if held and not shape_only else None)}
            be = open_backend(path, threads=1)
            runners[f"{name} | {label}"] = (lambda be=be, feed=feed: be.run(feed))
        if m["role"] == "teacher":
            t = load_classifier(m["dir"])
            m["fp32_size_bytes"] = (art / "model.fp32.onnx").stat().st_size
            runners[f"{name} | torch fp32"] = torch_runner(t, feed)
            be = open_backend(art / "model.fp32.onnx", threads=1)
            runners[f"{name} | onnx fp32"] = (lambda be=be, feed=feed: be.run(feed))
            m.setdefault("dev_accuracy_fp32", file_accuracy(art / "model.fp32.onnx", dev,
                                                            label_names_of(t)))
        print(f"converted {name}", file=sys.stderr)
    if args.convert_only:
        return 0
    samples = interleaved(runners, rounds=5, budget_s=args.budget)  # seconds per runner
    for key, s in samples.items():
        name, label = key.split(" | ")
        models[name].setdefault("latency_ms", {})[label] = stats_ms(s)
    for m in models.values():
        m["dir"] = str(m["dir"])
    result = {"task": args.task, "machine": machine(), "threads": 1, "batch": 1, "seq": seq,
              "subject": "--quick: tiny random models (numbers mean nothing)" if args.quick
              else f"{args.task}: teacher and students of distill_{args.task}.json",
              "command": "python benchmarks/frontier.py " + " ".join(argv or sys.argv[1:]),
              "models": models}
    stem = f"frontier_{args.task}" + (".quick" if args.quick else "")
    write_results(args.out_dir, stem, result, markdown(result))
    plot(result, args.out_dir / f"{stem}.png")
    print(markdown(result))
    return 0


def markdown(result: dict) -> str:
    t = result["models"]["teacher"]
    t_ms = t["latency_ms"]["torch fp32"]["p50_ms"]
    t_bytes = t.get("fp32_size_bytes", 1)
    lines = [(f"Batch {result['batch']}, {result['seq']} tokens, {result['threads']} thread;"
             f" CPU: {result['machine']['cpu']} ({result['machine']['isa']})."), "",
             ("| model | dev fp32 | dev int8 (tflite) | held-out int8 | TFLite int8 ms | ORT int8 ms |"
             " int8 TFLite MB | x smaller | x faster (vs torch fp32) |"),
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, m in result["models"].items():
        f = m["files"]["tflite int8"]
        lat = m["latency_ms"]
        held = f"{100 * f['heldout_accuracy']:.2f}" if f.get("heldout_accuracy") is not None else "-"
        dev8 = f"{100 * f['dev_accuracy']:.2f}" if f.get("dev_accuracy") is not None else "-"
        star = (" (default)" if m.get("default") else
                " (preset, shape only)" if m.get("shape_only") else "")
        lines.append(
            f"| {name}{star} | {100 * m.get('dev_accuracy_fp32', float('nan')):.2f} |"
            f" {dev8} | {held} | {lat['tflite int8']['p50_ms']:.2f} |"
            f" {lat['onnx int8']['p50_ms']:.2f} | {f['size_bytes'] / 1e6:.2f} |"
            f" {t_bytes / f['size_bytes']:.1f} | {t_ms / lat['tflite int8']['p50_ms']:.1f} |")
    lines += ["", (f"Teacher in torch fp32: {t_ms:.2f} ms; ONNX fp32"
              f" {t['latency_ms']['onnx fp32']['p50_ms']:.2f} ms, {t_bytes / 1e6:.1f} MB."
              " Median of interleaved rounds; p90/p99 in the JSON. Presets marked 'shape only'"
              " (earlier sessions' from-scratch students, directories gone) are timed and sized"
              " on a random model of their shape and placed at their recorded fp32 accuracy."),
              ""]
    return "\n".join(lines)


def plot(result: dict, path: Path) -> None:
    """Dev accuracy of each int8 TFLite file against its latency (left) and size (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    models = result["models"]
    t = models["teacher"]
    for ax, xkey, xlabel in ((axes[0], "ms", "TFLite int8 latency, ms (batch 1, 1 thread)"),
                             (axes[1], "mb", "int8 TFLite file, MB")):
        for name, m in models.items():
            f = m["files"]["tflite int8"]
            x = (m["latency_ms"]["tflite int8"]["p50_ms"] if xkey == "ms"
                 else f["size_bytes"] / 1e6)
            color = ("tab:green" if m["role"] == "teacher" else
                     "tab:red" if m.get("default") else
                     "tab:blue" if name.startswith("pruned") else "tab:gray")
            acc = f["dev_accuracy"] if f["dev_accuracy"] is not None else m["dev_accuracy_fp32"]
            ax.scatter([x], [100 * acc], zorder=3,
                       **({"facecolors": "none", "edgecolors": color} if m.get("shape_only")
                          else {"color": color}))
            ax.annotate(name, (x, 100 * acc), fontsize=7, xytext=(4, 3),
                        textcoords="offset points")
        tx = (t["latency_ms"]["torch fp32"]["p50_ms"] if xkey == "ms"
              else t.get("fp32_size_bytes", 0) / 1e6)
        ax.scatter([tx], [100 * t.get("dev_accuracy_fp32", 0)], marker="*", s=120,
                   color="tab:green", zorder=3)
        ax.annotate("teacher fp32 (torch)" if xkey == "ms" else "teacher fp32",
                    (tx, 100 * t.get("dev_accuracy_fp32", 0)), fontsize=7, xytext=(4, -10),
                    textcoords="offset points")
        ax.axhline(100 * t.get("dev_accuracy_fp32", 0) - 2, color="tab:red", ls="--", lw=0.8)
        ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("dev accuracy, % (int8 file through the runtime)")
    m = result["machine"]
    fig.suptitle(f"{result['task']}: accuracy against latency and size ({m['cpu']}, {m['isa']})\n"
                 "red line: teacher - 2 points; red dot: the default student; rings: presets"
                 " trained from a random start (shape timed, fp32 accuracy recorded)", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
