"""The tiny pipeline recipe that the pipeline, lock and kill-and-resume tests vary."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

TEMPLATE = """
[task]
builtin = "intents"
builtin_train_rows = {train_rows}
builtin_dev_rows = {dev_rows}

[teacher]
model = "scratch"
scratch_shape = "tiny"
scratch_vocab_size = 200

[finetune]
max_steps = {finetune_steps}
batch_size = 16
learning_rate = 3e-3
max_length = 24
checkpoint_every = {finetune_ckpt}
threads = 1

[distill]
student = "tiny"
max_steps = {distill_steps}
batch_size = 16
learning_rate = 3e-3
max_length = 24
checkpoint_every = {ckpt}
eval_every = 1000
threads = 1

[convert]
formats = {formats}
precisions = {precisions}
buckets = {buckets}

[validate]
latency_runs = {latency_runs}
warmup = 1
batch_sizes = [1]
{validate_extra}
[bundle]
target = "none"
"""


def _toml_list(items: Sequence) -> str:
    return "[" + ", ".join(f'"{x}"' if isinstance(x, str) else str(x) for x in items) + "]"


def write_tiny_recipe(directory: Path, *, train_rows: int = 320, dev_rows: int = 64,
                      finetune_steps: int = 30, finetune_ckpt: int = 0, distill_steps: int = 20,
                      ckpt: int = 0, formats: Sequence[str] = ("onnx", "tflite"),
                      precisions: Sequence[str] = ("fp32", "int8-dynamic"),
                      buckets: Sequence[int] = (16, 24), latency_runs: int = 3,
                      max_drop: float | None = None) -> Path:
    """``directory/tiny.toml``: a whole pipeline in seconds (scratch teacher, tiny student)."""
    path = Path(directory) / "tiny.toml"
    path.write_text(TEMPLATE.format(
        train_rows=train_rows, dev_rows=dev_rows, finetune_steps=finetune_steps,
        finetune_ckpt=finetune_ckpt, distill_steps=distill_steps, ckpt=ckpt,
        formats=_toml_list(formats), precisions=_toml_list(precisions),
        buckets=_toml_list(buckets), latency_runs=latency_runs,
        validate_extra="" if max_drop is None else f"max_drop = {max_drop}\n"))
    return path


@pytest.fixture(scope="session")
def tiny_recipe() -> Callable[..., Path]:
    """:func:`write_tiny_recipe`, for tests (fixtures are how tests here share helpers)."""
    return write_tiny_recipe
