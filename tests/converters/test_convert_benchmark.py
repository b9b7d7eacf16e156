"""``benchmarks/convert_variants.py --quick``: the benchmark script runs end to end (tiny shape)."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "convert_variants.py"


def test_quick_benchmark_writes_side_by_side_results(tmp_path):
    spec = importlib.util.spec_from_file_location("convert_variants", SCRIPT)
    assert spec and spec.loader
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    result = bench.main(["--quick", "--out-dir", str(tmp_path), "--iters", "3"])
    saved = json.loads((tmp_path / "convert_variants.quick.json").read_text())
    assert saved["rows"] == json.loads(json.dumps(result["rows"]))
    files = {(r["format"], r["precision"]): r for r in saved["rows"]}
    assert set(files) == {("torch", "fp32"), ("onnx", "fp32"), ("onnx", "int8-dynamic"),
                          ("tflite", "fp32"), ("tflite", "int8-dynamic")}
    for key in (("onnx", "fp32"), ("tflite", "fp32")):
        assert files[key]["max_abs_logit_diff"] <= 1e-4
    assert files[("onnx", "int8-dynamic")]["encoder_weights_int8"] == "13/13"
    assert files[("onnx", "int8-dynamic")]["size_bytes"] < files[("onnx", "fp32")]["size_bytes"]
    assert all(r["latency_ms_p50"] > 0 for r in saved["rows"])
    assert "| tiny |" in (tmp_path / "convert_variants.quick.md").read_text()
