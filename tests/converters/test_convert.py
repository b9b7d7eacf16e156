"""One conversion of a tiny ALBERT (every format x precision), then many checks on its files.

Quantization is checked from the graphs themselves (census of the .onnx/.ort/.tflite files), not
from the numbers the manifest reports.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from edge_albert.converters.census import census
from edge_albert.converters.spec import (
    DEFAULT_FALLBACKS,
    DEFAULT_FORMATS,
    INPUT_NAMES,
    SUPPORTED,
    Format,
    model_filename,
)

#: the default formats (onnx-e2e, text in, has its own tests: test_onnx_e2e.py)
ALL_FILES = [model_filename(f, p) for f in DEFAULT_FORMATS for p in SUPPORTED[f]]
INT8_FILES = [n for n in ALL_FILES if ".int8-" in n]
#: TensorFlow's dynamic-range quantizer leaves weights under this many elements in float
TF_DYNAMIC_MIN_ELEMENTS = 1024


def _feeds(tokenizer_dir: Path, texts: list[str], width: int) -> dict[str, np.ndarray]:
    from edge_albert.runtime.tokenizer import TextTokenizer

    return TextTokenizer.load(tokenizer_dir).encode(texts, pad_to=width).as_dict()


def _torch(model_dir: Path, feeds: dict[str, np.ndarray]) -> np.ndarray:
    from edge_albert.converters.parity import torch_logits

    from edge_albert.modeling import load_classifier

    return torch_logits(load_classifier(model_dir), [feeds])[0]


def test_every_format_and_precision_is_written_and_runs(converted, tokenizer_dir):
    from edge_albert.converters.parity import run_file

    assert sorted(n for n, m in converted.files.items() if "parity" in m) == sorted(ALL_FILES)
    feeds = _feeds(tokenizer_dir, ["good lovely warm .", "bleak dull weak tired ."], 64)
    for name in ALL_FILES:
        meta = converted.files[name]
        assert (meta["format"], meta["precision"]) == (Path(name).suffix[1:],
                                                         name.split(".")[1])
        (out,) = run_file(converted.path / name, [feeds])
        assert out.shape == (2, 2) and np.isfinite(out).all(), name


def test_torch_reference_runs_on_the_threads_asked_and_gives_them_back(tiny_model,
                                                                      tokenizer_dir):
    """The text-in files' torch reference runs one text per call on one thread (a second one
    only waits at each op's barrier, behind a neighbour when there is one); torch's count is
    restored after, and the logits are those of torch's own threads."""
    import torch
    from edge_albert.converters.parity import torch_logits

    from edge_albert.modeling import load_classifier

    model = load_classifier(tiny_model)
    feeds = _feeds(tokenizer_dir, ["good lovely warm .", "bleak dull weak tired ."], 16)
    seen: list[int] = []
    model.register_forward_hook(lambda *_: seen.append(torch.get_num_threads()))
    saved = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        (one,) = torch_logits(model, [feeds], threads=1)
        assert seen == [1] and torch.get_num_threads() == 2
        (default,) = torch_logits(model, [feeds])
    finally:
        torch.set_num_threads(saved)
    assert seen == [1, 2] and np.allclose(one, default, atol=1e-5)


def test_fp32_parity_holds_on_padded_real_inputs(converted, tiny_model, tokenizer_dir):
    extra = converted.extra["parity_inputs"]
    assert extra["n"] >= 256 and extra["padded_rows"] >= 200 and len(extra["widths"]) >= 2
    for name in ALL_FILES:
        par = converted.files[name]["parity"]
        assert par["n"] >= 256 and par["finite"]
        if ".fp32." in name:
            assert par["max_abs_logit_diff"] <= 1e-4 and par["agreement"] == 1.0, name
        if ".fp16." in name:
            assert par["max_abs_logit_diff"] <= 1e-2, name


