"""Interactive demo: type a text, see the label, the probabilities and the latency per model file.

    python -m edge_albert.apps.demo BUNDLE_OR_ARTIFACT_DIR            # every runnable model file
    python -m edge_albert.apps.demo DIR --models model.int8-dynamic.tflite,model.fp32.onnx
    python -m edge_albert.apps.demo model.int8-dynamic.tflite --text "a charming journey"
    echo "a dull mess" | python -m edge_albert.apps.demo DIR --json   # one JSON object per line

One line of input is one text; for a pair task separate the two texts with a tab. ``:q`` or end
of input quits. Latency is wall time of one ``Classifier.logits`` call (tokenize + infer, batch 1),
after one warm-up call per model at start.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import TextIO

from ..errors import EdgeAlbertError, RuntimeBackendError
from ..runtime import Classifier, model_files
from ..runtime.metrics import softmax


def load_models(path: Path, names: list[str] | None, threads: int | None,
                err: TextIO) -> list[Classifier]:
    """Every named (or every) model file of a directory whose interpreter loads; or one file."""
    if path.is_file():
        return [Classifier.load(path, threads=threads)]
    choices = model_files(path)
    wanted = names or choices
    unknown = [n for n in wanted if n not in choices]
    if unknown:
        raise RuntimeBackendError(f"no model file(s) {', '.join(unknown)} here (choices:"
                                  f" {', '.join(choices)})", where=path)
    out = []
    for name in wanted:
        try:
            out.append(Classifier.load(path, model=name, threads=threads))
        except RuntimeBackendError as exc:
            if names:  # asked for by name: an error
                raise
            print(f"(skipping {name}: {exc.one_line()})", file=err)
    if not out:
        raise RuntimeBackendError("no model file here could be loaded", where=path,
                                  hint="pip install ai-edge-litert and/or onnxruntime")
    return out


def classify(models: list[Classifier], line: str) -> list[dict]:
    batch: list[str] | list[tuple[str, str]] = [line]  # a tab splits a text pair
    if "\t" in line:
        a, b = line.split("\t", 1)
        batch = [(a, b)]
    results = []
    for clf in models:
        t0 = time.perf_counter()
        logits = clf.logits(batch, batch_size=1)
        ms = (time.perf_counter() - t0) * 1000
        probs = softmax(logits)[0]
        names = clf.labels or [str(i) for i in range(len(probs))]
        best = int(probs.argmax())
        results.append({"model": clf.path.name, "backend": clf.info.get("backend"),
                        "label": names[best],
                        "probs": {n: round(float(p), 4) for n, p in zip(names, probs)},
                        "latency_ms": round(ms, 3)})
    return results


def render(results: list[dict]) -> str:
    w = max(len(r["model"]) for r in results)
    lines = []
    for r in results:
        probs = "  ".join(f"{k} {v:.3f}" for k, v in r["probs"].items())
        lines.append(f"  {r['model']:<{w}}  {r['backend']:<11}  -> {r['label']:<10}  [{probs}]"
                     f"  {r['latency_ms']:7.2f} ms")
    return "\n".join(lines)


def run(models: list[Classifier], lines, out: TextIO, *, as_json: bool, prompt: bool) -> int:
    for clf in models:  # warm up: first calls allocate
        clf.logits(["warm up"], batch_size=1)
    n = 0
    while True:
        if prompt:
            out.write("> ")
            out.flush()
        line = lines.readline() if hasattr(lines, "readline") else next(lines, "")
        if not line:
            break
        line = line.rstrip("\n")
        if line.strip() in (":q", "quit", "exit"):
            break
        if not line.strip():
            continue
        results = classify(models, line)
        n += 1
        out.write((json.dumps({"text": line, "results": results}) if as_json
                   else render(results)) + "\n")
        out.flush()
    return n


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m edge_albert.apps.demo",
                                description="Type text, see label, probabilities and latency"
                                            " per model file.")
    p.add_argument("path", type=Path, help="bundle / artifact directory, or one model file")
    p.add_argument("--models", default=None, help="comma-separated model files (default: all)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--text", action="append", default=None,
                   help="classify this text and exit (repeatable; TAB separates a pair)")
    p.add_argument("--json", action="store_true", help="one JSON object per input line")
    args = p.parse_args(argv)
    try:
        models = load_models(args.path, args.models.split(",") if args.models else None,
                             args.threads, sys.stderr)
        if args.text:
            source = iter([t + "\n" for t in args.text])
            run(models, source, sys.stdout, as_json=args.json, prompt=False)
            return 0
        interactive = sys.stdin.isatty()
        if interactive:
            print(f"{len(models)} model(s): {', '.join(m.path.name for m in models)}."
                  " Type a text (TAB between a pair), :q to quit.", file=sys.stderr)
        run(models, sys.stdin, sys.stdout, as_json=args.json, prompt=interactive)
    except EdgeAlbertError as exc:
        print(f"error: {exc.one_line()}", file=sys.stderr)
        if exc.hint:
            print(f"hint: {exc.hint}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
