"""The export spec and the calibration protocol (fast; the real-data checks skip without data)."""
from __future__ import annotations

import numpy as np
import pytest
from edge_albert.converters.calibration import build_calibration, stratified_indices
from edge_albert.converters.spec import (
    INPUT_NAMES,
    SUPPORTED,
    ExportSpec,
    Format,
    Precision,
    check_supported,
    model_filename,
    tolerance,
)

from edge_albert.errors import ConfigError

from .conftest import SHARED_DATA


def test_spec_names_formats_precisions_and_gates():
    assert INPUT_NAMES == ("input_ids", "attention_mask", "token_type_ids")
    assert SUPPORTED[Format.ORT] == SUPPORTED[Format.ONNX]
    assert Precision.FP16 in SUPPORTED[Format.TFLITE] and Precision.FP16 not in SUPPORTED[Format.ONNX]
    assert model_filename("tflite", "int8-static") == "model.int8-static.tflite"
    assert tolerance("fp32") == 1e-4 and tolerance("fp16") == 1e-2 and tolerance("int8-dynamic") is None
    with pytest.raises(ConfigError, match=r"supported: fp32, int8-dynamic, int8-static"):
        check_supported("ort", "fp16")
    spec = ExportSpec.from_lengths(seq_len=64)
    assert spec.buckets == (64,) and spec.max_length == 64 and spec.opset >= 18
    assert spec.io_description("tflite")["inputs"][0]["dtype"] == "int32"
    with pytest.raises(ValueError):
        ExportSpec(opset=17)


def test_convert_config_validates_and_plans():
    from edge_albert.converters.convert import ConvertConfig

    from edge_albert.config import from_mapping

    cfg = from_mapping(ConvertConfig, {"formats": "onnx,tflite", "buckets": "64,32"})
    assert cfg.buckets == (32, 64) and cfg.spec.max_length == 64
    assert [(f.value, p.value) for f, p in cfg.plan()][:3] == [
        ("onnx", "fp32"), ("onnx", "int8-dynamic"), ("onnx", "int8-static")]
    assert len(cfg.plan()) == 3 + 4
    with pytest.raises(ConfigError, match=r"convert.formats"):
        from_mapping(ConvertConfig, {"formats": "onnx,keras"})
    with pytest.raises(ConfigError, match="'ort' does not support precision 'fp16'"):
        ConvertConfig(formats=("ort",), precisions=("fp16",))
    mixed = ConvertConfig(formats=("onnx", "tflite"), precisions=("fp32", "fp16"))
    assert [(f.value, p.value) for f, p in mixed.plan()] == [
        ("onnx", "fp32"), ("tflite", "fp32"), ("tflite", "fp16")]


def test_stratified_indices_balance_labels_and_lengths():
    labels = ["a"] * 90 + ["b"] * 10
    lengths = list(range(100))
    idx = stratified_indices(labels, lengths, 20, seed=3)
    assert len(idx) == 20 and len(set(idx)) == 20
    picked = [labels[i] for i in idx]
    assert picked.count("b") == 10  # the minority label is taken whole before repeats of "a"
    a_lengths = [lengths[i] for i in idx if labels[i] == "a"]
    assert min(a_lengths) < 25 and max(a_lengths) > 75  # short and long "a" rows both present
    assert idx == stratified_indices(labels, lengths, 20, seed=3)


def test_calibration_set_feeds_both_runtimes(tokenizer_dir, task_tsv):
    from edge_albert.runtime.tokenizer import TextTokenizer

    from edge_albert.data import read_dataset

    cal = build_calibration(read_dataset(task_tsv), TextTokenizer.load(tokenizer_dir),
                            spec=ExportSpec(), size=40)
    assert len(cal) == 40 and cal.labels == {"0": 20, "1": 20}
    assert len(cal.lengths) >= 2  # several buckets, each example padded to its own
    feeds = list(cal)
    assert all(set(f) == set(INPUT_NAMES) and f["input_ids"].dtype == np.int64 for f in feeds)
    assert all(f["input_ids"].shape[1] in (32, 64, 128) for f in feeds)
    assert any((f["attention_mask"] == 0).any() for f in feeds)
    tfl = list(cal.representative_dataset()())
    assert len(tfl) == 40 and all(v.dtype == np.int32 for f in tfl for v in f.values())
    reader = cal.data_reader()
    got = [reader.get_next() for _ in range(41)]
    assert got[-1] is None and all(g is not None for g in got[:40])
    reader.rewind()
    assert reader.get_next() is not None


@pytest.mark.realdata
def test_calibration_on_real_single_and_pair_tasks(tokenizer_dir):
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA}")
    from edge_albert.runtime.tokenizer import TextTokenizer

    from edge_albert.data import read_dataset

    tok = TextTokenizer.load(tokenizer_dir)
    sst2 = build_calibration(read_dataset(SHARED_DATA / "sst2" / "dev.tsv"), tok, spec=ExportSpec())
    assert len(sst2) == 200 and sst2.labels == {"0": 100, "1": 100} and len(sst2.lengths) >= 2
    mrpc = build_calibration(read_dataset(SHARED_DATA / "mrpc" / "dev.tsv"), tok,
                             spec=ExportSpec(), size=50)
    assert all((f["token_type_ids"] == 1).any() for f in mrpc)  # pairs keep segment ids


def test_cpu_targets_map_isa_classes_and_refuse_unknown_names():
    from edge_albert.converters.convert import ConvertConfig
    from edge_albert.converters.spec import SEVEN_BIT_TARGETS, CpuTarget, target_of_isa
    from edge_albert.runtime.cpu import cpu_facts

    from edge_albert.errors import ConfigError

    assert [target_of_isa(i).value for i in ("amx", "avx512vnni", "avxvnni", "avx512", "avx2",
                                             "x86", "arm64", "arm64-dotprod", "arm64-i8mm")] == [
        "x86-vnni"] * 3 + ["x86-avx2"] * 3 + ["arm64"] * 3
    assert {CpuTarget.PORTABLE, CpuTarget.X86_AVX2} == SEVEN_BIT_TARGETS
    assert ConvertConfig().target is CpuTarget.PORTABLE
    assert ConvertConfig(target="host").resolved_target() is target_of_isa(cpu_facts()["isa"])
    with pytest.raises(ConfigError, match=r"convert\.target: expected one of portable"):
        ConvertConfig(target="x86")
