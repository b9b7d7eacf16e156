"""``bundle``: rpi and android layouts, stored reference predictions, the CLI, and run_android.sh
end to end against a fake adb that replays recorded tool output."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edge_albert.artifacts import verify
from edge_albert.bundle import BundleConfig, Target, requirements_text, run_bundle
from edge_albert.bundle_android import tensor_proto
from edge_albert.bundle_cli import bundle_command, report_command
from edge_albert.errors import ArtifactError, ConfigError, DataError

SAMPLES = Path(__file__).parent / "data_android"


@pytest.fixture(scope="module")
def cli():
    from edge_albert.cli import cli as group

    for cmd in (bundle_command, report_command):
        group.add_command(cmd)
    return group


@pytest.fixture(scope="module")
def rpi(tmp_path_factory, tiny_artifact, tiny_task) -> Path:
    out = tmp_path_factory.mktemp("b") / "pi"
    run_bundle(BundleConfig(target=Target.RPI), tiny_artifact, tiny_task["dev"], out)
    return out


@pytest.fixture(scope="module")
def android(tmp_path_factory, tiny_artifact, tiny_task) -> Path:
    out = tmp_path_factory.mktemp("b") / "phone"
    run_bundle(BundleConfig(target=Target.ANDROID), tiny_artifact, tiny_task["dev"], out)
    return out


def test_rpi_layout_manifest_and_reference(rpi, tiny_artifact, tiny_task):
    m = verify(rpi, stage="bundle")
    from edge_albert.runtime import model_files

    assert set(model_files(rpi)) == set(model_files(tiny_artifact))
    for name in model_files(rpi):  # convert metadata carried over: the runtime reads seq_len/buckets
        assert m.files[name]["precision"] in ("fp32", "int8-dynamic")
        assert m.files[name]["buckets"] == [16, 32]
    code = {p for p in m.files if p.startswith("edge_albert/")}
    top = {p.split("/")[1] for p in code}
    assert top == {"__init__.py", "errors.py", "artifacts.py", "data.py", "runtime", "apps"}
    assert "edge_albert/apps/validate.py" in code and "edge_albert/runtime/classifier.py" in code
    init = (rpi / "edge_albert" / "__init__.py").read_text()
    assert "import" not in init.split('"""')[-1]  # minimal: no imports at all
    # the eval file byte for byte, identified by its sha256
    assert (rpi / "eval" / "dev.tsv").read_bytes() == tiny_task["dev"].read_bytes()
    ev = m.extra["eval"]
    assert ev["rows"] == 100 and ev["sha256"] == m.files["eval/dev.tsv"]["sha256"]
    ref = json.loads((rpi / "eval" / "reference.json").read_text())
    assert ref["name"] == "model.fp32.onnx" and ref["rows"] == 100 and len(ref["logits"]) == 100
    assert ref["predictions"] == list(np.asarray(ref["logits"]).argmax(-1))
    assert m.extra["reference"]["accuracy"] == ref["accuracy"]
    assert m.inputs and m.inputs[0]["path"] == str(Path(tiny_artifact).resolve())
    run = (rpi / "run.sh").read_text()
    assert os.access(rpi / "run.sh", os.X_OK) and "venv" in run and "--no-venv" in run
    assert subprocess.run(["bash", "-n", str(rpi / "run.sh")], check=False).returncode == 0


def test_requirements_are_the_runtime_only():
    text = requirements_text({"onnx", "tflite"})
    pkgs = {line.split("==")[0].split(">=")[0] for line in text.splitlines()
            if line and not line.startswith("#")}
    assert pkgs == {"numpy", "sentencepiece", "tokenizers", "onnxruntime", "ai-edge-litert"}
    assert "Bookworm" in text and "aarch64" in text and "3.11" in text
    only_tflite = requirements_text({"tflite"}, pin=False)
    assert "onnxruntime" not in only_tflite and "ai-edge-litert>=2.0" in only_tflite


