"""The one export spec for ALBERT classifiers: what every converter writes and the runtime reads.

Input and output names, their dtypes per format, sequence-length buckets, the ONNX opset, the
parity tolerances, and which precisions each format supports. Pure Python (no numpy, torch,
tensorflow or onnxruntime), so the device runtime can import it too.
"""
from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import ConfigError


class Format(str, enum.Enum):
    """A model file format."""

    ONNX = "onnx"      # ONNX protobuf, for onnxruntime on desktop, Pi and Android
    ORT = "ort"        # onnxruntime's flatbuffer format of each .onnx, for reduced mobile builds
    TFLITE = "tflite"  # LiteRT / TFLite flatbuffer, builtin ops only
    ONNX_E2E = "onnx-e2e"  # text in, label out: the tokenizer as onnxruntime-extensions ops
    PTE = "pte"        # ExecuTorch program, XNNPACK delegate, for ExecuTorch's own runtime
    MEDIAPIPE = "mediapipe"  # TFLite [1, L] + MediaPipe metadata, for MediaPipe's TextClassifier

    @property
    def suffix(self) -> str:
        return {Format.ONNX_E2E: ".e2e.onnx",
                Format.MEDIAPIPE: ".mediapipe.tflite"}.get(self, "." + self.value)


class Precision(str, enum.Enum):
    """How weights (and, for int8-static, activations) are stored and computed."""

    FP32 = "fp32"
    FP16 = "fp16"                  # fp16 weights, fp32 compute (TFLite)
    INT8_DYNAMIC = "int8-dynamic"  # int8 weights, activations quantized on the fly
    INT8_STATIC = "int8-static"    # int8 weights and calibrated int8 activations (QDQ / full integer)

    @property
    def is_int8(self) -> bool:
        return self in (Precision.INT8_DYNAMIC, Precision.INT8_STATIC)


class CalibrationMethod(str, enum.Enum):
    """How activation ranges are chosen from calibration data (ONNX Runtime's methods)."""

    MINMAX = "minmax"
    ENTROPY = "entropy"
    PERCENTILE = "percentile"


class IntType(str, enum.Enum):
    """8-bit integer type of quantized activations or weights."""

    INT8 = "int8"
    UINT8 = "uint8"


class OnnxGraph(str, enum.Enum):
    """The graph form of the .onnx / .ort files.

    ``plain``: the exported graph (ONNX Runtime still fuses LayerNorm, GELU and MatMul+Add when a
    session loads it); ``fused``: ONNX Runtime's transformer fusions written into the file
    (``Attention``, ``SkipLayerNormalization``, ``BiasGelu``; ``QAttention`` when int8-dynamic),
    see :mod:`.onnx_fuse`. Which is faster depends on the CPU and the model: ``quantize --search``
    times both.
    """

    PLAIN = "plain"
    FUSED = "fused"


class CpuTarget(str, enum.Enum):
    """The CPUs an artifact's int8 ONNX/.ort files are quantized for (``convert --target``).

    ONNX Runtime's x86 int8 kernels without VNNI (AVX2, AVX-512 without VNNI) multiply u8
    activations by s8 weights with ``vpmaddubsw``, which saturates the int16 sum of two products
    when weights use all 8 bits. The same file then answers differently there: under qemu as an
    AVX2-only EPYC-Rome, the SST-2 student's 8-bit int8-static ``.onnx`` agreed with this VNNI
    Xeon on 97.7 % of 256 dev rows (int8-dynamic: 100 %, logits off by up to 0.38). 7-bit
    weights (ONNX Runtime's ``reduce_range``) cannot saturate: every int8 file of the default
    artifact then agreed 100 % (max |dlogit| 0.056; ``benchmarks/avx2_emulated.py``), TFLite's
    too, which this setting does not touch (0.024).

    ``portable`` (default: a converted file may be copied anywhere) and ``x86-avx2``: 7-bit;
    ``x86-vnni`` (AVX-512 VNNI, AVX-VNNI, AMX) and ``arm64`` (NEON widens, no saturation): 8-bit.
    ``host``: the class of the CPU ``convert`` runs on (:func:`target_of_isa`).
    """

    PORTABLE = "portable"
    X86_VNNI = "x86-vnni"
    X86_AVX2 = "x86-avx2"
    ARM64 = "arm64"
    HOST = "host"


#: targets whose int8 ONNX weights use 7 bits (see :class:`CpuTarget`)
SEVEN_BIT_TARGETS = frozenset({CpuTarget.PORTABLE, CpuTarget.X86_AVX2})


def target_of_isa(isa: str) -> CpuTarget:
    """The target for a :func:`edge_albert.runtime.cpu.isa_class` name."""
    if isa.startswith("arm64"):
        return CpuTarget.ARM64
    return CpuTarget.X86_VNNI if isa in ("amx", "avx512vnni", "avxvnni") else CpuTarget.X86_AVX2


def host_target() -> CpuTarget:
    """The target of the CPU this runs on (what ``host`` means)."""
    from ..runtime.cpu import cpu_facts

    return target_of_isa(cpu_facts()["isa"])


