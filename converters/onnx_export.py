"""torch -> ONNX with the dynamo exporter, cleaned so quantizers and size checks see the truth.

Two traps measured on this stack (torch 2.13, transformers 5.24) shape what happens here:

1. An all-ones attention mask as the export example lets transformers skip the mask, and the
   graph then ignores padding. :func:`export_onnx` refuses an example without padding, and the
   parity check runs on padded real inputs.
2. The exporter writes each Linear as ``Transpose(weight) -> MatMul``, one Transpose per pass of
   ALBERT's shared layer. Left alone, onnxruntime's quantizer sees no initializer behind those
   MatMuls (only the embedding became int8), and constant folding makes one transposed copy per
   pass. :func:`fold_weight_transposes` replaces every Transpose of an initializer by one
   transposed initializer (named ``<weight>.T``, computed once per weight and permutation), and
   only then runs onnxscript's optimizer. :func:`dedupe_initializers` merges any identical
   initializers left over, and the file is saved as one self-contained ``.onnx`` (no
   ``.onnx.data``), without the exporter's per-node debug metadata.
"""
from __future__ import annotations

import hashlib
import io
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ConversionError
from .spec import ATTENTION_MASK_VALUE, INPUT_NAMES, OUTPUT_NAME, ExportSpec
from .tf_albert import last_layer_unshared

#: a file may store at most this many bytes of float weights per fp32 parameter byte
STORAGE_SLACK = 1.05


@dataclass(frozen=True)
class OnnxExport:
    """What :func:`export_onnx` wrote."""

    path: Path
    initializer_bytes: int
    folded_transposes: int
    merged_initializers: int


def logits_module(model, mask_value: float = ATTENTION_MASK_VALUE, *,
                  first_token_last_pass: bool = True):
    """``model`` as a module of the three spec inputs returning only the logits, in eval mode.

    The [batch, seq] mask goes in as the additive [batch, 1, 1, seq] mask
    ``(1 - mask) * mask_value`` (transformers uses a 4-D mask as given): the exporter then
    writes four small ops instead of transformers 5's Range / GatherND / Where mask builder, and
    ONNX Runtime's attention fusion recognises the form (see :mod:`.onnx_fuse`).

    ``first_token_last_pass`` (ALBERT models): the last pass runs for the first token only, as
    in the TFLite graph (:mod:`.tf_albert` says why and what it saves); the same logits, since
    the classifier reads nothing else; and, for an unshared last layer, without keys or values
    (:func:`_one_query_context`). Off for the graph ONNX Runtime's fusions rewrite: their
    packed QKV weight would sit beside the last pass's own Q/K/V, a second copy of a shared
    layer."""
    import torch

    first_token = first_token_last_pass and getattr(model.config, "model_type", "") == "albert"

    class LogitsOnly(torch.nn.Module):
        def __init__(self, inner) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask, token_type_ids):
            keep = attention_mask.unsqueeze(1).unsqueeze(2).to(torch.float32)
            bias = (1.0 - keep) * mask_value
            if first_token:
                return albert_logits_first_token(self.inner, input_ids, bias, token_type_ids)
            return self.inner(input_ids=input_ids, attention_mask=bias,
                              token_type_ids=token_type_ids).logits

    return LogitsOnly(model).eval()


def albert_logits_first_token(clf, input_ids, bias, token_type_ids, *, fold: bool = True,
                              linears: bool = False):
    """An ``AlbertForSequenceClassification``'s logits (eval mode, eager attention) with its
    last pass computed for the first token only: keys and values for every token, the query,
    attention output, FFN and LayerNorms for one row per example. Mirrors transformers'
    ``AlbertTransformer`` / ``AlbertLayer`` / ``AlbertAttention`` forward, reading their
    modules, so the weights are the model's own. ``fold``: an unshared last layer computes no
    keys or values (:func:`_one_query_context`; ``linears``: its two matmuls as ``F.linear``)."""
    import torch

    albert, cfg = clf.albert, clf.config
    enc = albert.encoder
    x = enc.embedding_hidden_mapping_in(albert.embeddings(input_ids,
                                                          token_type_ids=token_type_ids))
    per_group = cfg.num_hidden_layers / cfg.num_hidden_groups
    passes = [layer for i in range(cfg.num_hidden_layers)
              for layer in enc.albert_layer_groups[int(i / per_group)].albert_layers]
    for layer in passes[:-1]:
        out = layer(x, bias)
        x = out[0] if isinstance(out, tuple) else out  # transformers 4 returns a tuple
    last, att = passes[-1], passes[-1].attention
    scaling = getattr(att, "scaling", att.attention_head_size ** -0.5)  # not in transformers 4
    batch, seq, d = x.shape[0], x.shape[1], att.attention_head_size

    def heads(t, n):
        return t.view(batch, n, -1, d).transpose(1, 2)

    first = x[:, :1]
    if fold and last_layer_unshared(cfg):  # no other pass reads its key weight
        ctx = _one_query_context(att, first, x, bias, scaling, linears=linears)
    else:
        q = heads(att.query(first), 1)
        k, v = heads(att.key(x), seq), heads(att.value(x), seq)
        probs = torch.softmax(torch.matmul(q, k.transpose(2, 3)) * scaling + bias, dim=-1)
        ctx = torch.matmul(probs, v).transpose(1, 2).reshape(batch, 1, -1)
    a = att.LayerNorm(first + att.dense(ctx))
    out = last.full_layer_layer_norm(last.ff_chunk(a) + a)[:, 0]
    return clf.classifier(clf.dropout(albert.pooler_activation(albert.pooler(out))))


