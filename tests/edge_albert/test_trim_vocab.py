"""Vocabulary trimming on a tiny WordPiece ALBERT (seconds, CPU)."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from edge_albert.artifacts import verify
from edge_albert.errors import DataError, TokenizerError
from edge_albert.trim_vocab import TrimVocabConfig, kept_ids, read_corpus, run_trim_vocab

from ..conftest import WORDPIECE_OTHER as OTHER


def _logits(model_dir: Path, texts: list[str]) -> np.ndarray:
    from edge_albert.runtime.tokenizer import TextTokenizer

    from edge_albert.modeling import load_classifier

    enc = TextTokenizer.load(model_dir).encode(texts, max_length=32, pad_to=32)
    with torch.no_grad():
        out = load_classifier(model_dir)(input_ids=torch.from_numpy(enc.input_ids),
                                         attention_mask=torch.from_numpy(enc.attention_mask),
                                         token_type_ids=torch.from_numpy(enc.token_type_ids))
    return out.logits.numpy()


def test_trim_keeps_the_corpus_logits_and_spells_other_words(wordpiece_albert, tmp_path):
    from edge_albert.runtime.tokenizer import TextTokenizer

    from edge_albert.data import read_dataset

    src, out = wordpiece_albert["model"], tmp_path / "trimmed"
    m = run_trim_vocab(TrimVocabConfig(), src, [wordpiece_albert["train"]], out,
                       dev=read_dataset(wordpiece_albert["dev"]))
    e = m.extra
    assert e["vocab_after"] < e["vocab_before"] and e["parameters"] < e["parameters_before"]
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["vocab_size"] == e["vocab_after"] == TextTokenizer.load(out).vocab_size
    assert len((out / "vocab.txt").read_text().splitlines()) == e["vocab_after"]
    verify(out, stage="trim_vocab")
    new_vocab = TextTokenizer.load(out)._tok.get_vocab()
    dec = json.loads((out / "tokenizer_config.json").read_text())["added_tokens_decoder"]
    assert {new_vocab[v["content"]] for v in dec.values()} == {int(k) for k in dec}
    # the corpus's texts: same pieces, same logits
    corpus = read_corpus(wordpiece_albert["train"])[:50]
    np.testing.assert_allclose(_logits(out, corpus), _logits(src, corpus), atol=1e-5)
    # words the corpus never shows are spelled with kept pieces, not [UNK]
    old, new = TextTokenizer.load(src), TextTokenizer.load(out)
    assert old.tokenize(OTHER[0]) != new.tokenize(OTHER[0])
    assert "[UNK]" not in new.tokenize(OTHER[0])
    assert "".join(p.removeprefix("##") for p in new.tokenize(OTHER[0])) == OTHER[0].replace(" ", "")
    # the --dev comparison: OTHER's rows changed tokenization, the generated rows did not
    d = e["dev"]
    assert d["rows"] == 43 and d["tokenization_changed"] == pytest.approx(3 / 43, abs=1e-4)
    assert 0 <= d["agreement"] <= 1 and d["max_abs_logit_change"] > 0


def test_kept_ids_rules():
    vocab = {p: i for i, p in enumerate(
        ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "##a", "b", "the", "film", "##ing",
         "dull", "charm", "orchestra"])}
    counts = Counter({vocab["film"]: 3, vocab["dull"]: 1, vocab["##ing"]: 2})
    base = set(range(8))  # specials and single characters
    assert set(kept_ids(vocab, counts, TrimVocabConfig())) == base | {9, 10, 11}
    assert set(kept_ids(vocab, counts, TrimVocabConfig(min_count=2))) == base | {9, 10}
    assert set(kept_ids(vocab, counts, TrimVocabConfig(min_count=5, keep_first=10))) == base | {8, 9}
    with pytest.raises(ValueError, match="min_count"):
        TrimVocabConfig(min_count=0)


def test_refuses_sentencepiece_and_bad_corpora(tiny_model, wordpiece_albert, tmp_path):
    with pytest.raises(TokenizerError, match="SentencePiece") as e:
        run_trim_vocab(TrimVocabConfig(), tiny_model, [wordpiece_albert["train"]], tmp_path / "o")
    assert str(e.value.where).endswith("spiece.model")
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    for bad in (empty, tmp_path / "missing.txt", tmp_path / "missing.tsv"):
        with pytest.raises(DataError):
            run_trim_vocab(TrimVocabConfig(), wordpiece_albert["model"], [bad], tmp_path / "o")
    assert not (tmp_path / "o").exists() and not list(tmp_path.glob(".o.tmp-*"))


def test_cli_prints_the_sizes_and_a_one_line_error(wordpiece_albert, tmp_path):
    from click.testing import CliRunner

    from edge_albert.cli import cli

    r = CliRunner().invoke(cli, ["model", "trim-vocab", "--model", str(wordpiece_albert["model"]),
                                 "--corpus", str(wordpiece_albert["train"]),
                                 "--dev", str(wordpiece_albert["dev"]), "--out", str(tmp_path / "t")])
    assert r.exit_code == 0, r.output
    assert "vocabulary" in r.output and "dev (43 rows)" in r.output
    r = CliRunner().invoke(cli, ["model", "trim-vocab", "--model", str(wordpiece_albert["model"]),
                                 "--corpus", str(wordpiece_albert["train"]), "--out", str(tmp_path / "u"),
                                 "--set", "trim_vocab.keep_first=-1"])
    assert r.exit_code != 0 and "keep_first" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "u").exists()


PIPE = """
[task]
train = "{train}"
dev = "{dev}"