def test_padding_is_masked_in_every_float_file(converted, tiny_model, tokenizer_dir):
    """Trap 1: changing the ids under padding must not move the logits (masking is in the graph)."""
    from edge_albert.converters.parity import run_file

    feeds = _feeds(tokenizer_dir, ["good .", "a much longer sentence about nothing bleak ."], 32)
    noisy = dict(feeds)
    ids = feeds["input_ids"].copy()
    pad = feeds["attention_mask"] == 0
    ids[pad] = np.random.default_rng(0).integers(5, 900, size=int(pad.sum()))
    noisy["input_ids"] = ids
    ref = _torch(tiny_model, feeds)
    for name in ("model.fp32.onnx", "model.fp32.ort", "model.fp32.tflite"):
        (clean,) = run_file(converted.path / name, [feeds])
        (dirty,) = run_file(converted.path / name, [noisy])
        assert np.abs(clean - ref).max() <= 1e-4, name
        assert np.abs(dirty - clean).max() <= 1e-5, name


@pytest.mark.parametrize("name", INT8_FILES)
def test_int8_files_hold_every_encoder_weight_in_int8(converted, name):
    """Counted from the graph: each weight op of the encoder is int8 unless a fallback keeps it."""
    c = census(converted.path / name)
    encoder = c.part("encoder")
    assert len(encoder) == 1 + 6 * 2  # mapping-in + 6 dense layers per pass, 2 passes
    tf_dynamic = name.endswith("int8-dynamic.tflite")
    for w in encoder:
        if tf_dynamic and w.elements < TF_DYNAMIC_MIN_ELEMENTS:
            continue  # TensorFlow's own rule, recorded in the recipe
        assert w.int8, f"{name}: encoder weight {w.weight} is {w.dtype}"
    assert all(w.int8 for w in c.part("pooler"))  # not a default fallback
    head = c.part("classifier")  # not a default fallback either (TF's small-tensor rule aside)
    assert head and all(w.int8 or (tf_dynamic and w.elements < TF_DYNAMIC_MIN_ELEMENTS)
                        for w in head), name
    word = [w for w in c.part("embeddings") if w.elements >= 16 * 900]
    assert word and all(w.int8 for w in word), name  # the word table is int8 too
    assert c.int8_ops >= 13
    meta = converted.files[name]
    assert meta["int8_ops"] == c.int8_ops and meta["census"]["weight_ops"]["encoder"]["int8"] >= 12


def test_int8_recipes_use_the_runtime_quantizers(converted):
    ops = {n: census(converted.path / n).ops for n in INT8_FILES}
    assert ops["model.int8-dynamic.onnx"].get("MatMulInteger", 0) >= 13
    assert ops["model.int8-static.onnx"].get("QuantizeLinear", 0) > 0
    assert ops["model.int8-static.onnx"].get("DequantizeLinear", 0) > 0
    assert ops["model.int8-dynamic.ort"].get("DynamicQuantizeMatMul", 0) \
        + ops["model.int8-dynamic.ort"].get("MatMulIntegerToFloat", 0) >= 13
    assert ops["model.int8-static.tflite"].get("QUANTIZE", 0) > 0
    # default fallbacks: softmax, layernorm and the attention matmuls stay float there
    fallbacks = converted.files["model.int8-static.tflite"]["recipe"]["float_fallbacks"]
    assert fallbacks == [f.value for f in DEFAULT_FALLBACKS]


def test_int8_files_store_about_one_byte_per_parameter(converted):
    """Stored weight bytes (read from the graph) <= 1.3 per parameter in every int8 file.

    int8 weights take 1 byte each; the rest is what stays float: biases and LayerNorm (4 bytes
    each, ~5 % of this tiny model's parameters), per-channel scales, and
    in TFLite dynamic-range files TensorFlow's float copies of tensors under 1024 elements. The
    file size adds the graph itself (a fixed ~15-100 KB at this size), so it is not the bound; the
    benchmark reports file bytes per parameter at real sizes.
    """
    params = converted.extra["parameters"]
    for name in INT8_FILES:
        stored = census(converted.path / name).stored_weight_bytes
        assert stored <= 1.3 * params, f"{name}: {stored / params:.2f} bytes per parameter"
    for name in ("model.fp32.onnx", "model.fp32.tflite"):
        stored = census(converted.path / name).stored_weight_bytes
        assert 3.9 * params <= stored <= 1.05 * 4 * params + 4096, name


