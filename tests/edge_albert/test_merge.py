"""Merging device results and Android tool logs into a report: parsers on recorded samples,
eval-set checks, re-merging, rendering, the ``report`` command."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from edge_albert.android_logs import parse_android_device, parse_benchmark_model, parse_perf_test
from edge_albert.bundle_cli import report_command
from edge_albert.errors import ArtifactError, DataError
from edge_albert.merge import BEGIN, END, merge_android_logs, merge_device_results

SAMPLES = Path(__file__).parent / "data_android"
SHA = "54a9c12c77e402fc14d6a66a506f24d999f596b0176eb777c972cccc2f9cc4b0"  # the samples' eval set


def _row(name: str, p50: float = 1.0) -> dict:
    return {"name": name, "path": name, "format": name.rsplit(".", 1)[1],
            "precision": name.split(".")[1], "size_bytes": 60608, "accuracy": 0.9, "f1": 0.9,
            "agreement": 0.99, "max_abs_logit_diff": 0.01, "mean_abs_logit_diff": 0.001,
            "mean_kl": 1e-5, "latency_ms": {"p50": p50, "p90": p50 * 1.2, "p99": p50 * 2},
            "load_ms": 20.0, "cold_start_ms": 25.0, "peak_rss_mb": 60.0}


@pytest.fixture()
def report(tmp_path) -> Path:
    d = tmp_path / "report"
    d.mkdir()
    (d / "report.json").write_text(json.dumps({
        "schema": "edge-albert/report/v1", "task": "sst2",
        "eval": {"path": "dev.tsv", "rows": 872, "sha256": SHA},
        "reference": {"name": "torch fp32", "accuracy": 0.91},
        "host": {"cpu": "Xeon", "machine": "x86_64", "flags": ["avx512_vnni"], "cores": 2,
                 "threads": 2, "python": "3.11.7", "versions": {}},
        "artifacts": [_row("model.int8-dynamic.tflite", 0.5), _row("model.int8-dynamic.ort", 0.8)]}))
    (d / "report.md").write_text("# Report\n\nhost rows\n")
    (d / "report.html").write_text("<html><body><h1>Report</h1>\n</body></html>\n")
    return d


def _results(tmp_path: Path, sha: str = SHA, name: str = "pi5") -> Path:
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps({
        "schema": "edge-albert/device-results/v1", "created": "2026-11-26T00:00:00+00:00",
        "bundle": {"target": "rpi"}, "eval": {"path": "eval/dev.tsv", "rows": 872, "sha256": sha},
        "reference": {"name": "model.fp32.onnx", "accuracy": 0.91},
        "device": {"name": name, "machine": "aarch64", "cpu": "Cortex-A76", "board": "Raspberry Pi 5",
                   "cores": 4, "threads": 4, "flags": ["asimd", "asimddp"], "python": "3.11.2",
                   "versions": {}, "interpreters": {"tflite": "ai-edge-litert 2.3.0"}},
        "artifacts": [dict(_row("model.int8-dynamic.tflite", 4.0), extra_key=1)],
        "skipped": [{"name": "model.int8-dynamic.ort", "format": "ort", "reason": "no ONNX Runtime",
                     "install": "pip install onnxruntime"}],
        "failed": [], "predictions": {"model.int8-dynamic.tflite": [0, 1]}}))
    return path


def test_benchmark_model_sample():
    p = parse_benchmark_model((SAMPLES / "benchmark_model__model.int8-dynamic.tflite.log").read_text())
    assert p["header"]["model"] == "model.int8-dynamic.tflite" and p["header"]["eval_sha256"] == SHA
    assert p["init_ms"] == pytest.approx(21.734) and p["first_ms"] == pytest.approx(1.023)
    assert p["mean_ms"] == pytest.approx(0.3487) and p["runs"] == 2822  # the timed run, not warmup
    assert p["p50_ms"] == pytest.approx(0.338) and p["p95_ms"] == pytest.approx(0.421)
    assert p["peak_mb"] == pytest.approx(9.33203) and p["memory_overall_mb"] == pytest.approx(4.26953)
    assert p["graph"].endswith("model.int8-dynamic.tflite")


def test_older_benchmark_model_without_percentiles():
    p = parse_benchmark_model((SAMPLES / "benchmark_model__model.fp32.tflite.log").read_text())
    assert p["mean_ms"] == pytest.approx(0.405127) and "p50_ms" not in p and "peak_mb" not in p
    assert p["runs"] == 2455


def test_logcat_prefixes_and_scientific_numbers():
    text = ("07-08 15:34:26.201 I/tflite  ( 5395): count=10 first=2653894 curr=2709263 min=2640862"
            " max=3025403 avg=2.71985e+06 std=105101 p5=2640862 median=2709263 p95=3025403\n"
            "07-08 15:34:26.202 I/tflite  ( 5395): Inference timings in us: Init: 458883, First"
            " inference: 2732148, Warmup (avg): 2.73215e+06, Inference (avg): 2.71985e+06\n")
    p = parse_benchmark_model(text)
    assert p["mean_ms"] == pytest.approx(2719.85) and p["p50_ms"] == pytest.approx(2709.263)


def test_malformed_benchmark_model_log_names_the_line():
    path = SAMPLES / "malformed" / "benchmark_model__model.int8-dynamic.tflite.log"
    with pytest.raises(DataError) as e:
        parse_benchmark_model(path.read_text(), path)
    assert e.value.line == 27 and e.value.where == str(path)
    assert f"{path}:27:" in str(e.value) and "Inference timings" in str(e.value)
    with pytest.raises(DataError, match="malformed statistics line") as e:
        parse_benchmark_model("INFO: count=50 first=1 avg=abc\n", "x.log")
    assert e.value.line == 1
    with pytest.raises(DataError, match="did not finish") as e:
        parse_benchmark_model("INFO: STARTING!\nINFO: Loaded model m.tflite\n", "x.log")
    assert e.value.line == 2
    with pytest.raises(DataError, match="reported an error") as e:
        parse_benchmark_model("STARTING!\nERROR: Didn't find op for builtin opcode 'GELU'\n", "x.log")
    assert e.value.line == 2


def test_perf_test_sample_and_malformed():
    p = parse_perf_test((SAMPLES / "onnxruntime_perf_test__model.int8-dynamic.ort.log").read_text())
    assert p["mean_ms"] == pytest.approx(0.938412) and p["init_ms"] == pytest.approx(41.2766)
    assert p["p50_ms"] == pytest.approx(0.9105) and p["p90_ms"] == pytest.approx(1.0412)
    assert p["p99_ms"] == pytest.approx(1.4032) and p["runs"] == 100
    assert p["peak_mb"] == pytest.approx(38756352 / 2**20)
    with pytest.raises(DataError, match="malformed 'P50 Latency' line") as e:
        parse_perf_test("Average inference time cost: 1 ms\nP50 Latency: fast s\n", "p.log")
    assert e.value.line == 2
    with pytest.raises(DataError, match="did not finish"):
        parse_perf_test("Session creation time cost: 0.04 s\n", "p.log")


def test_device_txt():
    d = parse_android_device((SAMPLES / "device.txt").read_text())
    assert d["name"] == "Google Pixel 7" and d["cores"] == 8 and d["board"] == "GS201"
    assert d["cpu"] == "Cortex-A55 + Cortex-A78 + Cortex-X1"
    assert "asimddp" in d["flags"] and "i8mm" not in d["flags"] and d["os"] == "Android 14 (API 34)"


def test_merge_android_logs(report):
    merged = merge_android_logs(report, [SAMPLES])  # a folder: every file in it (not malformed/)
    (dev,) = merged["devices"]
    assert dev["kind"] == "android" and dev["eval_sha256"] == SHA
    rows = {r["name"]: r for r in dev["artifacts"]}
    assert set(rows) == {"model.int8-dynamic.tflite", "model.fp32.tflite", "model.int8-dynamic.ort"}
    r = rows["model.int8-dynamic.tflite"]
    assert r["precision"] == "int8-dynamic" and r["format"] == "tflite" and r["size_bytes"] == 60608
    assert r["latency_ms"]["p50"] == pytest.approx(0.338) and r["latency_ms"]["p90"] is None
    assert r["load_ms"] == pytest.approx(21.734) and r["cold_start_ms"] == pytest.approx(22.757)
    assert r["accuracy"] is None and r["peak_rss_mb"] == pytest.approx(9.33203)
    o = rows["model.int8-dynamic.ort"]
    assert o["latency_ms"]["p99"] == pytest.approx(1.4032) and o["cold_start_ms"] == pytest.approx(44.2766)
    md = (report / "report.md").read_text()
    assert "Google Pixel 7" in md and "0.3487 (mean)" not in md and "0.4051 (mean)" in md
    # merging the same logs again replaces the entry
    assert len(merge_android_logs(report, [SAMPLES])["devices"]) == 1


def test_android_logs_from_another_eval_set_are_refused(report, tmp_path):
    log = tmp_path / "benchmark_model__model.int8-dynamic.tflite.log"
    log.write_text((SAMPLES / log.name).read_text().replace(SHA, "0" * 64))
    with pytest.raises(DataError, match=r"sha256 0000000000000000... differs"):
        merge_android_logs(report, [log])


def test_merge_device_results(report, tmp_path):
    merged = merge_device_results(report, [_results(tmp_path), _results(tmp_path, name="pi4")])
    assert [d["name"] for d in merged["devices"]] == ["pi5", "pi4"]
    row = merged["devices"][0]["artifacts"][0]
    assert "extra_key" not in row and row["latency_ms"]["p50"] == 4.0
    assert merged["devices"][0]["skipped"][0]["install"] == "pip install onnxruntime"
    assert "predictions" not in merged["devices"][0]
    md = (report / "report.md").read_text()
    assert md.startswith("# Report\n\nhost rows") and md.count(BEGIN) == 1 and md.count(END) == 1
    assert "Raspberry Pi 5" in md and "8.00x" in md  # 4.0 ms on the Pi vs 0.5 ms on the host
    assert "skipped model.int8-dynamic.ort" in md
    html = (report / "report.html").read_text()
    assert html.count(BEGIN) == 1 and html.index(BEGIN) < html.index("</body>") and "pi4" in html
    # re-merge: replaced, not duplicated; the rendered section is replaced in place
    merged = merge_device_results(report, [_results(tmp_path)])
    assert len(merged["devices"]) == 2
    assert (report / "report.md").read_text().count(BEGIN) == 1


def test_device_results_from_another_eval_set_are_refused(report, tmp_path):
    other = _results(tmp_path, sha="f" * 64)
    with pytest.raises(DataError) as e:
        merge_device_results(report, [other])
    assert "sha256 ffffffffffffffff... differs from the report's 54a9c12c77e402fc" in str(e.value)
    assert e.value.where == str(other)
    assert "devices" not in json.loads((report / "report.json").read_text())


def test_bad_report_and_bad_results(tmp_path, report):
    with pytest.raises(ArtifactError, match=r"no report.json"):
        merge_device_results(tmp_path, [_results(tmp_path)])
    (tmp_path / "x.json").write_text("{not json")
    with pytest.raises(DataError, match="not valid JSON"):
        merge_device_results(report, [tmp_path / "x.json"])
    (tmp_path / "y.json").write_text(json.dumps({"schema": "something/else"}))
    with pytest.raises(DataError, match="not a device results file"):
        merge_device_results(report, [tmp_path / "y.json"])
    (tmp_path / "z.log").write_text("hello\n")
    with pytest.raises(DataError, match="neither benchmark_model"):
        merge_android_logs(report, [tmp_path / "z.log"])


def test_report_command(report, tmp_path):
    from edge_albert.cli import cli

    cli.add_command(report_command)
    runner = CliRunner()
    res = runner.invoke(cli, ["report", "--merge", str(_results(tmp_path)), str(report)])
    assert res.exit_code == 0, res.output
    assert "pi5" in res.output
    res = runner.invoke(cli, ["report", "--merge", str(_results(tmp_path, sha="e" * 64, name="o")),
                              str(report)])
    assert res.exit_code == 3 and "sha256" in res.output and "hint:" in res.output
    bad = tmp_path / "logs"
    shutil.copytree(SAMPLES / "malformed", bad)
    res = runner.invoke(cli, ["report", "--merge-android", str(bad), str(report)])
    assert res.exit_code == 3 and ".log:27:" in res.output
    res = runner.invoke(cli, ["report", "--merge", "--merge-android", "a", str(report)])
    assert res.exit_code == 2
    (report / "report.md").write_text("# Report re-rendered by report.py\n")
    res = runner.invoke(cli, ["report", str(report)])
    assert res.exit_code == 0 and BEGIN in (report / "report.md").read_text()


def test_merge_keeps_a_validate_artifact_verifiable(report, tmp_path):
    from edge_albert.artifacts import verify, write_artifact

    out = tmp_path / "validated"
    with write_artifact(out, stage="validate", config={}) as w:
        for name in ("report.json", "report.md", "report.html"):
            shutil.copy2(report / name, w.path / name)
    merge_device_results(out, [_results(tmp_path)])
    m = verify(out, stage="validate")  # hashes re-recorded for the rewritten files
    assert m.extra["devices_merged"][0]["name"] == "pi5"
    assert BEGIN in (out / "report.html").read_text()
