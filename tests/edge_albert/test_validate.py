"""``edge-albert validate``: every file of a converted tiny ALBERT on a labelled eval set, compared
with torch; report contents, cold-start isolation, the accuracy gate and one-line errors.

One conversion (ONNX + TFLite, fp32 + int8-dynamic) and one validation run are shared by the
module; bad-input tests work on copies of that artifact and fail before any long work.
"""
from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edge_albert.artifacts import sha256_file, verify
from edge_albert.errors import RuntimeBackendError, TokenizerError
from edge_albert.validate import ValidateConfig, cold_start, run_validate
from edge_albert.validate_cli import validate_command

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")
pytest.importorskip("ai_edge_litert")

FAST = ValidateConfig(latency_runs=3, warmup=1)
FILES = ["model.fp32.onnx", "model.fp32.tflite", "model.int8-dynamic.onnx",
         "model.int8-dynamic.tflite"]


@pytest.fixture(scope="module")
def conv(tmp_path_factory, tiny_model, tiny_task) -> Path:
    from edge_albert.converters.convert import ConvertConfig, run_convert

    out = tmp_path_factory.mktemp("validate") / "conv"
    cfg = ConvertConfig(formats=("onnx", "tflite"), precisions=("fp32", "int8-dynamic"),
                        parity_examples=32, threads=1)
    run_convert(cfg, tiny_model, out, calibration=tiny_task["train"], progress=False)
    return out


