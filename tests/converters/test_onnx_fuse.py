"""The fused ONNX graph (``--onnx-graph fused``): ONNX Runtime's transformer fusions, the shared
layer stored once, parity with torch and the int8 files' agreement, on tiny-12 (12 passes of one
shared layer) so a per-pass copy would show twelvefold."""
from __future__ import annotations

import numpy as np
import pytest
from edge_albert.converters.census import census
from edge_albert.converters.onnx_export import STORAGE_SLACK

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def fused(workdir, tiny12_model, task_tsv):
    from edge_albert.converters.convert import ConvertConfig, run_convert

    return run_convert(ConvertConfig(formats=("onnx", "ort"), onnx_graph="fused"), tiny12_model,
                       workdir / "fused12", calibration=task_tsv, progress=False)


def test_every_pass_is_one_fused_attention(fused):
    fp32 = census(fused.path / "model.fp32.onnx").ops
    assert fp32.get("Attention") == 12 and fp32.get("SkipLayerNormalization") == 24
    assert "Softmax" not in fp32 and "Transpose" not in fp32  # attention's pieces are gone
    recipe = fused.files["model.fp32.onnx"]["recipe"]
    assert recipe["graph"] == "fused" and recipe["fused_ops"]["Attention"] == 12
    # the three rewrites applied once per pass (the mask's Unsqueeze once for the graph)
    assert recipe["rewrites"] == {"mask_unsqueezes_split": 1, "scales_as_div": 12,
                                  "residuals_reordered": 12}
    dyn = census(fused.path / "model.int8-dynamic.onnx")
    assert dyn.ops.get("QAttention") == 12 and "Attention" not in dyn.ops
    assert all(w.int8 for w in dyn.part("encoder")) and len(dyn.part("encoder")) == 49
    ort = census(fused.path / "model.int8-dynamic.ort").ops
    assert ort.get("QAttention") == 12


@pytest.mark.parametrize("name", ["model.fp32.onnx", "model.int8-dynamic.onnx",
                                  "model.fp32.ort", "model.int8-dynamic.ort"])
def test_the_shared_layer_is_stored_once(fused, name):
    """Each pass gets its own packed QKV weight from the optimizer; one copy must remain. Stored
    bytes (read from the graph) within the bound of the plain files: fp32 <= 1.05 x 4 bytes per
    parameter, int8 <= 1.3 (what stays float: biases, LayerNorm, scales; see test_convert)."""
    params = fused.extra["parameters"]
    c = census(fused.path / name)
    packed = {w.weight for w in c.weight_ops if w.op in ("Attention", "QAttention")}
    assert len(packed) == 1 and len([w for w in c.weight_ops if w.weight in packed]) == 12
    if "fp32" in name:
        assert 3.9 * params <= c.stored_weight_bytes <= STORAGE_SLACK * 4 * params + 4096
    else:
        assert c.stored_weight_bytes <= 1.3 * params, c.stored_weight_bytes / params


def test_parity_and_int8_agreement(fused, tokenizer_dir):
    from edge_albert.runtime import Classifier

    files = fused.files
    assert files["model.fp32.onnx"]["parity"]["max_abs_logit_diff"] <= 1e-4
    assert files["model.fp32.ort"]["parity"]["max_abs_logit_diff"] <= 1e-4
    for name in ("model.int8-dynamic.onnx", "model.int8-dynamic.ort"):
        assert files[name]["parity"]["agreement"] >= 0.995, (name, files[name]["parity"])
    texts = ["good " * n + "x" for n in range(1, 40)] + ["bleak weak", "a", "lovely " * 60]
    labels32, _ = Classifier.load(fused.path, model="model.fp32.onnx").predict(texts)
    labels8, _ = Classifier.load(fused.path, model="model.int8-dynamic.onnx").predict(texts)
    assert np.mean([a == b for a, b in zip(labels32, labels8)]) >= 0.95


def test_int8_static_is_made_from_the_plain_graph(fused):
    recipe = fused.files["model.int8-static.onnx"]["recipe"]
    assert recipe["graph"] == "plain" and "no Attention" in recipe["graph_why"]
    assert "Softmax" in census(fused.path / "model.int8-static.onnx").ops


def test_the_default_graph_is_plain(converted):
    assert converted.files["model.fp32.onnx"]["recipe"]["graph"] == "plain"
    assert "Attention" not in census(converted.path / "model.fp32.onnx").ops


def test_a_graph_the_fusions_miss_is_refused(workdir, tiny_model, tmp_path):
    """Fewer fused attentions than passes (here: the canonical rewrites left out) is an error
    naming the file and pointing at the plain graph, not a silently half-fused file."""
    import onnx
    from edge_albert.converters import onnx_fuse
    from edge_albert.converters.convert import ConvertConfig, run_convert

    from edge_albert.errors import ConversionError

    run_convert(ConvertConfig(formats=("onnx",), precisions=("fp32",)), tiny_model,
                tmp_path / "plain", progress=False)
    src = tmp_path / "plain" / "model.fp32.onnx"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(onnx_fuse, "canonicalise", lambda _proto: {})
        with pytest.raises(ConversionError, match="fused 0 of 2 attention") as err:
            onnx_fuse.fuse_onnx(src, tmp_path / "f.onnx", num_heads=2, hidden_size=32, layers=2,
                                parameters=10**6)
    assert "--onnx-graph plain" in str(err.value.hint)
    assert not (tmp_path / "f.onnx").exists()
    assert onnx.load(str(src))  # the source is untouched
