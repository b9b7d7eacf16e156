"""Session fixtures for the converter tests: a tiny tokenizer, tiny ALBERTs and one conversion.

Everything is built offline from generated sentences (no ../shared/data): a SentencePiece
tokenizer of ~1000 pieces, a 2-layer and a 12-layer ALBERT (one shared layer, hidden 32), and a
labelled TSV whose sentences span every length bucket. The full conversion (every format and
precision) runs once per session; the tests then assert on its files.
"""
from __future__ import annotations

import random
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def generated_rows(n: int = 600, seed: int = 0) -> list[tuple[str, str]]:
    """Labelled sentences of 4 to ~45 words: random words plus one sentiment word per label."""
    rng = random.Random(seed)
    letters = "abcdefghijklmnoprstuvwyz"
    words = sorted({"".join(rng.choice(letters) for _ in range(rng.randint(2, 8)))
                    for _ in range(3000)})
    pos = ["good", "great", "charming", "lovely", "superb", "warm"]
    neg = ["bad", "dull", "awful", "bleak", "tired", "weak"]
    rows = []
    for i in range(n):
        label = i % 2
        ws = [rng.choice(words) for _ in range(rng.choice([3, 5, 8, 14, 25, 40]))]
        ws.insert(rng.randrange(len(ws) + 1), rng.choice(pos if label else neg))
        rows.append((" ".join(ws) + " .", str(label)))
    return rows


@pytest.fixture(scope="session")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("converters")


@pytest.fixture(scope="session")
def task_tsv(workdir) -> Path:
    path = workdir / "task.tsv"
    path.write_text("sentence\tlabel\n" + "".join(f"{s}\t{y}\n" for s, y in generated_rows()),
                    encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def tokenizer_dir(workdir) -> Path:
    from edge_albert.config import TokenizerConfig
    from edge_albert.tokenizer_train import train_tokenizer

    out = workdir / "tok"
    train_tokenizer(TokenizerConfig(vocab_size=1000), [s for s, _ in generated_rows()], out)
    return out


@pytest.fixture(scope="session")
def tiny_model(workdir, tokenizer_dir) -> Path:
    from edge_albert.modeling import init_model_dir

    init_model_dir("tiny", tokenizer_dir, workdir / "tiny")
    return workdir / "tiny"


@pytest.fixture(scope="session")
def tiny12_model(workdir, tokenizer_dir) -> Path:
    from edge_albert.modeling import init_model_dir

    init_model_dir("tiny-12", tokenizer_dir, workdir / "tiny12")
    return workdir / "tiny12"


@pytest.fixture(scope="session")
def converted(workdir, tiny_model, task_tsv):
    """Every format x precision of the tiny model, calibrated on the generated task file."""
    from edge_albert.converters.convert import ConvertConfig, run_convert

    return run_convert(ConvertConfig(), tiny_model, workdir / "converted", calibration=task_tsv,
                       progress=False)


@pytest.fixture(scope="session")
def cli():
    from edge_albert.converters.cli import convert_command

    from edge_albert.cli import cli as group

    if "convert" not in group.commands:
        group.add_command(convert_command)
    return group
