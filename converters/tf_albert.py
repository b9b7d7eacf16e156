"""ALBERT's classifier forward pass written in TensorFlow, from a torch state_dict.

Why a hand-written forward pass rather than a graph translator: the peers that translate torch or
ONNX graphs into TFLite fail on ALBERT here (onnx2tf picks the wrong axis for the CLS ``Gather``
when sequence length equals hidden size and cannot take dynamic axes; litert-torch's PT2E int8
gives the embedding tables non-zero zero-points that TFLite's kernels reject; see PEERS.md). An
encoder is ~25 lines of TensorFlow, and writing it directly fixes, by construction, every trap a
translator has to be talked out of:

* builtin ops only: GELU is ``tf.nn.gelu`` (TFLite's builtin GELU op), attention is two
  ``BATCH_MATMUL``s, no ``Einsum``, no ``Erf`` for the tanh GELU, no Flex op;
* the padding mask is added as a finite constant (:data:`~.spec.ATTENTION_MASK_VALUE`, -1e4),
  never ``-inf`` or float-min, so fp16 cannot overflow;
* every dense layer is ``matmul(x, W, transpose_b=True)`` over the weight in torch's
  ``[out, in]`` layout, which is exactly TFLite's ``FULLY_CONNECTED`` weight layout, so the
  converter inserts no per-use transpose of a shared weight;
* LayerNorm gamma/beta (and the mapping_in bias) are ``[1, n]`` rows, so TFLite's optimizer
  cannot fold them into the next dense layer's weight or bias, which would store a second,
  pass-specific copy of a shared weight (see :func:`_stored_as`);
* ALBERT's shared layer is one set of ``tf.Variable`` objects read by every pass, so the file
  stores it once (checked by the tiny-12 vs tiny size test); ``num_hidden_groups > 1`` and
  ``inner_group_num > 1`` pick the group and inner layer the way transformers does.
* the last pass runs for the first token only: the classifier reads nothing else, so that
  pass computes keys and values for every token but the query, the attention output, the FFN
  and both LayerNorms for one row per example (exact, not an approximation; torch computes the
  other rows and drops them). On the default SST-2 student's int8-static file (5 layers) that
  cut batch 1 x 64 tokens from 2.00 to 1.72 ms and 8 x 128 from 38.1 to 31.5 ms (AMD EPYC, 1
  thread, interleaved), with the same dev and held-out predictions.
* where no other pass reads the last layer's weights (a group per layer, as in pruned students),
  that pass needs no keys or values either: with one query per head, the scores and the
  attention output are two per-head vectors times the token rows (:meth:`one_query_context`),
  so its two [seq x hidden x hidden] matmuls become two [heads x hidden x hidden] ones. The key
  weight is read transposed, which is why a shared layer keeps the plain form (the file would
  store it twice). On the default SST-2 student's int8-static file: batch 1 x 64 tokens 1.63 ->
  1.58 ms (AMD EPYC Zen 4, 1 thread, interleaved), parity agreement 96.5 -> 96.9 %. The ONNX and
  ExecuTorch files compute the same (``onnx_export._one_query_context``).

:func:`check_against_torch` compares this graph with the torch model before anything is converted.
Ops sit under name scopes (``embeddings``, ``mask``, ``encoder/layer_3/attention``, ``layernorm``,
``gelu``, ``softmax``, ``pooler``, ``classifier``), so float fallbacks can be chosen by tensor name.
The ``softmax`` scope holds the whole masked-score path (the additive mask and the softmax; the
1/sqrt(d) scale is folded into the query weights), not the softmax alone: in a full-integer file the tensor ``scores + mask`` spans
[-1e4, max score], so one int8 scale for it rounds every real score to the same value and the
attention turns uniform (a trained tiny ALBERT fell from 99.7 % to 45 %). The softmax fallback
keeps that path, and the ``mask`` ops that feed it, in float.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..errors import ConversionError
from .spec import ATTENTION_MASK_VALUE, INPUT_NAMES, OUTPUT_NAME

#: transformers' hidden_act -> tf.nn.gelu's ``approximate``
_GELU = {"gelu_new": True, "gelu_pytorch_tanh": True, "gelu_fast": True, "gelu": False}
_LINEARS = ("attention.query", "attention.key", "attention.value", "attention.dense", "ffn",
            "ffn_output")
_NORMS = ("attention.LayerNorm", "full_layer_layer_norm")


def _state(model) -> dict[str, np.ndarray]:
    return {k: v.detach().cpu().float().numpy() for k, v in model.state_dict().items()}


#: read as ``[1, n]`` rows, not ``[n]`` vectors (see :func:`_stored_as`)
_ROW_SUFFIXES = (".LayerNorm.weight", ".LayerNorm.bias", ".full_layer_layer_norm.weight",
                 ".full_layer_layer_norm.bias", "embedding_hidden_mapping_in.bias")


def _fold_score_scale(sd: dict[str, np.ndarray], head_dim: int) -> dict[str, np.ndarray]:
    """The query weight and bias times 1/sqrt(head_dim), so the graph needs no ``scores * c``.

    That multiply runs over every [batch, heads, seq, seq] score, in float (it sits on the
    softmax fallback path): at batch 8 x 128 tokens it was the largest single elementwise op of
    the default int8 file (perf on XNNPACK's kernels). Scaling q instead touches [tokens, hidden]
    once and costs nothing at run time, since the factor is folded into the stored weight. In
    int8 files the query weight's per-channel scales absorb the factor.
    """
    c = np.float32(1.0 / math.sqrt(head_dim))
    return {k: v * c if k.endswith(("attention.query.weight", "attention.query.bias")) else v
            for k, v in sd.items()}


def _stored_as(key: str, value: np.ndarray) -> np.ndarray:
    """LayerNorm gamma/beta and the mapping_in bias as ``[1, n]`` rows, not ``[n]`` vectors.

    TFLite's optimizer folds a ``MUL`` or ``ADD`` by a 1-D vector into the ``FULLY_CONNECTED``
    it feeds (``FuseMulAndFullyConnected``: W * gamma; ``FuseAddAndFullyConnected``:
    b + W @ beta) and stores the result as a new constant. ALBERT's shared Q/K/V weights are read
    by pass 0 after mapping_in (whose bias ADD folds into Q/K/V's biases) and by passes 1.. after
    the full-layer LayerNorm (whose gamma folds into Q/K/V's weights), and the FFN weight after
    the attention LayerNorm, so each pass kind got its own copy of a shared weight or bias.
    Both patterns leave constants that are not 1-D alone, and a ``[1, n]`` row broadcasts the
    same way. (With gamma = 1 and beta = 0, as in a fresh model, the folded copy equals the
    original and the converter merges the two, so only trained models showed the duplicates.)
    """
    return value.reshape(1, -1) if key.endswith(_ROW_SUFFIXES) and value.ndim == 1 else value


def last_layer_unshared(cfg: Any) -> bool:
    """Whether no pass but the last reads the last layer's weights (a group per layer), so the
    last pass may read its key weight transposed (``one_query_context``) without the file
    storing it twice. The passes of layer i read group i // (layers / groups), every inner layer
    of it once, so the last group is read by layers / groups passes."""
    return cfg.num_hidden_groups == cfg.num_hidden_layers


def make_tf_albert(model, *, mask_value: float = ATTENTION_MASK_VALUE,
                   fold_last_pass: bool = True):
    """A ``tf.Module`` computing ``model``'s logits; ``.serving`` is its tf.function."""
    import tensorflow as tf

    cfg = model.config
    if getattr(cfg, "model_type", None) != "albert":
        raise ConversionError(f"the TFLite converter writes ALBERT encoders only, not"
                              f" {getattr(cfg, 'model_type', '?')!r}",
                              hint="distil the teacher into an ALBERT student first")
    act = getattr(cfg, "hidden_act", "gelu_new")
    if act not in _GELU and act != "relu":
        raise ConversionError(f"unsupported hidden_act {act!r} for TFLite (supported: "
                              f"{', '.join(sorted([*_GELU, 'relu']))})")
    sd = _fold_score_scale(_state(model), cfg.hidden_size // cfg.num_attention_heads)

    class TFAlbert(tf.Module):
        def __init__(self) -> None:
            super().__init__(name="albert")
            self.hidden = cfg.hidden_size
            self.heads = cfg.num_attention_heads
            self.layers = cfg.num_hidden_layers
            self.groups = cfg.num_hidden_groups
            self.inner = getattr(cfg, "inner_group_num", 1)
            self.eps = float(cfg.layer_norm_eps)
            self.pooler_relu = getattr(cfg, "pooler_activation", "tanh") == "relu"
            self.mask_value = float(mask_value)
            self.act = act
            self.fold_last = fold_last_pass and last_layer_unshared(cfg)
            self.w: dict[str, Any] = {
                k: tf.Variable(_stored_as(k, v), trainable=False, name=k.replace(".", "/"))
                for k, v in sd.items() if not k.endswith("position_ids")
                and not k.endswith("token_type_ids")}

        # -- building blocks ---------------------------------------------------------------
        def dense(self, x, name: str):
            """x [n, in] @ W[out, in]^T + b: TFLite FULLY_CONNECTED with torch's weight as is."""
            return tf.matmul(x, self.w[name + ".weight"], transpose_b=True) + self.w[name + ".bias"]

        def norm(self, name: str, *terms, shape=None):
            """LayerNorm of the sum of ``terms`` (a residual and a sublayer's output, or the
            three embeddings), reshaped to ``shape`` first if given. The sum sits in the
            ``layernorm`` scope, so the layernorm fallback keeps the residual stream in float:
            in int8 one scale spans its outlier channels (default SST-2 student, int8-static:
            rms logit-margin error against fp32 0.65 -> 0.48, dev agreement 97.1 -> 98.3 %,
            same speed)."""
            with tf.name_scope("layernorm"):
                x = terms[0]
                for t in terms[1:]:
                    x = x + t
                if shape is not None:
                    x = tf.reshape(x, shape)
                mean = tf.reduce_mean(x, axis=-1, keepdims=True)
                centered = x - mean
                var = tf.reduce_mean(tf.square(centered), axis=-1, keepdims=True)
                return centered * tf.math.rsqrt(var + self.eps) * self.w[name + ".weight"] \
                    + self.w[name + ".bias"]

        def activation(self, x):
            with tf.name_scope("gelu"):
                if self.act == "relu":
                    return tf.nn.relu(x)
                return tf.nn.gelu(x, approximate=_GELU[self.act])

        def layer(self, x, bias, batch, seq, prefix: str, *, cls_only: bool = False):
            """One ALBERT layer on x [batch*seq, hidden]; ``cls_only``: the last pass, whose
            output the classifier reads at the first token only (see :func:`make_tf_albert`),
            returns [batch, hidden] for that token."""
            d = self.hidden // self.heads

            def heads(t, n):
                return tf.transpose(tf.reshape(t, [batch, n, self.heads, d]), [0, 2, 1, 3])

            with tf.name_scope("attention"):
                rows = tf.reshape(x, [batch, seq, self.hidden])[:, 0] if cls_only else x
                if cls_only and self.fold_last:
                    ctx = self.one_query_context(x, rows, bias, batch, seq, prefix)
                else:
                    n = 1 if cls_only else seq
                    q = heads(self.dense(rows, prefix + "attention.query"), n)
                    k = heads(self.dense(x, prefix + "attention.key"), seq)
                    v = heads(self.dense(x, prefix + "attention.value"), seq)
                    scores = tf.matmul(q, k, transpose_b=True)  # 1/sqrt(d) is in q's weights
                    with tf.name_scope("softmax"):
                        # mask and softmax share a scope, so the softmax fallback keeps the
                        # whole masked-score path in float (see the module docstring)
                        probs = tf.nn.softmax(scores + bias, axis=-1)
                    ctx = tf.reshape(tf.transpose(tf.matmul(probs, v), [0, 2, 1, 3]),
                                     [batch * n, self.hidden])
                attn = self.norm(prefix + "attention.LayerNorm", rows,
                                 self.dense(ctx, prefix + "attention.dense"))
            with tf.name_scope("ffn"):
                h = self.activation(self.dense(attn, prefix + "ffn"))
                h = self.dense(h, prefix + "ffn_output")
            return self.norm(prefix + "full_layer_layer_norm", attn, h)

        def one_query_context(self, x, rows, bias, batch, seq, prefix: str):
            """The last pass's attention output [batch, hidden] for its one query per example,
            with no keys or values: q_h . (x_t Wk_h^T + bk_h) = x_t . (q_h Wk_h) + const, and
            softmax(s_h) . (X Wv_h^T + bv_h) = (softmax(s_h) X) Wv_h^T + bv_h (the weights sum
            to 1; the constant drops out of the softmax). Per head that is two [hidden]-long
            vectors instead of [seq, hidden] keys and values: the pass's two [seq x hidden x
            hidden] matmuls become two [heads x hidden x hidden] ones. Exact up to rounding."""
            n, hid = self.heads, self.hidden
            d = hid // n
            # [., row h, head block g, .]: keeps g == h (q's head blocks as rows; the diagonal)
            eye = tf.constant(np.eye(n, dtype=np.float32).reshape(1, n, n, 1))
            q = self.dense(rows, prefix + "attention.query")  # [batch, hidden], 1/sqrt(d) in it
            q_heads = tf.reshape(tf.reshape(q, [batch, 1, n, d]) * eye, [batch * n, hid])
            u = tf.matmul(q_heads, self.w[prefix + "attention.key.weight"])  # x . u_h = score
            xs = tf.reshape(x, [batch, seq, hid])
            scores = tf.matmul(tf.reshape(u, [batch, n, hid]), xs, transpose_b=True)
            with tf.name_scope("softmax"):
                probs = tf.nn.softmax(scores + tf.reshape(bias, [batch, 1, seq]), axis=-1)
            z = tf.reshape(tf.matmul(probs, xs), [batch * n, hid])  # [batch*heads, hidden]
            full = tf.matmul(z, self.w[prefix + "attention.value.weight"], transpose_b=True)
            ctx = tf.reduce_sum(tf.reshape(full, [batch, n, n, d]) * eye, axis=1)
            return tf.reshape(ctx, [batch, hid]) + self.w[prefix + "attention.value.bias"]

        def logits(self, input_ids, attention_mask, token_type_ids):
            batch, seq = tf.shape(input_ids)[0], tf.shape(input_ids)[1]
            with tf.name_scope("embeddings"):
                word = tf.gather(self.w["albert.embeddings.word_embeddings.weight"], input_ids)
                kind = tf.gather(self.w["albert.embeddings.token_type_embeddings.weight"],
                                 token_type_ids)
                # [seq, emb] broadcasts over the batch; no new-axis slicing (a Flex StridedSlice)
                pos = tf.slice(self.w["albert.embeddings.position_embeddings.weight"], [0, 0],
                               [seq, -1])
                e = self.norm("albert.embeddings.LayerNorm", word, kind, pos,
                              shape=[batch * seq, -1])
            with tf.name_scope("mask"):
                keep = tf.reshape(tf.cast(attention_mask, tf.float32), [batch, 1, 1, seq])
                bias = (1.0 - keep) * self.mask_value
            with tf.name_scope("encoder"):
                with tf.name_scope("mapping_in"):
                    x = self.dense(e, "albert.encoder.embedding_hidden_mapping_in")
                per_group = self.layers / self.groups
                for i in range(self.layers):
                    g = int(i / per_group)
                    for j in range(self.inner):
                        last = i == self.layers - 1 and j == self.inner - 1
                        with tf.name_scope(f"layer_{i}_{j}" if self.inner > 1 else f"layer_{i}"):
                            x = self.layer(x, bias, batch, seq, "albert.encoder.albert_layer_groups"
                                           f".{g}.albert_layers.{j}.", cls_only=last)
            cls = x  # [batch, hidden]: the last pass ran for the first token only
            with tf.name_scope("pooler"):  # tanh; DistilBERT's head (its ALBERT form): ReLU
                dense = self.dense(cls, "albert.pooler")
                pooled = tf.nn.relu(dense) if self.pooler_relu else tf.tanh(dense)
            with tf.name_scope("classifier"):
                return self.dense(pooled, "classifier")

    module = TFAlbert()
    spec = [tf.TensorSpec([None, None], tf.int32, name=n) for n in INPUT_NAMES]

    @tf.function(input_signature=spec)
    def serving(input_ids, attention_mask, token_type_ids):
        return {OUTPUT_NAME: module.logits(input_ids, attention_mask, token_type_ids)}

    module.serving = serving
    _check_weights(module, sd)
    return module


def _check_weights(module, sd: Mapping[str, np.ndarray]) -> None:
    """Fail early, naming the key, if the state_dict lacks a weight the forward pass reads."""
    needed = ["albert.embeddings.word_embeddings.weight", "albert.pooler.weight",
              "classifier.weight", "albert.encoder.embedding_hidden_mapping_in.weight"]
    for g in range(module.groups):
        for j in range(module.inner):
            p = f"albert.encoder.albert_layer_groups.{g}.albert_layers.{j}."
            needed += [p + n + ".weight" for n in (*_LINEARS, *_NORMS)]
    missing = [k for k in needed if k not in sd]
    if missing:
        raise ConversionError(f"the model's weights lack {missing[0]} (and {len(missing) - 1}"
                              " more): not an AlbertForSequenceClassification state_dict")


def tf_logits(module, feeds: Mapping[str, np.ndarray]) -> np.ndarray:
    """Run the TF graph on int feeds (any int dtype)."""
    import tensorflow as tf

    args = [tf.constant(np.asarray(feeds[n], dtype=np.int32)) for n in INPUT_NAMES]
    return module.serving(*args)[OUTPUT_NAME].numpy()


def check_against_torch(module, model, feeds: Mapping[str, np.ndarray], *,
                        atol: float = 1e-4) -> float:
    """Max abs logit difference between the TF graph and torch; ConversionError above ``atol``."""
    import torch

    with torch.no_grad():
        ref = model(**{n: torch.from_numpy(np.asarray(feeds[n], dtype=np.int64))
                       for n in INPUT_NAMES}).logits.numpy()
    diff = float(np.max(np.abs(tf_logits(module, feeds) - ref)))
    if not diff <= atol:
        raise ConversionError(f"the TensorFlow forward pass differs from torch by {diff:.3g}"
                              f" (tolerance {atol:g}) before conversion",
                              hint="a model variant this converter does not cover; report it")
    return diff
