"""The device apps on a bundle: validator (run.sh), bad bundles, missing interpreters, import rule,
the interactive demo and the embedding example."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from edge_albert.apps.bundle_layout import RESULTS_SCHEMA

from edge_albert.merge import merge_device_results

ROW_KEYS = {"name", "path", "format", "precision", "size_bytes", "accuracy", "f1", "agreement",
            "max_abs_logit_diff", "mean_abs_logit_diff", "mean_kl", "latency_ms", "load_ms",
            "cold_start_ms", "peak_rss_mb"}

BLOCKER = textwrap.dedent("""
    # sitecustomize for tests: imports named in EDGE_ALBERT_TEST_BLOCK fail, in this process and in
    # every child process (the validator's workers inherit PYTHONPATH); attempts are logged.
    import os, sys
    _BLOCK = tuple(x for x in os.environ.get("EDGE_ALBERT_TEST_BLOCK", "").split(",") if x)
    _LOG = os.environ.get("EDGE_ALBERT_TEST_BLOCK_LOG")

    class _Blocker:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in _BLOCK:
                if _LOG:
                    with open(_LOG, "a") as fh:
                        fh.write(name + "\\n")
                raise ImportError(f"{name} is blocked: this device has no {name}")
            return None

    if _BLOCK:
        sys.meta_path.insert(0, _Blocker())