@pytest.fixture(scope="module")
def validated(conv, tiny_task, tmp_path_factory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("validate") / "report"
    from edge_albert.report import read_report

    m = run_validate(FAST, [conv], tiny_task["dev"], None, out, progress=False)
    assert m.stage == "validate" and "report.json" in m.files
    return read_report(out), out


@pytest.fixture(scope="module")
def group():
    from edge_albert.cli import cli

    if "validate" not in cli.commands:
        cli.add_command(validate_command)
    return cli


def invoke(group, *args):
    return CliRunner().invoke(group, [str(a) for a in args])


def one_error(result) -> str:
    """The single ``error:`` line of a failed command (asserting there is exactly one)."""
    assert result.exit_code not in (0, None) and "Traceback" not in result.output, result.output
    lines = [x for x in result.output.splitlines() if x.startswith("error:")]
    assert len(lines) == 1, result.output
    return lines[0]


def copy_artifact(conv: Path, dst: Path) -> Path:
    shutil.copytree(conv, dst)
    return dst


def restamp(directory: Path, *names: str) -> None:
    """Record changed files' size and hash in the manifest (a file that is broken, not tampered)."""
    mpath = directory / "manifest.json"
    m = json.loads(mpath.read_text())
    for n in names:
        m["files"][n].update(size_bytes=(directory / n).stat().st_size,
                             sha256=sha256_file(directory / n))
    mpath.write_text(json.dumps(m, indent=2))


# ----------------------------------------------------------------------------- the report
def test_report_json_schema_and_eval_identity(validated, conv, tiny_model, tiny_task):
    report, out = validated
    assert json.loads((out / "report.json").read_text()) == report
    assert verify(out, stage="validate").files.keys() >= {"report.json", "report.md",
                                                          "report.html"}
    assert report["schema"] == "edge-albert/report/v1"
    assert report["eval"] == {**report["eval"], "path": str(tiny_task["dev"]), "rows": 100,
                              "sha256": sha256_file(tiny_task["dev"])}
    assert sum(report["eval"]["bucket_rows"].values()) == 100
    assert report["reference"]["kind"] == "torch"  # the model the artifact was converted from
    assert report["reference"]["path"] == str(tiny_model)
    host = report["host"]
    assert host["threads"] == 1 and host["cores"] >= 1 and host["python"]
    assert "onnxruntime" in host["libraries"] and isinstance(host["flags"], list)
    assert [a["name"] for a in report["artifacts"]] == FILES
    for a in report["artifacts"]:
        assert a["size_bytes"] == (conv / a["name"]).stat().st_size
        assert a["format"] == a["name"].rsplit(".", 1)[1]
        assert a["precision"] == a["name"].split(".")[1]
        for key in ("accuracy", "f1", "agreement", "max_abs_logit_diff", "mean_abs_logit_diff",
                    "mean_kl", "load_ms", "cold_start_ms", "peak_rss_mb"):
            assert isinstance(a[key], float), key


def test_reference_metrics_match_an_independent_torch_run(validated, tiny_model, tiny_task):
    import torch
    from transformers import AutoTokenizer

    from edge_albert.data import read_dataset
    from edge_albert.modeling import load_classifier

    ds = read_dataset(tiny_task["dev"])
    tok = AutoTokenizer.from_pretrained(tiny_model)
    model = load_classifier(tiny_model)
    with torch.no_grad():
        enc = tok(list(ds.texts), padding=True, truncation=True, max_length=128,
                  return_tensors="pt")
        pred = model(**enc).logits.argmax(-1).numpy()
    gold = np.array([int(x) for x in ds.labels])
    report = validated[0]
    assert report["reference"]["accuracy"] == pytest.approx(float(np.mean(pred == gold)))
    tp = np.sum((pred == 1) & (gold == 1))
    f1 = 2 * tp / (np.sum(pred == 1) + np.sum(gold == 1)) if tp else 0.0
    assert report["reference"]["f1"] == pytest.approx(float(f1))


def test_fp32_files_agree_with_torch_and_int8_files_differ(validated):
    report = validated[0]
    by = {a["name"]: a for a in report["artifacts"]}
    for name in ("model.fp32.onnx", "model.fp32.tflite"):
        a = by[name]
        assert a["agreement"] == 1.0 and a["accuracy"] == report["reference"]["accuracy"]
        assert a["max_abs_logit_diff"] < 1e-4 and a["mean_kl"] < 1e-8
        assert a["accuracy_drop_pts"] == 0.0
    for name in ("model.int8-dynamic.onnx", "model.int8-dynamic.tflite"):
        # really quantized: the logits move, by far more than the fp32 files' rounding
        assert by[name]["max_abs_logit_diff"] > 10 * by["model.fp32.onnx"]["max_abs_logit_diff"]
        assert by[name]["int8_ops"] > 0
    assert report["gate"] == {"max_drop_pts": 1.0, "failed": []}


def test_latency_per_bucket_cold_start_and_isolated_memory(validated):
    from edge_albert.runtime.timing import current_rss_mb

    for a in validated[0]["artifacts"]:
        assert set(a["latency_by_bucket"]) == {"batch_1", "batch_8"}
        for cells in a["latency_by_bucket"].values():
            assert set(cells) == {"32", "64", "128"}
            for c in cells.values():
                assert 0 < c["p50"] <= c["p90"] <= c["p99"] and c["runs"] == 3
        lat = a["latency_ms"]
        assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"] and len(a["latency_samples_ms"]) == 3
        b8 = a["latency_by_bucket"]["batch_8"]
        assert b8["128"]["p50"] > a["latency_by_bucket"]["batch_1"]["32"]["p50"]
        assert 0 < a["load_ms"] < a["cold_start_ms"]
        # measured in a fresh process, not this one (which holds torch and tensorflow)
        assert a["rss_before_load_mb"] < a["peak_rss_mb"] < current_rss_mb()


def test_markdown_and_html(validated):
    out = validated[1]
    md = (out / "report.md").read_text()
    rows = [x for x in md.splitlines() if x.startswith("| model.")]
    assert len(rows) == 2 * len(FILES)  # the main table and the per-bucket table
    assert "| model.fp32.onnx | onnx | fp32 |" in md and "100.00" in md
    html = (out / "report.html").read_text()
    assert html.count('src="data:image/png;base64,') == 3
    assert "http://" not in html and "https://" not in html and "<script" not in html
    assert "accuracy gate passed" in html


def test_cold_start_worker_imports_only_the_runtime(conv):
    res = cold_start(conv, "model.fp32.onnx", threads=1, first=["a fine film ."],
                     batch=["a fine film ."] * 2)
    assert res["heavy_modules"] == []
    assert res["cold_start_ms"] == pytest.approx(res["load_ms"] + res["first_inference_ms"],
                                                 abs=0.01)


# ----------------------------------------------------------------------------- the gate
def test_gate_fails_after_writing_the_report(group, conv, tiny_task, tmp_path, monkeypatch):
    """A reference that is right on every row: every file drops ~50 points and fails."""
    from edge_albert import validate
    from edge_albert.data import read_dataset

    real = validate.reference_logits
    gold = np.array([int(x) for x in read_dataset(tiny_task["dev"]).labels])

    def perfect(ref, items, **kw):
        assert ref.kind == "file" and ref.path == conv / "model.fp32.onnx"
        assert real(ref, items, **kw).shape == (100, 2)
        return np.eye(2, dtype=np.float32)[gold] * 4

    monkeypatch.setattr(validate, "reference_logits", perfect)
    out = tmp_path / "rep"
    r = invoke(group, "validate", "--artifacts", conv, "--data", tiny_task["dev"], "--reference",
               conv / "model.fp32.onnx", "--max-drop", "0.5", "--latency-runs", "2",
               "--warmup", "0", "--quiet", "--out", out)
    line = one_error(r)
    assert r.exit_code == 6
    assert line.startswith("error: accuracy gate: 4 file(s) more than 0.5 points below the"
                           " reference model.fp32.onnx (100.00 %): model.fp32.onnx in ")
    assert all(f in line for f in FILES) and "(-" in line
    report = json.loads((out / "report.json").read_text())
    assert report["reference"]["accuracy"] == 1.0 and report["gate"]["failed"] == FILES
    assert "accuracy gate FAILED" in (out / "report.html").read_text()


# ----------------------------------------------------------------------------- bad input
def test_help_has_a_worked_example(group):
    r = invoke(group, "validate", "--help")
    assert r.exit_code == 0 and "Example" in r.output
    assert "edge-albert validate --artifacts" in r.output


def test_eval_labels_the_model_does_not_know(group, conv, tmp_path):
    data = tmp_path / "eval.tsv"
    data.write_text("sentence\tlabel\na fine film .\t1\na dull one .\tneutral\nmeh .\t2\n")
    r = invoke(group, "validate", "--artifacts", conv, "--data", data, "--out", tmp_path / "o")
    line = one_error(r)
    assert r.exit_code == 3 and str(data) in line
    assert "'2', 'neutral'" in line and "['0', '1']" in line
    assert not (tmp_path / "o").exists()


def test_empty_eval_set(group, conv, tmp_path):
    data = tmp_path / "empty.tsv"
    data.write_text("sentence\tlabel\n")
    r = invoke(group, "validate", "--artifacts", conv, "--data", data, "--out", tmp_path / "o")
    assert r.exit_code == 3 and f"{data}: header only" in one_error(r)
    assert not (tmp_path / "o").exists()


def test_zero_threads(group, conv, tiny_task, tmp_path):
    r = invoke(group, "validate", "--artifacts", conv, "--data", tiny_task["dev"], "--threads", "0",
               "--out", tmp_path / "o")
    assert r.exit_code == 2 and "validate.threads: must be >= 1, got 0" in one_error(r)


def test_existing_output_without_force(group, conv, tiny_task, tmp_path):
    (tmp_path / "o").mkdir()
    r = invoke(group, "validate", "--artifacts", conv, "--data", tiny_task["dev"],
               "--out", tmp_path / "o")
    assert r.exit_code == 8 and "output directory already exists" in one_error(r)


def test_model_file_whose_hash_mismatches(group, conv, tiny_task, tmp_path):
    bad = copy_artifact(conv, tmp_path / "bad")
    f = bad / "model.int8-dynamic.onnx"
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0xFF
    f.write_bytes(bytes(data))
    r = invoke(group, "validate", "--artifacts", bad, "--data", tiny_task["dev"],
               "--out", tmp_path / "o")
    line = one_error(r)
    assert r.exit_code == 8 and f"{f}: sha256" in line and "does not match the manifest" in line
    assert not (tmp_path / "o").exists()


def test_truncated_tflite_is_a_one_line_error(conv, tiny_task, tmp_path):
    """Run the whole CLI in a subprocess: whatever the interpreter does, pytest survives."""
    bad = copy_artifact(conv, tmp_path / "bad")
    f = bad / "model.fp32.tflite"
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 3])
    restamp(bad, f.name)
    code = ("import sys\nfrom edge_albert.cli import cli\n"
            "from edge_albert.validate_cli import validate_command\n"
            "cli.add_command(validate_command)\ncli(sys.argv[1:], prog_name='edge-albert')\n")
    argv = ["validate", "--artifacts", str(bad), "--data", str(tiny_task["dev"]), "--reference",
            str(bad / "model.fp32.onnx"), "--quiet", "--out", str(tmp_path / "o")]
    p = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True,
                       check=False, timeout=300)
    lines = [x for x in p.stderr.splitlines() if x.startswith("error:")]
    assert p.returncode == 7 and "Traceback" not in p.stderr, p.stderr
    assert len(lines) == 1 and lines[0].startswith(f"error: {f}: "), p.stderr
    assert not (tmp_path / "o").exists()


