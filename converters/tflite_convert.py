"""TensorFlow Lite files from the TensorFlow ALBERT graph: fp32, fp16, dynamic-range int8 and
full-integer int8, with TensorFlow's own converter and quantizer.

* ``fp32``: builtin ops only (``TFLITE_BUILTINS``); a Flex op is a conversion error.
* ``fp16``: fp16 weights, fp32 compute (``supported_types=[tf.float16]``).
* ``int8-dynamic``: dynamic-range quantization: int8 weights, activations quantized at run time.
  TensorFlow's converter offers no per-op exclusion here, so float fallbacks do not apply
  (weights under 1024 elements stay float by TensorFlow's own rule).
* ``int8-static``: full-integer quantization calibrated on the shared
  :class:`~.calibration.CalibrationSet` (int8 weights and activations, float input/output
  allowed). The ``layernorm`` fallback keeps each LayerNorm's input sum in float too (the
  residual adds and the embeddings' sum sit in its scope, see ``tf_albert``). Float fallbacks use
  TensorFlow's selective quantization
  (``tf.lite.experimental.QuantizationDebugger`` with ``denylisted_nodes``): the nodes of each
  fallback group are found in the calibrated model by op type and name scope. The
  ``softmax`` group covers the whole masked-score path: the additive padding
  mask (-1e4) and the mask's own ops, besides the SOFTMAX. In int8, ``scores + mask`` gets one
  scale for [-1e4, max score] (~39 per step), every real score rounds to the same value and
  attention turns uniform: without this group a trained model's full-integer file drops to
  chance (tiny ALBERT 99.7 % -> 45 %; with it, 99.7 %, agreement 100 %). The activation x
  activation matmuls (Q.K^T, P.V) stay int8 unless ``attention`` is a fallback too.
"""
from __future__ import annotations

import contextlib
import io
import os
import re
from collections.abc import Iterable, Sequence

from ..errors import ConversionError
from .calibration import CalibrationSet
from .census import tflite_ops
from .spec import Fallback, Precision

#: ops of the masked-score path (scope ``softmax/``) and of the mask (scope ``mask/``)
_SOFTMAX_OPS = {"MUL", "ADD", "SUB", "RESHAPE", "CAST"}
_LAYERNORM_OPS = {"MEAN", "SUB", "SQUARED_DIFFERENCE", "ADD", "RSQRT", "MUL"}
#: a name scope as TensorFlow writes it: a second ``layernorm`` scope under one parent is
#: ``layernorm_1`` (missing that once left a LayerNorm int8 in a "layernorm fallback" file)
_LAYERNORM_SCOPE = re.compile(r"(^|[/;])layernorm(_\d+)?/")
_SOFTMAX_SCOPE = re.compile(r"(^|[/;])softmax(_\d+)?/|(^|;)mask(_\d+)?/")


def _converter(module):
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_concrete_functions(
        [module.serving.get_concrete_function()], module)
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    return conv


def denylisted_nodes(model_bytes: bytes, fallbacks: Iterable[Fallback | str],
                     names: Sequence[str] = ()) -> list[str]:
    """Output tensor names of the ops each fallback group covers, plus those of ``names`` that are
    op outputs of this graph (a name may belong to the ONNX graph instead)."""
    groups = {Fallback(f) for f in fallbacks}
    ops = tflite_ops(model_bytes)
    known = {o for op in ops for o in op.outputs}
    out = [n for n in names if n in known]
    for op in ops:
        hit = (
            (Fallback.LAYERNORM in groups and op.op in _LAYERNORM_OPS
             and any(_LAYERNORM_SCOPE.search(o) for o in op.outputs))
            or (Fallback.SOFTMAX in groups and (op.op == "SOFTMAX" or (
                op.op in _SOFTMAX_OPS and any(_SOFTMAX_SCOPE.search(o) for o in op.outputs))))
            or (Fallback.GELU in groups and op.op == "GELU")
            or (Fallback.ATTENTION in groups and op.op == "BATCH_MATMUL" and op.weight is None)
            or (Fallback.EMBEDDINGS in groups and op.op == "GATHER" and op.weight is not None)
            or (Fallback.POOLER in groups and op.weight_part == "pooler")
            or (Fallback.CLASSIFIER in groups and op.weight_part == "classifier")
        )
        if hit:
            out.extend(op.outputs)
    return sorted(set(out))


