"""The convert stage: one ALBERT classifier -> ONNX / ORT / TFLite files at each precision, in one
self-describing artifact directory.

``run_convert`` exports once per format, quantizes with each runtime's own tools, runs every file
on padded real inputs against torch (parity), counts what each file holds in int8 (census), and
writes it all, with the tokenizer and the labels, through :func:`~edge_albert.artifacts.write_artifact`:
an error anywhere leaves no half-written directory.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..artifacts import Manifest, check_new_output, scratch_dir, write_artifact
from ..config import to_dict
from ..errors import ConfigError, ConversionError
from .calibration import DEFAULT_SIZE, CalibrationSet
from .convert_files import Converter, Steps, TextSource
from .spec import (
    DEFAULT_BUCKETS,
    DEFAULT_FALLBACKS,
    DEFAULT_FORMATS,
    OPSET,
    SUPPORTED,
    CalibrationMethod,
    CpuTarget,
    ExportSpec,
    Fallback,
    Format,
    IntType,
    OnnxGraph,
    Precision,
    check_supported,
    host_target,
)

LABELS_FILE = "labels.txt"
#: the module a format's writer needs, and the extra that installs it
EXTRAS: dict[Format, tuple[str, str]] = {
    Format.PTE: ("executorch", "executorch"), Format.MEDIAPIPE: ("mediapipe", "mediapipe"),
    Format.ONNX_E2E: ("onnxruntime_extensions", "onnx-e2e")}


def _enum_tuple(cls: Any, values: Any, key: str) -> tuple:
    if isinstance(values, (str, cls)):
        values = [values]
    out = []
    for v in values:
        try:
            out.append(cls(v))
        except ValueError:
            valid = ", ".join(m.value for m in cls)
            raise ConfigError(f"unknown value {v!r} (valid: {valid})", key=key) from None
    if len(set(out)) != len(out):
        raise ConfigError(f"lists a value twice: {[o.value for o in out]}", key=key)
    return tuple(out)


@dataclasses.dataclass(frozen=True)
class ConvertConfig:
    """``edge-albert convert``: which files to write and how to quantize them.

    ``precisions`` empty means every precision each format supports; listing one that a requested
    format cannot hold is an error. ``buckets`` are the padded sequence lengths the runtime will
    use; the largest is the maximum sequence length. ``fallbacks`` name parts kept in float in
    int8 files (:class:`~.spec.Fallback`); ``fallback_nodes`` adds raw ONNX node names or TFLite
    op output tensor names. ``per_channel`` applies to both ONNX recipes (TFLite full-integer is
    per-channel by TensorFlow's default). ``ort_target`` is the platform the .ort files are
    optimised for ("arm" keeps int8 QDQ fusions meant for ARM; they run everywhere).
    ``target`` picks 7- or 8-bit ONNX int8 weights for the CPUs the files will run on
    (:class:`~.spec.CpuTarget`; ``host`` is resolved when the files are written).
    ``onnx_graph`` ``fused`` writes ONNX Runtime's transformer fusions into the fp32 and
    int8-dynamic .onnx/.ort files (int8-static stays plain: the QDQ quantizer has no Attention).
    """

    formats: tuple[Format, ...] = DEFAULT_FORMATS
    # formats added when their extra is installed, skipped (and recorded) otherwise: the demo's
    # recipe asks for mediapipe this way, so its one-line set-up needs no MediaPipe
    if_installed: tuple[Format, ...] = ()
    precisions: tuple[Precision, ...] = ()
    buckets: tuple[int, ...] = DEFAULT_BUCKETS
    opset: int = OPSET
    calibration_size: int = DEFAULT_SIZE
    calibration_method: CalibrationMethod = CalibrationMethod.MINMAX
    per_channel: bool = True
    activation_type: IntType = IntType.UINT8
    weight_type: IntType = IntType.INT8
    fallbacks: tuple[Fallback, ...] = DEFAULT_FALLBACKS
    fallback_nodes: tuple[str, ...] = ()
    parity_examples: int = 256
    ort_target: str = "arm"
    onnx_graph: OnnxGraph = OnnxGraph.PLAIN
    target: CpuTarget = CpuTarget.PORTABLE
    # ONNX precisions that also get fixed-shape copies (batch 1 x each bucket) under fixed/:
    # NNAPI, XNNPACK and CoreML want static shapes
    fixed_shapes: tuple[Precision, ...] = (Precision.FP32, Precision.INT8_STATIC)
    threads: int = 2
    seed: int = 0

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "formats", _enum_tuple(Format, self.formats, "convert.formats"))
        set_(self, "if_installed", _enum_tuple(Format, self.if_installed,
                                               "convert.if_installed"))
        set_(self, "precisions", _enum_tuple(Precision, self.precisions, "convert.precisions"))
        set_(self, "fixed_shapes", _enum_tuple(Precision, self.fixed_shapes, "convert.fixed_shapes"))
        set_(self, "fallbacks", _enum_tuple(Fallback, self.fallbacks, "convert.fallbacks"))
        set_(self, "calibration_method", CalibrationMethod(self.calibration_method))
        try:
            set_(self, "onnx_graph", OnnxGraph(self.onnx_graph))
        except ValueError:
            raise ConfigError(f"expected 'plain' or 'fused', got {self.onnx_graph!r}",
                              key="convert.onnx_graph") from None
        try:
            set_(self, "target", CpuTarget(self.target))
        except ValueError:
            raise ConfigError(f"expected one of {', '.join(t.value for t in CpuTarget)}, got"
                              f" {self.target!r}", key="convert.target") from None
        set_(self, "activation_type", IntType(self.activation_type))
        set_(self, "weight_type", IntType(self.weight_type))
        set_(self, "buckets", tuple(sorted({int(b) for b in self.buckets})))
        if not self.formats:
            raise ConfigError("names no format (valid: "
                              + ", ".join(f.value for f in Format) + ")", key="convert.formats")
        # a precision applies to the formats that hold it (fp16: TFLite only); one that no
        # requested format holds is an error listing what each supports
        for p in self.precisions:
            if not any(p in SUPPORTED[f] for f in self.formats):
                if len(self.formats) == 1:
                    check_supported(self.formats[0], p, key="convert.precisions")
                raise ConfigError(
                    f"no requested format supports precision {p.value!r} (" + "; ".join(
                        f"{f.value}: {', '.join(x.value for x in SUPPORTED[f])}"
                        for f in self.formats) + ")", key="convert.precisions")
        if not self.buckets or min(self.buckets) < 4:
            raise ConfigError(f"sequence lengths must be >= 4, got {list(self.buckets)}",
                              key="convert.buckets")
        if self.opset < 18:
            raise ConfigError(f"opset must be >= 18, got {self.opset}", key="convert.opset")
        for key in ("calibration_size", "parity_examples", "threads"):
            if getattr(self, key) < 1:
                raise ConfigError(f"must be >= 1, got {getattr(self, key)}", key=f"convert.{key}")
        if self.ort_target not in ("arm", "amd64"):
            raise ConfigError(f"expected 'arm' or 'amd64', got {self.ort_target!r}",
                              key="convert.ort_target")
        if self.weight_type is IntType.UINT8 and self.per_channel:
            raise ConfigError("per-channel weights must be int8", key="convert.weight_type")

    def installed(self) -> tuple[ConvertConfig, dict[str, str]]:
        """This config with the ``if_installed`` formats whose extra imports added to
        ``formats``, and why each other one was skipped."""
        import importlib.util

        added, skipped = [], {}
        for fmt in self.if_installed:
            module, extra = EXTRAS.get(fmt, ("", ""))
            if fmt in self.formats:
                continue
            if not module or importlib.util.find_spec(module) is not None:
                added.append(fmt)
            else:
                skipped[fmt.value] = (f"{module} is not installed (pip install"
                                      f" 'edge-albert[{extra}]')")
        return dataclasses.replace(self, formats=self.formats + tuple(added)), skipped

    def resolved_target(self) -> CpuTarget:
        """``target`` with ``host`` replaced by this CPU's class."""
        return host_target() if self.target is CpuTarget.HOST else self.target

    @property
    def spec(self) -> ExportSpec:
        return ExportSpec(buckets=self.buckets, max_length=max(self.buckets), opset=self.opset)

    def plan(self) -> list[tuple[Format, Precision]]:
        """(format, precision) of every file to write, in writing order."""
        out = []
        for fmt in self.formats:
            for p in SUPPORTED[fmt]:
                if not self.precisions or p in self.precisions:
                    out.append((fmt, p))
        return out

    def fixed_precisions(self) -> list[Precision]:
        """The precisions whose .onnx gets fixed-shape copies under ``fixed/``."""
        plan = self.plan()
        return [p for p in self.fixed_shapes if (Format.ONNX, p) in plan]


def _check_inputs(config: ConvertConfig, calibration: str | Path | None,
                  out_dir: Path, force: bool) -> None:
    if any(p is Precision.INT8_STATIC for _, p in config.plan()) and calibration is None:
        raise ConfigError("int8-static needs calibration text", key="--calibration",
                          hint="pass --calibration DATA (a labelled TSV/CSV/JSONL of the task), or"
                               " leave int8-static out of --precisions")
    for fmt in (Format.ONNX_E2E, Format.MEDIAPIPE):
        if fmt in config.formats and calibration is None:
            raise ConfigError(f"{fmt.value} needs calibration text (its tokenizer is checked"
                              " against the runtime's on it)", key="--calibration",
                              hint=f"pass --calibration DATA, or leave {fmt.value} out of"
                                   " --formats")
    check_new_output(out_dir, force)


def _as_albert(model: Any, model_dir: Path, formats: tuple[Format, ...]) -> Any:
    """A BERT / MiniLM / RoBERTa / DistilBERT classifier written as the ALBERT with the same logits (see
    :mod:`~edge_albert.albert_form`), so every format, TFLite included, takes one code path."""
    from ..albert_form import CONVERTIBLE, max_logit_diff, to_albert

    family = model.config.model_type
    if family not in CONVERTIBLE:
        if Format.TFLITE in formats:
            raise ConfigError(f"the TFLite converter takes {', '.join(CONVERTIBLE)} models, not"
                              f" {family!r}", key="--formats",
                              hint="distil into an ALBERT student, or drop tflite")
        return model
    albert = to_albert(model, for_conversion=True)
    diff = max_logit_diff(model, albert, vocab=model.config.vocab_size)
    if not diff <= 1e-4:
        raise ConversionError(f"the ALBERT form of this {family} model differs from it by"
                              f" {diff:.3g} in the logits", where=model_dir)
    albert.config.source_model_type = family
    return albert


def load_source(model_dir: Path, spec: ExportSpec, *, formats: tuple[Format, ...]):
    """The classifier of ``model_dir`` checked for ``spec`` and ``formats``, its position table cut
    to ``spec.max_length``, with its tokenizer, label names and parameter count (shared by
    ``run_convert`` and the quantize search)."""
    from ..artifacts import verify
    from ..modeling import label_names_of, load_classifier, parameter_count, trim_positions
    from ..runtime.tokenizer import TextTokenizer

    model = load_classifier(model_dir)
    if model.config.model_type != "albert":
        model = _as_albert(model, model_dir, formats)
    cfg = model.config
    max_pos = int(getattr(cfg, "max_position_embeddings", spec.max_length))
    if spec.max_length > max_pos:
        raise ConfigError(f"sequence length {spec.max_length} exceeds the model's"
                          f" max_position_embeddings ({max_pos})", key="--seq-len",
                          hint=f"use --seq-len {max_pos} or smaller buckets")
    trim_positions(model, spec.max_length)  # rows past the longest input are never read
    if (model_dir / "manifest.json").is_file():
        verify(model_dir)
    tok = TextTokenizer.load(model_dir)
    return model, tok, label_names_of(model), parameter_count(model)


def run_convert(config: ConvertConfig, model_dir: str | Path, out_dir: str | Path, *,
                calibration: str | Path | None = None, force: bool = False,
                progress: bool | None = None) -> Manifest:
    """Convert the classifier in ``model_dir`` into ``out_dir`` (see the module docstring).

    ``calibration`` is text of the task (a data file, its labels only balance the draw, or plain
    text, one per line): it calibrates int8-static and provides the padded real inputs for
    parity (without it, parity uses random token ids and int8-static cannot run).
    """
    from ..data import read_calibration
    from ..errors import DataError
    from ..modeling import copy_tokenizer_files, resolve_model
    from .calibration import build_calibration, parity_feeds, synthetic_parity_feeds
    from .parity import gate, torch_logits

    model_dir, out_dir = Path(model_dir), Path(out_dir)
    resolve_model(model_dir)  # a mistyped --model is named before what else the command lacks
    config, skipped = config.installed()
    _check_inputs(config, calibration, out_dir, force)
    spec = config.spec
    model, tok, labels, params = load_source(model_dir, spec, formats=config.formats)
    cfg = model.config
    cal: CalibrationSet | None = None
    if calibration is not None:
        try:
            ds = read_calibration(calibration)  # text: a label column only balances the draw
        except DataError as exc:
            if exc.hint and "column" in exc.hint:
                exc.hint = ("the calibration file needs a known layout, e.g. a header"
                            " 'sentence<TAB>label' or plain text, one per line (see"
                            " 'edge-albert data inspect')")
            raise
        cal = build_calibration(ds, tok, spec=spec, size=config.calibration_size, seed=config.seed)
        text = _text_source(config, ds, tok, model_dir, labels)
        batches = parity_feeds(ds, tok, spec=spec, n=config.parity_examples, seed=config.seed + 1)
        parity_source = str(calibration)
    else:
        batches = synthetic_parity_feeds(tok, spec=spec, n=config.parity_examples,
                                         seed=config.seed + 1)
        parity_source = "synthetic token ids (no --calibration given)"
        text = None
    ref = torch_logits(model, batches)
    if not all(np.isfinite(r).all() for r in ref):
        raise ConversionError("the torch model itself returns non-finite logits", where=model_dir)

    plan = config.plan()
    names = _step_names(plan, config.onnx_graph, config.fixed_precisions())
    steps = Steps(names, progress is not False)
    record = {**to_dict(config), "calibration": str(calibration) if calibration else None,
              "model": str(model_dir)}
    inputs = [model_dir] if (model_dir / "manifest.json").is_file() else []
    try:
        with write_artifact(out_dir, stage="convert", config=record, inputs=inputs,
                            force=force) as w:
            conv = Converter(config, model, spec, cal, batches, ref, params, w, steps, text=text)
            with scratch_dir(w.path):  # libraries' own temp files too: a kill leaves none outside
                conv.run(plan)
            copy_tokenizer_files(model_dir, w.path)
            (w.path / LABELS_FILE).write_text("\n".join(labels) + "\n", encoding="utf-8")
            w.describe(LABELS_FILE, kind="labels", labels=labels)
            w.extra.update(
                parameters=params, labels=labels, model_type=cfg.model_type,
                source_model_type=getattr(cfg, "source_model_type", cfg.model_type),
                vocab_size=int(cfg.vocab_size),
                max_position_embeddings=int(getattr(cfg, "max_position_embeddings", 0)) or None,
                export_spec=spec.to_dict(), calibration=cal.describe() if cal else None,
                parity_inputs={"source": parity_source, "n": int(sum(len(b["input_ids"])
                                                                     for b in batches)),
                               "widths": sorted({int(b["input_ids"].shape[1]) for b in batches}),
                               "padded_rows": int(sum((b["attention_mask"] == 0).any(axis=1).sum()
                                                      for b in batches))},
                tf_vs_torch_max_abs_diff=conv.tf_diff, seconds=steps.seconds,
                formats_skipped=skipped,
                files={n: {k: v for k, v in m.items() if k in ("format", "precision",
                                                                "bytes_per_parameter")}
                       | {"parity": m["parity"]} for n, m in conv.described.items()})
            gate(conv.parity)
    finally:
        steps.close()
    assert w.manifest is not None
    return w.manifest


def _text_source(config: ConvertConfig, ds: Any, tok: Any, model_dir: Path,
                 labels: list[str]) -> TextSource | None:
    """Parity texts for text-in files: a seeded sample of the calibration rows, plus each of the
    first eight upper-cased, with accents, and repeated past the maximum length."""
    if Format.ONNX_E2E not in config.formats and Format.MEDIAPIPE not in config.formats:
        return None
    from .onnx_e2e import e2e_refusal

    why = e2e_refusal(model_dir) if Format.ONNX_E2E in config.formats else None
    if why:
        raise ConfigError(f"onnx-e2e: {why}", key="--formats",
                          hint="leave onnx-e2e out of --formats for this tokenizer")
    if Format.MEDIAPIPE in config.formats and getattr(ds, "pairs", None):
        raise ConfigError("mediapipe: MediaPipe's TextClassifier takes one text, and this task's"
                          " examples are text pairs", key="--formats",
                          hint="leave mediapipe out of --formats for a pair task")
    items = ds.inputs()
    rng = np.random.default_rng(config.seed + 2)
    picked = [items[int(i)] for i in rng.permutation(len(items))[:config.parity_examples]]

    def vary(x: Any, f: Any) -> Any:
        return tuple(f(t) for t in x) if isinstance(x, tuple) else f(x)

    extra = [vary(x, f) for x in picked[:8] for f in (
        str.upper, lambda t: t.replace("e", "é").replace("a", "à"),
        lambda t: " ".join([t] * (config.spec.max_length // max(1, len(t.split())) + 2)))]
    return TextSource(model_dir, tok, list(labels), picked + extra)


def _step_names(plan: list[tuple[Format, Precision]], graph: OnnxGraph,
                fixed: Sequence[Precision] = ()) -> list[str]:
    names = []
    onnx_precs = [p for f, p in plan if f in (Format.ONNX, Format.ORT, Format.ONNX_E2E)]
    if onnx_precs:  # the fp32 export always runs: it is the source of the int8 files
        names.append("onnx fp32")
        if graph is OnnxGraph.FUSED:
            names.append("onnx fuse")
    names += [f"onnx {p.value}" for p in dict.fromkeys(onnx_precs) if p is not Precision.FP32]
    if Precision.INT8_STATIC in fixed:
        names.append("onnx int8-static (full QDQ)")  # the source of its fixed-shape copies
    if any(f is Format.ORT for f, _ in plan):
        names.append("ort")
    names += [f"onnx-e2e {p.value}" for f, p in plan if f is Format.ONNX_E2E]
    names += [f"pte {p.value}" for f, p in plan if f is Format.PTE]
    if any(f is Format.MEDIAPIPE for f, _ in plan):
        if not any(f is Format.TFLITE for f, _ in plan):
            names.append("tensorflow graph")
        names.append("mediapipe tokenizer check")
        names += [f"mediapipe {p.value}" for f, p in plan if f is Format.MEDIAPIPE]
    if any(f is Format.TFLITE for f, _ in plan):
        names.append("tensorflow graph")
        names += [f"tflite {p.value}" for f, p in plan if f is Format.TFLITE]
    return names


