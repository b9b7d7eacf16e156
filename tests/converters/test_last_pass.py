"""The last layer pass, which the classifier reads at the first token only: computed for that
token (query, attention output, FFN, LayerNorms), and where no other pass shares its weights,
without keys or values for every token (``tf_albert.one_query_context``), in TFLite and ONNX."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from edge_albert.converters.spec import INPUT_NAMES

BATCH, SEQ = 2, 16
#: aten ops that change a tensor's layout only
RELAYOUTS = {"t", "permute", "transpose", "view", "reshape", "expand", "_unsafe_view", "contiguous"}


def _tflite_weight_matmul_rows(path: Path) -> list[tuple[str, int]]:
    """(output name, rows) of every FULLY_CONNECTED op, read from the file's own tensors after a
    run at [BATCH, SEQ]."""
    import warnings

    from ai_edge_litert.interpreter import Interpreter

    with warnings.catch_warnings():  # "intended for debugging purposes only": so is this test
        warnings.filterwarnings("ignore", message=".*preserve_all_tensors")
        it = Interpreter(model_path=str(path), experimental_preserve_all_tensors=True)
    for d in it.get_input_details():
        it.resize_tensor_input(d["index"], [BATCH, SEQ])
    it.allocate_tensors()
    for d in it.get_input_details():
        it.set_tensor(d["index"], np.ones((BATCH, SEQ), dtype=d["dtype"]))
    it.invoke()
    names = {t["index"]: t["name"] for t in it.get_tensor_details()}
    return [(names[op["outputs"][0]], it.get_tensor(op["outputs"][0]).shape[0])
            for op in it._get_ops_details() if op["op_name"] == "FULLY_CONNECTED"]


def _onnx_weight_matmul_rows(path: Path) -> list[int]:
    """Rows (all but the last axis) of every MatMul/Gemm output with a weight input in an fp32
    .onnx, run at [BATCH, SEQ] with those outputs exposed."""
    import onnx
    import onnxruntime as ort

    proto = onnx.load(str(path))
    inits = {i.name for i in proto.graph.initializer}
    outs = [n.output[0] for n in proto.graph.node
            if n.op_type in ("MatMul", "Gemm") and any(x in inits for x in n.input)]
    for name in outs:
        proto.graph.output.append(onnx.ValueInfoProto(name=name))
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = {n: np.ones((BATCH, SEQ), dtype=np.int64) for n in INPUT_NAMES}
    return [int(np.prod(o.shape[:-1])) for o in sess.run(outs, feeds)]


@pytest.mark.parametrize("name", ["model.fp32.tflite", "model.int8-static.tflite"])
def test_tflite_last_pass_runs_for_the_first_token_only(converted, name):
    """A shared layer (the tiny model: one group): the last pass computes the query, attention,
    FFN and LayerNorms for one row per example, keys and values still for every token (folding
    them would store the shared key weight twice); the earlier passes compute every row."""
    rows: dict[str, set[int]] = {}
    for out, n in _tflite_weight_matmul_rows(converted.path / name):
        if "/layer_" in out:
            layer = out.split("/layer_")[1].split("/")[0]
            kind = "ffn" if "/ffn/" in out else "attention"
            rows.setdefault(f"{layer}/{kind}", set()).add(n)
    last = max(int(k.split("/")[0]) for k in rows)
    for key, seen in rows.items():
        layer = int(key.split("/")[0])
        if layer < last:
            assert seen == {BATCH * SEQ}, key
        elif key.endswith("ffn"):
            assert seen == {BATCH}, key
        else:  # query and output projection per example, keys and values per token
            assert seen == {BATCH, BATCH * SEQ}, key


def test_onnx_last_pass_runs_for_the_first_token_only(converted, tiny_model):
    """As in the TFLite files: every FFN matmul of the fp32 .onnx has a row per token except the
    last pass's, one per example."""
    import onnx
    from transformers import AutoConfig

    layers = AutoConfig.from_pretrained(tiny_model).num_hidden_layers
    proto = onnx.load(str(converted.path / "model.fp32.onnx"))
    inits = {i.name for i in proto.graph.initializer}
    ffn = [n.output[0] for n in proto.graph.node if n.op_type in ("MatMul", "Gemm")
           and any(x in inits and ".ffn.weight" in x for x in n.input)]
    assert len(ffn) == layers
    for name in ffn:
        proto.graph.output.append(onnx.ValueInfoProto(name=name))
    import onnxruntime as ort

    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    outs = sess.run(ffn, {n: np.ones((BATCH, SEQ), dtype=np.int64) for n in INPUT_NAMES})
    rows = sorted(int(np.prod(o.shape[:-1])) for o in outs)
    assert rows == [BATCH] + [BATCH * SEQ] * (layers - 1)


@pytest.fixture(scope="module")
def unshared(tmp_path_factory, tokenizer_dir, task_tsv):
    """A 3-layer ALBERT with a group per layer (as pruned students are), trained-like weights
    (every parameter moved), converted to fp32 and int8-static ONNX and TFLite."""
    import torch
    from edge_albert.converters.convert import ConvertConfig, run_convert
    from edge_albert.runtime.tokenizer import TextTokenizer

    from edge_albert.modeling import (
        AlbertShape,
        albert_config,
        build_albert_classifier,
        copy_tokenizer_files,
    )

    work = tmp_path_factory.mktemp("unshared")
    vocab = TextTokenizer.load(tokenizer_dir).vocab_size
    shape = AlbertShape(16, 48, 3, 3, 64, num_hidden_groups=3, max_position_embeddings=128)
    model = build_albert_classifier(albert_config(shape, vocab_size=vocab))
    torch.manual_seed(3)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    model.save_pretrained(work / "model")
    copy_tokenizer_files(tokenizer_dir, work / "model")
    return model, run_convert(
        ConvertConfig(formats=("onnx", "tflite"), precisions=("fp32", "int8-static"),
                      parity_examples=64), work / "model", work / "out",
        calibration=task_tsv, progress=False)