def _one_query_context(att, first, x, bias, scaling, *, linears: bool = False):
    """The last pass's attention output [batch, 1, hidden] without keys or values, as
    :meth:`.tf_albert.make_tf_albert`'s ``one_query_context`` computes it (the derivation is
    there): two [heads x hidden x hidden] matmuls instead of two [seq x hidden x hidden] ones."""
    import torch

    batch, seq, hid = x.shape
    n, d = hid // att.attention_head_size, att.attention_head_size
    eye = torch.eye(n).view(1, n, n, 1)  # [., row h, head block g, .]: keeps g == h
    q = (att.query(first) * scaling).view(batch, 1, n, d)
    q_heads = (q * eye).view(batch, n, hid)
    if linears:  # for quantizers that take linear weights only (ExecuTorch's XNNPACKQuantizer)
        u = torch.nn.functional.linear(q_heads, att.key.weight.t())
    else:  # the exporter keeps the key weight as the model's own, named initializer
        u = torch.matmul(q_heads, att.key.weight)  # score = x . u_h
    probs = torch.softmax(torch.matmul(u, x.transpose(1, 2)) + bias.view(batch, 1, seq), dim=-1)
    full = torch.nn.functional.linear(torch.matmul(probs, x), att.value.weight)  # [b, n, hid]
    ctx = (full.view(batch, n, n, d) * eye).sum(dim=1).view(batch, 1, hid)
    return ctx + att.value.bias


def use_eager_attention(model) -> None:
    """Plain MatMul/Softmax attention: exports to opset-18 ops every runtime has."""
    try:
        model.set_attn_implementation("eager")
    except (AttributeError, ValueError):
        model.config._attn_implementation = "eager"


def fold_weight_transposes(model_proto) -> int:
    """Replace ``Transpose(initializer)`` nodes by one transposed initializer per weight; returns
    how many Transpose nodes were removed."""
    from onnx import numpy_helper

    g = model_proto.graph
    inits = {i.name: i for i in g.initializer}
    made: dict[tuple[str, tuple[int, ...]], str] = {}
    rename: dict[str, str] = {}
    dead = []
    for node in g.node:
        if node.op_type != "Transpose" or node.input[0] not in inits:
            continue
        perm = tuple(next((list(a.ints) for a in node.attribute if a.name == "perm"), []))
        key = (node.input[0], perm)
        if key not in made:
            arr = numpy_helper.to_array(inits[node.input[0]])
            t = np.ascontiguousarray(np.transpose(arr, perm or None))
            name = node.input[0] + ".T"
            if name in made.values() or name in inits:  # the same weight, another permutation
                name = f"{node.input[0]}.T{''.join(map(str, perm))}"
            g.initializer.append(numpy_helper.from_array(t, name))
            made[key] = name
        rename[node.output[0]] = made[key]
        dead.append(node)
    graph_outputs = {o.name for o in g.output}
    for node in dead:
        if node.output[0] in graph_outputs:
            raise ConversionError("a graph output is a transposed weight; nothing to classify")
        g.node.remove(node)
    for node in g.node:
        for i, name in enumerate(node.input):
            if name in rename:
                node.input[i] = rename[name]
    return len(dead)


def dedupe_initializers(model_proto) -> int:
    """Point every use of identical initializers (dtype, shape, bytes) at one; returns how many
    were merged away."""
    from onnx import numpy_helper

    g = model_proto.graph
    first: dict[tuple[str, tuple[int, ...], str], str] = {}
    rename: dict[str, str] = {}
    keep = []
    for init in g.initializer:
        arr = numpy_helper.to_array(init)
        key = (arr.dtype.str, arr.shape, hashlib.sha256(arr.tobytes()).hexdigest())
        if key in first:
            rename[init.name] = first[key]
        else:
            first[key] = init.name
            keep.append(init)
    if rename:
        for node in g.node:
            for i, name in enumerate(node.input):
                if name in rename:
                    node.input[i] = rename[name]
        del g.initializer[:]
        g.initializer.extend(keep)
    return len(rename)