class Fallback(str, enum.Enum):
    """Named parts of the model an int8 recipe can keep in float.

    ``embeddings``: the word/position/token-type tables; ``attention``: the activation x activation
    matmuls (Q.K^T and P.V); ``pooler`` and ``classifier``: the head's dense layers; ``layernorm``,
    ``softmax`` and ``gelu``: the non-linearities (their ops carry no weights). ``layernorm``
    covers the sum each LayerNorm normalizes too (the residual stream, the embeddings' sum):
    ONNX Runtime's static recipe leaves those Adds in float anyway, and TFLite's would give them
    one int8 scale across their outlier channels.
    """

    EMBEDDINGS = "embeddings"
    ATTENTION = "attention"
    POOLER = "pooler"
    CLASSIFIER = "classifier"
    LAYERNORM = "layernorm"
    SOFTMAX = "softmax"
    GELU = "gelu"


INPUT_NAMES: tuple[str, ...] = ("input_ids", "attention_mask", "token_type_ids")
OUTPUT_NAME = "logits"
#: numpy dtype name of every input, per format
INPUT_DTYPES: dict[Format, str] = {Format.ONNX: "int64", Format.ORT: "int64",
                                   Format.TFLITE: "int32", Format.ONNX_E2E: "string",
                                   Format.PTE: "int64", Format.MEDIAPIPE: "string"}
DEFAULT_BUCKETS: tuple[int, ...] = (32, 64, 128)
#: what ``convert`` writes unless told: onnx-e2e needs calibration text and a WordPiece tokenizer,
#: pte the executorch extra, mediapipe the mediapipe extra and calibration text
DEFAULT_FORMATS: tuple[Format, ...] = (Format.ONNX, Format.ORT, Format.TFLITE)
OPSET = 18
MIN_OPSET = 18
#: additive attention-mask value for padded keys: finite, so it cannot overflow in fp16
ATTENTION_MASK_VALUE = -1e4
#: TFLite signature key the runtime calls
TFLITE_SIGNATURE = "serving_default"

#: max abs logit difference allowed against torch; precisions not listed only report (fp16:
#: the floor of :func:`fp16_tolerance`)
TOLERANCES: dict[Precision, float] = {Precision.FP32: 1e-4, Precision.FP16: 1e-2}
#: an fp16 file may differ from torch by this many times what rounding the model's weights to
#: fp16 alone changes torch's logits (:func:`.parity.fp16_rounding_diff`), when that is more
#: than the 1e-2 floor
FP16_ROUNDING_MARGIN = 3.0

SUPPORTED: dict[Format, tuple[Precision, ...]] = {
    Format.ONNX: (Precision.FP32, Precision.INT8_DYNAMIC, Precision.INT8_STATIC),
    Format.ORT: (Precision.FP32, Precision.INT8_DYNAMIC, Precision.INT8_STATIC),
    Format.TFLITE: (Precision.FP32, Precision.FP16, Precision.INT8_DYNAMIC, Precision.INT8_STATIC),
    Format.ONNX_E2E: (Precision.FP32, Precision.INT8_DYNAMIC, Precision.INT8_STATIC),
    Format.PTE: (Precision.FP32, Precision.INT8_DYNAMIC, Precision.INT8_STATIC),
    Format.MEDIAPIPE: (Precision.FP32, Precision.FP16, Precision.INT8_DYNAMIC,
                       Precision.INT8_STATIC),
}

#: float fallbacks a recipe uses unless told otherwise: LayerNorm and softmax, whose int8
#: versions have cost transformer classifiers the most accuracy in public reports (and an int8
#: tensor cannot hold the -1e4 padding mask), and the attention matmuls (Q.K^T, P.V): XNNPACK
#: took no int8 BATCH_MATMUL, so in int8 they split the full-integer TFLite graph into 22
#: delegate pieces; kept float, the default student's int8-static .tflite ran 3.2x faster at
#: batch 1 x 64 (4.29 -> 1.33 ms) and scored 88.19 % instead of 87.96 % on SST-2 dev (its .onnx:
#: 12 % faster, 87.61 % vs 87.84 %; Xeon AMX). GELU and the classifier head were fallbacks too
#: until they were measured to buy nothing: TFLite's int8 GELU is a 256-entry table of the exact
#: function (and ONNX Runtime runs GELU in float between Q/DQ either way), and a 2-way head is
#: 0.01 % of the weights. On the default SST-2 student (AMD EPYC, AVX-512 VNNI) every
#: default int8 file kept its dev accuracy (872 sentences) and held-out accuracy (400) to the
#: sentence, except the .onnx int8-static file, one held-out sentence lower; the int8-static
#: .tflite lost 10 ops (a DEQUANTIZE/QUANTIZE pair per layer) and 3.2 KB; its speed moved
#: within 2 % either way (batch 1 x 64 and 8 x 128, interleaved; TFLite runs the int8 GELU in
#: its own kernel, XNNPACK ran the float one).
DEFAULT_FALLBACKS: tuple[Fallback, ...] = (Fallback.LAYERNORM, Fallback.SOFTMAX, Fallback.ATTENTION)


