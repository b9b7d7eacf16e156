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


# ----------------------------------------------------------------------------- training tests
# The fine-tune/distil tests and the device tests share these: a tiny task, tiny random base
# encoders of four families, and a BERT teacher fine-tuned on the task.
FAST = dict(max_steps=48, batch_size=16, max_length=32, learning_rate=3e-3, eval_every=16,
            checkpoint_every=0, seed=3, threads=1, warmup_ratio=0.0)


def _base_model(kind: str, vocab: int, out: Path, tok_dir: Path) -> Path:
    """A random ``kind`` encoder (bert, roberta, distilbert, albert) saved with the tokenizer."""
    import torch
    import transformers

    from edge_albert.modeling import copy_tokenizer_files

    small = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                 max_position_embeddings=64)
    cfg = {
        "bert": lambda: transformers.BertConfig(vocab_size=vocab, pad_token_id=0, **small),
        "roberta": lambda: transformers.RobertaConfig(
            vocab_size=vocab, pad_token_id=0, type_vocab_size=1,
            **{**small, "max_position_embeddings": 66}),
        "distilbert": lambda: transformers.DistilBertConfig(
            vocab_size=vocab, dim=32, n_layers=2, n_heads=2, hidden_dim=64,
            max_position_embeddings=64, pad_token_id=0),
        "albert": lambda: transformers.AlbertConfig(vocab_size=vocab, embedding_size=16,
                                                    pad_token_id=0, **small),
    }[kind]()
    torch.manual_seed(0)
    transformers.AutoModel.from_config(cfg).save_pretrained(out)
    copy_tokenizer_files(tok_dir, out)
    return out


@pytest.fixture(scope="module")
def task(tiny_task):
    from edge_albert.data import read_dataset

    train = read_dataset(tiny_task["train"])
    return train, read_dataset(tiny_task["dev"], label_names=train.label_names())


@pytest.fixture(scope="module")
def bert_teacher(tmp_path_factory, tiny_tokenizer, task):
    from edge_albert.runtime.tokenizer import TextTokenizer

    from edge_albert.config import FinetuneConfig
    from edge_albert.finetune import run_finetune

    d = tmp_path_factory.mktemp("bert")
    base = _base_model("bert", TextTokenizer.load(tiny_tokenizer).vocab_size, d / "base",
                       tiny_tokenizer)
    m = run_finetune(FinetuneConfig(**FAST), base, *task, d / "teacher", progress=False)
    assert m is not None
    return d / "teacher"
