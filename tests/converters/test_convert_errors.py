"""Bad input to ``edge-albert convert``: one clear error line, the right exit code, and no
half-written artifact (neither the output directory nor a temporary sibling is left behind)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edge_albert.errors import ConversionError


def _invoke(cli, *args: str):
    return CliRunner().invoke(cli, ["convert", *args, "--quiet"])


def _one_error_line(output: str) -> str:
    lines = [ln for ln in output.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, output
    assert "Traceback" not in output
    return lines[0]


def _nothing_written(out: Path) -> None:
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]


@pytest.fixture()
def out(tmp_path) -> Path:
    return tmp_path / "converted"


def test_a_model_that_is_not_a_sequence_classifier(cli, tmp_path, out):
    from transformers import AlbertModel

    from edge_albert.modeling import albert_config

    bare = tmp_path / "encoder"  # an ALBERT encoder without a classification head
    AlbertModel(albert_config("tiny", vocab_size=100)).save_pretrained(bare)
    res = _invoke(cli, "--model", str(bare), "--out", str(out), "--formats", "onnx",
                  "--precisions", "fp32")
    assert res.exit_code == 4
    assert "not a sequence-classification model" in _one_error_line(res.output)
    _nothing_written(out)


def test_a_precision_the_format_does_not_support(cli, tiny_model, out):
    res = _invoke(cli, "--model", str(tiny_model), "--out", str(out), "--formats", "onnx,ort",
                  "--precisions", "fp32,fp16")
    assert res.exit_code == 2
    line = _one_error_line(res.output)
    assert "no requested format supports precision 'fp16' (onnx: fp32," in line
    res = _invoke(cli, "--model", str(tiny_model), "--out", str(out), "--formats", "onnx",
                  "--precisions", "fp32,fp16")
    line = _one_error_line(res.output)
    assert "'onnx' does not support precision 'fp16'" in line
    assert "supported: fp32, int8-dynamic, int8-static" in line
    _nothing_written(out)


def test_a_mistyped_model_is_named_before_the_missing_calibration(cli, tmp_path, out):
    res = _invoke(cli, "--model", str(tmp_path / "no-such-model"), "--out", str(out))
    assert res.exit_code == 4
    line = _one_error_line(res.output)
    assert "no-such-model: model directory does not exist" in line
    _nothing_written(out)


def test_int8_static_without_calibration(cli, tiny_model, out):
    res = _invoke(cli, "--model", str(tiny_model), "--out", str(out), "--formats", "tflite")
    assert res.exit_code == 2
    assert "int8-static needs calibration" in _one_error_line(res.output)
    _nothing_written(out)


def test_calibration_file_missing(cli, tiny_model, tmp_path, out):
    res = _invoke(cli, "--model", str(tiny_model), "--out", str(out), "--formats", "onnx",
                  "--calibration", str(tmp_path / "nope.tsv"))
    assert res.exit_code == 3
    assert "nope.tsv: file does not exist" in _one_error_line(res.output)
    _nothing_written(out)


def test_calibration_file_with_wrong_columns(cli, tiny_model, tmp_path, out):
    bad = tmp_path / "bad.tsv"
    bad.write_text("foo\tbar\nsome text\tx\n")
    res = _invoke(cli, "--model", str(tiny_model), "--out", str(out), "--formats", "onnx",
                  "--calibration", str(bad))
    assert res.exit_code == 3
    assert "cannot tell the text column(s) (columns: foo, bar)" in _one_error_line(res.output)
    assert "hint: the calibration file needs a known layout" in res.output
    _nothing_written(out)


def test_calibration_needs_text_not_the_models_labels(cli, tiny_model, tmp_path, out):
    """Calibration reads text: labels the model does not know only balance the draw (#16)."""
    odd = tmp_path / "labels.tsv"
    odd.write_text("sentence\tlabel\na fine film .\t7\na dull one .\tneutral\n")
    res = _invoke(cli, "--model", str(tiny_model), "--out", str(out), "--formats", "onnx",
                  "--precisions", "fp32", "--calibration", str(odd))
    assert res.exit_code == 0, res.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["extra"]["parity_inputs"]["source"] == str(odd)


def test_seq_len_beyond_the_model_positions(cli, tiny_model, out):
    res = _invoke(cli, "--model", str(tiny_model), "--out", str(out), "--formats", "onnx",
                  "--precisions", "fp32", "--seq-len", "256")
    assert res.exit_code == 2
    assert "256 exceeds the model's max_position_embeddings (128)" in _one_error_line(res.output)
    _nothing_written(out)


def test_existing_output_without_force(cli, tiny_model, out):
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    res = _invoke(cli, "--model", str(tiny_model), "--out", str(out), "--formats", "onnx",
                  "--precisions", "fp32")
    assert res.exit_code == 8
    assert "output directory already exists" in _one_error_line(res.output)
    assert "--force" in res.output
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_non_finite_output_fails_parity_and_writes_nothing(tiny_model, out, monkeypatch):
    """A converter that writes a NaN weight (patched in after TensorFlow's converter) must be
    caught by the parity check, named by format and precision, and leave no artifact."""
    import edge_albert.converters.tflite_convert as tfc
    from edge_albert.converters.convert import ConvertConfig, run_convert

    from edge_albert.modeling import load_classifier

    weight = load_classifier(tiny_model).classifier.weight.detach().numpy().astype(np.float32)
    real = tfc.convert_tflite

    def poisoned(module, precision, **kw):
        data, recipe = real(module, precision, **kw)
        raw = weight.tobytes()
        assert raw in data  # the fp32 classifier weight is stored verbatim
        return data.replace(raw, np.full_like(weight, np.nan).tobytes()), recipe

    monkeypatch.setattr(tfc, "convert_tflite", poisoned)
    with pytest.raises(ConversionError) as err:
        run_convert(ConvertConfig(formats=("tflite",), precisions=("fp32",), parity_examples=32),
                    tiny_model, out, progress=False)
    assert "model.fp32.tflite (tflite fp32) returned non-finite logits" in str(err.value)
    _nothing_written(out)
