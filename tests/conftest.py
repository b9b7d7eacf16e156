"""Shared fixtures: tiny generated data, a tiny SentencePiece tokenizer and a tiny ALBERT."""
from __future__ import annotations

import contextlib
import json
import os
import random
from pathlib import Path

import pytest

# a user's shared teacher-logit cache must not leak into (or out of) the tests' runs
os.environ.pop("EDGE_ALBERT_CACHE", None)

if os.environ.get("PYTEST_XDIST_WORKER"):
    # the suite runs in two workers (pyproject's addopts): one OpenMP thread each (and in the
    # processes they start), or the workers' thread pools spin against each other on 2 cores
    os.environ["OMP_NUM_THREADS"] = "1"

if os.environ.get("EDGE_ALBERT_REQUIRE_TOOLCHAIN") == "1":
    # CI installs the whole toolchain: a module that fails to import there is a broken install,
    # not a reason to skip. Under this variable pytest.importorskip fails the test instead, so a
    # broken torch/tensorflow/onnxruntime cannot turn the suite into a wall of green skips.
    _importorskip = pytest.importorskip

    def _require(modname: str, *args, **kwargs):
        try:
            return _importorskip(modname, *args, **kwargs)
        except pytest.skip.Exception as exc:
            pytest.fail(f"EDGE_ALBERT_REQUIRE_TOOLCHAIN=1: cannot import {modname!r} ({exc})",
                        pytrace=False)

    pytest.importorskip = _require

from edge_albert.runtime.backends import extensions_library

from edge_albert.errors import RuntimeBackendError

# before any test imports the package: tensorflow's protobuf must not capture its calls;
# not installed: the tests that need it skip (or fail under CI)
with contextlib.suppress(RuntimeBackendError):
    extensions_library()

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

_SUBJECTS = ["the film", "this movie", "the plot", "the cast", "the ending", "the music",
             "our hero", "the script", "the director", "every scene"]
_GOOD = ["is charming", "was a delight", "feels fresh and moving", "is wonderfully acted",
         "shines", "is smart and funny", "rewards patience", "is a joy"]
_BAD = ["is dull", "was a mess", "feels flat and tired", "is badly acted", "drags",
        "is loud and empty", "wastes its cast", "is a chore"]


def make_sentiment_rows(n: int, seed: int = 0) -> list[tuple[str, str]]:
    """A generated, learnable two-class sentiment task: (sentence, label)."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        label = rng.randint(0, 1)
        phrase = rng.choice(_GOOD if label else _BAD)
        text = f"{rng.choice(_SUBJECTS)} {phrase}"
        if rng.random() < 0.5:
            text += f" , and {rng.choice(_SUBJECTS)} {rng.choice(_GOOD if label else _BAD)}"
        rows.append((text + " .", str(label)))
    return rows


def write_tsv(path: Path, rows: list[tuple[str, str]], header: str = "sentence\tlabel") -> Path:
    path.write_text(header + "\n" + "".join(f"{t}\t{lab}\n" for t, lab in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA} (see ../shared/data/README.md)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_task(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("task")
    return {"train": write_tsv(d / "train.tsv", make_sentiment_rows(400, seed=1)),
            "dev": write_tsv(d / "dev.tsv", make_sentiment_rows(100, seed=2))}


@pytest.fixture(scope="session")
def tiny_tokenizer(tmp_path_factory, tiny_task) -> Path:
    from edge_albert.config import TokenizerConfig
    from edge_albert.tokenizer_train import train_tokenizer, training_sentences

    out = tmp_path_factory.mktemp("tok") / "tok"
    train_tokenizer(TokenizerConfig(vocab_size=120), training_sentences([tiny_task["train"]]), out)
    return out


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory, tiny_tokenizer) -> Path:
    pytest.importorskip("torch")
    from edge_albert.modeling import init_model_dir

    out = tmp_path_factory.mktemp("model") / "albert-tiny"
    init_model_dir("tiny", tiny_tokenizer, out, label_names=["0", "1"], seed=0)
    return out


@pytest.fixture(scope="session")
def tiny_artifact(tmp_path_factory, tiny_model, tiny_task) -> Path:
    """The tiny ALBERT converted to fp32 and int8-dynamic ONNX and TFLite (plus .ort)."""
    pytest.importorskip("tensorflow")
    pytest.importorskip("onnxruntime")
    from edge_albert.converters.convert import ConvertConfig, run_convert
    from edge_albert.converters.spec import Format, Precision

    out = tmp_path_factory.mktemp("artifact") / "converted"
    cfg = ConvertConfig(formats=(Format.ONNX, Format.ORT, Format.TFLITE),
                        precisions=(Precision.FP32, Precision.INT8_DYNAMIC), buckets=(16, 32))
    run_convert(cfg, tiny_model, out, calibration=tiny_task["dev"], progress=False)
    return out


# ----------------------------------------------------------------------------- WordPiece
# text the vocabulary-trimming tests' corpus (the sentiment rows) never shows
WORDPIECE_OTHER = ["the orchestra played a long symphony in the old cathedral",
                   "a violinist tuned her instrument backstage before the concert",
                   "the conductor bowed while the audience applauded loudly"]


@pytest.fixture(scope="session")
def wordpiece_albert(tmp_path_factory):
    """A random tiny ALBERT over a BERT-style WordPiece vocabulary (sentiment rows +
    WORDPIECE_OTHER), with its train (sentiment rows) and dev (+ WORDPIECE_OTHER) files."""
    from tokenizers import (
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
        trainers,
    )

    from edge_albert.modeling import init_model_dir

    d = tmp_path_factory.mktemp("wp")
    rows = make_sentiment_rows(200, seed=1)
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok.train_from_iterator([t for t, _ in rows] + WORDPIECE_OTHER * 5, trainers.WordPieceTrainer(
        vocab_size=400, special_tokens=specials))
    # laid out like BERT's: [PAD], unused slots, then the other specials, so trimming moves them
    pieces = ["[PAD]", *(f"[unused{i}]" for i in range(10)), *specials[1:],
              *(p for p, _ in sorted(tok.get_vocab().items(), key=lambda kv: kv[1])
                if p not in specials)]
    tok = Tokenizer(models.WordPiece({p: i for i, p in enumerate(pieces)}, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.add_special_tokens(specials)
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    assert cls == 12
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    tok.decoder = decoders.WordPiece()
    (d / "tok").mkdir()
    tok.save(str(d / "tok" / "tokenizer.json"))
    vocab = sorted(tok.get_vocab().items(), key=lambda kv: kv[1])
    (d / "tok" / "vocab.txt").write_text("".join(p + "\n" for p, _ in vocab))
    # transformers writes special tokens keyed by id here; the ids must follow the trim
    (d / "tok" / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": True,
        "added_tokens_decoder": {str(i): {"content": p, "special": True}
                                 for p, i in vocab if p.startswith("[")}}))
    init_model_dir("tiny", d / "tok", d / "model", seed=2)
    train = write_tsv(d / "train.tsv", rows)
    dev = write_tsv(d / "dev.tsv", make_sentiment_rows(40, seed=5) + [(t, "1") for t in WORDPIECE_OTHER])
    return {"model": d / "model", "train": train, "dev": dev}
