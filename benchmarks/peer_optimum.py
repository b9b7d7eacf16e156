"""Hugging Face Optimum on the student (runs in its own venv through peer_driver.py): ``main_export``
to ONNX, ORTQuantizer dynamic and static int8, ORTOptimizer O1/O2 then dynamic int8."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from peer_common import INPUTS, load_calibration
from peer_common import attempt as record_attempt


def drive(model_dir: Path, out: Path, calib_path: str) -> list[dict]:
    rows: list[dict] = []

    def attempt(recipe: str, short: str, fn: Callable[[], Path], **extra: Any) -> Path | None:
        return record_attempt(rows, recipe, short, fn, **extra)

    export_dir = out / "export"

    def export() -> Path:
        from optimum.exporters.onnx import main_export

        main_export(str(model_dir), output=str(export_dir), task="text-classification")
        return export_dir / "model.onnx"

    fp32 = attempt("fp32: main_export (task text-classification, default opset)", "fp32 export",
                   export,
                   precision="fp32")
    if fp32 is None:
        return rows

    from optimum.onnxruntime import ORTOptimizer, ORTQuantizer
    from optimum.onnxruntime.configuration import (
        AutoCalibrationConfig,
        AutoOptimizationConfig,
        AutoQuantizationConfig,
    )

    def quantize(src_dir: Path, name: str, qconfig, save: str, ranges=None) -> Path:
        q = ORTQuantizer.from_pretrained(src_dir, file_name=name)
        q.quantize(quantization_config=qconfig, save_dir=out / save,
                   calibration_tensors_range=ranges)
        return out / save / (Path(name).stem + "_quantized.onnx")

    attempt("int8-dynamic: ORTQuantizer, AutoQuantizationConfig.avx512_vnni(is_static=False,"
            " per_channel=False)", "dynamic avx512_vnni", lambda: quantize(
                export_dir, "model.onnx",
                AutoQuantizationConfig.avx512_vnni(is_static=False, per_channel=False),
                "dynamic-avx512vnni"), precision="int8-dynamic")
    attempt("int8-dynamic: ORTQuantizer, AutoQuantizationConfig.arm64(is_static=False)"
            " (per-channel)", "dynamic arm64", lambda: quantize(
                export_dir, "model.onnx", AutoQuantizationConfig.arm64(is_static=False),
                "dynamic-arm64"), precision="int8-dynamic")

    def static() -> Path:
        import numpy as np
        from datasets import Dataset

        feeds = load_calibration(calib_path)
        ds = Dataset.from_dict({k: np.concatenate([f[k] for f in feeds]).tolist() for k in INPUTS})
        q = ORTQuantizer.from_pretrained(export_dir, file_name="model.onnx")
        qconfig = AutoQuantizationConfig.avx512_vnni(is_static=True, per_channel=False)
        ranges = q.fit(dataset=ds, calibration_config=AutoCalibrationConfig.minmax(ds),
                       operators_to_quantize=qconfig.operators_to_quantize,
                       onnx_augmented_model_name=str(out / "augmented_model.onnx"))
        q.quantize(quantization_config=qconfig, save_dir=out / "static-avx512vnni",
                   calibration_tensors_range=ranges)
        return out / "static-avx512vnni" / "model_quantized.onnx"

    attempt("int8-static: ORTQuantizer.fit (minmax, calibration rows) +"
            " AutoQuantizationConfig.avx512_vnni(is_static=True, per_channel=False)",
            "static avx512_vnni", static,
            precision="int8-static")

    def optimized(level: str) -> Callable[[], Path]:
        def fn() -> Path:
            opt = ORTOptimizer.from_pretrained(export_dir, file_names=["model.onnx"])
            opt.optimize(save_dir=out / f"{level}", optimization_config=getattr(
                AutoOptimizationConfig, level)())
            return quantize(out / level, "model_optimized.onnx",
                            AutoQuantizationConfig.avx512_vnni(is_static=False, per_channel=False),
                            f"{level}-dynamic")
        return fn

    for level in ("O1", "O2"):
        attempt(f"int8-dynamic after ORTOptimizer AutoOptimizationConfig.{level}(), avx512_vnni"
                " per-tensor", f"{level} + dynamic", optimized(level), precision="int8-dynamic")
    return rows