[teacher]
model = "{teacher}"
finetune = true

[finetune]
max_steps = 8
batch_size = 16
max_length = 24
checkpoint_every = 0
threads = 1

[distill]
student = "tiny"
max_steps = 8
batch_size = 16
max_length = 24
checkpoint_every = 0
eval_every = 1000
threads = 1

[trim_vocab]
enabled = true

[convert]
formats = ["onnx"]
precisions = ["fp32"]
buckets = [24]

[validate]
latency_runs = 2
warmup = 1
batch_sizes = [1]

[bundle]
target = "none"
"""


def test_pipeline_trim_stage_feeds_convert_and_validates_against_the_student(
        wordpiece_albert, tmp_path):
    pytest.importorskip("onnxruntime")
    from edge_albert.artifacts import load_manifest
    from edge_albert.pipeline import run_pipeline

    recipe = tmp_path / "r.toml"
    recipe.write_text(PIPE.format(train=wordpiece_albert["train"], dev=wordpiece_albert["dev"],
                                  teacher=wordpiece_albert["model"]))
    p = run_pipeline(recipe, tmp_path / "run", echo=lambda _m: None)
    assert {r.name: r.status for r in p.results}["trim_vocab"] == "ran"
    run = tmp_path / "run"
    trim = load_manifest(run / "trim_vocab")
    assert trim.extra["vocab_after"] < trim.extra["vocab_before"] and "dev" in trim.extra
    conv = load_manifest(run / "convert")
    assert conv.extra["vocab_size"] == trim.extra["vocab_after"]
    report = json.loads((run / "validate" / "report.json").read_text())
    assert Path(report["reference"]["path"]).name == "student"  # the untrimmed float model
    # off again: the trim stage is skipped and convert takes the student as before
    p = run_pipeline(recipe, tmp_path / "run", overrides=["trim_vocab.enabled=false"], force=True,
                     echo=lambda _m: None)
    status = {r.name: r.status for r in p.results}
    assert status["trim_vocab"] == "skipped" and status["convert"] == "ran"
    assert load_manifest(run / "convert").extra["vocab_size"] == trim.extra["vocab_before"]


def test_pipeline_refuses_trimming_a_sentencepiece_scratch_teacher(tmp_path, tiny_recipe):
    from edge_albert.errors import ConfigError
    from edge_albert.recipe import load_pipeline_config

    with pytest.raises(ConfigError, match="WordPiece") as e:
        load_pipeline_config(tiny_recipe(tmp_path), ["trim_vocab.enabled=true"])
    assert e.value.key == "trim_vocab.enabled"


def test_a_tokenizer_larger_than_the_embedding_table_is_refused(wordpiece_albert, tmp_path):
    import shutil

    src = tmp_path / "m"
    shutil.copytree(wordpiece_albert["model"], src)
    spec = json.loads((src / "tokenizer.json").read_text())
    n = len(spec["model"]["vocab"])
    spec["model"]["vocab"].update({f"extra{i}": n + i for i in range(5)})
    (src / "tokenizer.json").write_text(json.dumps(spec))
    with pytest.raises(TokenizerError, match="word embeddings but the tokenizer") as e:
        run_trim_vocab(TrimVocabConfig(), src, [wordpiece_albert["train"]], tmp_path / "o")
    assert str(e.value.where) == str(src / "tokenizer.json") and not (tmp_path / "o").exists()