def test_tflite_files_hold_builtin_ops_only(converted):
    from ai_edge_litert import schema_py_generated as schema

    builtin = {k for k in vars(schema.BuiltinOperator) if not k.startswith("_")} - {"CUSTOM"}
    for name in ALL_FILES:
        if name.endswith(".tflite"):
            c = census(converted.path / name)
            assert c.custom_ops == [] and set(c.ops) <= builtin, name
            assert not any(op.startswith("Flex") for op in c.ops)


def test_onnx_and_ort_files_load_in_onnxruntime(converted):
    import onnx
    import onnxruntime as ort

    assert not list(converted.path.glob("*.data"))  # self-contained
    for name in ALL_FILES:
        if name.endswith((".onnx", ".ort")):
            sess = ort.InferenceSession(str(converted.path / name),
                                        providers=["CPUExecutionProvider"])
            assert [i.name for i in sess.get_inputs()] == list(INPUT_NAMES)
            assert all(i.type == "tensor(int64)" for i in sess.get_inputs())
            assert [o.name for o in sess.get_outputs()] == ["logits"]
    model = onnx.load(str(converted.path / "model.fp32.onnx"))
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 18
    assert all(i.data_location == onnx.TensorProto.DEFAULT for i in model.graph.initializer)
    # trap 2: no Transpose of a weight left in front of a MatMul
    inits = {i.name for i in model.graph.initializer}
    assert not [n for n in model.graph.node if n.op_type == "Transpose" and n.input[0] in inits]


def test_tflite_signature_has_named_int32_inputs(converted):
    from ai_edge_litert.interpreter import Interpreter

    for name in ALL_FILES:
        if name.endswith(".tflite"):
            interp = Interpreter(model_path=str(converted.path / name))
            sig = interp.get_signature_list()["serving_default"]
            assert sorted(sig["inputs"]) == sorted(INPUT_NAMES) and sig["outputs"] == ["logits"]
            runner = interp.get_signature_runner("serving_default")
            details = runner.get_input_details()
            assert all(details[n]["dtype"] == np.int32 for n in INPUT_NAMES)


def _const_shapes(path: Path) -> list[tuple[int, ...]]:
    """Shapes of the constant tensors (weights) stored in an .onnx or .tflite file."""
    if path.suffix == ".onnx":
        import onnx

        return [tuple(i.dims) for i in onnx.load(str(path)).graph.initializer]
    from ai_edge_litert import schema_py_generated as schema

    m = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(path.read_bytes(), 0))
    return [tuple(int(d) for d in t.shape) for g in m.subgraphs for t in g.tensors
            if m.buffers[t.buffer].data is not None and len(m.buffers[t.buffer].data)]


def test_files_keep_only_the_position_rows_their_longest_input_reads(tiny_artifact, tiny_model):
    """The tiny model has 128 positions; converted for buckets up to 32, every file stores a
    32-row table (and the counted parameters drop by the rows cut), and still runs at width 32."""
    from edge_albert.converters.parity import run_file

    from edge_albert.artifacts import load_manifest
    from edge_albert.modeling import load_classifier, parameter_count

    source = load_classifier(tiny_model)
    emb = source.config.embedding_size
    assert source.config.max_position_embeddings == 128
    m = load_manifest(tiny_artifact)
    assert m.extra["max_position_embeddings"] == 32 == m.extra["export_spec"]["max_length"]
    assert parameter_count(source) - m.extra["parameters"] == (128 - 32) * emb
    feeds = _feeds(tiny_artifact, ["good lovely warm .", "bleak ."], 32)
    for name in m.files:
        path = tiny_artifact / name
        if path.suffix in (".onnx", ".tflite"):
            shapes = _const_shapes(path)
            assert (128, emb) not in shapes, name
            if "/" not in name:  # fixed-shape variants (fixed/) fold the table to their width
                assert (32, emb) in shapes, name
                (out,) = run_file(path, [feeds])
                assert np.isfinite(out).all(), name