@contextlib.contextmanager
def _quiet_tf():
    """TensorFlow's converter prints MLIR dumps and deprecation notes to stdout/stderr."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import warnings

    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


def convert_tflite(module, precision: Precision | str, *,
                   calibration: CalibrationSet | None = None,
                   fallbacks: Iterable[Fallback | str] = (),
                   nodes: Sequence[str] = ()) -> tuple[bytes, dict]:
    """One ``.tflite`` flatbuffer for ``precision``; returns (bytes, recipe description)."""
    import tensorflow as tf

    precision = Precision(precision)
    fallbacks = tuple(Fallback(f) for f in fallbacks)
    conv = _converter(module)
    recipe: dict = {"recipe": f"tf.lite.TFLiteConverter ({precision.value})",
                    "supported_ops": "TFLITE_BUILTINS"}
    if precision is Precision.FP16:
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_types = [tf.float16]
    elif precision is Precision.INT8_DYNAMIC:
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        recipe["float_fallbacks"] = "none: TensorFlow's dynamic-range quantizer has no per-op" \
                                    " exclusion (weights under 1024 elements stay float)"
    elif precision is Precision.INT8_STATIC:
        if calibration is None or len(calibration) == 0:
            raise ConversionError("int8-static TFLite needs calibration data",
                                  hint="pass --calibration DATA")
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = calibration.representative_dataset()
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8,
                                          tf.lite.OpsSet.TFLITE_BUILTINS]
        recipe.update(supported_ops="TFLITE_BUILTINS_INT8 + TFLITE_BUILTINS (float fallback)",
                      calibration_examples=len(calibration))
        if Fallback.SOFTMAX not in fallbacks:
            recipe["warning"] = ("no softmax fallback: the masked attention scores (-1e4 padding"
                                 " mask) are int8, which flattens attention on trained models")
    try:
        with _quiet_tf():
            if precision is Precision.INT8_STATIC and (fallbacks or list(nodes)):
                data, deny = _selective(conv, calibration, fallbacks, nodes)  # type: ignore[arg-type]
                recipe.update(float_fallbacks=[Fallback(f).value for f in fallbacks],
                              float_nodes=deny)
            else:
                data = conv.convert()
    except ConversionError:
        raise
    except Exception as exc:
        msg = str(exc)
        flex = "Flex" in msg or "TF Select" in msg or "neither a custom op nor a flex op" in msg
        first = next((ln for ln in msg.splitlines() if "error" in ln.lower()),
                     msg.splitlines()[0] if msg else type(exc).__name__)
        raise ConversionError(
            f"TFLite conversion ({precision.value}) failed: {first.strip()[:300]}",
            hint="the graph needs an op outside TFLite's builtins" if flex else None) from exc
    return data, recipe


def _selective(conv, calibration: CalibrationSet, fallbacks: Iterable[Fallback | str],
               nodes: Sequence[str]) -> tuple[bytes, list[str]]:
    """Full-integer model with the fallback nodes left in float (TensorFlow's selective
    quantization through the QuantizationDebugger)."""
    import tensorflow as tf

    dataset = calibration.representative_dataset()
    debugger = tf.lite.experimental.QuantizationDebugger(converter=conv, debug_dataset=dataset)
    deny = denylisted_nodes(debugger.calibrated_model, fallbacks, nodes)
    debugger.options = tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=deny)
    return debugger.get_nondebug_quantized_model(), deny
