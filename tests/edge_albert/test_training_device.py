"""Where training runs: the ``device`` setting (CPU tests run everywhere; CUDA tests need a GPU)."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from edge_albert.config import DistillConfig, FinetuneConfig, load_sections
from edge_albert.data import read_dataset
from edge_albert.distill import run_distill
from edge_albert.errors import ConfigError
from edge_albert.finetune import run_finetune
from edge_albert.training import resolve_device

from .test_finetune_distill import FAST, _base_model

needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture(scope="module")
def task(tiny_task):
    train = read_dataset(tiny_task["train"])
    return train, read_dataset(tiny_task["dev"], label_names=train.label_names())


@pytest.fixture(scope="module")
def teacher(tmp_path_factory, tiny_tokenizer, task):
    from edge_albert.runtime.tokenizer import TextTokenizer

    d = tmp_path_factory.mktemp("bert")
    base = _base_model("bert", TextTokenizer.load(tiny_tokenizer).vocab_size, d / "base",
                       tiny_tokenizer)
    m = run_finetune(FinetuneConfig(**FAST, device="cpu"), base, *task, d / "teacher",
                     progress=False)
    assert m is not None and m.extra["device"].startswith("cpu")
    return d / "teacher"


def test_device_setting_is_checked_with_its_key(tmp_path):
    bad = tmp_path / "r.toml"
    bad.write_text('[distill]\ndevice = "gpu"\n')
    with pytest.raises(ConfigError, match="device") as e:
        load_sections({"distill": DistillConfig}, bad, [])
    assert str(bad) in str(e.value)
    assert resolve_device("cpu") == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_a_gpu_is_one_clear_error(teacher, task, tmp_path):
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(ConfigError, match="sees no GPU"):
        run_distill(DistillConfig(**FAST, student="tiny", device="cuda"), teacher, *task,
                    tmp_path / "s", progress=False)
    assert not (tmp_path / "s").exists()


@needs_gpu
def test_distil_on_the_gpu_and_resume_a_cpu_run_there(teacher, task, tmp_path):
    """A tiny distillation runs on CUDA (hidden-state loss too); a run killed on the CPU resumes
    on the GPU (device is a resumable setting) and ends close to the all-CPU run."""
    base = {**FAST, "learning_rate": 3e-3, "student": "tiny", "hidden_weight": 1.0,
            "checkpoint_every": 16}
    gpu = run_distill(DistillConfig(**base, device="cuda"), teacher, *task, tmp_path / "gpu",
                      progress=False)
    assert gpu is not None and "cpu" not in gpu.extra["device"]
    hist = gpu.extra["history"]
    assert hist[-1]["accuracy"] >= hist[0]["accuracy"]
    cpu = run_distill(DistillConfig(**base, device="cpu"), teacher, *task, tmp_path / "cpu",
                      progress=False)
    assert run_distill(DistillConfig(**base, device="cpu"), teacher, *task, tmp_path / "mixed",
                       progress=False, stop_after=32) is None
    mixed = run_distill(DistillConfig(**base, device="cuda"), teacher, *task, tmp_path / "mixed",
                        progress=False, resume=True)
    assert cpu is not None and mixed is not None
    assert "cpu" not in mixed.extra["device"]
    assert abs(mixed.extra["dev"]["accuracy"] - cpu.extra["dev"]["accuracy"]) <= 0.1
