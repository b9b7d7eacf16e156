"""litert-torch on the student (runs in its own venv through peer_driver.py): fp32 TFLite, int8
through AI Edge Quantizer's recipes and through PT2E static / dynamic."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from peer_common import INPUTS, load_calibration
from peer_common import attempt as record_attempt


def drive(model_dir: Path, out: Path, calib_path: str) -> list[dict]:
    import torch
    from transformers import AutoModelForSequenceClassification

    rows: list[dict] = []

    def attempt(recipe: str, short: str, fn: Callable[[], Path], **extra: Any) -> Path | None:
        return record_attempt(rows, recipe, short, fn, **extra)

    class Logits(torch.nn.Module):
        """The classifier with tensor-in, logits-out forward (what litert-torch traces)."""

        def __init__(self, m) -> None:
            super().__init__()
            self.m = m

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.m(input_ids=input_ids, attention_mask=attention_mask,
                          token_type_ids=token_type_ids).logits

    model = Logits(AutoModelForSequenceClassification.from_pretrained(str(model_dir)).eval()).eval()
    feeds = load_calibration(calib_path)
    sample = {k: torch.from_numpy(feeds[0][k]) for k in INPUTS}
    args = tuple(sample[k] for k in INPUTS)

    def fp32() -> Path:
        import litert_torch

        path = out / "fp32.tflite"
        litert_torch.convert(model, sample_kwargs=sample).export(str(path))
        return path

    f32 = attempt("fp32: litert_torch.convert (batch 1, fixed length)", "fp32", fp32,
                  precision="fp32")

    def aeq(recipe_name: str, calibrate: bool) -> Callable[[], Path]:
        def fn() -> Path:
            import numpy as np
            from ai_edge_quantizer import quantizer, recipe

            qt = quantizer.Quantizer(str(f32))
            qt.load_quantization_recipe(getattr(recipe, recipe_name)())
            cal = None
            if calibrate:
                from ai_edge_litert.interpreter import Interpreter

                key = next(iter(Interpreter(model_path=str(f32)).get_signature_list()))
                data = [{k: f[k].astype(np.int32) for k in INPUTS} for f in feeds]
                cal = qt.calibrate({key: data}, num_threads=1)
            path = out / f"aeq-{recipe_name}.tflite"
            qt.quantize(cal).export_model(str(path), overwrite=True)
            return path
        return fn

    if f32 is not None:
        attempt("int8-dynamic: AI Edge Quantizer recipe.dynamic_wi8_afp32", "AEQ dynamic", aeq(
            "dynamic_wi8_afp32", False), precision="int8-dynamic")
        attempt("int8-static: AI Edge Quantizer recipe.static_wi8_ai8 (calibration rows)",
                "AEQ static", aeq("static_wi8_ai8", True), precision="int8-static")

    def pt2e(dynamic: bool) -> Callable[[], Path]:
        def fn() -> Path:
            import litert_torch
            from litert_torch.quantize.pt2e_quantizer import (
                PT2EQuantizer,
                get_symmetric_quantization_config,
            )
            from litert_torch.quantize.quant_config import QuantConfig
            from torchao.quantization.pt2e import quantize_pt2e

            quantizer = PT2EQuantizer().set_global(get_symmetric_quantization_config(
                is_per_channel=True, is_dynamic=dynamic))
            m = torch.export.export(model, args).module()
            m = quantize_pt2e.prepare_pt2e(m, quantizer)
            with torch.no_grad():
                for f in feeds if not dynamic else feeds[:1]:
                    m(*(torch.from_numpy(f[k]) for k in INPUTS))
            m = quantize_pt2e.convert_pt2e(m, fold_quantize=False)
            path = out / f"pt2e-{'dynamic' if dynamic else 'static'}.tflite"
            litert_torch.convert(m, args, quant_config=QuantConfig(pt2e_quantizer=quantizer)
                                 ).export(str(path))
            return path
        return fn

    attempt("int8-static: PT2E PT2EQuantizer(get_symmetric_quantization_config(per_channel))"
            " + calibration rows", "PT2E static", pt2e(False), precision="int8-static")
    attempt("int8-dynamic: PT2E PT2EQuantizer(get_symmetric_quantization_config(per_channel,"
            " is_dynamic=True))", "PT2E dynamic", pt2e(True), precision="int8-dynamic")
    return rows