def test_unshared_last_pass_computes_no_keys_or_values_per_token(unshared):
    """Where no other pass reads the last layer's weights, its keys and values are folded away:
    the per-token weight matmuls are mapping_in and six per earlier pass, none in the last
    (which has its own per-head ones: [batch x heads] rows), in TFLite and ONNX; the logits still
    match torch and each weight is stored once."""
    from edge_albert.converters.census import census

    from edge_albert.modeling import parameter_count

    model, m = unshared
    layers, heads = model.config.num_hidden_layers, model.config.num_attention_heads
    per_token = 1 + 6 * (layers - 1)
    for name in ("model.fp32.tflite", "model.int8-static.tflite"):
        rows = [n for out, n in _tflite_weight_matmul_rows(m.path / name)]
        assert rows.count(BATCH * SEQ) == per_token, name
        assert rows.count(BATCH * heads) == 2, name  # the folded key and value matmuls
    rows = _onnx_weight_matmul_rows(m.path / "model.fp32.onnx")
    assert rows.count(BATCH * SEQ) == per_token
    params = parameter_count(model)
    for name in ("model.fp32.onnx", "model.fp32.tflite"):
        assert m.files[name]["parity"]["max_abs_logit_diff"] <= 1e-4, name
        assert census(m.path / name).stored_weight_bytes <= 1.05 * 4 * params + 4096, name
    for name in ("model.int8-static.onnx", "model.int8-static.tflite"):
        assert m.files[name]["parity"]["agreement"] >= 0.95, name
        assert census(m.path / name).stored_weight_bytes <= 1.3 * params, name


def test_pte_folds_the_last_pass_into_linears_its_quantizer_takes(unshared):
    """The .pte's module folds the last pass too, its two folded matmuls written as linears:
    ExecuTorch's XNNPACKQuantizer quantizes linear weights only (as plain matmuls, two weights
    stayed fp32 in the int8 file). In the exported graph: no matmul reads a weight, and only
    mapping_in and the earlier passes' six linears run per token."""
    import torch
    from edge_albert.converters.pte import _logits_module

    model, _ = unshared
    ids = torch.ones((BATCH, SEQ), dtype=torch.long)
    ep = torch.export.export(_logits_module(model), (ids, ids, torch.zeros_like(ids)))
    params = {n for n, kind in ep.graph_signature.inputs_to_parameters.items()}
    calls = [n for n in ep.graph.nodes if n.op == "call_function"]

    def op(node) -> str:
        return str(node.target).split(".")[1]

    def reads_weight(node) -> bool:  # a parameter, as is or through a transpose or view
        return any(getattr(a, "name", None) in params or (
            getattr(a, "op", None) == "call_function" and op(a) in RELAYOUTS and reads_weight(a))
            for a in node.args)

    matmuls = [n for n in calls if op(n) in ("matmul", "mm", "bmm")]
    assert matmuls and not any(reads_weight(n) for n in matmuls)
    rows = [int(np.prod(n.meta["val"].shape[:-1])) for n in calls if "linear" in str(n.target)]
    assert rows.count(BATCH * SEQ) == 1 + 6 * (model.config.num_hidden_layers - 1)


def test_unshared_int8_static_tflite_keeps_every_norm_and_softmax_float(unshared):
    """The default fallbacks hold in the folded last pass too: every LayerNorm (the embeddings'
    and two per layer) with the sum it normalizes (the residual stream, the three embeddings)
    and every softmax of the full-integer file runs in float (the last pass's second LayerNorm
    was once int8: its ops sat in a scope TensorFlow had named ``layernorm_1``, which the
    fallback did not match; the residual sums were int8 before they joined the LayerNorm)."""
    from ai_edge_litert.interpreter import Interpreter

    model, m = unshared
    assert m.files["model.int8-static.tflite"]["recipe"]["float_fallbacks"] == [
        "layernorm", "softmax", "attention"]
    it = Interpreter(model_path=str(m.path / "model.int8-static.tflite"))
    dtypes = {t["index"]: np.dtype(t["dtype"]) for t in it.get_tensor_details()}
    kinds: dict[str, list[np.dtype]] = {}
    for op in it._get_ops_details():
        if op["op_name"] in ("MEAN", "SQUARED_DIFFERENCE", "RSQRT", "SOFTMAX", "ADD"):
            kinds.setdefault(op["op_name"], []).extend(dtypes[o] for o in op["outputs"])
    layers = model.config.num_hidden_layers
    assert len(kinds["RSQRT"]) == 1 + 2 * layers and len(kinds["SOFTMAX"]) == layers
    assert len(kinds["ADD"]) >= 2 + 2 * layers  # the embeddings' two, a residual per norm
    assert all(d == np.float32 for seen in kinds.values() for d in seen), {
        k: sorted({str(d) for d in v}) for k, v in kinds.items()}
