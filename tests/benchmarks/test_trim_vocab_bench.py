"""benchmarks/trim_vocab.py end to end on a tiny WordPiece student, so it cannot rot."""
from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def test_trim_vocab_benchmark_measures_sizes_and_accuracy(tmp_path, wordpiece_albert):
    pytest.importorskip("tensorflow")
    pytest.importorskip("onnxruntime")
    spec = importlib.util.spec_from_file_location("trim_bench", BENCH / "trim_vocab.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    runs, data = tmp_path / "runs", tmp_path / "data"
    shutil.copytree(wordpiece_albert["model"], runs / "sst2" / "student-x")
    (data / "sst2").mkdir(parents=True)
    shutil.copy(wordpiece_albert["train"], data / "sst2" / "train.tsv")
    shutil.copy(wordpiece_albert["dev"], data / "sst2" / "dev.tsv")
    assert mod.main(["--models", "sst2:student-x", "--runs", str(runs), "--data", str(data),
                     "--out-dir", str(tmp_path / "out")]) == 0
    [row] = json.loads((tmp_path / "out" / "trim_vocab.json").read_text())["rows"]
    assert row["vocab_after"] < row["vocab_before"] and row["dev"]["rows"] == 43
    assert 0 <= row["heldout"] <= 1  # the SST-2 held-out sentences, through the trimmed tokenizer
    for ext in ("onnx", "tflite"):
        name = f"model.int8-dynamic.{ext}"
        assert 0 < row["int8_bytes"][name] < row["int8_bytes_before"][name]
    assert "| sst2 | `student-x` |" in (tmp_path / "out" / "trim_vocab.md").read_text()
