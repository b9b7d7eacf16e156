"""The files mobile clients load as they are, beside the project's default int8 TFLite file.

Converts the student once (cached) to ONNX, ExecuTorch ``.pte`` and text-in ``.e2e.onnx`` at
fp32 / int8-dynamic / int8-static, and to MediaPipe TextClassifier files (fp32, int8-dynamic; a
fixed [1, 64] input, MediaPipe tokenizes), then on the dev set: accuracy and agreement with the float
student for every file (through the real tokenizer; the text-in files tokenize inside), and
batch-1 / batch-8 median latency at 32 and 64 tokens on 1 thread, all files timed in interleaved
rounds in one process (text-in files get the same texts cut to that many tokens, one text a call).

    python benchmarks/clients.py                    # the default SST-2 student
    python benchmarks/clients.py --student runs/sst2/student-pruned-f33-trim \\
        --default-artifact runs/sst2/default-convert

Writes ``clients.json`` and ``clients.md`` into ``--out-dir`` (``benchmarks/results``).
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    DATA,
    REPO,
    RESULTS,
    feeds_at,
    interleaved,
    machine,
    stats_ms,
    texts_at,
    write_results,
)

PRECISIONS = ("fp32", "int8-dynamic", "int8-static")
CELLS = ((32, 1), (64, 1), (64, 8))


def convert(student: Path, calibration: Path, out: Path) -> Path:
    from edge_albert.converters.convert import ConvertConfig, run_convert

    if not (out / "manifest.json").is_file():
        run_convert(ConvertConfig(formats=("onnx", "pte", "onnx-e2e"), precisions=PRECISIONS,
                                  buckets=(32, 64), fixed_shapes=(), threads=1), student, out,
                    calibration=calibration, progress=True)
    return out


def convert_mediapipe(student: Path, calibration: Path, out: Path) -> Path:
    from edge_albert.converters.convert import ConvertConfig, run_convert

    if not (out / "manifest.json").is_file():
        run_convert(ConvertConfig(formats=("mediapipe",), precisions=("fp32", "int8-dynamic"),
                                  buckets=(32, 64), threads=1), student, out,
                    calibration=calibration, progress=True)
    return out


def main(argv: Sequence[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--student", type=Path, default=REPO / "runs/sst2/student-pruned-f33-trim")
    ap.add_argument("--default-artifact", type=Path, default=REPO / "runs/sst2/default-convert",
                    help="the artifact whose int8-dynamic TFLite file is the reference")
    ap.add_argument("--dev", type=Path, default=DATA / "sst2" / "dev.tsv")
    ap.add_argument("--calibration", type=Path, default=DATA / "sst2" / "train.tsv")
    ap.add_argument("--work", type=Path, default=REPO / "runs" / "bench" / "clients-default")
    ap.add_argument("--mediapipe-work", type=Path,
                    default=REPO / "runs" / "bench" / "mediapipe-default")
    ap.add_argument("--out-dir", type=Path, default=RESULTS)
    args = ap.parse_args(argv)

    from edge_albert.runtime import Classifier
    from edge_albert.runtime.backends import open_backend
    from edge_albert.runtime.tokenizer import TextTokenizer

    from edge_albert.data import read_dataset

    art = convert(args.student, args.calibration, args.work)
    files = {"default int8-dynamic.tflite": args.default_artifact / "model.int8-dynamic.tflite"}
    for p in PRECISIONS:
        for suffix in ("onnx", "pte", "e2e.onnx"):
            files[f"{p}.{suffix}"] = art / f"model.{p}.{suffix}"
    mp = convert_mediapipe(args.student, args.calibration, args.mediapipe_work)
    for p in ("fp32", "int8-dynamic"):
        files[f"{p}.mediapipe.tflite"] = mp / f"model.{p}.mediapipe.tflite"
    ds = read_dataset(args.dev)
    texts = list(ds.texts)
    ref = Classifier.load(art, model="model.fp32.onnx", threads=1)
    labels = np.asarray(ds.label_ids(ref.labels))
    float_pred = ref.logits(texts, batch_size=32).argmax(-1)
    rows: dict[str, dict] = {}
    for name, path in files.items():
        clf = Classifier.load(path.parent, model=path.name, threads=1)
        pred = clf.logits(texts, batch_size=32).argmax(-1)
        rows[name] = {"file": str(path.relative_to(REPO)), "size_mb": round(path.stat().st_size / 1e6, 2),
                      "dev_accuracy": round(float((pred == labels).mean()), 4),
                      "agreement_with_float": round(float((pred == float_pred).mean()), 4),
                      "backend": clf.backend.name}
        print(f"{name}: {rows[name]}", file=sys.stderr)
    tok = TextTokenizer.load(art)
    backends = {n: open_backend(p, threads=1) for n, p in files.items()}
    cells = []
    for seq, batch in CELLS:
        feed = feeds_at(tok, texts, seq=seq, batch=batch, n_batches=1)[0]
        text = {"text": texts_at(tok, texts, seq=seq, batch=batch)}
        runners = {n: (lambda be=be, x=(text if be.takes_text else feed): be.run(x))
                   for n, be in backends.items()}
        got = {n: stats_ms(s)["p50_ms"] for n, s in interleaved(runners, rounds=5,
                                                                budget_s=3.0).items()}
        cells.append({"seq": seq, "batch": batch, "threads": 1, "p50_ms": got})
        print(f"seq {seq} batch {batch}: {got}", file=sys.stderr)
    result = {"machine": machine(), "student": str(args.student.relative_to(REPO)),
              "dev": str(args.dev), "command": "python benchmarks/clients.py "
              + " ".join(argv if argv is not None else sys.argv[1:]),
              "files": rows, "cells": cells}
    write_results(args.out_dir, "clients", result, markdown(result))
    return result


def markdown(result: dict) -> str:
    keys = [(c["seq"], c["batch"]) for c in result["cells"]]
    m = result["machine"]
    lines = [f"Machine: {m['cpu']} (isa {m['isa']}; flags {' '.join(m['flags'])}), {m['cores']}"
             " cores; 1 thread; median ms per call (s: tokens, b: batch). Command: "
             f"`{result['command'].strip()}`.", "",
             "| file | backend | MB | dev acc | agree w/ float | "
             + " | ".join(f"s{s} b{b}" for s, b in keys) + " |",
             "|---|---|---:|---:|---:|" + "---:|" * len(keys)]
    for n, r in result["files"].items():
        lat = " | ".join(f"{c['p50_ms'][n]:.2f}" for c in result["cells"])
        lines.append(f"| {n} | {r['backend']} | {r['size_mb']:.2f} | {r['dev_accuracy']:.2%} |"
                     f" {r['agreement_with_float']:.1%} | {lat} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
