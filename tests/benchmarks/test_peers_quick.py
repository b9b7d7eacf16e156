"""``benchmarks/peers.py --quick``: every peer gets a row (numbers or its error), the project's
files get accuracy, and the table and plot are written (tiny random ALBERT).

Peers whose virtual environment is not built (CI's fresh machine) are rows with a "skipped:"
error; where ``runs/peer-venvs`` holds them, their drivers run too (a minute or two more)."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "peers.py"


def _load():
    spec = importlib.util.spec_from_file_location("peers_bench", SCRIPT)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.slow
def test_quick_peers_writes_a_row_per_peer_beside_the_projects_files(tmp_path):
    pytest.importorskip("tensorflow")
    pytest.importorskip("onnxruntime")
    pytest.importorskip("matplotlib")
    bench = _load()
    result = bench.main(["--quick", "--out-dir", str(tmp_path), "--iters", "4", "--rounds", "2"])
    saved = json.loads((tmp_path / "peers.quick.json").read_text())
    assert saved["rows"] == json.loads(json.dumps(result["rows"]))
    rows = saved["rows"]

    def measured(r: dict) -> bool:
        return (r["status"] == "ok" and r["size_bytes"] > 0 and 0 <= r["accuracy"] <= 100
                and 0 <= r["agreement_with_torch_fp32"] <= 100 and r["p90_ms"] >= r["p50_ms"] > 0)

    # every peer has rows, each with measured numbers or a recorded error string
    for peer in bench.PEERS:
        mine = [r for r in rows if r["tool"] == peer]
        assert mine, peer
        for r in mine:
            assert measured(r) or (r["status"] in ("failed", "skipped")
                                   and isinstance(r["error"], str) and r["error"]), r
        built = bench.venv_state(peer, bench.REPO / "runs" / "peer-venvs") if peer in bench.VENVS \
            else True
        if not built:
            assert [r["error"] for r in mine] == [
                "skipped: venv not built (run without --quick to build)"]
    # torch.ao runs in-process, always
    assert any(measured(r) for r in rows if r["tool"] == "torch.ao")

    # the project's own files, all measured, with accuracy
    proj = {Path(r["file"]).name: r for r in rows if r["tool"] == "edge-albert"}
    assert {"model.fp32.onnx", "model.int8-dynamic.onnx", "model.int8-static.onnx",
            "model.int8-dynamic.tflite", "model.int8-static.tflite"} <= set(proj)
    for name, r in proj.items():
        assert measured(r), name
        assert 0 <= r["accuracy_classifier_buckets"] <= 100, name
    # the reference and the fp32 files compute what torch computes
    ref = next(r for r in rows if r["tool"] == "torch")
    assert ref["agreement_with_torch_fp32"] == 100.0 and ref["max_abs_logit_diff"] == 0.0
    assert proj["model.fp32.onnx"]["agreement_with_torch_fp32"] == 100.0
    assert proj["model.int8-dynamic.onnx"]["size_bytes"] < proj["model.fp32.onnx"]["size_bytes"]

    for pool in ("all_project_files", "run_convert_defaults"):
        head = saved["headline"][pool]
        assert head["project"] and set(head["peers"]) == set(bench.PEERS)
        assert head["peers"]["torch.ao"]["speed_ratio"] > 0
        assert head["peers"]["torch.ao"]["size_ratio"] > 0
    md = (tmp_path / "peers.quick.md").read_text()
    assert "| torch.ao |" in md and "| optimum |" in md and "| litert-torch |" in md
    assert (tmp_path / "peers.quick.png").stat().st_size > 10_000