def strip_debug_metadata(model_proto) -> None:
    """Drop the exporter's per-node stack traces and names (most of a small model's bytes)."""
    for node in model_proto.graph.node:
        del node.metadata_props[:]
    for vi in (*model_proto.graph.input, *model_proto.graph.output):
        del vi.metadata_props[:]
    del model_proto.graph.value_info[:]


def float_initializer_bytes(model_proto) -> int:
    """Bytes of float initializers (the weights a float file stores)."""
    from onnx import TensorProto

    sizes = {TensorProto.FLOAT: 4, TensorProto.FLOAT16: 2, TensorProto.DOUBLE: 8}
    return sum(int(np.prod(i.dims, dtype=np.int64)) * sizes[i.data_type]
               for i in model_proto.graph.initializer if i.data_type in sizes)


def _check_padded(example: Mapping[str, np.ndarray]) -> None:
    mask = np.asarray(example["attention_mask"])
    if mask.ndim != 2 or mask.shape[0] < 2 or mask.shape[1] < 2 or mask.all():
        raise ConversionError(
            "the export example must be a batch of >= 2 rows with padding (an all-ones"
            " attention mask makes the exporter drop masking from the graph)")


def export_onnx(model, path: str | Path, example: Mapping[str, np.ndarray], *, spec: ExportSpec,
                parameters: int, first_token_last_pass: bool = True) -> OnnxExport:
    """Export ``model`` (a transformers sequence classifier) to one self-contained ``.onnx``.

    ``example`` is a padded batch (int64 feeds by input name); batch and sequence axes are
    dynamic (sequence up to the model's ``max_position_embeddings``); ``first_token_last_pass``
    as in :func:`logits_module`. Raises ConversionError if
    the float weights stored exceed ``STORAGE_SLACK x 4 x parameters`` (shared layer copied).
    """
    import onnx
    import onnxscript.optimizer
    import torch

    _check_padded(example)
    use_eager_attention(model)
    wrapper = logits_module(model, spec.mask_value, first_token_last_pass=first_token_last_pass)
    args = tuple(torch.from_numpy(np.asarray(example[n], dtype=np.int64)) for n in INPUT_NAMES)
    max_pos = int(getattr(model.config, "max_position_embeddings", spec.max_length))
    batch = torch.export.Dim("batch", min=1)
    seq = torch.export.Dim("seq", min=2, max=max_pos)
    dims = {n: {0: batch, 1: seq} for n in INPUT_NAMES}
    try:
        with torch.no_grad(), _quiet():
            program = torch.onnx.export(
                wrapper, args, dynamo=True, opset_version=spec.opset, input_names=list(INPUT_NAMES),
                output_names=[OUTPUT_NAME], dynamic_shapes=dims, optimize=False, verbose=False,
                external_data=False)
    except Exception as exc:  # the exporter raises many types; keep its first line
        raise ConversionError(f"torch.onnx.export (dynamo) failed: {str(exc).splitlines()[0][:300]}",
                              hint="re-run with -v for the exporter's report") from exc
    assert program is not None  # dynamo=True always returns the program
    proto = program.model_proto
    folded = fold_weight_transposes(proto)
    proto = onnxscript.optimizer.optimize(proto)
    merged = dedupe_initializers(proto)
    strip_debug_metadata(proto)
    onnx.checker.check_model(proto)
    stored = float_initializer_bytes(proto)
    if stored > STORAGE_SLACK * 4 * parameters:
        raise ConversionError(
            f"the ONNX graph stores {stored:,} bytes of float weights for {parameters:,} parameters"
            f" (> {STORAGE_SLACK} x 4 bytes each): a shared weight was copied per pass")
    path = Path(path)
    onnx.save_model(proto, str(path), save_as_external_data=False)
    return OnnxExport(path, stored, folded, merged)


class _quiet:
    """Silence the exporter's progress prints and warnings (our CLI shows its own progress)."""

    def __enter__(self):
        import contextlib
        import logging
        import warnings

        self._stack = contextlib.ExitStack()
        self._stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
        self._stack.enter_context(warnings.catch_warnings())
        warnings.simplefilter("ignore")
        for name in ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript"):
            logger = logging.getLogger(name)
            self._stack.callback(logger.setLevel, logger.level)
            logger.setLevel(logging.ERROR)
        return self

    def __exit__(self, *exc) -> None:
        self._stack.close()