def test_artifact_is_self_contained_and_verifies(converted):
    from edge_albert.runtime.tokenizer import TextTokenizer

    from edge_albert.artifacts import verify

    m = verify(converted.path, stage="convert")
    assert (converted.path / "labels.txt").read_text().split() == ["0", "1"]
    assert m.extra["labels"] == ["0", "1"] and m.extra["parameters"] > 20_000
    assert TextTokenizer.load(converted.path).vocab_size > 500
    ops_config = (converted.path / "required_operators.config").read_text()
    assert "ai.onnx;" in ops_config and "MatMul" in ops_config
    assert str(converted.path.parent) not in ops_config  # no absolute build paths
    for name in ALL_FILES:
        meta = m.files[name]
        assert meta["size_bytes"] > 0 and meta["inputs"][0]["name"] == "input_ids"
        assert meta["inputs"][0]["dtype"] == ("int32" if name.endswith(".tflite") else "int64")
        assert meta["buckets"] == [32, 64, 128] and meta["seq_len"] == 128
    assert m.extra["calibration"]["by_label"] == {"0": 100, "1": 100}
    json.dumps(m.to_json())


def test_twelve_passes_store_the_shared_layer_once(cli, workdir, tiny_model, tiny12_model,
                                                   converted, task_tsv):
    """tiny-12 (12 passes of 1 shared layer) vs tiny (2 passes): the same weights stored, and a
    file that grows by graph nodes only. Ten more copies of the layer would add ~10 x its bytes.
    Run through the CLI, with non-default fallbacks checked in the int8-static files."""
    from edge_albert.artifacts import load_manifest
    from edge_albert.modeling import load_classifier

    out = workdir / "tiny12-converted"
    res = CliRunner().invoke(cli, [
        "convert", "--model", str(tiny12_model), "--out", str(out), "--formats", "onnx,tflite",
        "--precisions", "fp32,int8-static", "--calibration", str(task_tsv),
        "--fallbacks", "embeddings,pooler,attention", "--calibration-size", "64",
        "--set", "convert.parity_examples=64", "--quiet"])
    assert res.exit_code == 0, res.output
    assert "model.int8-static.tflite" in res.output and f"wrote {out}" in res.output
    m12 = load_manifest(out)
    layer = load_classifier(tiny_model).albert.encoder.albert_layer_groups[0]
    layer_bytes = 4 * sum(p.numel() for p in layer.parameters())
    for name in ("model.fp32.onnx", "model.fp32.tflite"):
        two, twelve = converted.path / name, out / name
        s2, s12 = census(two).stored_weight_bytes, census(twelve).stored_weight_bytes
        assert abs(s12 - s2) <= 0.01 * s2, (name, s2, s12)
        growth = twelve.stat().st_size - two.stat().st_size
        assert growth < 0.25 * 10 * layer_bytes, (name, growth, layer_bytes)
        assert m12.files[name]["parity"]["max_abs_logit_diff"] <= 1e-4
    for name in ("model.int8-static.onnx", "model.int8-static.tflite"):
        c = census(out / name)
        assert len(c.part("encoder")) == 1 + 6 * 12 and all(w.int8 for w in c.part("encoder"))
        assert not any(w.int8 for w in c.part("pooler") + c.part("embeddings")), name
        assert all(w.int8 for w in c.part("classifier")), name  # no longer a fallback
    # the attention fallback: Q.K^T and P.V read float tensors in both files
    from edge_albert.converters.census import tflite_ops

    bmm = [o for o in tflite_ops((out / "model.int8-static.tflite").read_bytes())
           if o.op == "BATCH_MATMUL"]
    assert len(bmm) == 2 * 12 and not any(o.reads_int8 for o in bmm)
    import onnx

    g = onnx.load(str(out / "model.int8-static.onnx")).graph
    producer = {o: n.op_type for n in g.node for o in n.output}
    inits = {i.name for i in g.initializer}
    weights = inits | {n.output[0] for n in g.node
                       if n.op_type == "DequantizeLinear" and n.input[0] in inits}
    act = [n for n in g.node if n.op_type == "MatMul" and not set(n.input) & weights]
    assert len(act) == 2 * 12
    assert not any(producer.get(x) == "DequantizeLinear" for n in act for x in n.input)