def model_filename(fmt: Format | str, precision: Precision | str) -> str:
    """``model.<precision>.<format>``, e.g. ``model.int8-static.tflite``."""
    return f"model.{Precision(precision).value}{Format(fmt).suffix}"


def supported_precisions(fmt: Format | str) -> tuple[Precision, ...]:
    return SUPPORTED[Format(fmt)]


def check_supported(fmt: Format | str, precision: Precision | str, *, key: str | None = None) -> None:
    """ConfigError listing the supported precisions when ``fmt`` cannot hold ``precision``."""
    fmt, precision = Format(fmt), Precision(precision)
    if precision not in SUPPORTED[fmt]:
        names = ", ".join(p.value for p in SUPPORTED[fmt])
        raise ConfigError(f"format {fmt.value!r} does not support precision {precision.value!r}"
                          f" (supported: {names})", key=key,
                          hint=f"drop {precision.value} or the {fmt.value} format")


def tolerance(precision: Precision | str) -> float | None:
    """The parity gate for a precision, or None when it only reports."""
    return TOLERANCES.get(Precision(precision))


def fp16_tolerance(rounding_diff: float) -> float:
    """The fp16 gate of a model whose logits move by ``rounding_diff`` when its weights alone are
    rounded to fp16 (torch, fp32 compute): the 1e-2 floor or :data:`FP16_ROUNDING_MARGIN` times
    that, whichever is larger. Why: that change is the precision's own error, which no correct
    file avoids, and it differs from model to model (on 512 dev rows each, rounding moved the
    MRPC student's logits by up to 0.014 and the SST-2 default student's by 0.0045, both
    students' logits about 2 in size; on its parity inputs the MRPC student's by 0.017 and its
    fp16 file's by 0.0195, at 99.6 % agreement: a fixed 1e-2 refused it). The gate is there to
    catch a wrong graph, whose logits miss by far more."""
    return max(TOLERANCES[Precision.FP16], FP16_ROUNDING_MARGIN * float(rounding_diff))


@dataclass(frozen=True)
class ExportSpec:
    """The contract between a converted file and the code that runs it."""

    buckets: tuple[int, ...] = DEFAULT_BUCKETS
    max_length: int = 128
    opset: int = OPSET
    input_names: tuple[str, ...] = INPUT_NAMES
    output_name: str = OUTPUT_NAME
    mask_value: float = ATTENTION_MASK_VALUE

    def __post_init__(self) -> None:
        if self.opset < MIN_OPSET:
            raise ValueError(f"opset must be at least {MIN_OPSET}, got {self.opset}")
        if not self.buckets or any(b < 4 for b in self.buckets):
            raise ValueError(f"buckets must be lengths >= 4, got {list(self.buckets)}")
        if self.max_length < max(self.buckets):
            raise ValueError(f"max_length {self.max_length} is below the largest bucket"
                             f" {max(self.buckets)}")

    @classmethod
    def from_lengths(cls, *, seq_len: int | None = None,
                     buckets: Sequence[int] | None = None, opset: int = OPSET) -> ExportSpec:
        """One fixed length (``seq_len``) or several buckets (their maximum is the max length)."""
        b = tuple(sorted(set(buckets))) if buckets else ((seq_len,) if seq_len else DEFAULT_BUCKETS)
        return cls(buckets=b, max_length=max(b), opset=opset)

    def input_dtype(self, fmt: Format | str) -> str:
        return INPUT_DTYPES[Format(fmt)]

    def io_description(self, fmt: Format | str) -> dict[str, object]:
        """What a manifest records about a file's inputs and outputs."""
        dtype = self.input_dtype(fmt)
        return {
            "inputs": [{"name": n, "dtype": dtype, "shape": ["batch", "seq"]}
                       for n in self.input_names],
            "outputs": [{"name": self.output_name, "dtype": "float32", "shape": ["batch", "labels"]}],
            "seq_len": self.max_length,
            "buckets": list(self.buckets),
        }

    def to_dict(self) -> dict[str, object]:
        return {"buckets": list(self.buckets), "max_length": self.max_length, "opset": self.opset,
                "input_names": list(self.input_names), "output_name": self.output_name,
                "mask_value": self.mask_value,
                "input_dtypes": {f.value: d for f, d in INPUT_DTYPES.items()},
                "tolerances": {p.value: t for p, t in TOLERANCES.items()}}


__all__ = [
    "ATTENTION_MASK_VALUE",
    "DEFAULT_BUCKETS",
    "DEFAULT_FALLBACKS",
    "DEFAULT_FORMATS",
    "INPUT_DTYPES",
    "INPUT_NAMES",
    "OPSET",
    "OUTPUT_NAME",
    "SUPPORTED",
    "TFLITE_SIGNATURE",
    "TOLERANCES",
    "CalibrationMethod",
    "ExportSpec",
    "Fallback",
    "Format",
    "IntType",
    "OnnxGraph",
    "Precision",
    "check_supported",
    "model_filename",
    "supported_precisions",
    "tolerance",
]
