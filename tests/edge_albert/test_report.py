"""The report: host facts from /proc/cpuinfo, the accuracy gate, markdown, self-contained HTML and
atomic writing, on a hand-made report (no models run here)."""
from __future__ import annotations

import base64
import json
import re

import pytest

from edge_albert.errors import AccuracyGateError, ArtifactError
from edge_albert.report import (
    SCHEMA,
    check_gate,
    cpu_flags,
    cpu_name,
    host_info,
    render_html,
    render_markdown,
    write_report,
)

X86 = """processor\t: 0
model name\t: Intel(R) Xeon(R) Platinum 8480C
flags\t\t: fpu sse4_2 avx avx2 fma avx512f avx512_vnni amx_int8 avx512_bf16
processor\t: 1
model name\t: Intel(R) Xeon(R) Platinum 8480C
flags\t\t: fpu sse4_2 avx avx2 fma avx512f avx512_vnni amx_int8 avx512_bf16
"""
PI4 = """processor\t: 0
BogoMIPS\t: 108.00
Features\t: fp asimd evtstrm crc32 cpuid
CPU part\t: 0xd08
Model\t\t: Raspberry Pi 4 Model B Rev 1.4
"""
PI5 = """processor\t: 0
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm \
lrcpc dcpop asimddp
CPU part\t: 0xd0b
Model\t\t: Raspberry Pi 5 Model B Rev 1.0
"""


def make_report(accuracies: dict[str, float], *, ref: float = 0.9, max_drop: float = 1.0) -> dict:
    """A complete report with one file per (name, accuracy)."""
    arts = []
    for i, (name, acc) in enumerate(accuracies.items()):
        fmt = name.rsplit(".", 1)[1]
        arts.append({
            "name": name, "artifact": "/a/conv", "path": f"/a/conv/{name}", "format": fmt,
            "precision": name.split(".")[1],
            "backend": "tflite" if fmt == "tflite" else "onnxruntime",
            "size_bytes": 50_000 * (i + 1), "accuracy": acc, "f1": acc, "agreement": 0.99,
            "max_abs_logit_diff": 0.01, "mean_abs_logit_diff": 0.001, "mean_kl": 1e-5,
            "accuracy_drop_pts": round((ref - acc) * 100, 4),
            "latency_ms": {"p50": 1.0 + i, "p90": 1.5 + i, "p99": 2.0 + i, "mean": 1.2, "runs": 5},
            "latency_samples_ms": [1.0 + i, 1.1 + i, 0.9 + i, 1.6 + i, 2.0 + i],
            "latency_by_bucket": {f"batch_{b}": {str(s): {"p50": b * s / 32, "p90": 1, "p99": 1,
                                                          "mean": 1, "runs": 5}
                                                 for s in (32, 64, 128)} for b in (1, 8)},
            "load_ms": 10.0, "cold_start_ms": 12.5, "peak_rss_mb": 60.0})
    return {
        "schema": SCHEMA, "created": "2026-01-01T00:00:00+0000",
        "task": {"name": "sst2", "kind": "single", "labels": ["0", "1"], "f1": "F1 of label '1'"},
        "eval": {"path": "dev.tsv", "rows": 872, "sha256": "ab" * 32, "bucket_rows": {"32": 872}},
        "reference": {"name": "student (torch)", "kind": "torch", "accuracy": ref, "f1": ref},
        "host": host_info(2, cpuinfo=X86),
        "measurement": {"latency_ms": "batch 1", "latency_by_bucket": "per bucket",
                        "cold_start_ms": "fresh process"},
        "gate": {"max_drop_pts": max_drop,
                 "failed": [a["name"] for a in arts if a["accuracy_drop_pts"] > max_drop]},
        "artifacts": arts,
    }


