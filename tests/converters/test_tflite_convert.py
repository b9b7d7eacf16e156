"""``denylisted_nodes``: the float-fallback groups find their ops by name scope as TensorFlow
writes it, uniquified scopes included (a second ``layernorm`` scope under one parent is
``layernorm_1``: once missed, which left a LayerNorm int8 in a "layernorm fallback" file)."""
from __future__ import annotations

import pytest

tf = pytest.importorskip("tensorflow")


def _two_norms_under_one_scope() -> bytes:
    spec = [tf.TensorSpec([None, 8], tf.float32)]

    def norm(x):
        with tf.name_scope("layernorm"):
            mean = tf.reduce_mean(x, axis=-1, keepdims=True)
            centered = x - mean
            var = tf.reduce_mean(tf.square(centered), axis=-1, keepdims=True)
            return centered * tf.math.rsqrt(var + 1e-6)

    @tf.function(input_signature=spec)
    def f(x):
        with tf.name_scope("attention"):
            with tf.name_scope("softmax"):
                x = tf.nn.softmax(x * 0.5 + 1.0, axis=-1)
            with tf.name_scope("softmax"):  # softmax_1
                x = tf.nn.softmax(x * 0.5 + 2.0, axis=-1)
            return norm(norm(x) * 3.0 + 1.0)  # the second: layernorm_1

    conv = tf.lite.TFLiteConverter.from_concrete_functions([f.get_concrete_function()], f)
    return conv.convert()


def test_fallbacks_match_uniquified_scopes():
    from edge_albert.converters.census import tflite_ops
    from edge_albert.converters.tflite_convert import denylisted_nodes

    model = _two_norms_under_one_scope()
    ops = tflite_ops(model)
    rsqrt = [o for op in ops if op.op == "RSQRT" for o in op.outputs]
    assert any("layernorm_1/" in o for o in rsqrt) and any("layernorm/" in o for o in rsqrt)
    deny = set(denylisted_nodes(model, ["layernorm"]))
    assert set(rsqrt) <= deny
    assert not any(op.op == "SOFTMAX" and set(op.outputs) & deny for op in ops)
    deny = set(denylisted_nodes(model, ["softmax"]))
    softmax = [o for op in ops if op.op == "SOFTMAX" for o in op.outputs]
    assert len(softmax) == 2 and set(softmax) <= deny
    assert any("softmax_1/" in o for op in ops if op.op in ("MUL", "ADD") for o in op.outputs
               if o in deny)
    assert not set(rsqrt) & deny
