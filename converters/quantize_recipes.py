"""The int8 recipes ``edge-albert quantize`` may try: a table, so the search is data, not code.

Each :class:`Recipe` names a backend, a precision, ONNX Runtime's quantizer settings and the parts
kept in float; :data:`RECIPES` lists them in trial order and :data:`REFERENCES` the fp32 file
each backend's recipes are judged against. The search itself is :mod:`.quantize`.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any

from ..errors import ConfigError
from .calibration import DEFAULT_SIZE
from .spec import (
    DEFAULT_BUCKETS,
    DEFAULT_FALLBACKS,
    OPSET,
    CalibrationMethod,
    ExportSpec,
    Fallback,
    Format,
    OnnxGraph,
    Precision,
)

#: the backends a search covers (.ort files are made from the kept .onnx by ``convert``)
BACKENDS: tuple[Format, ...] = (Format.ONNX, Format.TFLITE)


@dataclasses.dataclass(frozen=True)
class Recipe:
    """One named int8 (or reference fp32) recipe for one backend.

    ``per_channel`` and ``method`` apply to ONNX Runtime's quantizers (TFLite full-integer is
    per-channel by TensorFlow's default, and TFLite dynamic-range has no fallbacks); ``graph``
    ``fused`` quantizes ONNX Runtime's fused graph (:mod:`.onnx_fuse`; dynamic only).
    """

    name: str
    format: Format
    precision: Precision
    per_channel: bool = True
    method: CalibrationMethod = CalibrationMethod.MINMAX
    fallbacks: tuple[Fallback, ...] = ()
    graph: OnnxGraph = OnnxGraph.PLAIN

    def to_dict(self) -> dict[str, Any]:
        return {"format": self.format.value, "precision": self.precision.value,
                "per_channel": self.per_channel, "method": self.method.value,
                "fallbacks": [f.value for f in self.fallbacks], "graph": self.graph.value}

    @property
    def needs_calibration(self) -> bool:
        return self.precision is Precision.INT8_STATIC

    def settings(self) -> str:
        """A short human description, for the trial table."""
        if self.precision is Precision.FP32:
            return "fp32 reference"
        parts = [self.precision.value]
        if self.format is Format.ONNX:
            if self.precision is Precision.INT8_STATIC:
                parts.append(f"QDQ {self.method.value}")
            parts.append("per-channel" if self.per_channel else "per-tensor")
            if self.graph is OnnxGraph.FUSED:
                parts.append("fused graph")
        elif self.precision is Precision.INT8_STATIC:
            parts.append("full-integer")
        if not (self.format is Format.TFLITE and self.precision is Precision.INT8_DYNAMIC):
            parts.append("float: " + fallback_set_name(self.fallbacks))
        return ", ".join(parts)


_NONE: tuple[Fallback, ...] = ()
_DEFAULT = DEFAULT_FALLBACKS
_WIDE = (*DEFAULT_FALLBACKS, Fallback.EMBEDDINGS)
#: the named fallback sets of the recipe table
FALLBACK_SETS: dict[str, tuple[Fallback, ...]] = {"none": _NONE, "default": _DEFAULT,
                                                  "wide": _WIDE}


def fallback_set_name(fallbacks: tuple[Fallback, ...]) -> str:
    """``none`` / ``default`` / ``wide``, or the parts themselves."""
    return next((n for n, f in FALLBACK_SETS.items() if set(f) == set(fallbacks)),
                ",".join(f.value for f in fallbacks))
_DYN, _STA = Precision.INT8_DYNAMIC, Precision.INT8_STATIC
_MM, _EN, _PC = CalibrationMethod.MINMAX, CalibrationMethod.ENTROPY, CalibrationMethod.PERCENTILE
_O, _T = Format.ONNX, Format.TFLITE

#: every int8 recipe a search may try, in trial order. Fallback sets: ``none``; ``default``
#: (layernorm, softmax, attention matmuls); ``wide`` (default + embeddings).
#: ONNX dynamic quantizes weight matmuls (and the embedding Gather) only, so its LayerNorm /
#: Softmax / GELU fallbacks are moot; TFLite dynamic-range takes no fallbacks at all.
RECIPES: dict[str, Recipe] = {r.name: r for r in (
    Recipe("onnx-dynamic-pt", _O, _DYN, per_channel=False, fallbacks=_DEFAULT),
    Recipe("onnx-dynamic-pc", _O, _DYN, per_channel=True, fallbacks=_DEFAULT),
    Recipe("onnx-dynamic-pc-none", _O, _DYN, per_channel=True, fallbacks=_NONE),
    Recipe("onnx-dynamic-pc-wide", _O, _DYN, per_channel=True, fallbacks=_WIDE),
    Recipe("onnx-dynamic-fused-pt", _O, _DYN, per_channel=False, fallbacks=_DEFAULT,
           graph=OnnxGraph.FUSED),
    Recipe("onnx-dynamic-fused-pc", _O, _DYN, per_channel=True, fallbacks=_DEFAULT,
           graph=OnnxGraph.FUSED),
    Recipe("onnx-qdq-minmax-pt", _O, _STA, per_channel=False, method=_MM, fallbacks=_DEFAULT),
    Recipe("onnx-qdq-minmax-pc", _O, _STA, per_channel=True, method=_MM, fallbacks=_DEFAULT),
    Recipe("onnx-qdq-minmax-pc-none", _O, _STA, per_channel=True, method=_MM, fallbacks=_NONE),
    Recipe("onnx-qdq-minmax-pc-wide", _O, _STA, per_channel=True, method=_MM, fallbacks=_WIDE),
    Recipe("onnx-qdq-entropy-pc", _O, _STA, per_channel=True, method=_EN, fallbacks=_DEFAULT),
    Recipe("onnx-qdq-entropy-pc-wide", _O, _STA, per_channel=True, method=_EN, fallbacks=_WIDE),
    Recipe("onnx-qdq-percentile-pc", _O, _STA, per_channel=True, method=_PC, fallbacks=_DEFAULT),
    Recipe("onnx-qdq-percentile-pc-wide", _O, _STA, per_channel=True, method=_PC,
           fallbacks=_WIDE),
    Recipe("tflite-dynamic", _T, _DYN),
    Recipe("tflite-int8", _T, _STA, fallbacks=_NONE),
    Recipe("tflite-int8-default", _T, _STA, fallbacks=_DEFAULT),
    Recipe("tflite-int8-wide", _T, _STA, fallbacks=_WIDE),
)}

#: the fp32 file each backend's int8 recipes are judged against (always tried first)
REFERENCES: dict[Format, Recipe] = {
    Format.ONNX: Recipe("onnx-fp32", Format.ONNX, Precision.FP32),
    Format.TFLITE: Recipe("tflite-fp32", Format.TFLITE, Precision.FP32),
}


def parse_backends(values: Any) -> tuple[Format, ...]:
    if isinstance(values, (str, Format)):
        values = [values]
    valid = ", ".join(b.value for b in BACKENDS)
    out: list[Format] = []
    for v in values:
        try:
            fmt = Format(v)
        except ValueError:
            fmt = None
        if fmt not in BACKENDS:
            raise ConfigError(f"unknown backend {getattr(v, 'value', v)!r} (valid: {valid})",
                              key="quantize.backends",
                              hint="an .ort file is made from the kept .onnx by 'edge-albert"
                                   " convert'" if fmt is Format.ORT else None)
        if fmt in out:
            raise ConfigError(f"lists {fmt.value!r} twice", key="quantize.backends")
        out.append(fmt)
    return tuple(out)


@dataclasses.dataclass(frozen=True)
class QuantizeConfig:
    """``edge-albert quantize``: which int8 recipes to try and how to judge them.

    ``recipes`` names entries of :data:`RECIPES` (empty: all of them for ``backends``);
    ``backends`` empty means those the recipes need (both when ``recipes`` is empty too).
    ``max_drop`` is the accuracy budget in points (percent) below the fp32 file of the same
    backend. Latency is the median of ``latency_runs`` batch-1 calls at the largest bucket with
    ``threads`` interpreter threads.
    """

    recipes: tuple[str, ...] = ()
    backends: tuple[Format, ...] = ()
    max_drop: float = 1.0
    buckets: tuple[int, ...] = DEFAULT_BUCKETS
    opset: int = OPSET
    calibration_size: int = DEFAULT_SIZE
    parity_examples: int = 256
    eval_batch_size: int = 32
    latency_runs: int = 30
    latency_warmup: int = 3
    threads: int = 2
    seed: int = 0
    label_map: str = ""  # "0=negative,1=positive": the dev file's labels -> the model's

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        names = (self.recipes,) if isinstance(self.recipes, str) else self.recipes
        set_(self, "recipes", tuple(str(n) for n in names))
        set_(self, "backends", parse_backends(self.backends))
        set_(self, "buckets", tuple(sorted({int(b) for b in self.buckets})))
        unknown = [n for n in self.recipes if n not in RECIPES]
        if unknown:
            raise ConfigError(f"unknown recipe {unknown[0]!r} (valid: {', '.join(RECIPES)})",
                              key="quantize.recipes")
        if len(set(self.recipes)) != len(self.recipes):
            raise ConfigError(f"lists a recipe twice: {list(self.recipes)}",
                              key="quantize.recipes")
        if self.recipes and self.backends:
            stray = [n for n in self.recipes if RECIPES[n].format not in self.backends]
            if stray:
                raise ConfigError(
                    f"recipe {stray[0]!r} is for {RECIPES[stray[0]].format.value}, which"
                    f" backends ({', '.join(b.value for b in self.backends)}) leave out",
                    key="quantize.recipes")
        if not isinstance(self.max_drop, (int, float)) or not math.isfinite(self.max_drop) \
                or self.max_drop < 0:
            raise ConfigError(f"must be a number of accuracy points >= 0, got {self.max_drop!r}",
                              key="quantize.max_drop", hint="e.g. --max-drop 1.0 (one point)")
        if not self.buckets or min(self.buckets) < 4:
            raise ConfigError(f"sequence lengths must be >= 4, got {list(self.buckets)}",
                              key="quantize.buckets")
        if self.opset < 18:
            raise ConfigError(f"opset must be >= 18, got {self.opset}", key="quantize.opset")
        for key in ("calibration_size", "parity_examples", "eval_batch_size", "latency_runs",
                    "threads"):
            if getattr(self, key) < 1:
                raise ConfigError(f"must be >= 1, got {getattr(self, key)}", key=f"quantize.{key}")
        if self.latency_warmup < 0:
            raise ConfigError(f"must be >= 0, got {self.latency_warmup}",
                              key="quantize.latency_warmup")

    @property
    def spec(self) -> ExportSpec:
        return ExportSpec(buckets=self.buckets, max_length=max(self.buckets), opset=self.opset)

    def plan(self) -> dict[Format, list[Recipe]]:
        """Backend -> its int8 recipes to try, in :data:`RECIPES` order."""
        backends = self.backends or tuple(
            b for b in BACKENDS if not self.recipes or any(RECIPES[n].format is b
                                                           for n in self.recipes))
        return {b: [r for n, r in RECIPES.items() if r.format is b
                    and (not self.recipes or n in self.recipes)] for b in backends}


__all__ = [
    "BACKENDS",
    "FALLBACK_SETS",
    "RECIPES",
    "REFERENCES",
    "QuantizeConfig",
    "Recipe",
    "fallback_set_name",
    "parse_backends",
]