def test_albert_groups_and_inner_layers_convert(tmp_path, tokenizer_dir, task_tsv):
    """num_hidden_groups=2 and inner_group_num=2: 4 distinct layers, 8 layer passes, fp32 parity in
    ONNX and TFLite, and each distinct layer stored once."""
    from edge_albert.converters.convert import ConvertConfig, run_convert
    from edge_albert.runtime.tokenizer import TextTokenizer

    from edge_albert.modeling import (
        AlbertShape,
        albert_config,
        build_albert_classifier,
        copy_tokenizer_files,
        parameter_count,
    )

    vocab = TextTokenizer.load(tokenizer_dir).vocab_size
    shape = AlbertShape(16, 32, 4, 2, 64, num_hidden_groups=2, max_position_embeddings=128)
    model = build_albert_classifier(albert_config(shape, vocab_size=vocab, inner_group_num=2))
    model.save_pretrained(tmp_path / "grouped")
    copy_tokenizer_files(tokenizer_dir, tmp_path / "grouped")
    m = run_convert(ConvertConfig(formats=("onnx", "tflite"), precisions=("fp32",),
                                  parity_examples=64), tmp_path / "grouped", tmp_path / "out",
                    calibration=task_tsv, progress=False)
    params = parameter_count(model)
    for name in ("model.fp32.onnx", "model.fp32.tflite"):
        assert m.files[name]["parity"]["max_abs_logit_diff"] <= 1e-4, name
        c = census(m.path / name)
        assert len(c.part("encoder")) == 1 + 6 * 4 * 2
        assert c.stored_weight_bytes <= 1.05 * 4 * params + 4096


def test_trained_layernorm_does_not_copy_shared_weights_per_pass(tmp_path):
    """A trained LayerNorm (gamma != 1, beta != 0) must not make TFLite's optimizer fold gamma/beta
    into the next dense layer (W * gamma, b + W @ beta) and store a second copy of a shared weight
    for the passes that read a LayerNorm output (regression: 1.19 x 4 bytes/parameter at hidden
    128). A fresh model hides this: its gamma = 1 and beta = 0 fold into the same values."""
    import torch
    from edge_albert.converters.parity import run_file
    from edge_albert.converters.spec import Precision
    from edge_albert.converters.tf_albert import make_tf_albert
    from edge_albert.converters.tflite_convert import convert_tflite

    from edge_albert.modeling import (
        AlbertShape,
        albert_config,
        build_albert_classifier,
        parameter_count,
    )

    shape = AlbertShape(64, 128, 4, 2, 512, max_position_embeddings=128)
    model = build_albert_classifier(albert_config(shape, vocab_size=515, num_labels=8))
    torch.manual_seed(1)
    with torch.no_grad():  # trained-like: every weight, LayerNorm gamma/beta and bias moved
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    params = parameter_count(model)
    module = make_tf_albert(model)
    feeds = {"input_ids": np.array([[2, 57, 300, 9, 3, 0]]),
             "attention_mask": np.array([[1, 1, 1, 1, 1, 0]]),
             "token_type_ids": np.zeros((1, 6), dtype=np.int64)}
    with torch.no_grad():
        ref = model(**{k: torch.from_numpy(v) for k, v in feeds.items()}).logits.numpy()
    for precision, width in ((Precision.FP32, 4), (Precision.FP16, 2)):
        data, _ = convert_tflite(module, precision)
        path = tmp_path / f"model.{precision.value}.tflite"
        path.write_bytes(data)
        c = census(path)
        assert not c.custom_ops
        stored = c.stored_weight_bytes
        assert stored <= 1.05 * width * params + 4096, (precision.value, stored, params)
        if precision is Precision.FP32:
            (out,) = run_file(path, [feeds])
            assert np.max(np.abs(out - ref)) <= 1e-4


