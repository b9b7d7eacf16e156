"""Text-in ONNX (``model.<precision>.e2e.onnx``): one file that takes the raw string, or the two
strings of a pair, and returns ``logits``, ``probabilities`` and the ``label``, for apps that run
ONNX Runtime with onnxruntime-extensions and no tokenizer of their own.

For a WordPiece tokenizer (every student of a BERT / MiniLM teacher) the tokenizer is
onnxruntime-extensions' ``BertTokenizer`` op, its attributes made by the library's own
``gen_processing_models`` from the transformers tokenizer, with two corrections measured against
this project's runtime (``runtime/tokenizer.py``, Hugging Face ``tokenizers``):

- accents: a BertNormalizer with ``strip_accents: null`` strips them when it lower-cases, but
  the generator writes ``strip_accents = 0`` unless the tokenizer config says ``true``;
- pairs: the op's own truncation does not cut pairs the way ``longest_first`` does (a 7 + 3
  token pair at ``max_length`` 8 came back whole), so each text is tokenized alone and the cut
  is computed here from the two lengths with tokenizers' rule (checked on 3,000 random pairs):
  the shorter text keeps its length up to half the budget, the longer one takes the rest; both
  over half: the budget split in two, the first text's half rounded down.

For an ALBERT SentencePiece tokenizer it is the extensions' ``SentencepieceTokenizer`` op on a
copy of the model whose own normaliser does the runtime's lower-casing, accent stripping and
whitespace handling (:mod:`.sentencepiece_uncased`), with ``[CLS]`` / ``[SEP]`` added here.
SentencePiece's own segmentation and the runtime's (``tokenizers``' Unigram) can split a rare
word differently, so convert records the texts it tokenizes differently instead of refusing.
The pair cut is the same graph for both.

Other tokenizers (WordPiece without BERT's normaliser, a Unigram without ``spiece.model``) are
refused rather than written to give other ids.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConversionError
from ..runtime.backends import extensions_library, ort_session_options
from .spec import INPUT_NAMES, OUTPUT_NAME, Precision

TEXT_INPUT = "text"
OUTPUTS = (OUTPUT_NAME, "probabilities", "label")
CONTRIB = "ai.onnx.contrib"


def is_sentencepiece(tokenizer_dir: str | Path) -> bool:
    """Whether the runtime reads this directory as an ALBERT SentencePiece tokenizer."""
    return (Path(tokenizer_dir) / "spiece.model").is_file()


def e2e_refusal(tokenizer_dir: str | Path) -> str | None:
    """Why this tokenizer cannot be written into an e2e file, or None when it can."""
    if is_sentencepiece(tokenizer_dir):
        cfg = Path(tokenizer_dir) / "tokenizer_config.json"
        conf = json.loads(cfg.read_text(encoding="utf-8")) if cfg.is_file() else {}
        if not conf.get("do_lower_case", True):
            return "it takes lower-casing SentencePiece tokenizers only (do_lower_case is false)"
        return None
    path = Path(tokenizer_dir) / "tokenizer.json"
    if not path.is_file():
        return "it needs a WordPiece tokenizer.json or an ALBERT spiece.model"
    spec = json.loads(path.read_text(encoding="utf-8"))
    model = spec.get("model") or {}
    norm = spec.get("normalizer") or {}
    pre = spec.get("pre_tokenizer") or {}
    if model.get("type") != "WordPiece":
        return f"it takes WordPiece tokenizers, not {model.get('type')!r}"
    if norm.get("type") != "BertNormalizer" or pre.get("type") != "BertPreTokenizer":
        return ("it takes BERT's normaliser and pre-tokenizer, not"
                f" {norm.get('type')!r} / {pre.get('type')!r}")
    if model.get("continuing_subword_prefix", "##") != "##":
        return "it takes the '##' continuation prefix only"
    return None


def _tokenizer_attributes(tokenizer_dir: Path) -> dict[str, Any]:
    """The ``BertTokenizer`` op's attributes, from onnxruntime-extensions' own generator."""
    from transformers import BertTokenizer

    extensions_library()  # before the package's import: see runtime.backends
    from onnxruntime_extensions import gen_processing_models

    norm = json.loads((tokenizer_dir / "tokenizer.json").read_text(encoding="utf-8"))["normalizer"]
    lower = bool(norm.get("lowercase", True))
    strip = norm.get("strip_accents")
    strip = lower if strip is None else bool(strip)
    tok = BertTokenizer.from_pretrained(str(tokenizer_dir))  # whatever model_type config.json says
    pre, _ = gen_processing_models(tok, pre_kwargs={"do_lower_case": int(lower),
                                                     "strip_accents": int(strip)})
    (node,) = [n for n in pre.graph.node if n.op_type == "BertTokenizer"]
    import onnx

    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _consts(**values: Any) -> list[Any]:
    from onnx import numpy_helper

    return [numpy_helper.from_array(np.asarray(v, dtype=np.int64), name=k)
            for k, v in values.items()]


def _wordpiece_nodes(tokenizer_dir: Path) -> tuple[list[Any], list[Any]]:
    """``text`` -> ``core_a`` / ``core_b`` (each text's ids without specials), ``cls``, ``sep``:
    one op per text (the op takes a pair as one input with its own cut, see the docstring)."""
    from onnx import helper

    attrs = _tokenizer_attributes(tokenizer_dir)
    n = helper.make_node
    return [
        n("Slice", [TEXT_INPUT, "c0", "c1"], ["text_a"]),
        n("Slice", [TEXT_INPUT, "cm1", "cbig"], ["text_b"]),  # the last text: b, or a again
        n("BertTokenizer", ["text_a"], ["ids_a", "types_a", "mask_a", "offsets_a"],
          domain=CONTRIB, name="tokenize_a", **attrs),
        n("BertTokenizer", ["text_b"], ["ids_b", "types_b", "mask_b", "offsets_b"],
          domain=CONTRIB, name="tokenize_b", **attrs),
        n("Slice", ["ids_a", "c0", "c1"], ["cls"]),
        n("Slice", ["ids_a", "cm1", "cbig"], ["sep"]),
        n("Slice", ["ids_a", "c1", "cm1"], ["core_a"]),
        n("Slice", ["ids_b", "c1", "cm1"], ["core_b"]),
    ], []


def _sentencepiece_nodes(tokenizer_dir: Path) -> tuple[list[Any], list[Any]]:
    """The same outputs as :func:`_wordpiece_nodes` from one SentencePiece op over both texts
    (one copy of the model in the file): its row splits cut the pieces of a from those of b
    (of a again for a single text, which the pair cut then drops)."""
    import sentencepiece as spm
    from onnx import TensorProto, helper, numpy_helper

    from .sentencepiece_uncased import uncased_sentencepiece

    raw = (tokenizer_dir / "spiece.model").read_bytes()
    sp = spm.SentencePieceProcessor(model_proto=raw)
    n = helper.make_node
    nodes = [  # inputs: texts, nbest_size, alpha, add_bos, add_eos, reverse, fairseq
        n("SentencepieceTokenizer", [TEXT_INPUT, "sp_nbest", "sp_alpha", "sp_no", "sp_no",
                                     "sp_no", "sp_no"], ["pieces32", "splits"],
          domain=CONTRIB, name="tokenize", model=uncased_sentencepiece(raw)),
        n("Cast", ["pieces32"], ["pieces"], to=TensorProto.INT64),
        n("Slice", ["splits", "c0", "c1"], ["a_start"]),
        n("Slice", ["splits", "c1", "c2"], ["a_end"]),
        n("Slice", ["splits", "cm2", "cm1"], ["b_start"]),
        n("Slice", ["splits", "cm1", "cbig"], ["b_end"]),
        n("Slice", ["pieces", "a_start", "a_end"], ["core_a"]),
        n("Slice", ["pieces", "b_start", "b_end"], ["core_b"]),
    ]
    init = [*_consts(cls=[sp.piece_to_id("[CLS]")], sep=[sp.piece_to_id("[SEP]")],
                     sp_nbest=[0], cm2=[-2]),
            numpy_helper.from_array(np.zeros(1, dtype=np.float32), "sp_alpha"),
            numpy_helper.from_array(np.zeros(1, dtype=bool), "sp_no")]
    return nodes, init


def preprocessing(tokenizer_dir: str | Path, max_length: int) -> Any:
    """A graph from ``text`` [1 or 2 strings] to ``input_ids``, ``attention_mask`` and
    ``token_type_ids`` [1, n], n <= ``max_length``, as the runtime encodes them."""
    from onnx import TensorProto, helper

    d = Path(tokenizer_dir)
    tokenize, tok_init = (_sentencepiece_nodes if is_sentencepiece(d) else _wordpiece_nodes)(d)
    n = helper.make_node
    nodes = [
        *tokenize,
        n("Size", [TEXT_INPUT], ["n_texts"]),
        n("Equal", ["n_texts", "s2"], ["pair_bool"]),
        n("Cast", ["pair_bool"], ["pair"], to=TensorProto.INT64),
        n("Size", ["core_a"], ["la"]),
        n("Size", ["core_b"], ["lb_raw"]),
        n("Mul", ["lb_raw", "pair"], ["lb"]),
        # budget T = max_length - [CLS] - [SEP] - (second [SEP] of a pair)
        n("Sub", ["s_budget", "pair"], ["T"]),
        n("Min", ["la", "lb"], ["short"]),
        n("Sub", ["T", "short"], ["T_minus_short"]),
        n("Max", ["short", "T_minus_short"], ["n2_fit"]),
        n("Greater", ["short", "T"], ["short_over"]),
        n("Where", ["short_over", "short", "n2_fit"], ["n2"]),
        n("Add", ["short", "n2"], ["n12"]),
        n("Greater", ["n12", "T"], ["over"]),
        n("Div", ["T", "s2"], ["half"]),
        n("Mod", ["T", "s2"], ["odd"]),
        n("Add", ["half", "odd"], ["half_up"]),
        n("Where", ["over", "half", "short"], ["lim_short"]),
        n("Where", ["over", "half_up", "n2"], ["lim_long"]),
        n("Greater", ["la", "lb"], ["a_longer"]),
        n("Where", ["a_longer", "lim_long", "lim_short"], ["lim_a"]),
        n("Where", ["a_longer", "lim_short", "lim_long"], ["lim_b"]),
        n("Min", ["la", "lim_a"], ["ta"]),
        n("Min", ["lb", "lim_b"], ["tb"]),
        n("Unsqueeze", ["ta", "c0"], ["ta1"]),
        n("Unsqueeze", ["tb", "c0"], ["tb1"]),
        n("Unsqueeze", ["pair", "c0"], ["pair1"]),
        n("Slice", ["core_a", "c0", "ta1"], ["kept_a"]),
        n("Slice", ["core_b", "c0", "tb1"], ["kept_b"]),
        n("Slice", ["sep", "c0", "pair1"], ["sep_b"]),
        n("Concat", ["cls", "kept_a", "sep", "kept_b", "sep_b"], ["ids"], axis=0),
        n("Add", ["ta1", "c2"], ["len_a1"]),
        n("Add", ["tb1", "pair1"], ["len_b1"]),
        n("ConstantOfShape", ["len_a1"], ["zeros_a"],
          value=helper.make_tensor("z", TensorProto.INT64, [1], [0])),
        n("ConstantOfShape", ["len_b1"], ["ones_b"],
          value=helper.make_tensor("o", TensorProto.INT64, [1], [1])),
        n("Concat", ["zeros_a", "ones_b"], ["types"], axis=0),
        n("Shape", ["ids"], ["len_ids"]),
        n("ConstantOfShape", ["len_ids"], ["mask"],
          value=helper.make_tensor("o1", TensorProto.INT64, [1], [1])),
        n("Unsqueeze", ["ids", "c0"], [INPUT_NAMES[0]]),
        n("Unsqueeze", ["mask", "c0"], [INPUT_NAMES[1]]),
        n("Unsqueeze", ["types", "c0"], [INPUT_NAMES[2]]),
    ]
    init = _consts(c0=[0], c1=[1], c2=[2], cm1=[-1], cbig=[2**62], s2=2,
                   s_budget=max_length - 2) + tok_init
    graph = helper.make_graph(
        nodes, "tokenize", [helper.make_tensor_value_info(TEXT_INPUT, TensorProto.STRING, [None])],
        [helper.make_tensor_value_info(name, TensorProto.INT64, [1, None]) for name in INPUT_NAMES],
        init)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18),
                                                   helper.make_opsetid(CONTRIB, 1)])


def build_e2e(onnx_file: str | Path, tokenizer_dir: str | Path, labels: list[str],
              max_length: int) -> Any:
    """The model of ``onnx_file`` with the tokenizer in front and softmax + label after."""
    import onnx
    from onnx import TensorProto, compose, helper, numpy_helper

    why = e2e_refusal(tokenizer_dir)
    if why:
        raise ConversionError(f"onnx-e2e: {why}", where=tokenizer_dir,
                              hint="leave onnx-e2e out of --formats")
    model = onnx.load(str(onnx_file))
    pre = preprocessing(tokenizer_dir, max_length)
    pre.ir_version = model.ir_version
    merged = compose.merge_models(pre, model, io_map=[(k, k) for k in INPUT_NAMES],
                                  prefix1="tok_", prefix2="")
    g = merged.graph
    names = [str(x) for x in labels] or [str(i) for i in range(_num_labels(model))]
    g.initializer.append(numpy_helper.from_array(np.array(names, dtype=object), "label_names"))
    g.node.extend([
        helper.make_node("Softmax", [OUTPUT_NAME], ["probabilities"], axis=-1),
        helper.make_node("ArgMax", [OUTPUT_NAME], ["label_id"], axis=-1, keepdims=0),
        helper.make_node("Gather", ["label_names", "label_id"], ["label"], axis=0),
    ])
    g.output.extend([
        helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [1, len(names)]),
        helper.make_tensor_value_info("label", TensorProto.STRING, [1]),
    ])
    g.input[0].name = TEXT_INPUT  # merge_models prefixed it
    for node in g.node:
        node.input[:] = [TEXT_INPUT if i == f"tok_{TEXT_INPUT}" else i for i in node.input]
    onnx.checker.check_model(merged)
    return merged


def _num_labels(model: Any) -> int:
    out = model.graph.output[0].type.tensor_type.shape.dim
    return int(out[-1].dim_value)


def session(path: str | Path | bytes, *, threads: int | None = None) -> Any:
    """An ONNX Runtime session of an e2e file (or model bytes), with the extensions' library."""
    import onnxruntime as ort

    opts = ort_session_options(ort, threads)
    opts.register_custom_ops_library(extensions_library())
    return ort.InferenceSession(path if isinstance(path, bytes) else str(path), sess_options=opts,
                                providers=["CPUExecutionProvider"])


def e2e_file(conv: Any, source: Path, p: Precision, source_recipe: dict) -> None:
    """``model.<p>.e2e.onnx`` of a convert run (``conv``: its :class:`~.convert_files.Converter`):
    ``source`` with the tokenizer in front, its ids compared with the runtime's on every parity
    text, its logits against torch. WordPiece must give the runtime's ids on every text; SentencePiece's own segmentation
    may split a rare word otherwise, so those texts are recorded (parity is measured on the
    others, agreement on all)."""
    import onnx

    from .census import census
    from .parity import text_in_parity, torch_logits
    from .sentencepiece_uncased import SEGMENTATION_DIFFERS
    from .spec import Format, model_filename

    assert conv.text is not None  # run_convert refuses onnx-e2e without calibration text
    t = conv.text
    spiece = is_sentencepiece(t.tokenizer_dir)
    name = model_filename(Format.ONNX_E2E, p)
    path = conv.w.path / name
    onnx.save(build_e2e(source, t.tokenizer_dir, t.labels, conv.spec.max_length), str(path))
    pre = session(preprocessing(t.tokenizer_dir, conv.spec.max_length).SerializeToString())
    full = session(path, threads=conv.config.threads)
    feeds, inputs, differ = [], [], []
    for i, item in enumerate(t.items):
        texts = list(item) if isinstance(item, tuple) else [item]
        enc = t.tokenizer.encode([texts[0]], texts[1:] or None,
                                 max_length=conv.spec.max_length)
        n = int(enc.attention_mask[0].sum())
        feeds.append({k: v[:, :n] for k, v in enc.as_dict().items()})
        inputs.append({"text": np.array(texts, dtype=object)})
        got = dict(zip(INPUT_NAMES, pre.run(list(INPUT_NAMES), inputs[-1])))
        if any(not np.array_equal(got[k], feeds[-1][k]) for k in INPUT_NAMES):
            differ.append(i)
    # torch's texts, then ONNX Runtime's, not one of each in turn: torch's OpenMP thread spins
    # briefly after each call and took a core from ONNX Runtime's (the file's parity took 3 s
    # longer in turn with GOMP_SPINCOUNT=10000, 2-core Xeon). One torch thread: a text per call
    # is too little work to split, and a second thread waits at every op's barrier, behind a
    # neighbour when there is one (two demo conversions side by side spent 23.5 s instead of
    # 3.9 s on these three files' checks with two threads, 4.0 s with one; AMD EPYC)
    ref = torch_logits(conv.model, feeds, threads=1)
    out = [full.run(["logits"], feed)[0] for feed in inputs]
    if differ and not spiece:
        raise ConversionError(f"onnxruntime-extensions tokenizes {len(differ)} of"
                              f" {len(t.items)} texts differently from the runtime (first:"
                              f" {t.items[differ[0]]!r:.120})", where=name,
                              hint="leave onnx-e2e out of --formats for this tokenizer")
    par, parity, checked = text_in_parity(ref, out, [str(x) for x in t.items], differ,
                                          Format.ONNX_E2E, p, SEGMENTATION_DIFFERS)
    size = path.stat().st_size
    op = ("SentencepieceTokenizer (the model's normaliser doing the runtime's)" if spiece
          else "BertTokenizer")
    meta = {"format": Format.ONNX_E2E.value, "precision": p.value,
            "inputs": [{"name": "text", "dtype": "string",
                        "shape": ["1 (a text) or 2 (a text pair)"]}],
            "outputs": [{"name": "logits", "dtype": "float32", "shape": [1, "labels"]},
                        {"name": "probabilities", "dtype": "float32",
                         "shape": [1, "labels"]},
                        {"name": "label", "dtype": "string", "shape": [1]}],
            "seq_len": conv.spec.max_length, "buckets": list(conv.spec.buckets),
            "requires": {"onnxruntime_custom_ops": "onnxruntime-extensions",
                         "register": "SessionOptions.register_custom_ops_library("
                                     "onnxruntime_extensions.get_library_path())"},
            "recipe": {"recipe": f"onnxruntime-extensions {op}, one per text, the pair cut"
                                 " longest_first + the ONNX file + softmax, argmax, label"
                                 " names (onnx.compose.merge_models)",
                       "source": source.name, "source_recipe": source_recipe},
            "tokenization_checked": checked,
            "census": census(path).summary(), "parity": parity,
            "bytes_per_parameter": round(size / conv.params, 4)}
    conv.parity[name] = par
    conv.described[name] = meta
    conv.w.describe(name, **meta)


__all__ = ["OUTPUTS", "TEXT_INPUT", "build_e2e", "e2e_file", "e2e_refusal", "is_sentencepiece",
           "preprocessing", "session"]
