"""MediaPipe TextClassifier files: ``model.<precision>.mediapipe.tflite``.

MediaPipe Tasks' ``TextClassifier`` (Android, iOS, web, Python) loads a TFLite file carrying its
tokenizer and labels as metadata and tokenizes in the app. What it needs, and what this module
writes:

* a fixed ``[1, L]`` input (``L``: the largest bucket): MediaPipe reads ``L`` from the tensor
  shape and truncates there; with our dynamic-length files it does not truncate (texts over the
  length fail, and it pads to no bucket);
* ``probabilities`` as the output (softmax in the graph): MediaPipe reports the output as scores;
* MediaPipe's text-classifier metadata, written with MediaPipe's own writer
  (``metadata_writers.text_classifier.MetadataWriter.create_for_bert_model``): the tokenizer
  (WordPiece ``vocab.txt`` or the SentencePiece model) and the labels;
* for SentencePiece, a copy of the model whose own normaliser does the quote replacement, NFKD,
  accent stripping and lower-casing this project's runtime does before SentencePiece (MediaPipe
  lower-cases ASCII only and strips no accents: "café" became ``<unk>``): a precompiled charsmap
  built by SentencePiece's trainer from one rule per code point that the runtime's normaliser
  changes. MediaPipe's WordPiece tokenizer cannot be told to strip accents: convert measures and
  records which texts it tokenizes differently.

The check is MediaPipe itself: an *echo* file (same tokenizer metadata, a graph that returns its
input ids as scores) shows the ids MediaPipe feeds the model, text by text, to compare with the
runtime's; the real file's probabilities are compared with torch's.

Since mediapipe 0.10.30 the wheels no longer ship the compiled ``_pywrap_metadata_version``
module the writer imports (only the C API library). Its one function names the oldest metadata
parser that can read the metadata; for the two layouts written here (BERT-style inputs with a
WordPiece or SentencePiece tokenizer unit, a label file) mediapipe 0.10.21's compiled function
returns "1.1.0" (measured). :func:`_writer` supplies that value and refuses any other layout.
"""
from __future__ import annotations

import functools
import gc
import sys
import tempfile
import types
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConversionError
from .sentencepiece_uncased import SEGMENTATION_DIFFERS, uncased_sentencepiece
from .spec import INPUT_NAMES

MIN_PARSER_VERSION = "1.1.0"
SUFFIX = ".mediapipe.tflite"
_PYWRAP = "mediapipe.tasks.cc.metadata.python._pywrap_metadata_version"


def _writer() -> Any:
    """MediaPipe's text-classifier metadata writer (see the module docstring)."""
    try:
        import mediapipe  # noqa: F401  - its absence is the error to report
    except ImportError:
        raise ConversionError("mediapipe is not installed (the mediapipe format writes its"
                              " metadata with MediaPipe's own writer)",
                              hint="pip install 'edge-albert[mediapipe]'") from None
    if _PYWRAP not in sys.modules:
        try:
            __import__(_PYWRAP)
        except ImportError:
            shim = types.ModuleType(_PYWRAP)
            shim.GetMinimumMetadataParserVersion = _min_parser_version  # type: ignore[attr-defined]
            for name in ("mediapipe.tasks.cc", "mediapipe.tasks.cc.metadata",
                         "mediapipe.tasks.cc.metadata.python"):
                sys.modules.setdefault(name, types.ModuleType(name))
            sys.modules[_PYWRAP] = shim
    from mediapipe.tasks.python.metadata.metadata_writers import metadata_writer, text_classifier

    return text_classifier, metadata_writer


def _min_parser_version(metadata_buf: bytes) -> str:
    """The value mediapipe 0.10.21's compiled function gives the layouts this module writes."""
    from mediapipe.tasks.metadata import metadata_schema_py_generated as fb

    meta = fb.ModelMetadata.GetRootAsModelMetadata(bytes(metadata_buf), 0)
    sub = meta.SubgraphMetadata(0)
    units = [sub.InputProcessUnits(i).OptionsType() for i in range(sub.InputProcessUnitsLength())]
    known = {fb.ProcessUnitOptions.BertTokenizerOptions,
             fb.ProcessUnitOptions.SentencePieceTokenizerOptions}
    if meta.SubgraphMetadataLength() != 1 or len(units) != 1 or units[0] not in known:
        raise ConversionError("MediaPipe metadata of a layout this converter does not write")
    return MIN_PARSER_VERSION