# --------------------------------------------------------------------------- trained model, full int8
@pytest.fixture(scope="module")
def trained_int8(tmp_path_factory, tiny_tokenizer, tiny_task):
    """A tiny ALBERT fine-tuned on the generated sentiment task (~7 s), converted to fp32 and
    full-integer int8 TFLite with the default recipe (default fallbacks), calibrated on its
    training file."""
    pytest.importorskip("torch")
    from edge_albert.converters.convert import ConvertConfig, run_convert
    from edge_albert.converters.spec import Precision

    from edge_albert.config import FinetuneConfig
    from edge_albert.data import read_dataset
    from edge_albert.finetune import run_finetune
    from edge_albert.modeling import init_model_dir

    d = tmp_path_factory.mktemp("trained-int8")
    init_model_dir("tiny", tiny_tokenizer, d / "base", label_names=["0", "1"], seed=0)
    cfg = FinetuneConfig(max_steps=64, batch_size=16, max_length=32, learning_rate=3e-3,
                         eval_every=64, checkpoint_every=0, threads=1, warmup_ratio=0.0)
    run_finetune(cfg, d / "base", read_dataset(tiny_task["train"]),
                 read_dataset(tiny_task["dev"]), d / "ft", progress=False)
    manifest = run_convert(ConvertConfig(formats=(Format.TFLITE,),
                                         precisions=(Precision.FP32, Precision.INT8_STATIC)),
                           d / "ft", d / "out", calibration=tiny_task["train"], progress=False)
    return manifest


def test_full_int8_tflite_keeps_a_trained_models_accuracy(trained_int8):
    """The int8 -1e4 padding mask used to flatten attention (45 % vs 99.7 % fp32 on this task):
    the default recipe keeps the masked-score path float and must agree with fp32 on held-out,
    padded text, while the encoder's weight matmuls stay int8."""
    import importlib.util

    from edge_albert.runtime import Classifier

    spec = importlib.util.spec_from_file_location(  # tests/conftest.py, the task's generator
        "_edge_albert_tests_conftest", Path(__file__).resolve().parents[1] / "conftest.py")
    assert spec is not None and spec.loader is not None
    task = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(task)
    rows = task.make_sentiment_rows(200, seed=7)  # held out: train uses seed 1, dev seed 2
    texts, gold = [t for t, _ in rows], [lab for _, lab in rows]
    out = trained_int8.path
    fp32, _ = Classifier.load(out, model="model.fp32.tflite").predict(texts)
    int8, _ = Classifier.load(out, model="model.int8-static.tflite").predict(texts)
    acc32 = np.mean([p == g for p, g in zip(fp32, gold)])
    acc8 = np.mean([p == g for p, g in zip(int8, gold)])
    agree = np.mean([a == b for a, b in zip(fp32, int8)])
    assert acc32 >= 0.85, acc32  # the model really learned the task
    assert agree >= 0.9 and acc8 >= acc32 - 0.05, (acc32, acc8, agree)

    path = out / "model.int8-static.tflite"
    c = census(path)
    assert c.custom_ops == []
    encoder = c.part("encoder")
    assert len(encoder) == 13 and all(w.int8 for w in encoder)
    from edge_albert.converters.census import tflite_ops

    ops = tflite_ops(path.read_bytes())
    masked = [o for o in ops if any("softmax/" in n for n in o.outputs)]
    assert {o.op for o in masked} >= {"SOFTMAX", "ADD"}
    assert not any(o.reads_int8 for o in masked)  # scores + mask and softmax in float
    bmm = [o for o in ops if o.op == "BATCH_MATMUL"]  # Q.K^T, P.V: a default fallback
    assert len(bmm) == 4 and not any(o.reads_int8 for o in bmm)
    recipe = trained_int8.files["model.int8-static.tflite"]["recipe"]
    assert "softmax" in recipe["float_fallbacks"] and "warning" not in recipe


def test_fixed_shape_onnx_variants_per_bucket(converted, tokenizer_dir):
    """fixed/model.<precision>.b1x<L>.onnx pin every input to [1, L] and match the dynamic file."""
    import numpy as np
    import onnxruntime as ort
    from edge_albert.runtime import Classifier

    m = converted
    fixed = sorted(n for n in m.files if n.startswith("fixed/"))
    assert set(fixed) == {f"fixed/model.{p}.b1x{b}.onnx" for p in ("fp32", "int8-static")
                          for b in (32, 64, 128)}
    for name in fixed:
        sess = ort.InferenceSession(str(m.path / name), providers=["CPUExecutionProvider"])
        length = m.files[name]["fixed_shape"][1]
        assert all(i.shape == [1, length] for i in sess.get_inputs())
        limit = 1e-4 if ".fp32." in name else 1e-2
        assert m.files[name]["max_abs_diff_vs_dynamic"] <= limit
    texts = ["the film is charming .", "a dull , tired mess of a plot ."]
    ref = Classifier.load(m.path, model="model.fp32.onnx").logits(texts)
    clf = Classifier.load(m.path / "fixed" / "model.fp32.b1x32.onnx")
    assert clf.backend.fixed_batch == 1 and clf.max_length == 32
    np.testing.assert_allclose(clf.logits(texts, batch_size=8), ref, atol=1e-4)


