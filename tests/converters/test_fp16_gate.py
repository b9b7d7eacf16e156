"""The fp16 parity gate is the model's own: 1e-2, or three times what rounding its weights to
fp16 alone changes torch's logits. A fixed 1e-2 refused a right fp16 file of the MRPC student
(0.0195 at 99.6 % agreement; rounding alone moved its logits by 0.017), which stopped the
MRPC recipe's pipeline at its convert stage."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("tensorflow")


def test_spec_fp16_tolerance_has_a_floor_and_scales_with_the_rounding():
    from edge_albert.converters.spec import FP16_ROUNDING_MARGIN, fp16_tolerance, tolerance

    assert fp16_tolerance(0.0) == tolerance("fp16") == 1e-2
    assert fp16_tolerance(0.001) == 1e-2
    assert fp16_tolerance(0.02) == pytest.approx(FP16_ROUNDING_MARGIN * 0.02)


def test_a_wrong_fp16_file_still_misses_its_gate():
    from edge_albert.converters.parity import compare, gate

    from edge_albert.errors import ConversionError

    ref = [np.array([[2.0, -1.0], [0.5, 0.25]], np.float32)]
    wrong = [ref[0] + np.float32(0.5)]
    par = compare(ref, wrong, fmt="tflite", precision="fp16", tol=0.06)
    assert par.tolerance == 0.06 and not par.passed
    with pytest.raises(ConversionError, match=r"model.fp16.tflite .* 0\.5 > 0\.06 \(3 x the"
                                              r" change rounding the weights to fp16 alone"):
        gate({"model.fp16.tflite": par})
    assert compare(ref, ref, fmt="tflite", precision="fp16", tol=0.06).passed


def test_fp16_file_of_a_rounding_sensitive_model_converts(tiny_model, task_tsv, tmp_path):
    """Logits in the tens (the classifier scaled up): fp16 weights move them by more than 1e-2
    in torch already; the file passes its own gate, which the manifest records with the
    rounding."""
    import torch
    from edge_albert.converters.convert import ConvertConfig, run_convert
    from edge_albert.converters.parity import fp16_rounding_diff
    from transformers import AutoModelForSequenceClassification

    src = tmp_path / "loud"
    shutil.copytree(tiny_model, src)
    (src / "manifest.json").unlink(missing_ok=True)
    model = AutoModelForSequenceClassification.from_pretrained(src)
    with torch.no_grad():
        model.classifier.weight.mul_(3000.0)
    model.save_pretrained(src)
    m = run_convert(ConvertConfig(formats=("tflite",), precisions=("fp16",), buckets=(16, 32),
                                  parity_examples=64, fixed_shapes=()),
                    src, tmp_path / "conv", calibration=task_tsv, progress=False)
    rounding = m.extra["fp16_weight_rounding_diff"]
    par = m.files["model.fp16.tflite"]["parity"]
    assert rounding > 1e-2 / 3  # the gate is the model's own, not the 1e-2 floor
    assert par["tolerance"] == pytest.approx(3 * rounding, rel=1e-4)
    assert 1e-2 < par["max_abs_logit_diff"] <= par["tolerance"]  # a fixed 1e-2 refused it
    assert par["agreement"] >= 0.98
    saved = json.loads((tmp_path / "conv" / "manifest.json").read_text())
    assert saved["extra"]["fp16_weight_rounding_diff"] == rounding
    # the measurement itself: rounding changes torch's logits; a model whose weights are
    # already fp16 values is left as it is (up to the fp32 forward's own noise)
    from edge_albert.converters.parity import torch_logits

    feeds = [{"input_ids": np.array([[2, 17, 30, 3]]), "attention_mask": np.ones((1, 4), int),
              "token_type_ids": np.zeros((1, 4), int)}]
    model.eval()
    assert fp16_rounding_diff(model, feeds, torch_logits(model, feeds)) > 0
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.half().float())
    assert fp16_rounding_diff(model, feeds, torch_logits(model, feeds)) < 1e-5  # fp32 noise
