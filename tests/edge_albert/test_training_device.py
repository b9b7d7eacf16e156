"""Where training runs: the ``device`` setting (CPU tests run everywhere; CUDA tests need a GPU),
and how its settings are checked (``device`` and ``precision``)."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from edge_albert.config import DistillConfig, load_sections
from edge_albert.distill import run_distill
from edge_albert.errors import ConfigError
from edge_albert.train_device import resolve_device

from .conftest import FAST

needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.parametrize("key, value", [("device", "gpu"), ("precision", "fp16")])
def test_training_setting_is_checked_with_its_key(tmp_path, key, value):
    """Where (device) and in what precision training runs: a bad value names key and file."""
    bad = tmp_path / "r.toml"
    bad.write_text(f'[distill]\n{key} = "{value}"\n')
    with pytest.raises(ConfigError, match=key) as e:
        load_sections({"distill": DistillConfig}, bad, [])
    assert str(bad) in str(e.value)
    assert resolve_device("cpu") == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_a_gpu_is_one_clear_error(bert_teacher, task, tmp_path):
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(ConfigError, match="sees no GPU"):
        run_distill(DistillConfig(**FAST, student="tiny", device="cuda"), bert_teacher, *task,
                    tmp_path / "s", progress=False)
    assert not (tmp_path / "s").exists()


@needs_gpu
def test_distil_on_the_gpu_and_resume_a_cpu_run_there(bert_teacher, task, tmp_path):
    """A tiny distillation runs on CUDA (hidden-state loss too); a run killed on the CPU resumes
    on the GPU (device is a resumable setting) and ends close to the all-CPU run."""
    base = {**FAST, "learning_rate": 3e-3, "student": "tiny", "hidden_weight": 1.0,
            "checkpoint_every": 16}
    gpu = run_distill(DistillConfig(**base, device="cuda"), bert_teacher, *task, tmp_path / "gpu",
                      progress=False)
    assert gpu is not None and "cpu" not in gpu.extra["device"]
    hist = gpu.extra["history"]
    assert hist[-1]["accuracy"] >= hist[0]["accuracy"]
    cpu = run_distill(DistillConfig(**base, device="cpu"), bert_teacher, *task, tmp_path / "cpu",
                      progress=False)
    from edge_albert.training import stop_after

    with stop_after(32):
        assert run_distill(DistillConfig(**base, device="cpu"), bert_teacher, *task,
                           tmp_path / "mixed", progress=False) is None
    mixed = run_distill(DistillConfig(**base, device="cuda"), bert_teacher, *task, tmp_path / "mixed",
                        progress=False, resume=True)
    assert cpu is not None and mixed is not None
    assert "cpu" not in mixed.extra["device"]
    assert abs(mixed.extra["dev"]["accuracy"] - cpu.extra["dev"]["accuracy"]) <= 0.1
