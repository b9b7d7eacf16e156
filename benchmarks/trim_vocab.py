"""Vocabulary trimming on the distilled students: size saved against accuracy lost.

    python benchmarks/trim_vocab.py                 # the default students (see --models)
    python benchmarks/trim_vocab.py --no-convert    # accuracy and parameters only

For each task:student, trims the student's WordPiece vocabulary to the task's training text
(`edge-albert model trim-vocab`, corpus = ../shared/data/<task>/train.tsv), then measures dev
and held-out accuracy before and after (held-out: benchmarks/heldout/, never used to choose),
parameters, and, unless --no-convert, the int8-dynamic ONNX and TFLite file sizes of both.
Writes benchmarks/results/trim_vocab.json and .md. Needs the students of benchmarks/distill.py.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
RESULTS = REPO / "benchmarks" / "results"
sys.path.insert(0, str(Path(__file__).resolve().parent))
from distill import HELDOUT  # the held-out sets, kept in one place

DEFAULT = "sst2:student-small,sst2:student-medium-gpu-aug16,agnews:student-small"


def _accuracy(model_dir: Path, path: Path) -> float:
    from edge_albert.runtime.metrics import classification_metrics
    from edge_albert.runtime.tokenizer import TextTokenizer

    from edge_albert.data import read_dataset
    from edge_albert.modeling import label_names_of, load_classifier
    from edge_albert.training import predict_logits, tokenize

    model = load_classifier(model_dir)
    names = label_names_of(model)
    ds = tokenize(TextTokenizer.load(model_dir), read_dataset(path, label_names=names), names, 128)
    return round(classification_metrics(predict_logits(model, ds), ds.labels)["accuracy"], 4)


def _int8_sizes(model_dir: Path, out: Path, calibration: Path) -> dict[str, int]:
    from edge_albert.converters.convert import ConvertConfig, run_convert

    if not (out / "manifest.json").is_file():
        cfg = ConvertConfig(formats=("onnx", "tflite"), precisions=("int8-dynamic",),  # type: ignore[arg-type]
                            buckets=(64,), fixed_shapes=(), threads=1)
        run_convert(cfg, model_dir, out, calibration=calibration, progress=False)
    return {f.name: f.stat().st_size for f in sorted(out.glob("model.int8-dynamic.*"))}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=DEFAULT, help=f"task:student-dir under runs/<task>/ (default {DEFAULT})")
    ap.add_argument("--runs", type=Path, default=REPO / "runs")
    ap.add_argument("--data", type=Path, default=DATA, help="folder with <task>/train.tsv, dev.tsv")
    ap.add_argument("--out-dir", type=Path, default=RESULTS, help="where the results go")
    ap.add_argument("--no-convert", action="store_true", help="skip the int8 file sizes")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)

    import torch

    from edge_albert.data import read_dataset
    from edge_albert.trim_vocab import TrimVocabConfig, run_trim_vocab

    torch.set_num_threads(args.threads)
    rows = []
    for item in args.models.split(","):
        task, name = item.split(":")
        src = args.runs / task / name
        if not (src / "manifest.json").is_file():
            sys.exit(f"error: {src}: no student here (run benchmarks/distill.py --task {task} first)")
        train, dev = args.data / task / "train.tsv", args.data / task / "dev.tsv"
        out = args.runs / task / f"{name}-trimmed"
        t0 = time.time()
        if not (out / "manifest.json").is_file():
            run_trim_vocab(TrimVocabConfig(), src, [train], out, dev=read_dataset(dev))
        from edge_albert.artifacts import load_manifest

        e = load_manifest(out).extra
        row = {"task": task, "student": name, "vocab_before": e["vocab_before"],
               "vocab_after": e["vocab_after"], "parameters_before": e["parameters_before"],
               "parameters": e["parameters"], "dev": e["dev"], "trim_seconds": round(time.time() - t0, 1)}
        if task in HELDOUT:
            row["heldout_before"] = _accuracy(src, HELDOUT[task])
            row["heldout"] = _accuracy(out, HELDOUT[task])
        if not args.no_convert:
            work = args.runs / "bench" / "trim"
            row["int8_bytes_before"] = _int8_sizes(src, work / f"{task}-{name}", train)
            row["int8_bytes"] = _int8_sizes(out, work / f"{task}-{name}-trimmed", train)
        rows.append(row)
        print(json.dumps(row), flush=True)

    result = {"command": "python benchmarks/trim_vocab.py " + " ".join(argv or sys.argv[1:]),
              "config": "edge-albert model trim-vocab defaults: min_count 1, keep_first 0",
              "rows": rows}
    args.out_dir.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _common import dump_json

    dump_json(args.out_dir / "trim_vocab.json", result)
    (args.out_dir / "trim_vocab.md").write_text(markdown(result))
    print(markdown(result))
    return 0


def markdown(result: dict) -> str:
    head = ("| task | student | vocabulary | parameters | dev accuracy | held-out accuracy |"
            " dev texts re-tokenized | int8 ONNX | int8 TFLite |\n"
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
    lines = []
    for r in result["rows"]:
        d = r["dev"]
        size = {}
        for ext in ("onnx", "tflite"):
            a = r.get("int8_bytes_before", {}).get(f"model.int8-dynamic.{ext}")
            b = r.get("int8_bytes", {}).get(f"model.int8-dynamic.{ext}")
            size[ext] = f"{a / 2**20:.2f} -> {b / 2**20:.2f} MiB" if a and b else "-"
        held = (f"{100 * r['heldout_before']:.2f} -> {100 * r['heldout']:.2f} %"
                if "heldout" in r else "-")
        lines.append(
            f"| {r['task']} | `{r['student']}` | {r['vocab_before']:,} -> {r['vocab_after']:,} |"
            f" {r['parameters_before'] / 1e6:.2f}M -> {r['parameters'] / 1e6:.2f}M |"
            f" {100 * d['accuracy_before']:.2f} -> {100 * d['accuracy']:.2f} % | {held} |"
            f" {100 * d['tokenization_changed']:.1f} % | {size['onnx']} | {size['tflite']} |")
    return (f"# Vocabulary trimming\n\n`{result['command']}` ({result['config']})\n\n"
            + head + "\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
