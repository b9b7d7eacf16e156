"""The benchmark scripts' ``--quick`` modes run end to end on a tiny model, so they cannot rot.

They share one work directory (the tiny model and its converted files are built once)."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def load(name: str):
    sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    pytest.importorskip("tensorflow")
    pytest.importorskip("onnxruntime")
    return tmp_path_factory.mktemp("bench-work")


@pytest.mark.slow
def test_quick_matrix_measures_every_file_at_every_cell(tmp_path, work):
    result = load("latency_matrix").main(["--quick", "--out-dir", str(tmp_path), "--work",
                                          str(work)])
    saved = json.loads((tmp_path / "latency_matrix.quick.json").read_text())
    assert saved["headline"] == json.loads(json.dumps(result["headline"]))
    models = saved["models"]
    want = {"teacher torch fp32", "teacher onnx fp32", "student torch fp32"} | {
        "student " + f.removeprefix("model.") for f in load("latency_matrix").STUDENT_FILES}
    if importlib.util.find_spec("executorch"):  # ExecuTorch's file is timed beside the others
        want.add("student fp32.pte")
    assert set(models) == want
    for name, m in models.items():
        assert 0.0 <= m["accuracy"] <= 1.0 and m["size_bytes"] > 0, name
        assert m["rss"]["peak_rss_mb"] > m["rss"]["baseline_rss_mb"] > 0, name
    # the fp32 files compute what torch computes: same predictions on every dev row
    for name in {"teacher onnx fp32", "student fp32.onnx", "student fp32.tflite",
                 "student fp32.pte"} & want:
        assert models[name]["agreement_with_torch"] == 1.0, name
    assert models["student int8-dynamic.onnx"]["size_bytes"] < models["student fp32.onnx"]["size_bytes"]
    cells = {(c["model"], c["seq"], c["batch"]) for c in saved["cells"]}
    assert cells == {(m, s, b) for m in want for s in (16, 32) for b in (1, 2)}
    assert all(c["p90_ms"] >= c["p50_ms"] > 0 and c["rows_per_s"] > 0 for c in saved["cells"])
    assert "| student int8-static.tflite |" in (tmp_path / "latency_matrix.quick.md").read_text()
    assert (tmp_path / "latency_matrix.quick.png").stat().st_size > 10_000


@pytest.mark.slow
def test_quick_roofline_counts_work_and_measures_peaks(tmp_path, work):
    result = load("roofline").main(["--quick", "--out-dir", str(tmp_path), "--work", str(work)])
    saved = json.loads((tmp_path / "roofline.quick.json").read_text())
    kernels = {r["kernel"] for r in saved["peaks"]}
    assert {"torch fp32 mm", "onnxruntime int8 MatMulInteger"} <= kernels
    assert all(r["gops"] > 0 for r in saved["peaks"])
    flops = result["flops"]
    # the flop counter's total is the analytical count of the forward the files run: the
    # whole model's, less the last pass's work on every token but the first (keys and values
    # stay per token)
    from transformers import AutoConfig

    from edge_albert.students import flops_per_sequence

    cfg = AutoConfig.from_pretrained(work / "model")
    t, h, i = 32, cfg.hidden_size, cfg.intermediate_size
    every = 2 * t * (4 * h * h + 2 * h * i) + 2 * 2 * t * t * h
    first = 2 * t * 2 * h * h + 2 * (2 * h * h + 2 * h * i) + 2 * 2 * t * h
    files_do = flops_per_sequence(cfg, t) - every + first
    assert flops[1]["weight_gemm"] > 0 and flops[8]["total"] == 8 * flops[1]["total"]
    assert abs(flops[1]["total"] - files_do) / flops[1]["total"] < 0.05
    files = {r["file"] for r in saved["rows"]}
    assert {"model.fp32.onnx", "model.int8-dynamic.onnx", "model.int8-static.tflite"} <= files
    for r in saved["rows"]:
        assert r["fraction_of_peak"] > 0 and r["achieved_gops"] > 0
        assert (r["int8_gops"] > 0) == ("int8" in r["file"])
    assert (tmp_path / "roofline.quick.png").stat().st_size > 10_000


@pytest.mark.slow
def test_quick_scaling_sweeps_length_and_batch(tmp_path, work):
    load("scaling").main(["--quick", "--out-dir", str(tmp_path), "--work", str(work)])
    saved = json.loads((tmp_path / "scaling.quick.json").read_text())
    assert set(saved["backends"]) == set(load("scaling").BACKENDS)
    for name, b in saved["backends"].items():
        assert "error" not in b["sequence"] and "error" not in b["batch"], name
        assert [p["seq"] for p in b["sequence"]["points"]] == [16, 32, 64]
        assert [p["batch"] for p in b["batch"]["points"]] == [1, 2, 4]
        peaks = [p["peak_rss_mb"] for p in b["batch"]["points"]]
        assert peaks == sorted(peaks) and peaks[0] > b["batch"]["baseline_rss_mb"]
    assert (tmp_path / "scaling.quick.png").stat().st_size > 10_000


@pytest.mark.slow
def test_quick_soak_records_rss_and_latency_per_window(tmp_path, work):
    load("soak").main(["--quick", "--out-dir", str(tmp_path), "--work", str(work),
                       "--files", "model.int8-dynamic.onnx,model.int8-dynamic.tflite"])
    saved = json.loads((tmp_path / "soak.quick.json").read_text())
    assert [r["file"] for r in saved["backends"]] == ["model.int8-dynamic.onnx",
                                                      "model.int8-dynamic.tflite"]
    for r in saved["backends"]:
        assert "error" not in r, r
        assert r["calls"] == 2000 and [w["calls"] for w in r["windows"]] == [500, 1000, 1500, 2000]
        assert r["end_rss_mb"] == r["windows"][-1]["rss_mb"] and r["start_rss_mb"] > 0
        # the JSON rounds the drift to 3 decimals: under load a window's p99 can drop 50-fold
        assert r["p99_drift"] == pytest.approx(r["p99_last_ms"] / r["p99_first_ms"], rel=1e-2,
                                               abs=1e-3)
    assert "| model.int8-dynamic.tflite |" in (tmp_path / "soak.quick.md").read_text()


@pytest.mark.slow
def test_quick_frontier_places_every_model_by_accuracy_latency_and_size(tmp_path, work):
    assert load("frontier").main(["--quick", "--out-dir", str(tmp_path), "--work", str(work),
                                  "--budget", "0.2"]) == 0
    saved = json.loads((tmp_path / "frontier_sst2.quick.json").read_text())
    assert set(saved["models"]) == {"teacher", "student"}
    for name, m in saved["models"].items():
        for label in ("onnx int8", "tflite int8"):
            f = m["files"][label]
            assert f["size_bytes"] > 0 and 0.0 <= f["dev_accuracy"] <= 1.0, (name, label)
            assert m["latency_ms"][label]["p50_ms"] > 0, (name, label)
    assert saved["models"]["teacher"]["latency_ms"]["torch fp32"]["p50_ms"] > 0
    assert saved["machine"]["isa"] and saved["machine"]["flags"] is not None
    assert (tmp_path / "frontier_sst2.quick.png").stat().st_size > 0
    assert "| teacher |" in (tmp_path / "frontier_sst2.quick.md").read_text()


@pytest.mark.slow
def test_quick_headline_has_exactly_the_issue_keys(tmp_path, work):
    out = load("headline").main(["--quick", "--out-dir", str(tmp_path), "--work", str(work)])
    from edge_albert.runtime.cpu import cpu_facts

    saved = json.loads((tmp_path / f"headline-{cpu_facts()['isa']}.quick.json").read_text())
    assert tuple(saved) == ("machine", "speedup_vs_teacher", "size_ratio", "accuracy_drop_pts",
                            "peer_ratios", "roofline_fraction_int8")
    assert saved["machine"]["isa"] == cpu_facts()["isa"] and saved["machine"]["flags"]
    # the same tiny model as teacher and student: one weights file against its int8 file
    assert saved["size_ratio"] > 1 and saved["speedup_vs_teacher"] > 0
    assert saved["accuracy_drop_pts"] == pytest.approx(
        100 * (out["details"]["accuracy_teacher"] - out["details"]["accuracy_default_int8"]))
    assert 0 < saved["roofline_fraction_int8"] < 5
    assert saved["peer_ratios"]["executorch"] is None  # no .pte in quick mode, and it says why
    assert out["details"]["executorch"]["error"]
    shapes = {(r["batch"], r["seq"]) for r in out["details"]["shapes"]}
    assert shapes == {(b, s) for b in (1, 8) for s in (32, 64, 128)}
    md = (tmp_path / f"headline-{cpu_facts()['isa']}.quick.md").read_text()
    assert "| roofline_fraction_int8 |" in md and "Where the time goes" in md
    kernels = out["details"]["perf_profile_b8x128"]  # [] where perf is absent or not allowed
    if kernels:
        assert 0.9 <= sum(k["share"] for k in kernels) <= 1.02  # perf rounds each line
        assert any("GEMM" in k["kind"] for k in kernels[:4]) and all(k["top_kernels"]
                                                                     for k in kernels)


@pytest.mark.slow
def test_headline_peer_gap_profiles_our_file_and_the_peers_side_by_side(work):
    """For a peer under its 1.3x target: perf on both files at batch 1 x 64, ms per kernel kind,
    and the ratio our file would reach with every op but its GEMMs free."""
    headline = load("headline")
    art = headline.subjects(headline.parse(["--quick", "--work", str(work)]), work)["artifact"]
    from _common import feeds_at
    from edge_albert.runtime.tokenizer import TextTokenizer

    feed = feeds_at(TextTokenizer.load(art), ["play some jazz"], seq=64, batch=1, n_batches=1)[0]
    peers = {"headline": {"run_convert_defaults": {"peers": {
        "litert-torch": {"best": {"file": str(art / "model.int8-dynamic.tflite"), "p50_ms": 1.1}},
        "optimum": {"best": {"file": str(art / "model.int8-static.onnx"), "p50_ms": 2.0}}}}}}
    gaps = headline.peer_gaps(peers, {"p50_ms": 1.0}, art, "model.int8-static.tflite", feed, 1.0)
    if not gaps:
        pytest.skip("perf is absent or not allowed here")
    assert [g["tool"] for g in gaps] == ["litert-torch"]  # optimum's 2.0x is over the target
    g = gaps[0]
    assert 0 < g["ours_gemm_ms"] < 1.0 and g["ceiling"] == round(1.1 / g["ours_gemm_ms"], 3)
    assert g["other_ms"] == pytest.approx(1.0 - g["ours_gemm_ms"], abs=1e-3)
    assert 0.9 <= sum(k["ours_ms"] for k in g["kinds"]) <= 1.02
    assert 0.9 * 1.1 <= sum(k["theirs_ms"] for k in g["kinds"]) <= 1.02 * 1.1
    assert any("int8 GEMM" in k["kind"] and k["ours_ms"] > 0 and k["theirs_ms"] > 0
               for k in g["kinds"])


@pytest.mark.slow
def test_quick_neighbours_times_each_policy_alone_and_beside_a_neighbour(tmp_path):
    pytest.importorskip("torch")
    result = load("neighbours").main(["--quick", "--out-dir", str(tmp_path)])
    rows = result["policies"]
    default = "GOMP_SPINCOUNT=10000 + sharing cores (edge-albert's default)"
    assert list(rows) == ["libgomp default", "OMP_WAIT_POLICY=PASSIVE", default]
    for r in rows.values():
        assert r["alone_steps_per_s"] > 0 and r["beside_steps_per_s"] > 0
        assert r["slowdown"] == pytest.approx(r["alone_steps_per_s"] / r["beside_steps_per_s"],
                                              abs=0.01)
    md = (tmp_path / "neighbours.quick.md").read_text()
    assert "| OMP_WAIT_POLICY=PASSIVE |" in md
    import os

    single = result["half_cores_alone"]  # the fair-share bound's denominator
    assert single["threads"] == max(1, (os.cpu_count() or 2) // 2)
    for r in rows.values():  # each row's bound: its rate alone over the one-core rate
        assert r["fair_share_bound"] == pytest.approx(
            r["alone_steps_per_s"] / single["alone_steps_per_s"], abs=0.01)
    assert result["fair_share_bound"] == rows[default]["fair_share_bound"]
    assert "fair-share bound" in md
    pytest.importorskip("onnxruntime")
    runtime = result["runtime"]
    assert list(runtime) == ["ONNX Runtime default (spinning)", "allow_spinning=0"]
    assert all(r["alone_steps_per_s"] > 0 and r["beside_steps_per_s"] > 0
               for r in runtime.values())
    assert "| allow_spinning=0 |" in md


@pytest.mark.slow
def test_quick_onnx_graphs_times_plain_and_fused_side_by_side(tmp_path, work):
    result = load("onnx_graphs").main(["--quick", "--out-dir", str(tmp_path), "--work",
                                       str(work), "--budget", "0.2"])
    isa = result["machine"]["isa"]
    saved = json.loads((tmp_path / f"onnx-graphs-{isa}.quick.json").read_text())
    files = saved["files"]
    assert set(files) == {"plain fp32", "plain int8-dynamic", "fused fp32", "fused int8-dynamic"}
    assert files["fused fp32"]["ops"]["Attention"] == 2 and "Attention" not in files["plain fp32"]["ops"]
    assert files["fused int8-dynamic"]["ops"]["QAttention"] == 2
    assert files["fused fp32"]["agreement_with_plain"] == 1.0
    assert all(0.0 < f["dev_accuracy"] <= 1.0 for f in files.values())
    assert len(saved["shapes"]) == 8 and all(
        r["fused_over_plain"]["fp32"] > 0 for r in saved["shapes"])
    assert {p["op_type"] for p in saved["ort_profile_int8_b8x128"]["fused"]} >= {"QAttention"}
    assert "| 1 | 8 x 128 |" in (tmp_path / f"onnx-graphs-{isa}.quick.md").read_text()


@pytest.mark.slow
def test_quick_train_loop_times_ours_beside_a_plain_loop(tmp_path):
    pytest.importorskip("torch")
    result = load("train_loop").main(["--quick", "--out-dir", str(tmp_path)])
    saved = json.loads((tmp_path / "train_loop.quick.json").read_text())
    assert set(saved["examples_per_s"]) == {"ours", "plain"}
    assert all(v > 0 for vs in saved["examples_per_s"].values() for v in vs)
    med = saved["median_examples_per_s"]
    assert result["ours_over_plain"] == pytest.approx(med["ours"] / med["plain"], abs=0.01)
    assert "| plain |" in (tmp_path / "train_loop.quick.md").read_text()


@pytest.mark.slow
def test_quick_demo_beside_runs_real_demos_and_reads_their_stages(tmp_path):
    """Two tiny demos started together and one alone: each one's wall time, its stages from
    its manifests, and the thread changes its training logged."""
    pytest.importorskip("torch")
    result = load("demo_beside").main(["--quick", "--out-dir", str(tmp_path), "--conditions",
                                       "alone", "beside a demo, not sharing"])
    rows = result["conditions"]
    assert list(rows) == ["alone", "beside a demo, not sharing"]
    assert [len(r["runs"]) for r in rows.values()] == [1, 2]
    for row in rows.values():
        for run in row["runs"]:
            assert set(run["stages"]) >= {"teacher", "student", "convert", "validate"}
            assert run["wall_seconds"] >= sum(s["seconds"] for s in run["stages"].values()) - 1
            # not sharing: the trainer never logs a thread change
            assert all(s.get("thread_changes", []) == [] for s in run["stages"].values()) or \
                row is rows["alone"]
    assert rows["alone"]["slowdown"] == 1.0
    md = (tmp_path / "demo_beside.quick.md").read_text()
    assert "| beside a demo, not sharing |" in md


@pytest.mark.slow
def test_quick_precision_trains_the_demo_in_fp32_and_bf16(tmp_path):
    """One tiny demo per precision: each trained stage's accuracy, training seconds and the
    precision its manifest says it ran in."""
    pytest.importorskip("torch")
    result = load("precision").main(["--quick", "--out-dir", str(tmp_path)])
    assert [(r["precision"], r["seed"]) for r in result["runs"]] == [("fp32", 0), ("bf16", 0)]
    for r in result["runs"]:
        for st in ("teacher", "student"):
            assert r[st]["resolved"] == r["precision"] and r[st]["train_seconds"] > 0
            assert 0 <= r[st]["accuracy"] <= 1
    s = result["summary"]
    assert s["student_speedup"] == pytest.approx(
        s["fp32"]["student"]["train_seconds"] / s["bf16"]["student"]["train_seconds"], abs=1e-3)
    assert "| mean | bf16 |" in (tmp_path / "precision_demo.quick.md").read_text()