def test_reference_from_a_file_and_bad_references(tmp_path, tiny_artifact, tiny_task):
    logits = np.random.default_rng(0).normal(size=(100, 2)).astype(np.float32)
    np.save(tmp_path / "torch_logits.npy", logits)
    out = tmp_path / "pi"
    m = run_bundle(BundleConfig(reference=str(tmp_path / "torch_logits.npy"), models=("int8-dynamic",)),
                   tiny_artifact, tiny_task["dev"], out)
    ref = json.loads((out / "eval" / "reference.json").read_text())
    assert ref["predictions"] == logits.argmax(-1).tolist()
    assert all(".int8-dynamic." in n for n in m.extra["models"])
    (tmp_path / "short.json").write_text(json.dumps({"predictions": [0, 1]}))
    with pytest.raises(DataError, match="2 reference rows for 100 eval rows"):
        run_bundle(BundleConfig(reference=str(tmp_path / "short.json")), tiny_artifact,
                   tiny_task["dev"], tmp_path / "x")
    with pytest.raises(ConfigError, match="neither"):
        run_bundle(BundleConfig(reference="nope"), tiny_artifact, tiny_task["dev"], tmp_path / "x")
    with pytest.raises(ConfigError, match="int4"):
        run_bundle(BundleConfig(models=("int4",)), tiny_artifact, tiny_task["dev"], tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_bundle_refuses_a_changed_artifact(tmp_path, tiny_artifact, tiny_task):
    conv = tmp_path / "conv"
    shutil.copytree(tiny_artifact, conv)
    with open(conv / "model.fp32.tflite", "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(ArtifactError, match=r"model.fp32.tflite"):
        run_bundle(BundleConfig(), conv, tiny_task["dev"], tmp_path / "pi")


def test_android_layout_and_inputs(android):
    m = verify(android, stage="bundle")
    names = m.extra["models"]
    assert names and all(n.endswith((".tflite", ".ort")) for n in names)
    assert not any(p.startswith("edge_albert/") for p in m.files)
    info = m.extra["android"]
    seq = info["seq_len"]
    assert seq in (16, 32)
    for key in ("input_ids", "attention_mask", "token_type_ids"):
        assert (android / "inputs" / f"{key}.i32.bin").stat().st_size == 4 * seq
        assert (android / "inputs" / f"{key}.i64.bin").stat().st_size == 8 * seq
    ids = np.fromfile(android / "inputs" / "input_ids.i32.bin", dtype="<i4")
    mask = np.fromfile(android / "inputs" / "attention_mask.i32.bin", dtype="<i4")
    n = int(mask.sum())
    assert n == info["tokens"] and mask[:n].all() and not mask[n:].any()
    lines = (android / "inputs" / "eval_tokens.tsv").read_text().splitlines()
    assert len(lines) == 101 and lines[0].startswith("#")
    row = lines[1 + info["row"]].split("\t")
    assert [int(x) for x in row[1].split()] == ids[:n].tolist()
    tfl = next(n for n in names if n.endswith(".tflite"))
    tensors = m.extra["android"]["input_tensors"][tfl]["inputs"]
    assert [t["key"] for t in tensors] == ["input_ids", "attention_mask", "token_type_ids"]
    script = (android / "run_android.sh").read_text()
    assert subprocess.run(["bash", "-n", str(android / "run_android.sh")], check=False).returncode == 0
    assert "bin/benchmark_model" in script and "bin/onnxruntime_perf_test" in script
    assert f"--input_layer_shape=1,{seq}:1,{seq}:1,{seq}" in script
    assert tensors[0]["tensor"].replace(":", "::") in script


def test_tensor_proto_reads_back_and_feeds_the_ort_file(android):
    onnx = pytest.importorskip("onnx")
    from onnx import numpy_helper

    a = np.arange(6, dtype=np.int64).reshape(1, 6)
    t = onnx.TensorProto()
    t.ParseFromString(tensor_proto("input_ids", a))
    assert t.name == "input_ids" and np.array_equal(numpy_helper.to_array(t), a)
    import onnxruntime as ort

    feeds = {}
    for f in sorted((android / "inputs" / "ort" / "test_data_set_0").glob("input_*.pb")):
        t = onnx.TensorProto()
        t.ParseFromString(f.read_bytes())
        feeds[t.name] = numpy_helper.to_array(t)
    ort_file = next(n for n in verify(android).extra["models"] if n.endswith(".ort"))
    sess = ort.InferenceSession(str(android / ort_file), providers=["CPUExecutionProvider"])
    assert set(feeds) == {i.name for i in sess.get_inputs()}
    assert sess.run(None, feeds)[0].shape == (1, 2)


FAKE_ADB = r"""#!/usr/bin/env bash
# adb stand-in: the "phone" is the folder $FAKE_PHONE (mapped onto /data/local/tmp)
set -e
[ "$1" = -s ] && shift 2
map() { echo "${1//\/data\/local\/tmp/$FAKE_PHONE}"; }
case "$1" in
  get-state) echo device ;;
  push) shift; args=("$@"); dst="$(map "${args[-1]}")"; unset 'args[-1]'; cp -r "${args[@]}" "$dst" ;;
  shell) shift; cmd="$(map "$*")"
         if [ "$cmd" = getprop ]; then cat "$FAKE_GETPROP"; else bash -c "$cmd"; fi ;;
  *) echo "fake adb: $1?" >&2; exit 1 ;;
esac
"""


def test_run_android_end_to_end_with_a_fake_adb(android, tmp_path, cli):
    phone = tmp_path / "phone"
    (phone / "data").mkdir(parents=True)
    bundle = tmp_path / "bundle"
    shutil.copytree(android, bundle)
    fakebin = tmp_path / "fakebin"
    fakebin.mkdir()
    (fakebin / "adb").write_text(FAKE_ADB)
    (fakebin / "adb").chmod(0o755)
    getprop = tmp_path / "getprop.txt"
    getprop.write_text("[ro.product.manufacturer]: [Google]\n[ro.product.model]: [Pixel 7]\n"
                       "[ro.build.version.release]: [14]\n[ro.build.version.sdk]: [34]\n"
                       "[ro.product.cpu.abi]: [arm64-v8a]\n[ro.other]: [x]\n")
    # the "tools" replay the recorded samples (after the header the script writes)
    (bundle / "bin").mkdir()
    for tool, sample in (("benchmark_model", "benchmark_model__model.int8-dynamic.tflite.log"),
                         ("onnxruntime_perf_test", "onnxruntime_perf_test__model.int8-dynamic.ort.log")):
        body = "".join(x for x in (SAMPLES / sample).read_text().splitlines(True) if not x.startswith("#"))
        (tmp_path / f"{tool}.out").write_text(body)
        (bundle / "bin" / tool).write_text(f"#!/bin/sh\ncat {tmp_path / f'{tool}.out'}\n")
        (bundle / "bin" / tool).chmod(0o755)
    env = dict(os.environ, PATH=f"{fakebin}:{os.environ['PATH']}", FAKE_PHONE=str(phone),
               FAKE_GETPROP=str(getprop))
    r = subprocess.run(["bash", "run_android.sh", "--threads", "2", "--runs", "10"], cwd=bundle,
                       env=env, capture_output=True, text=True, check=False, timeout=60)
    assert r.returncode == 0, r.stderr
    logs = sorted((bundle / "logs").iterdir())
    names = verify(android).extra["models"]
    assert len(logs) == len(names) + 1
    assert (phone / "edge-albert" / "inputs" / "input_ids.i32.bin").is_file()
    head = (bundle / "logs" / f"benchmark_model__{names[-1]}.log").read_text().splitlines()[0]
    assert "threads=2" in head and f"model={names[-1]}" in head and "eval_sha256=" in head
    # merge into a report of the same eval set
    report = tmp_path / "report"
    report.mkdir()
    ev = verify(android).extra["eval"]
    (report / "report.json").write_text(json.dumps({
        "schema": "edge-albert/report/v1", "eval": {"path": "dev.tsv", "rows": 100, "sha256": ev["sha256"]},
        "artifacts": []}))
    res = CliRunner().invoke(cli, ["report", "--merge-android", *map(str, logs), str(report)])
    assert res.exit_code == 0, res.output
    dev = json.loads((report / "report.json").read_text())["devices"][0]
    assert dev["name"] == "Google Pixel 7" and dev["kind"] == "android"
    assert {a["name"] for a in dev["artifacts"]} == set(names)
    assert "Pixel 7" in (report / "report.md").read_text()


def test_cli_bundle_and_errors(cli, tmp_path, tiny_artifact, tiny_task):
    runner = CliRunner()
    out = tmp_path / "pi"
    res = runner.invoke(cli, ["bundle", "--artifacts", str(tiny_artifact), "--target", "rpi",
                              "--data", str(tiny_task["dev"]), "--out", str(out),
                              "--models", "model.fp32.tflite"])
    assert res.exit_code == 0, res.output
    assert "model.fp32.tflite" in res.output and (out / "run.sh").is_file()
    res = runner.invoke(cli, ["bundle", "--artifacts", str(tiny_artifact), "--target", "rpi",
                              "--data", str(tiny_task["dev"]), "--out", str(out)])
    assert res.exit_code == 8 and "already exists" in res.output
    res = runner.invoke(cli, ["bundle", "--artifacts", str(tmp_path / "none"), "--target", "rpi",
                              "--data", str(tiny_task["dev"]), "--out", str(tmp_path / "y")])
    assert res.exit_code == 8 and "does not exist" in res.output
    bad = tmp_path / "bad.tsv"
    bad.write_text("sentence\tlabel\nfine .\t7\n")
    res = runner.invoke(cli, ["bundle", "--artifacts", str(tiny_artifact), "--target", "android",
                              "--data", str(bad), "--out", str(tmp_path / "z")])
    assert res.exit_code == 3 and "'7'" in res.output
    res = runner.invoke(cli, ["bundle", "--help"])
    assert res.exit_code == 0 and "--reference-predictions" in res.output


def test_standalone_module_entry_point(tmp_path):
    r = subprocess.run([sys.executable, "-m", "edge_albert", "bundle", "--help"],
                       capture_output=True, text=True, check=False, timeout=60)
    assert r.returncode == 0 and "--target [rpi|android]" in r.stdout


def test_run_bundle_takes_its_config_and_refuses_unknown_targets(tmp_path, tiny_artifact,
                                                                 tiny_task):
    from edge_albert.config import from_mapping

    cfg = from_mapping(BundleConfig, {"target": "android"}, section="bundle")
    m = run_bundle(cfg, tiny_artifact, tiny_task["dev"], tmp_path / "phone")
    assert m.extra["target"] == "android" and (tmp_path / "phone" / "run_android.sh").is_file()
    with pytest.raises(ConfigError, match=r"bundle.target: expected one of 'rpi', 'android'"):
        from_mapping(BundleConfig, {"target": "ios"}, section="bundle")
    with pytest.raises(ConfigError, match="writes no bundle"):
        run_bundle(BundleConfig(target=Target.NONE), tiny_artifact, tiny_task["dev"],
                   tmp_path / "x")
