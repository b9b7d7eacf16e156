"""ONNX Runtime's transformer fusions on our exported graph, with the shared layer stored once.

``onnxruntime.transformers.optimizer`` (model type ``bert``) turns each layer's attention into
one ``Attention`` op (packed QKV weight; ``QAttention`` once quantized), the residual Add +
LayerNorm pairs into ``SkipLayerNormalization`` and bias + erf GELU into ``BiasGelu``. Its
pattern matcher follows the first parent of the wanted type and never backtracks, so on the
dynamo exporter's graph it fused no attention at all (measured with onnxruntime 1.32). Three
rewrites, none changing a value beyond float rounding, put our graph in the form it matches
(:func:`canonicalise`); the export itself feeds the mask as ``(1 - mask) * mask_value`` (see
:func:`.onnx_export.logits_module`), the classic BERT mask the matcher knows:

1. the mask's one ``Unsqueeze(axes=[1, 2])`` becomes two single-axis Unsqueezes;
2. the score scale ``Mul(QK^T, 1/sqrt(d))`` becomes ``Div(QK^T, sqrt(d))``: the matcher finds
   the mask's Mul as "the first Mul parent" of the score Add only if the scale is not a Mul;
3. the residual ``Add`` before each attention LayerNorm lists the attention output first: the
   first layer's residual is itself an Add (the embedding projection's bias), which the matcher
   would otherwise take for the attention output.

ALBERT's shared layer makes every pass pack the same QKV weights: :func:`.onnx_export.
dedupe_initializers` merges the copies again (and again after quantization, in
``onnx_quant._tidy_saved``), and :func:`fuse_onnx` refuses a file over the same storage
bound as the export.
"""
from __future__ import annotations

import contextlib
import io
import logging
from pathlib import Path

import numpy as np

from ..errors import ConversionError

#: the fused op types :func:`fuse_onnx` reports (the optimizer's statistics, zeros left out)
FUSED_OPS = ("Attention", "SkipLayerNormalization", "BiasGelu", "Gelu", "FastGelu",
             "EmbedLayerNormalization", "LayerNormalization")


def _producers(graph) -> dict:
    return {o: n for n in graph.node for o in n.output}


def _split_mask_unsqueeze(graph, inits: dict) -> int:
    """Rewrite 1: ``Unsqueeze(attention_mask, [1, 2])`` -> two single-axis Unsqueezes."""
    from onnx import helper, numpy_helper

    nodes, split = [], 0
    for n in graph.node:
        axes = (numpy_helper.to_array(inits[n.input[1]]).ravel().tolist()
                if n.op_type == "Unsqueeze" and n.input[0] == "attention_mask"
                and len(n.input) > 1 and n.input[1] in inits else [])
        if len(axes) < 2:
            nodes.append(n)
            continue
        prev = n.input[0]
        for k, axis in enumerate(axes):
            axis_name = f"{n.output[0]}.axis{k}"
            graph.initializer.append(numpy_helper.from_array(np.array([axis], np.int64),
                                                             axis_name))
            out = n.output[0] if k == len(axes) - 1 else f"{n.output[0]}.part{k}"
            nodes.append(helper.make_node("Unsqueeze", [prev, axis_name], [out],
                                          name=f"{n.name}.{k}"))
            prev = out
        split += 1
    del graph.node[:]
    graph.node.extend(nodes)
    return split


def _scale_as_div(graph, inits: dict) -> int:
    """Rewrite 2: ``Mul(MatMul(Q, K^T), c)`` feeding a softmax's Add -> ``Div(.., 1/c)``."""
    from onnx import numpy_helper

    made: dict[str, str] = {}
    prod = _producers(graph)
    count = 0
    for sm in (n for n in graph.node if n.op_type == "Softmax"):
        add = prod.get(sm.input[0])
        if add is None or add.op_type != "Add":
            continue
        for x in add.input:
            mul = prod.get(x)
            if (mul is None or mul.op_type != "Mul" or mul.input[1] not in inits
                    or getattr(prod.get(mul.input[0]), "op_type", "") != "MatMul"):
                continue
            c = numpy_helper.to_array(inits[mul.input[1]])
            if c.size != 1:
                continue
            if mul.input[1] not in made:
                made[mul.input[1]] = mul.input[1] + ".reciprocal"
                inv = (1.0 / c.astype(np.float64)).astype(c.dtype)
                graph.initializer.append(numpy_helper.from_array(inv, made[mul.input[1]]))
            mul.op_type = "Div"
            mul.input[1] = made[mul.input[1]]
            count += 1
    return count