def _weight_matmuls(path: Path) -> tuple[int, int]:
    """(weight MatMul/Gemm nodes, those whose output is requantized) of a QDQ .onnx file."""
    import onnx

    g = onnx.load(str(path)).graph
    inits = {i.name for i in g.initializer}
    weights = {n.output[0] for n in g.node if n.op_type == "DequantizeLinear" and n.input[0] in inits}
    readers: dict[str, set[str]] = {}
    for n in g.node:
        for x in n.input:
            readers.setdefault(x, set()).add(n.op_type)
    mm = [n for n in g.node if n.op_type in ("MatMul", "Gemm") and set(n.input) & weights]
    return len(mm), sum("QuantizeLinear" in readers.get(n.output[0], ()) for n in mm)


def test_int8_static_onnx_matmul_outputs_float_and_full_qdq_fixed_copies(converted, tmp_path):
    """The dynamic int8-static file leaves every weight MatMul's output float, and ONNX Runtime's
    CPU provider runs them as MatMulIntegerToFloat (int8 compute); the fixed-shape copies, for
    providers that take int8 only as DQ -> MatMul -> Q units, requantize every one."""
    import onnx
    import onnxruntime as ort

    dyn = converted.path / "model.int8-static.onnx"
    n, requantized = _weight_matmuls(dyn)
    assert n >= 13 and requantized == 0
    assert converted.files["model.int8-static.onnx"]["recipe"]["matmul_outputs"] == "float"
    opts = ort.SessionOptions()
    opts.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(dyn), opts, providers=["CPUExecutionProvider"])
    ops = {x.op_type for x in onnx.load(opts.optimized_model_filepath).graph.node}
    assert "MatMulIntegerToFloat" in ops and "QLinearMatMul" not in ops
    for b in (32, 64, 128):
        name = f"fixed/model.int8-static.b1x{b}.onnx"
        assert _weight_matmuls(converted.path / name) == (n, n)
        assert "full QDQ" in converted.files[name]["source"]


def _int8_weight_peak(path: Path) -> int:
    """Largest |value| among the int8 weight initializers of an .onnx file."""
    import onnx
    from onnx import numpy_helper

    peaks = [int(np.abs(numpy_helper.to_array(i).astype(np.int32)).max())
             for i in onnx.load(str(path)).graph.initializer
             if i.data_type == onnx.TensorProto.INT8 and int(np.prod(i.dims)) >= 64]
    assert peaks, path
    return max(peaks)


def test_int8_onnx_weights_use_7_bits_unless_the_target_multiplies_8_safely(converted, workdir,
                                                                             tiny_model, task_tsv):
    """portable (the default): 7-bit weights (ONNX Runtime's non-VNNI x86 kernels saturate on 8);
    x86-vnni: all 8 bits. Read from the files' own int8 initializers."""
    from edge_albert.converters.convert import ConvertConfig, run_convert

    for name in ("model.int8-dynamic.onnx", "model.int8-static.onnx"):
        assert converted.files[name]["recipe"]["target"] == "portable"
        assert converted.files[name]["recipe"]["weight_bits"] == 7
        assert _int8_weight_peak(converted.path / name) <= 64, name
    m = run_convert(ConvertConfig(formats=("onnx",), precisions=("int8-dynamic", "int8-static"),
                                  target="x86-vnni", fixed_shapes=(), parity_examples=32),
                    tiny_model, workdir / "vnni", calibration=task_tsv, progress=False)
    for name in ("model.int8-dynamic.onnx", "model.int8-static.onnx"):
        assert m.files[name]["recipe"]["weight_bits"] == 8
        assert _int8_weight_peak(m.path / name) == 127, name
        assert m.files[name]["parity"]["agreement"] >= 0.9
