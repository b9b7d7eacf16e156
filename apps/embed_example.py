"""The minimal code an edge app copies: load once, predict one text, predict a batch, set threads.

    python -m edge_albert.apps.embed_example BUNDLE_DIR [--model model.int8-dynamic.tflite]
    python -m edge_albert.apps.embed_example path/to/model.int8-dynamic.tflite

Your app needs only the runtime (numpy, tokenizers, sentencepiece and one interpreter:
``pip install ai-edge-litert`` for .tflite, ``pip install onnxruntime`` for .onnx/.ort) and the
model's folder (model file, tokenizer files, labels.txt, manifest.json).
"""
from __future__ import annotations

import sys
import time

from edge_albert.runtime import Classifier, model_files


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    path = args[0] if args else "."
    model = args[args.index("--model") + 1] if "--model" in args else None
    if model is None and not path.endswith((".tflite", ".onnx", ".ort")):
        files = model_files(path)  # a bundle holds several: prefer int8 TFLite, the smallest
        model = next((f for f in files if "int8" in f and f.endswith(".tflite")), files[0])

    # 1. Load once at start-up (checks the file's sha256 against manifest.json). threads: the
    #    interpreter's threads; a Pi has 4 cores, leave one for the app.
    clf = Classifier.load(path, model=model, threads=2)

    # 2. One text -> label and probabilities (label names come from the manifest / labels.txt).
    t0 = time.perf_counter()
    labels, probs = clf.predict(["a charming and often affecting journey"])
    print(f"{labels[0]}  p={probs[0].max():.3f}  {1000 * (time.perf_counter() - t0):.1f} ms")

    # 3. A batch: rows are padded to the smallest sequence bucket that fits the longest one.
    texts = ["the plot drags and the cast looks bored", "a gorgeous, witty, seductive movie",
             "it is not a bad film, just a forgettable one"]
    labels, probs = clf.predict(texts, batch_size=8)
    for text, label, p in zip(texts, labels, probs):
        print(f"{label:>8}  {p.max():.3f}  {text}")

    # 4. Sentence pairs (MRPC-style tasks): pass (text_a, text_b) tuples the same way.
    print(f"model {clf.path.name} ({clf.info['backend']}), labels {clf.labels},"
          f" max length {clf.max_length}, buckets {clf.buckets}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
