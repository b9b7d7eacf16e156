"""The files of one convert run: the ONNX fp32 export and its int8 copies (and fixed-shape copies),
the ``.ort`` files, the TensorFlow graph and its TFLite files; each is measured (parity against
torch, op census) and described in the artifact's manifest as it is written.
:func:`~.convert.run_convert` builds the plan and the artifact; :class:`Converter` fills it
(with :class:`Steps` for the progress bar, :func:`describe_file` for each file's manifest entry).
"""
from __future__ import annotations

import dataclasses
import functools
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, ConversionError
from .calibration import CalibrationSet
from .spec import SEVEN_BIT_TARGETS, ExportSpec, Format, OnnxGraph, Precision, model_filename


@dataclasses.dataclass(frozen=True)
class TextSource:
    """What a text-in file needs: the tokenizer (directory and loaded), labels, parity texts."""

    tokenizer_dir: Path
    tokenizer: Any
    labels: list[str]
    items: list[Any]


def _example(vocab: int, width: int) -> dict[str, np.ndarray]:
    """A padded export example: two rows, the second half padding (an unpadded example would
    let the exporter drop the attention mask)."""
    rng = np.random.default_rng(0)
    ids = rng.integers(min(5, vocab - 1), vocab, size=(2, width)).astype(np.int64)
    mask = np.ones((2, width), dtype=np.int64)
    mask[1, width // 2:] = 0
    ids[1, width // 2:] = 0
    types = np.zeros_like(ids)
    types[0, width // 2:] = 1
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}




class Steps:
    """A tqdm bar over the stage's steps, and the seconds each took."""

    def __init__(self, names: list[str], enabled: bool, desc: str = "convert") -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(total=len(names), desc=desc, unit="step", disable=not enabled,
                        leave=False)
        self.seconds: dict[str, float] = {}

    def run(self, name: str, fn: Callable[[], Any]) -> Any:
        self.bar.set_postfix_str(name)
        t = time.perf_counter()
        try:
            return fn()
        finally:
            self.seconds[name] = round(time.perf_counter() - t, 3)
            self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


def describe_file(path: Path, fmt: Format, precision: Precision, recipe: dict, *,
                  spec: ExportSpec, batches, ref, params: int, threads: int,
                  tol: float | None = None):
    """A model file's manifest metadata (format, precision, io, recipe, census, parity against
    torch, bytes per parameter) and its :class:`~.parity.Parity`; ConversionError for a TFLite
    file with non-builtin ops."""
    from .census import census
    from .parity import compare, run_file

    out = run_file(path, batches, threads=threads)
    par = compare(ref, out, fmt=fmt, precision=precision, tol=tol)
    cen = census(path)
    if fmt is Format.TFLITE and cen.custom_ops:
        raise ConversionError(f"{path.name} holds non-builtin op(s) {cen.custom_ops}: the plain"
                              " TFLite runtime cannot run it", where=path.name)
    size = path.stat().st_size
    meta = {"format": fmt.value, "precision": precision.value,
            **spec.io_description(fmt), "recipe": recipe, "census": cen.summary(),
            "int8_ops": cen.int8_ops, "parity": par.to_dict(),
            "bytes_per_parameter": round(size / params, 4)}
    return meta, par


def export_fp32_onnx(model, path: Path, spec: ExportSpec, params: int, *,
                     first_token_last_pass: bool = True) -> dict:
    """The fp32 ONNX file every ONNX int8 recipe starts from; returns its recipe description."""
    from .onnx_export import export_onnx

    example = _example(int(model.config.vocab_size), min(spec.buckets))
    info = export_onnx(model, path, example, spec=spec, parameters=params,
                       first_token_last_pass=first_token_last_pass)
    return {"recipe": "torch.onnx.export(dynamo=True)", "opset": spec.opset,
            "last_pass": "first token" if first_token_last_pass else "every token",
            "folded_weight_transposes": info.folded_transposes,
            "merged_initializers": info.merged_initializers,
            "float_weight_bytes": info.initializer_bytes}


def export_fused_onnx(model, path: Path, spec: ExportSpec, params: int) -> dict:
    """The fp32 graph with ONNX Runtime's transformer fusions (:mod:`.onnx_fuse`); returns its
    recipe. Exported with every pass for every token: the fusions pack Q/K/V into one weight,
    and a first-token last pass would keep its own Q/K/V beside it, a second copy of a shared
    layer (see :func:`.onnx_export.logits_module`)."""
    from .onnx_fuse import fuse_model_file

    every = path.with_name(path.stem + ".every-token.onnx")
    recipe = export_fp32_onnx(model, every, spec, params, first_token_last_pass=False)
    recipe.update(fuse_model_file(model, every, path, params))
    every.unlink()
    return recipe


def tf_graph(model, spec: ExportSpec, feeds) -> tuple[Any, float]:
    """The TensorFlow ALBERT graph every TFLite file is converted from, and its max abs logit
    difference from torch on ``feeds`` (ConversionError above 1e-4)."""
    from .tf_albert import check_against_torch, make_tf_albert

    module = make_tf_albert(model, mask_value=spec.mask_value)
    return module, check_against_torch(module, model, feeds)


def check_tflite_storage(path: Path, params: int) -> None:
    """ConversionError when an fp32 .tflite stores a shared weight once per pass."""
    from .census import census
    from .onnx_export import STORAGE_SLACK

    stored = census(path).stored_weight_bytes
    if stored > STORAGE_SLACK * 4 * params + 4096:
        raise ConversionError(
            f"{path.name} stores {stored:,} bytes of constants for {params:,}"
            f" parameters (> {STORAGE_SLACK} x 4 bytes each): a shared weight was"
            " copied per pass")
class Converter:
    """Writes, measures and describes the files of one convert run (``config``: its
    :class:`~.convert.ConvertConfig`, not imported here so that convert.py alone imports this)."""

    def __init__(self, config: Any, model, spec: ExportSpec, cal: CalibrationSet | None,
                 batches, ref, params: int, writer, steps: Steps, *,
                 text: TextSource | None = None) -> None:
        self.config, self.model, self.spec, self.cal = config, model, spec, cal
        self.batches, self.ref, self.params, self.w, self.steps = batches, ref, params, writer, steps
        self.text = text
        self.parity: dict = {}
        self.described: dict[str, dict] = {}
        self.tf_diff: float | None = None
        self.fp16_rounding: float | None = None  # measured when an fp16 file is
        self._tf_module: Any = None

    # -- shared -------------------------------------------------------------------------------
    def tolerance(self, precision: Precision) -> float | None:
        """A file's parity gate: the precision's fixed one, and for fp16 the model's own
        (:func:`.spec.fp16_tolerance`, rounding measured once, recorded in the manifest)."""
        from .parity import fp16_rounding_diff
        from .spec import fp16_tolerance, tolerance

        if precision is not Precision.FP16:
            return tolerance(precision)
        if self.fp16_rounding is None:
            self.fp16_rounding = fp16_rounding_diff(self.model, self.batches, self.ref)
            self.w.extra["fp16_weight_rounding_diff"] = round(self.fp16_rounding, 6)
        return fp16_tolerance(self.fp16_rounding)

    def measure(self, path: Path, fmt: Format, precision: Precision, recipe: dict) -> None:
        meta, par = describe_file(path, fmt, precision, recipe, spec=self.spec,
                                  batches=self.batches, ref=self.ref, params=self.params,
                                  threads=self.config.threads, tol=self.tolerance(precision))
        self.parity[path.name] = par
        self.described[path.name] = meta
        self.w.describe(path.name, **meta)

    def run(self, plan: list[tuple[Format, Precision]]) -> None:
        onnx_precs = list(dict.fromkeys(p for f, p in plan
                                        if f in (Format.ONNX, Format.ORT, Format.ONNX_E2E)))
        if onnx_precs:
            with tempfile.TemporaryDirectory(prefix="edge-albert-onnx-") as scratch:
                self.onnx_files(Path(scratch), onnx_precs, plan)
        tflite_precs = [p for f, p in plan if f is Format.TFLITE]
        if tflite_precs:
            self.tflite_files(tflite_precs)
        mediapipe_precs = [p for f, p in plan if f is Format.MEDIAPIPE]
        if mediapipe_precs:
            from .mediapipe_file import mediapipe_files

            mediapipe_files(self, mediapipe_precs)
        for fmt, p in plan:
            if fmt is Format.PTE:
                self.steps.run(f"pte {p.value}", functools.partial(self.pte_file, p))
        self.check_fallback_nodes()

    def check_fallback_nodes(self) -> None:
        """Every ``fallback_nodes`` name must be a node of at least one int8 graph written."""
        names = self.config.fallback_nodes
        int8 = [m for m in self.described.values() if Precision(m["precision"]).is_int8]
        if not names or not int8:
            return
        used = {n for m in int8 for n in m["recipe"].get("float_nodes", [])
                + m["recipe"].get("source_recipe", {}).get("float_nodes", [])}
        unknown = [n for n in names if n not in used]
        if unknown:
            raise ConfigError(f"fallback node(s) {', '.join(unknown[:5])} name no node of the"
                              " ONNX or TFLite int8 graphs", key="convert.fallback_nodes",
                              hint="ONNX node names and TFLite op output tensor names are"
                                   " valid; the manifest's census lists the weight ops")

    # -- ONNX and ORT -----------------------------------------------------------------------
    def fixed_shape_files(self, scratch: Path, sources: dict[Precision, Path]) -> None:
        """``fixed/model.<precision>.b1x<L>.onnx``: the dynamic file (or ``sources[precision]``:
        int8-static in its full QDQ form, see onnx_quant) with every input pinned to [1, L] for
        each bucket L, checked row by row against its dynamic-shape source."""
        precs = self.config.fixed_precisions()
        if not precs:
            return
        import onnx
        import onnxruntime as ort
        from onnxruntime.tools.onnx_model_utils import fix_output_shapes, make_input_shape_fixed

        (self.w.path / "fixed").mkdir(exist_ok=True)
        rows = [(b["input_ids"][i:i + 1], b["attention_mask"][i:i + 1], b["token_type_ids"][i:i + 1])
                for b in self.batches for i in range(len(b["input_ids"]))][:16]
        for p in precs:
            src = sources.get(p, scratch / model_filename(Format.ONNX, p))
            dyn = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"])
            for length in self.spec.buckets:
                model = onnx.load(str(src))
                for inp in model.graph.input:
                    make_input_shape_fixed(model.graph, inp.name, [1, length])
                fix_output_shapes(model)
                name = f"fixed/model.{p.value}.b1x{length}.onnx"
                onnx.save(model, str(self.w.path / name))
                fixed = ort.InferenceSession(str(self.w.path / name), providers=["CPUExecutionProvider"])
                worst = 0.0
                for ids, mask, types in rows:
                    n = int(mask.sum())
                    if n > length:
                        continue
                    feed = {}
                    for key, arr in (("input_ids", ids), ("attention_mask", mask),
                                     ("token_type_ids", types)):
                        padded = np.zeros((1, length), dtype=np.int64)
                        padded[0, :n] = arr[0, :n]
                        feed[key] = padded
                    a = fixed.run(None, feed)[0]
                    b = dyn.run(None, feed)[0]
                    worst = max(worst, float(np.abs(a - b).max()))
                # same graph, pinned shapes: fp32 must match; int8 kernels may pick other
                # (fused) paths once shapes are static, so allow int8 rounding differences
                limit = 1e-4 if p is Precision.FP32 else 1e-2
                if worst > limit:
                    raise ConversionError(f"differs from its dynamic-shape source by {worst:.2e}"
                                          f" (> {limit:g})", where=name)
                self.w.describe(name, format=Format.ONNX.value, precision=p.value,
                                fixed_shape=[1, length], seq_len=length, buckets=[length],
                                source=src.name if p not in sources else
                                f"{model_filename(Format.ONNX, p)}, its full QDQ form",
                                max_abs_diff_vs_dynamic=worst)

    def onnx_files(self, scratch: Path, precs: list[Precision],
                   plan: list[tuple[Format, Precision]]) -> None:
        from .onnx_quant import quantize_dynamic, quantize_static
        from .ort_mobile import CONFIG_NAME, convert_to_ort

        c = self.config
        target = c.resolved_target()
        seven = target in SEVEN_BIT_TARGETS  # 7-bit int8 weights (CpuTarget says why)
        fp32 = scratch / model_filename(Format.ONNX, Precision.FP32)
        (scratch / "src").mkdir()  # sources stay out of the .ort conversion below
        plain = scratch / "src" / "plain.onnx"
        recipes: dict[Precision, dict] = {}
        recipes[Precision.FP32] = self.steps.run("onnx fp32", functools.partial(
            export_fp32_onnx, self.model, plain, self.spec, self.params))
        recipes[Precision.FP32]["graph"] = OnnxGraph.PLAIN.value
        source = plain
        fixed_sources: dict[Precision, Path] = {}
        if c.onnx_graph is OnnxGraph.FUSED:
            source = scratch / "src" / "fused.onnx"
            recipes[Precision.FP32] = self.steps.run("onnx fuse", functools.partial(
                export_fused_onnx, self.model, source, self.spec, self.params))
        shutil.copyfile(source, fp32)
        for p in precs:
            dst = scratch / model_filename(Format.ONNX, p)
            if p is Precision.INT8_DYNAMIC:
                recipes[p] = self.steps.run(f"onnx {p.value}", functools.partial(
                    quantize_dynamic, fp32, dst, per_channel=c.per_channel,
                    fallbacks=c.fallbacks, nodes=c.fallback_nodes, reduce_range=seven))
                recipes[p].update(graph=recipes[Precision.FP32]["graph"], target=target.value)
            elif p is Precision.INT8_STATIC:
                assert self.cal is not None
                static = functools.partial(
                    quantize_static, plain, calibration=self.cal, method=c.calibration_method,
                    per_channel=c.per_channel, activation_type=c.activation_type.value,
                    weight_type=c.weight_type.value, fallbacks=c.fallbacks,
                    nodes=c.fallback_nodes, reduce_range=seven)
                recipes[p] = self.steps.run(f"onnx {p.value}", functools.partial(static, dst))
                recipes[p].update(graph=OnnxGraph.PLAIN.value, target=target.value)
                if p in c.fixed_precisions():
                    # the fixed copies' source: Q/DQ after every MatMul (see onnx_quant)
                    fixed_sources[p] = scratch / "src" / "int8-static.full-qdq.onnx"
                    self.steps.run(f"onnx {p.value} (full QDQ)", functools.partial(
                        static, fixed_sources[p], quantize_outputs=True))
                if c.onnx_graph is OnnxGraph.FUSED:
                    recipes[p]["graph_why"] = ("ONNX Runtime's QDQ quantizer has no Attention:"
                                               " int8-static is made from the plain graph")
        for p in [q for q in list(recipes) if q not in precs]:  # fp32 made only as the source
            (scratch / model_filename(Format.ONNX, p)).unlink()
        if any(f is Format.ORT for f, _ in plan):
            self.steps.run("ort", functools.partial(convert_to_ort, scratch,
                                                    target_platform=c.ort_target))
            shutil.copyfile(scratch / CONFIG_NAME, self.w.path / CONFIG_NAME)
            self.w.describe(CONFIG_NAME, kind="onnxruntime reduced-build operator config")
        self.fixed_shape_files(scratch, fixed_sources)
        for fmt, p in plan:
            if fmt is Format.ONNX_E2E:
                from .onnx_e2e import e2e_file

                self.steps.run(f"onnx-e2e {p.value}", functools.partial(
                    e2e_file, self, scratch / model_filename(Format.ONNX, p), p, recipes[p]))
            if fmt not in (Format.ONNX, Format.ORT):
                continue
            name = model_filename(fmt, p)
            shutil.copyfile(scratch / name, self.w.path / name)
            recipe = dict(recipes[p])
            if fmt is Format.ORT:
                recipe = {"recipe": "onnxruntime.tools.convert_onnx_models_to_ort (fixed"
                                    f" optimisations, target {c.ort_target})",
                          "source": model_filename(Format.ONNX, p), "source_recipe": recipes[p]}
            self.measure(self.w.path / name, fmt, p, recipe)

    # -- TFLite -----------------------------------------------------------------------------
    def tf_module(self) -> Any:
        """The TensorFlow graph (built once, for the TFLite and MediaPipe files)."""
        if self._tf_module is None:
            self._tf_module, self.tf_diff = self.steps.run("tensorflow graph", functools.partial(
                tf_graph, self.model, self.spec, self.batches[0]))
        return self._tf_module

    def tflite_files(self, precs: list[Precision]) -> None:
        from .tflite_convert import convert_tflite

        module = self.tf_module()
        c = self.config
        for p in precs:
            data, recipe = self.steps.run(f"tflite {p.value}", functools.partial(
                convert_tflite, module, p, calibration=self.cal, fallbacks=c.fallbacks,
                nodes=c.fallback_nodes))
            path = self.w.path / model_filename(Format.TFLITE, p)
            path.write_bytes(data)
            if p is Precision.FP32:
                check_tflite_storage(path, self.params)
            self.measure(path, Format.TFLITE, p, recipe)

    # -- ExecuTorch -------------------------------------------------------------------------
    def pte_file(self, p: Precision) -> None:
        """``model.<p>.pte`` (see :mod:`.pte`), run in ExecuTorch's runtime against torch; its
        manifest entry records what the XNNPACK delegate took instead of a weight census."""
        from .parity import compare, run_file
        from .pte import convert_pte

        data, recipe = convert_pte(self.model, self.spec, p, calibration=self.cal)
        name = model_filename(Format.PTE, p)
        path = self.w.path / name
        path.write_bytes(data)
        par = compare(self.ref, run_file(path, self.batches, threads=self.config.threads),
                      fmt=Format.PTE, precision=p)
        size = path.stat().st_size
        meta = {"format": Format.PTE.value, "precision": p.value,
                **self.spec.io_description(Format.PTE),
                "requires": {"runtime": "ExecuTorch (executorch.runtime on a host; the Android"
                                        " AAR or iOS framework on a phone) with the XNNPACK"
                                        " backend"},
                "recipe": recipe, "parity": par.to_dict(),
                "bytes_per_parameter": round(size / self.params, 4)}
        self.parity[name] = par
        self.described[name] = meta
        self.w.describe(name, **meta)