def _attention_output_first(graph) -> int:
    """Rewrite 3: the residual Add before a LayerNorm takes the attention output first."""
    prod = _producers(graph)

    def is_attention_output(name: str) -> bool:  # Add(MatMul(Reshape(..)), bias)
        add = prod.get(name)
        if add is None or add.op_type != "Add":
            return False
        mm = next((prod[x] for x in add.input if getattr(prod.get(x), "op_type", "") == "MatMul"),
                  None)
        return mm is not None and getattr(prod.get(mm.input[0]), "op_type", "") == "Reshape"

    swapped = 0
    for ln in (n for n in graph.node if n.op_type == "LayerNormalization"):
        add = prod.get(ln.input[0])
        if add is None or add.op_type != "Add":
            continue
        if not is_attention_output(add.input[0]) and is_attention_output(add.input[1]):
            add.input[0], add.input[1] = add.input[1], add.input[0]
            swapped += 1
    return swapped


def _name_packed_weights(model_proto) -> None:
    """The optimizer names each packed QKV weight after its node (``Attention_0_qkv_weight``):
    rename them ``encoder.attention.<k>.qkv_weight`` / ``_bias`` so the census finds their part."""
    g = model_proto.graph
    inits = {i.name: i for i in g.initializer}
    rename: dict[str, str] = {}
    made = {"weight": 0, "bias": 0}
    for node in (n for n in g.node if n.op_type == "Attention"):
        for idx, kind in ((1, "weight"), (2, "bias")):
            old = node.input[idx] if len(node.input) > idx else ""
            if old in inits and old not in rename:
                rename[old] = f"encoder.attention.{made[kind]}.qkv_{kind}"
                made[kind] += 1
    for old, new in rename.items():
        inits[old].name = new
    for node in g.node:
        for i, name in enumerate(node.input):
            if name in rename:
                node.input[i] = rename[name]


def canonicalise(model_proto) -> dict[str, int]:
    """Apply the three rewrites in place; returns how often each applied."""
    g = model_proto.graph
    inits = {i.name: i for i in g.initializer}
    return {"mask_unsqueezes_split": _split_mask_unsqueeze(g, inits),
            "scales_as_div": _scale_as_div(g, inits),
            "residuals_reordered": _attention_output_first(g)}


def fuse_onnx(src: str | Path, dst: str | Path, *, num_heads: int, hidden_size: int,
              layers: int, parameters: int) -> dict:
    """Write ``src`` with ORT's transformer fusions applied to ``dst``; returns the recipe.

    Raises ConversionError when fewer than ``layers`` attentions fuse (the plain graph is the
    fallback: ``--onnx-graph plain``) or when the fused file stores a shared weight per pass.
    """
    import onnx
    from onnxruntime.transformers import optimizer

    from .onnx_export import STORAGE_SLACK, dedupe_initializers, float_initializer_bytes

    proto = onnx.load(str(src))
    rewrites = canonicalise(proto)
    logger = logging.getLogger("onnxruntime.transformers")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            fused = optimizer.optimize_model(proto, model_type="bert", num_heads=num_heads,
                                             hidden_size=hidden_size, opt_level=0)
    except Exception as exc:  # the optimizer raises many types; keep its first line
        raise ConversionError(f"onnxruntime's transformer optimizer failed:"
                              f" {str(exc).splitlines()[0][:300]}", where=src,
                              hint="--onnx-graph plain skips the fusions") from exc
    finally:
        logger.setLevel(level)
    stats = {k: int(v) for k, v in fused.get_fused_operator_statistics().items()
             if k in FUSED_OPS and v}
    if stats.get("Attention", 0) < layers:
        raise ConversionError(
            f"onnxruntime's optimizer fused {stats.get('Attention', 0)} of {layers} attention"
            " layers", where=src, hint="--onnx-graph plain keeps the unfused graph")
    out = fused.model
    if not any(o.domain == "com.microsoft" for o in out.opset_import):  # the optimizer's save
        out.opset_import.append(onnx.helper.make_opsetid("com.microsoft", 1))  # adds it too
    merged = dedupe_initializers(out)
    _name_packed_weights(out)
    stored = float_initializer_bytes(out)
    if stored > STORAGE_SLACK * 4 * parameters:
        raise ConversionError(
            f"the fused graph stores {stored:,} bytes of float weights for {parameters:,}"
            f" parameters (> {STORAGE_SLACK} x 4 bytes each): a shared weight was copied per"
            " pass", where=src)
    onnx.checker.check_model(out)
    onnx.save_model(out, str(dst), save_as_external_data=False)
    return {"fusions": "onnxruntime.transformers.optimizer (model_type bert, opt_level 0)",
            "fused_ops": stats, "rewrites": rewrites, "merged_initializers": merged,
            "float_weight_bytes": stored}


def fuse_model_file(model, src: str | Path, dst: str | Path, parameters: int) -> dict:
    """:func:`fuse_onnx` with the head count, width and passes read from ``model.config``."""
    cfg = model.config
    out = fuse_onnx(src, dst, num_heads=int(cfg.num_attention_heads),
                    hidden_size=int(cfg.hidden_size), layers=int(cfg.num_hidden_layers),
                    parameters=parameters)
    return {"graph": "fused", **out}
