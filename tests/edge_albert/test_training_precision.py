"""Training precision: ``precision = "bf16"`` runs the forward's matmuls under bfloat16 autocast
(losses, weights and optimizer stay fp32); ``"auto"`` picks bf16 only where the hardware has it.
A bad value is refused with its key: ``test_training_device.py``."""
from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from edge_albert.runtime import cpu
from edge_albert.runtime.cpu import native_bf16

from edge_albert.config import DistillConfig
from edge_albert.distill import run_distill
from edge_albert.train_device import resolve_precision

from .conftest import FAST


def test_auto_is_bf16_only_where_the_cpu_computes_it(monkeypatch):
    assert native_bf16(["avx2", "avx512f", "avx512_bf16"]) and native_bf16(["asimd", "bf16"])
    assert native_bf16(["amx_bf16"]) and not native_bf16(["avx2", "fma", "avx512_vnni"])
    facts = cpu.cpu_facts()
    for flags, want in ((["avx2", "avx512_vnni", "avx512_bf16"], "bf16"), (["avx2"], "fp32")):
        monkeypatch.setattr(cpu, "cpu_facts", lambda f=flags: {**facts, "flags": f})
        assert resolve_precision("auto", torch.device("cpu")) == want
    assert resolve_precision("fp32", torch.device("cpu")) == "fp32"
    assert resolve_precision("bf16", torch.device("cpu")) == "bf16"


def _linear_output_dtypes(run):
    """The dtypes of every nn.Linear output computed with grad enabled (training steps) in run()."""
    seen: set[torch.dtype] = set()

    def hook(module, args, out):
        if isinstance(module, torch.nn.Linear) and torch.is_grad_enabled():
            seen.add(out.dtype)

    handle = torch.nn.modules.module.register_module_forward_hook(hook)
    try:
        result = run()
    finally:
        handle.remove()
    return result, seen


@pytest.mark.parametrize("precision", ["bf16", "fp32"])
def test_distil_in_bf16_learns_and_says_so(bert_teacher, task, tmp_path, precision):
    """The training steps' matmuls run in bf16 (fp32 under "fp32"), the hidden-state loss
    included; the student still learns; manifest and training log name the precision."""
    cfg = DistillConfig(**FAST, student="tiny", hidden_weight=1.0, precision=precision)
    m, dtypes = _linear_output_dtypes(
        lambda: run_distill(cfg, bert_teacher, *task, tmp_path / "s", progress=False))
    assert m is not None
    assert dtypes == {torch.bfloat16 if precision == "bf16" else torch.float32}
    assert m.extra["precision"] == precision
    log = [json.loads(x) for x in (tmp_path / "s" / "train_log.jsonl").read_text().splitlines()]
    assert {"precision": precision} in log
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in log if "loss" in r)
    hist = m.extra["history"]
    assert hist[-1]["accuracy"] > hist[0]["accuracy"] or hist[-1]["accuracy"] >= 0.9
    # the saved weights are fp32 whatever the training precision
    from safetensors.numpy import load_file

    assert {str(v.dtype) for v in load_file(tmp_path / "s" / "model.safetensors").values()} == {
        "float32"}
