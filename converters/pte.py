"""ExecuTorch ``.pte`` files through the XNNPACK delegate: fp32, int8-dynamic and int8-static.

ExecuTorch (PyTorch's on-device runtime) loads a ``.pte`` program; the XNNPACK delegate runs the
parts it was lowered to, ExecuTorch's portable kernels the rest. Written with ExecuTorch's own
tools: ``torch.export`` (batch and length dynamic up to the spec's maximum),
``to_edge_transform_and_lower(..., partitioner=[XnnpackPartitioner()])``, and for int8
``XNNPACKQuantizer`` through PT2E (``prepare_pt2e`` / ``convert_pt2e``): per-channel int8 weights,
activations quantized per call (``int8-dynamic``) or with ranges calibrated on the shared
:class:`~.calibration.CalibrationSet` (``int8-static``).

The exported module is the classifier's own submodules, its last pass for the first token only
(the classifier reads nothing else: :func:`.onnx_export.albert_logits_first_token`), with three
graph choices that keep the work inside the delegate (measured on the SST-2 student: 42 delegate
pieces without them, 34 with; latency 1.8x -> 1.1x of the int8 TFLite file):

* the attention mask enters as a ready additive 4-D mask (``ATTENTION_MASK_VALUE`` on padded
  keys): transformers' boolean-mask path fails after ``prepare_pt2e`` and its checks are ops
  XNNPACK does not take;
* eager attention (two matmuls and a softmax), not SDPA;
* ``gelu_new`` (``0.5x(1 + tanh(...x^3))``) is written with ``x * x * x`` for its ``pow`` (an op
  outside XNNPACK). Not ``torch.nn.GELU(approximate="tanh")``: XNNPACK lowers that to its exact
  (erf) GELU, 4.7e-4 away from the tanh form on [-6, 6] (measured; the demo student's fp32 file
  then missed the 1e-4 parity gate at 4.2e-4); the exact ``gelu`` stays one ``GELU`` op.

The runtime side (:class:`~edge_albert.runtime.backends.PteBackend`) needs ExecuTorch's Python
runtime, which uses torch tensors: on a phone, ExecuTorch's own runtime (Android AAR, iOS
framework) loads the same file.
"""
from __future__ import annotations

import contextlib
import copy
import warnings
from collections import Counter
from collections.abc import Iterator
from typing import Any

from ..errors import ConversionError
from .calibration import CalibrationSet
from .onnx_export import albert_logits_first_token
from .spec import ATTENTION_MASK_VALUE, ExportSpec, Precision

#: transformers' hidden_act -> torch.nn.GELU's ``approximate``
_GELU = {"gelu_new": "tanh", "gelu_pytorch_tanh": "tanh", "gelu_fast": "tanh", "gelu": "none"}
#: the largest batch an exported program takes (ExecuTorch sizes its buffers for the upper bound)
MAX_BATCH = 64


def _tanh_gelu_class() -> Any:
    import torch

    class TanhGelu(torch.nn.Module):
        """``gelu_new`` in ops XNNPACK takes as they are (mul, add, tanh)."""

        def forward(self, x: Any) -> Any:
            return 0.5 * x * (1.0 + torch.tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)))

    return TanhGelu