def test_cpu_flags_and_names_on_x86_and_raspberry_pis():
    assert cpu_flags(X86) == ["sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_vnni",
                              "avx512_bf16", "amx_int8"]
    assert cpu_name(X86) == "Intel(R) Xeon(R) Platinum 8480C"
    assert cpu_flags(PI4) == ["asimd"] and not host_info(4, cpuinfo=PI4)["int8_dot_product"]
    assert cpu_name(PI4) == "Raspberry Pi 4 Model B Rev 1.4"
    assert cpu_flags(PI5) == ["asimd", "asimdhp", "asimddp"]
    assert host_info(4, cpuinfo=PI5)["int8_dot_product"] is True


def test_host_info_of_this_machine():
    h = host_info(3)
    assert h["threads"] == 3 and h["cores"] >= 1 and h["python"].count(".") == 2
    assert h["machine"] and h["cpu"] and "numpy" in h["libraries"]


def test_gate_names_every_file_over_budget_with_numbers():
    r = make_report({"model.fp32.onnx": 0.9, "model.int8-static.tflite": 0.85,
                     "model.int8-dynamic.onnx": 0.891, "model.int8-static.onnx": 0.70})
    with pytest.raises(AccuracyGateError) as info:
        check_gate(r, out_dir="rep")
    msg = info.value.one_line()
    assert msg.startswith("accuracy gate: 2 file(s) more than 1 points below the reference"
                          " student (torch) (90.00 %): ")
    assert "model.int8-static.tflite in /a/conv: 85.00 % (-5.00 points)" in msg
    assert "model.int8-static.onnx in /a/conv: 70.00 % (-20.00 points)" in msg
    assert "fp32" not in msg and "int8-dynamic" not in msg and "\n" not in msg
    assert "rep/report.md" in info.value.hint and info.value.exit_code == 6


def test_gate_passes_within_budget_and_at_the_boundary():
    check_gate(make_report({"model.fp32.onnx": 0.9, "model.int8-dynamic.onnx": 0.89}))
    check_gate(make_report({"model.fp32.onnx": 0.95}))  # better than the reference


def test_markdown_table_pastes_into_an_issue():
    r = make_report({"model.fp32.onnx": 0.9, "model.int8-static.tflite": 0.85})
    md = render_markdown(r)
    table = [x for x in md.splitlines() if x.startswith("|")]
    assert table[0].startswith("| file | format | precision | size KB | acc % |")
    assert "max \\|Δlogit\\|" in table[0]  # a literal pipe would split the column
    assert len({x.count(" | ") for x in table[:4]}) == 1  # header, rule and rows line up
    assert "| model.int8-static.tflite | tflite | int8-static | 97.7 | 85.00 |" in md
    assert "**gate**: max drop 1.0 points: FAILED: model.int8-static.tflite" in md
    assert "int8 dot product: yes" in md


def test_html_is_self_contained_with_three_charts():
    r = make_report({"model.fp32.onnx": 0.9, "model.int8-dynamic.ort": 0.895,
                     "model.int8-static.tflite": 0.85})
    page = render_html(r)
    imgs = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(imgs) == 3
    assert all(base64.b64decode(b)[:8] == b"\x89PNG\r\n\x1a\n" for b in imgs)
    assert not re.search(r'(src|href)="(?!data:)', page) and "<script" not in page
    assert "accuracy gate FAILED" in page and page.count('<tr class="fail">') == 1


def test_write_report_is_atomic(tmp_path):
    out = tmp_path / "rep"
    r = make_report({"model.fp32.onnx": 0.9})
    write_report(r, out, config={"max_drop": 1.0})
    assert json.loads((out / "report.json").read_text()) == r
    assert {p.name for p in out.iterdir()} == {"report.json", "report.md", "report.html",
                                               "manifest.json"}
    before = (out / "report.json").read_text()
    with pytest.raises(ArtifactError, match="already exists"):
        write_report(r, out, config={})
    bad = make_report({"model.fp32.onnx": 0.9})
    bad["artifacts"][0]["accuracy"] = float("nan")  # not valid JSON: refused before writing
    with pytest.raises(ValueError):
        write_report(bad, out, config={}, force=True)
    assert (out / "report.json").read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rep"]  # no temporary leftovers