def test_corrupt_onnx_load_fails_in_the_worker(conv, tmp_path):
    bad = copy_artifact(conv, tmp_path / "bad")
    f = bad / "model.int8-dynamic.onnx"
    f.write_bytes(b"\x08\x07garbage, not a protobuf" * 50)
    restamp(bad, f.name)
    with pytest.raises(RuntimeBackendError) as info:
        cold_start(bad, f.name, threads=1, first=["x"], batch=["x"])
    msg = str(info.value)
    assert msg.startswith(f"{f}: ") and "\n" not in msg and "onnxruntime" in msg


def _random_sentences(n: int, seed: int = 3) -> list[str]:
    rng = random.Random(seed)
    words = ["".join(rng.choice("abcdefghiklmnoprstuvy") for _ in range(rng.randint(2, 7)))
             for _ in range(1500)]
    return [" ".join(rng.choice(words) for _ in range(12)) for _ in range(n)]


def test_tokenizer_larger_than_the_model_vocabulary(conv, tiny_model, tiny_task, tmp_path):
    from edge_albert.config import TokenizerConfig
    from edge_albert.tokenizer_train import train_tokenizer

    big = tmp_path / "bigtok"
    train_tokenizer(TokenizerConfig(vocab_size=300), _random_sentences(800), big)
    bad = copy_artifact(conv, tmp_path / "bad")
    swapped = [n for n in ("spiece.model", "tokenizer.json", "tokenizer_config.json")
               if (big / n).is_file()]
    for n in swapped:
        shutil.copyfile(big / n, bad / n)
    restamp(bad, *swapped)
    with pytest.raises(TokenizerError) as info:
        run_validate(FAST, [bad], tiny_task["dev"], tiny_model, tmp_path / "o", progress=False)
    msg = str(info.value)
    rows = json.loads((tiny_model / "config.json").read_text())["vocab_size"]
    assert rows < 300
    assert msg.startswith(f"{bad}: tokenizer can emit token ids up to 299")
    assert f"embedding table has {rows} rows" in msg and "\n" not in msg
    assert not (tmp_path / "o").exists()


def test_interpreter_crash_in_the_worker_is_a_one_line_error(conv, monkeypatch):
    from edge_albert.runtime import worker

    def segfault(cmd, **kw):
        return subprocess.CompletedProcess(cmd, -11, "", "")

    monkeypatch.setattr(worker.subprocess, "run", segfault)
    with pytest.raises(RuntimeBackendError) as info:
        cold_start(conv, "model.fp32.tflite", threads=1, first=["x"], batch=["x"])
    assert str(info.value) == (f"{conv / 'model.fp32.tflite'}: the interpreter crashed (SIGSEGV)"
                               " loading or running this file (corrupt or truncated?)")


@pytest.mark.parametrize("kw, key", [({"threads": 0}, "validate.threads"),
                                     ({"max_drop": -1.0}, "validate.max_drop"),
                                     ({"max_drop": float("nan")}, "validate.max_drop"),
                                     ({"batch_sizes": (1, 0)}, "validate.batch_sizes"),
                                     ({"latency_runs": 0}, "validate.latency_runs")])
def test_config_refuses_bad_values(kw, key):
    from edge_albert.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        ValidateConfig(**kw)
    assert info.value.key == key