""")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, tiny_artifact, tiny_task) -> Path:
    from edge_albert.bundle import BundleConfig, Target, run_bundle

    out = tmp_path_factory.mktemp("bundle") / "pi"
    run_bundle(BundleConfig(target=Target.RPI), tiny_artifact, tiny_task["dev"], out)
    return out


@pytest.fixture()
def bundle_copy(bundle, tmp_path) -> Path:
    dest = tmp_path / "pi"
    shutil.copytree(bundle, dest)
    return dest


def _env(tmp_path: Path, block: str = "") -> dict[str, str]:
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(BLOCKER)
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGE_ALBERT_")}
    env.update(PYTHONPATH=str(site), EDGE_ALBERT_TEST_BLOCK=block, OMP_NUM_THREADS="1",
               EDGE_ALBERT_TEST_BLOCK_LOG=str(tmp_path / "blocked.log"), PYTHON=sys.executable,
               TF_CPP_MIN_LOG_LEVEL="2")
    return env


def _validate(bundle_dir: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edge_albert.apps.validate", ".", "--quiet", *args],
                          cwd=bundle_dir, env=env, capture_output=True, text=True, check=False, timeout=240)


def _report(directory: Path, results: dict) -> Path:
    """A report.json of schema v1 as `edge-albert validate` writes it (host rows = these rows)."""
    directory.mkdir(parents=True, exist_ok=True)
    host_rows = [dict(r, latency_ms={"p50": 1.0, "p90": 1.5, "p99": 2.0}) for r in results["artifacts"]]
    (directory / "report.json").write_text(json.dumps({
        "schema": "edge-albert/report/v1", "task": "tiny", "eval": dict(results["eval"]),
        "reference": {"name": "torch fp32", "accuracy": results["reference"]["accuracy"]},
        "host": {"cpu": "x86", "machine": "x86_64", "flags": [], "cores": 2, "threads": 1,
                 "python": "3.11", "versions": {}},
        "artifacts": host_rows}))
    (directory / "report.md").write_text("# edge-albert report\n\n| host table |\n")
    return directory


def test_run_sh_writes_device_results_that_merge_beside_the_host(bundle_copy, tmp_path):
    env = _env(tmp_path)
    r = subprocess.run(["bash", "run.sh", "--no-venv", "--threads", "1", "--save-logits"],
                       cwd=bundle_copy, env=env, capture_output=True, text=True, check=False, timeout=240)
    assert r.returncode == 0, r.stderr
    res = json.loads((bundle_copy / "device_results.json").read_text())
    assert res["schema"] == RESULTS_SCHEMA
    assert res["eval"]["rows"] == 100 and len(res["eval"]["sha256"]) == 64
    names = {row["name"] for row in res["artifacts"]}
    assert names == {f"model.{p}.{f}" for p in ("fp32", "int8-dynamic") for f in ("onnx", "ort", "tflite")}
    for row in res["artifacts"]:
        assert set(row) == ROW_KEYS
        assert set(row["latency_ms"]) == {"p50", "p90", "p99"}
        assert row["latency_ms"]["p50"] <= row["latency_ms"]["p99"]
        assert row["agreement"] >= 0.95 and 0 <= row["accuracy"] <= 1
        assert row["load_ms"] > 0 and row["cold_start_ms"] >= row["load_ms"] and row["peak_rss_mb"] > 10
        if row["precision"] == "fp32":
            assert row["agreement"] == 1.0 and row["max_abs_logit_diff"] < 1e-4
    dev = res["device"]
    assert {"machine", "cpu", "cores", "flags", "python", "versions", "interpreters"} <= set(dev)
    assert res["skipped"] == [] and res["failed"] == []
    assert (bundle_copy / "device_results.logits.npz").is_file()
    # merge: report.json gains devices; report.md shows the device beside the host's figures
    rep = _report(tmp_path / "report", res)
    merged = merge_device_results(rep, [bundle_copy / "device_results.json"])
    assert len(merged["devices"]) == 1 and len(merged["devices"][0]["artifacts"]) == 6
    md = (rep / "report.md").read_text()
    assert "| host table |" in md and "## On-device results" in md
    assert "host p50 ms" in md and "model.int8-dynamic.tflite" in md


def test_tampered_bundle_file_is_refused_by_name(bundle_copy, tmp_path):
    target = bundle_copy / "model.int8-dynamic.tflite"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))
    r = _validate(bundle_copy, _env(tmp_path))
    assert r.returncode == 8, r.stderr
    assert "model.int8-dynamic.tflite" in r.stderr and "sha256" in r.stderr
    assert not (bundle_copy / "device_results.json").exists()


def test_tampered_code_is_refused(bundle_copy, tmp_path):
    code = bundle_copy / "edge_albert" / "runtime" / "metrics.py"
    code.write_text(code.read_text() + "\n# changed\n")
    r = _validate(bundle_copy, _env(tmp_path))
    assert r.returncode == 8 and "edge_albert/runtime/metrics.py" in r.stderr


def test_missing_interpreter_skips_its_files_and_names_the_package(bundle_copy, tmp_path):
    r = _validate(bundle_copy, _env(tmp_path, block="onnxruntime"))
    assert r.returncode == 0, r.stderr
    res = json.loads((bundle_copy / "device_results.json").read_text())
    assert {row["format"] for row in res["artifacts"]} == {"tflite"}
    skipped = {s["name"]: s for s in res["skipped"]}
    assert set(skipped) == {"model.fp32.onnx", "model.fp32.ort", "model.int8-dynamic.onnx",
                            "model.int8-dynamic.ort"}
    assert all("pip install onnxruntime" in s["install"] for s in skipped.values())


def test_no_interpreter_at_all_exits_non_zero_naming_the_extras(bundle_copy, tmp_path):
    r = _validate(bundle_copy, _env(tmp_path, block="onnxruntime,ai_edge_litert,tflite_runtime,tensorflow"))
    assert r.returncode == 7, r.stderr
    assert "nothing ran" in r.stderr
    assert "pip install onnxruntime" in r.stderr and "pip install ai-edge-litert" in r.stderr
    res = json.loads((bundle_copy / "device_results.json").read_text())
    assert res["artifacts"] == [] and len(res["skipped"]) == 6


def test_apps_import_nothing_but_the_runtime(bundle_copy, tmp_path):
    """torch, tensorflow and transformers cannot be imported: the validator (and its worker
    processes) and the demo still run, and never even try to import them."""
    env = _env(tmp_path, block="torch,tensorflow,transformers,onnx,click")
    r = _validate(bundle_copy, env, "--models", "model.int8-dynamic.tflite,model.int8-dynamic.onnx")
    assert r.returncode == 0, r.stderr
    res = json.loads((bundle_copy / "device_results.json").read_text())
    assert len(res["artifacts"]) == 2
    r = subprocess.run([sys.executable, "-m", "edge_albert.apps.demo", ".", "--text", "charming ."],
                       cwd=bundle_copy, env=env, capture_output=True, text=True, check=False, timeout=120)
    assert r.returncode == 0, r.stderr
    log = tmp_path / "blocked.log"
    assert not log.exists(), f"tried to import: {log.read_text()}"


def test_bundle_code_is_what_runs(bundle_copy, tmp_path):
    code = "import edge_albert, edge_albert.apps.validate as v; print(edge_albert.__file__); print(v.__file__)"
    r = subprocess.run([sys.executable, "-c", code], cwd=bundle_copy, env=_env(tmp_path),
                       capture_output=True, text=True, check=False, timeout=60)
    assert r.returncode == 0, r.stderr
    assert all(line.startswith(str(bundle_copy)) for line in r.stdout.split())


def test_in_process_validation_and_model_choice(bundle_copy, tmp_path):
    from edge_albert.apps.validate import validate_bundle

    out = tmp_path / "res.json"
    res = validate_bundle(bundle_copy, out=out, models=["model.fp32.tflite"], isolate=False,
                          batch_size=4, latency_runs=5, warmup=1)
    assert out.is_file() and [r["name"] for r in res["artifacts"]] == ["model.fp32.tflite"]
    assert res["predictions"]["model.fp32.tflite"] and res["settings"]["batch_size"] == 4
    from edge_albert.errors import RuntimeBackendError

    with pytest.raises(RuntimeBackendError, match="no model file"):
        validate_bundle(bundle_copy, out=out, models=["model.int4.tflite"], isolate=False)


def test_device_facts_parse_cpuinfo_and_auxv():
    from edge_albert.apps.device import parse_cpuinfo

    pi5 = ("processor\t: 0\nFeatures\t: fp asimd evtstrm aes pmull crc32 atomics fphp asimdhp"
           " cpuid asimdrdm lrcpc dcpop asimddp\nCPU implementer\t: 0x41\nCPU part\t: 0xd0b\n\n"
           "Model\t\t: Raspberry Pi 5 Model B Rev 1.0\n")
    info = parse_cpuinfo(pi5)
    assert info["cpu"] == "Cortex-A76" and info["board"].startswith("Raspberry Pi 5")
    assert "asimddp" in info["flags"] and "i8mm" not in info["flags"]
    x86 = "model name\t: Intel Xeon\nmodel\t\t: 167\nflags\t\t: sse avx2 avx512_vnni\n"
    info = parse_cpuinfo(x86)
    assert info["cpu"] == "Intel Xeon" and info["board"] == "" and "avx512_vnni" in info["flags"]


def test_auxv_flags(tmp_path):
    import struct

    from edge_albert.apps.device import auxv_flags

    raw = struct.pack("<QQQQQQ", 16, (1 << 1) | (1 << 20), 26, 1 << 13, 0, 0)
    (tmp_path / "auxv").write_bytes(raw)
    assert auxv_flags(str(tmp_path / "auxv")) == {"asimd", "asimddp", "i8mm"}
    assert auxv_flags(str(tmp_path / "missing")) is None


def test_demo_reads_stdin_lines(bundle, tmp_path):
    env = _env(tmp_path)
    stdin = "the film is charming .\n\nthe plot drags .\n:q\nnever read\n"
    r = subprocess.run([sys.executable, "-m", "edge_albert.apps.demo", str(bundle), "--json",
                        "--models", "model.int8-dynamic.tflite,model.fp32.onnx"],
                       input=stdin, env=env, capture_output=True, text=True, check=False, timeout=120)
    assert r.returncode == 0, r.stderr
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    assert [x["text"] for x in lines] == ["the film is charming .", "the plot drags ."]
    for x in lines:
        assert [m["model"] for m in x["results"]] == ["model.int8-dynamic.tflite", "model.fp32.onnx"]
        for m in x["results"]:
            assert m["label"] in ("0", "1") and abs(sum(m["probs"].values()) - 1) < 1e-3
            assert m["latency_ms"] > 0
    r = subprocess.run([sys.executable, "-m", "edge_albert.apps.demo",
                        str(bundle / "model.fp32.tflite"), "--text", "a\tpair of texts"],
                       env=env, capture_output=True, text=True, check=False, timeout=120)
    assert r.returncode == 0 and "model.fp32.tflite" in r.stdout and " ms" in r.stdout
    r = subprocess.run([sys.executable, "-m", "edge_albert.apps.demo", str(bundle), "--models",
                        "model.int4.tflite", "--text", "x"], env=env, capture_output=True, text=True, check=False,
                       timeout=120)
    assert r.returncode == 7 and "model.int4.tflite" in r.stderr


def test_embed_example_runs_on_a_bundle_and_a_file(bundle, tmp_path):
    env = _env(tmp_path)
    for target in (str(bundle), str(bundle / "model.fp32.onnx")):
        r = subprocess.run([sys.executable, "-m", "edge_albert.apps.embed_example", target],
                           env=env, capture_output=True, text=True, check=False, timeout=120)
        assert r.returncode == 0, r.stderr
        assert "labels ['0', '1']" in r.stdout