def fixed_module(module: Any, length: int, *, echo: bool = False) -> Any:
    """A TF module whose ``serving`` takes ``[1, length]`` int32 inputs and returns
    ``probabilities``; with ``echo``, the input ids (+ 0.5 where the mask is 1) instead."""
    import tensorflow as tf

    spec = [tf.TensorSpec([1, length], tf.int32, name=n) for n in INPUT_NAMES]

    class Fixed(tf.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

    fixed = Fixed(module)

    @tf.function(input_signature=spec)
    def serving(input_ids, attention_mask, token_type_ids):
        if echo:
            return {"probabilities": tf.cast(input_ids + 100_000 * token_type_ids, tf.float32)
                    + 0.5 * tf.cast(attention_mask, tf.float32)}
        return {"probabilities": tf.nn.softmax(
            module.logits(input_ids, attention_mask, token_type_ids))}

    fixed.serving = serving
    return fixed


def with_metadata(model: bytes, tokenizer_dir: Path, labels: Sequence[str],
                  scratch: Path) -> bytes:
    """``model`` with MediaPipe's text-classifier metadata (tokenizer and labels)."""
    from ai_edge_litert.interpreter import Interpreter

    text_classifier, metadata_writer = _writer()
    names = [d["name"] for d in Interpreter(model_content=model).get_input_details()]

    def tensor(key: str) -> str:
        return next(n for n in names if key in n)

    spiece = tokenizer_dir / "spiece.model"
    if spiece.is_file():
        path = scratch / "spiece.model"  # the name MediaPipe's writer packs it under
        path.write_bytes(uncased_sentencepiece(spiece.read_bytes()))
        tok = metadata_writer.SentencePieceTokenizer(str(path))
    elif (tokenizer_dir / "vocab.txt").is_file():
        tok = metadata_writer.BertTokenizer(str(tokenizer_dir / "vocab.txt"))
    else:
        raise ConversionError("MediaPipe needs a vocab.txt (WordPiece) or spiece.model"
                              " (SentencePiece) tokenizer", where=tokenizer_dir)
    writer = text_classifier.MetadataWriter.create_for_bert_model(
        bytearray(model), tok, metadata_writer.Labels().add(list(labels)),
        ids_name=tensor("input_ids"), mask_name=tensor("attention_mask"),
        segment_name=tensor("token_type_ids"))
    out, _ = writer.populate()
    # the writer holds a temporary directory in a reference cycle: collected at interpreter
    # exit, its __del__ then fails ("Exception ignored"); collect it while the modules live
    del writer, tok
    gc.collect()
    return bytes(out)


def client_ids(echo: Path, texts: Sequence[str]) -> list[np.ndarray]:
    """The (ids + 0.5 x mask) MediaPipe feeds a model for each text, read off the echo file."""
    from ..runtime.backends import MediaPipeBackend

    clf = MediaPipeBackend(echo)
    try:
        return [clf.scores(t) for t in texts]
    finally:
        clf.close()


_WHY_WORDPIECE = "MediaPipe's WordPiece tokenizer lower-cases ASCII only and strips no accents"


def _runtime_ids(tok: Any, text: str, length: int) -> np.ndarray:
    enc = tok.encode([text], max_length=length, pad_to=length)
    return (enc.input_ids[0] + 100_000 * enc.token_type_ids[0]
            + 0.5 * enc.attention_mask[0]).astype(np.float32)


def mediapipe_files(conv: Any, precs: Sequence[Any]) -> None:
    """Every ``model.<p>.mediapipe.tflite`` of a convert run (``conv``: its
    :class:`~.convert_files.Converter`): the tokenizer check on the echo file first, then each
    precision converted, given metadata, and run in MediaPipe's TextClassifier against torch."""
    import torch

    from ..runtime.backends import MediaPipeBackend
    from .parity import text_in_parity
    from .spec import Format, model_filename
    from .tflite_convert import convert_tflite

    assert conv.text is not None  # run_convert refuses mediapipe without calibration text
    t, length, c = conv.text, conv.spec.max_length, conv.config
    module = conv.tf_module()
    texts = [str(x) for x in t.items]
    with tempfile.TemporaryDirectory(prefix="edge-albert-mediapipe-") as d:
        scratch = Path(d)
        differ = conv.steps.run("mediapipe tokenizer check", functools.partial(
            _check_tokenizer, module, t, length, texts, scratch))
        differ_at = [i for i, x in enumerate(texts) if x in set(differ)]
        spiece = (t.tokenizer_dir / "spiece.model").is_file()
        with torch.no_grad():
            ref = []
            for x in texts:
                enc = t.tokenizer.encode([x], max_length=length, pad_to=length)
                logits = conv.model(**{k: torch.from_numpy(v).long()
                                       for k, v in enc.as_dict().items()}).logits
                ref.append(torch.softmax(logits, -1).numpy())
        cal = conv.cal.uniform(length) if conv.cal is not None else None
        for p in precs:
            name = model_filename(Format.MEDIAPIPE, p)
            data, recipe = conv.steps.run(f"mediapipe {p.value}", functools.partial(
                convert_tflite, fixed_module(module, length), p, calibration=cal,
                fallbacks=c.fallbacks, nodes=c.fallback_nodes))
            path = conv.w.path / name
            path.write_bytes(with_metadata(data, t.tokenizer_dir, t.labels, scratch))
            clf = MediaPipeBackend(path)
            try:
                out = [clf.scores(x)[None, :] for x in texts]
            finally:
                clf.close()
            par, parity, checked = text_in_parity(
                ref, out, texts, differ_at, Format.MEDIAPIPE, p,
                SEGMENTATION_DIFFERS if spiece else _WHY_WORDPIECE, tol=conv.tolerance(p))
            meta = {"format": Format.MEDIAPIPE.value, "precision": p.value,
                    "inputs": [{"name": n, "dtype": "int32", "shape": [1, length]}
                               for n in INPUT_NAMES],
                    "outputs": [{"name": "probabilities", "dtype": "float32",
                                 "shape": [1, len(t.labels)]}],
                    "seq_len": length, "buckets": [length],
                    "requires": {"client": "MediaPipe Tasks TextClassifier (Android:"
                                           " com.google.mediapipe:tasks-text; Python: mediapipe)",
                                 "text_in": "one text a call; MediaPipe tokenizes with the"
                                            " tokenizer in the file's metadata"},
                    "recipe": {**recipe, "metadata": "MediaPipe's text_classifier.MetadataWriter"
                               ".create_for_bert_model (tokenizer and labels packed in the"
                               " file)", "graph": f"fixed [1, {length}] inputs, softmax output",
                               "tokenizer": ("SentencePiece with the runtime's normalisation"
                                             " in its own charsmap"
                                             if (t.tokenizer_dir / "spiece.model").is_file()
                                             else "WordPiece vocab.txt")},
                    "tokenization_checked": checked,
                    "parity": {**parity, "compared": "probabilities (MediaPipe's scores against"
                               " torch's softmax)"},
                    "bytes_per_parameter": round(path.stat().st_size / conv.params, 4)}
            conv.parity[name] = par
            conv.described[name] = meta
            conv.w.describe(name, **meta)


def _check_tokenizer(module: Any, t: Any, length: int, texts: Sequence[str],
                     scratch: Path) -> list[str]:
    """The texts MediaPipe feeds other ids than the runtime (read off an echo file)."""
    from .tflite_convert import convert_tflite

    data, _ = convert_tflite(fixed_module(module, length, echo=True), "fp32")
    echo = scratch / "echo.tflite"
    echo.write_bytes(with_metadata(data, t.tokenizer_dir, [str(i) for i in range(length)],
                                   scratch))
    got = client_ids(echo, texts)
    return [x for x, g in zip(texts, got) if not np.array_equal(g, _runtime_ids(t.tokenizer, x,
                                                                                length))]