def _logits_module(model: Any, *, fold: bool = True) -> Any:
    """The classifier as ``(input_ids, attention_mask, token_type_ids) -> logits`` with the
    graph choices of the module docstring, on a copy (``model`` is untouched)."""
    import torch

    TanhGelu = _tanh_gelu_class()
    m = copy.deepcopy(model).eval()
    act = getattr(m.config, "hidden_act", "gelu_new")
    if act not in _GELU:
        raise ConversionError(f"unsupported hidden_act {act!r} for ExecuTorch (supported:"
                              f" {', '.join(_GELU)})")
    m.config._attn_implementation = "eager"
    for mod in m.modules():
        if type(mod).__name__ == "AlbertLayer":
            mod.activation = TanhGelu() if _GELU[act] == "tanh" else torch.nn.GELU()

    class Logits(torch.nn.Module):
        def __init__(self, clf: Any) -> None:
            super().__init__()
            self.clf = clf

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            add = (1.0 - attention_mask[:, None, None, :].to(torch.float32)) * ATTENTION_MASK_VALUE
            # the last pass for the first token only, as in the ONNX and TFLite files; its
            # folded key/value matmuls as linears, which XNNPACKQuantizer quantizes (as plain
            # matmuls their weights stayed fp32: +0.74 MB on the default student's .pte)
            return albert_logits_first_token(self.clf, input_ids, add, token_type_ids,
                                             fold=fold, linears=True)

    return Logits(m).eval()


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """ExecuTorch and torchao warn (FutureWarning, DeprecationWarning) on their own imports and
    internal calls, nothing a user of this converter can act on."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _example(spec: ExportSpec) -> tuple[Any, ...]:
    import torch

    width = min(spec.buckets)
    ids = torch.full((2, width), 5, dtype=torch.long)
    mask = torch.ones_like(ids)
    mask[1, width // 2:] = 0
    return ids, mask, torch.zeros_like(ids)


def _dynamic(spec: ExportSpec) -> tuple[dict[int, Any], ...]:
    import torch

    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    seq = torch.export.Dim("seq", min=2, max=spec.max_length)
    return ({0: batch, 1: seq},) * 3


def _quantized(module: Any, spec: ExportSpec, precision: Precision,
               calibration: CalibrationSet | None) -> Any:
    import torch
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    dynamic = precision is Precision.INT8_DYNAMIC
    config = get_symmetric_quantization_config(is_per_channel=True, is_dynamic=dynamic)
    # static: the Linear layers only. Globally, the quantizer also takes the add of the -1e4
    # padding mask to the attention scores: one int8 scale then spans [-1e4, max score] and
    # attention turns uniform (the SST-2 student: 79.7 % agreement with torch, against 99.2 %
    # for int8-dynamic); the converter's own float fallbacks keep the same path in float.
    quantizer = (XNNPACKQuantizer().set_global(config) if dynamic
                 else XNNPACKQuantizer().set_module_type(torch.nn.Linear, config))
    example = _example(spec)
    graph = torch.export.export(module, example, dynamic_shapes=_dynamic(spec)).module()
    prepared = prepare_pt2e(graph, quantizer)
    with torch.no_grad():
        if dynamic:
            prepared(*example)
        else:
            if calibration is None or len(calibration) == 0:
                raise ConversionError("int8-static ExecuTorch needs calibration data",
                                      hint="pass --calibration DATA")
            for feed in calibration:
                prepared(*(torch.from_numpy(feed[n]).long() for n in
                           ("input_ids", "attention_mask", "token_type_ids")))
    return convert_pt2e(prepared)


def delegation(program: Any) -> dict[str, Any]:
    """What the XNNPACK delegate took: how many delegate pieces, and the ops left outside it
    (counted in the lowered edge program's graph)."""
    ops: Counter[str] = Counter()
    pieces = 0
    for node in program.exported_program().graph.nodes:
        if node.op != "call_function":
            continue
        name = str(getattr(node.target, "__name__", node.target))
        if "executorch_call_delegate" in name:
            pieces += 1
        elif name != "getitem":
            ops[name.removesuffix(".default")] += 1
    return {"delegate": "XnnpackBackend", "delegate_pieces": pieces,
            "ops_outside_delegate": dict(sorted(ops.items()))}


def convert_pte(model: Any, spec: ExportSpec, precision: Precision | str, *,
                calibration: CalibrationSet | None = None) -> tuple[bytes, dict]:
    """One ``.pte`` program for ``precision``; returns (bytes, recipe description)."""
    import torch

    precision = Precision(precision)
    try:
        with _quiet():  # its import warns (DeprecationWarning from importlib.resources)
            from executorch.backends.xnnpack.partition.xnnpack_partitioner import (
                XnnpackPartitioner,
            )
            from executorch.exir import to_edge_transform_and_lower
    except ImportError:
        raise ConversionError("ExecuTorch is not installed (the pte format needs it)",
                              hint="pip install 'edge-albert[executorch]'") from None
    # int8-static quantizes nn.Linear modules only (see _quantized), so the fold's two
    # functional linears would keep their weights in fp32 there (+0.73 MB on the default
    # student's .pte): that file keeps the last pass's keys and values
    module = _logits_module(model, fold=precision is not Precision.INT8_STATIC)
    recipe: dict[str, Any] = {
        "recipe": "torch.export + executorch.exir.to_edge_transform_and_lower(XnnpackPartitioner)",
        "graph": "additive 4-D attention mask, eager attention, GELU without pow (tanh form written out; exact GELU one op)",
        "dynamic_shapes": {"batch": [1, MAX_BATCH], "seq": [2, spec.max_length]}}
    try:
        with _quiet(), torch.no_grad():
            if precision.is_int8:
                module = _quantized(module, spec, precision, calibration)
                recipe["quantizer"] = ("XNNPACKQuantizer (PT2E), per-channel symmetric int8"
                                       " weights, " + ("activations quantized per call"
                                                       if precision is Precision.INT8_DYNAMIC
                                                       else "calibrated int8 activations"))
                if calibration is not None and precision is Precision.INT8_STATIC:
                    recipe["calibration_examples"] = len(calibration)
            elif precision is not Precision.FP32:
                raise ConversionError(f"the pte format does not hold {precision.value}")
            exported = torch.export.export(module, _example(spec), dynamic_shapes=_dynamic(spec))
            edge = to_edge_transform_and_lower(exported, partitioner=[XnnpackPartitioner()])
            recipe.update(delegation(edge))
            data = bytes(edge.to_executorch().buffer)
    except ConversionError:
        raise
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ConversionError(f"ExecuTorch export ({precision.value}) failed: {first[:300]}") \
            from exc
    return data, recipe
