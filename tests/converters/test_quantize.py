"""``edge-albert quantize``: the int8 recipe search on a tiny fine-tuned ALBERT.

One search (a reduced recipe list, one recipe made to crash and one to collapse) runs once per
module; the tests read its trial table and kept files. Bad input must fail fast with one error
line and write nothing.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from edge_albert.converters.quantize import RECIPES, QuantizeConfig, run_quantize

from edge_albert.errors import ConfigError, ConversionError

pytest.importorskip("onnxruntime")

#: three ONNX recipes that should stay within budget (one on the fused graph), one made to
#: collapse, one made to crash, and TFLite dynamic-range
RECIPE_LIST = ("onnx-dynamic-pt", "onnx-dynamic-pc", "onnx-dynamic-pc-none",
               "onnx-dynamic-fused-pt", "onnx-qdq-minmax-pc", "tflite-dynamic")
COLLAPSE, CRASH = "onnx-dynamic-pc", "onnx-qdq-minmax-pc"


@pytest.fixture(scope="module")
def ft_model(tmp_path_factory, tiny_tokenizer, tiny_task) -> Path:
    """The tiny ALBERT fine-tuned on the generated sentiment task (~10 s)."""
    pytest.importorskip("torch")
    from edge_albert.config import FinetuneConfig
    from edge_albert.data import read_dataset
    from edge_albert.finetune import run_finetune
    from edge_albert.modeling import init_model_dir

    d = tmp_path_factory.mktemp("search-model")
    init_model_dir("tiny", tiny_tokenizer, d / "base", label_names=["0", "1"], seed=0)
    cfg = FinetuneConfig(max_steps=64, batch_size=16, max_length=32, learning_rate=3e-3,
                         eval_every=16, checkpoint_every=0, threads=1, warmup_ratio=0.0)
    m = run_finetune(cfg, d / "base", read_dataset(tiny_task["train"]),
                     read_dataset(tiny_task["dev"]), d / "ft", progress=False)
    assert m is not None and m.extra["dev"]["accuracy"] >= 0.85, m and m.extra
    return d / "ft"


def _collapse(path: Path) -> None:
    """Make an ONNX classifier answer label 0 whatever it reads (a huge classifier bias)."""
    import onnx
    from onnx import numpy_helper

    proto = onnx.load(str(path))
    init = next(i for i in proto.graph.initializer if "classifier.bias" in i.name)
    bias = numpy_helper.to_array(init).copy()
    bias[:] = -1e4
    bias[0] = 1e4
    init.CopyFrom(numpy_helper.from_array(bias.astype(np.float32), init.name))
    onnx.save(proto, str(path))


def _sabotaged(real):
    """A ``_Search.make_file`` whose COLLAPSE file always answers label 0 and whose CRASH raises."""
    def make_file(self, recipe, source):
        if recipe.name == CRASH:
            raise ConversionError("injected quantizer crash")
        path, desc = real(self, recipe, source)
        if recipe.name == COLLAPSE:
            _collapse(path)
        return path, desc

    return make_file


@pytest.fixture()
def sabotage(monkeypatch):
    from edge_albert.converters import quantize as search

    monkeypatch.setattr(search._Search, "make_file", _sabotaged(search._Search.make_file))


@pytest.fixture(scope="module")
def searched(tmp_path_factory, ft_model, tiny_task):
    """One search over RECIPE_LIST, with the sabotage in place."""
    pytest.importorskip("tensorflow")
    from edge_albert.converters import quantize as search

    out = tmp_path_factory.mktemp("search") / "quantized"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(search._Search, "make_file", _sabotaged(search._Search.make_file))
        cfg = QuantizeConfig(recipes=RECIPE_LIST, buckets=(16, 32), threads=1, latency_runs=10,
                           parity_examples=64, calibration_size=64)
        manifest = run_quantize(cfg, ft_model, out, calibration=tiny_task["train"],
                              dev=tiny_task["dev"], progress=False)
    table = json.loads((out / "trials.json").read_text(encoding="utf-8"))
    return manifest, table, out


def test_every_trial_is_a_row_failures_included(searched):
    _, table, out = searched
    rows = {r["recipe"]: r for r in table["trials"]}
    assert list(rows) == ["onnx-fp32", *RECIPE_LIST[:5], "tflite-fp32", "tflite-dynamic"]
    fused = rows["onnx-dynamic-fused-pt"]
    assert "fused graph" in fused["settings"] and fused["status"] in ("kept", "within budget")
    assert rows["onnx-fp32"]["status"] == rows["tflite-fp32"]["status"] == "reference"
    assert rows[CRASH]["status"] == "failed" and rows[CRASH]["error"] == "injected quantizer crash"
    assert rows[CRASH]["accuracy"] is None
    bad = rows[COLLAPSE]
    assert bad["status"] == "over budget"
    assert bad["drop"] > 20 and bad["agreement"] < 0.8 and bad["p50_ms"] > 0
    for r in rows.values():
        if r["status"].startswith("failed"):
            continue
        assert set(r) >= {"accuracy", "drop", "agreement", "p50_ms", "size_bytes",
                          "int8_weights", "status"}
        if r["precision"] != "fp32":
            assert r["int8_weights"] > 0  # the census found int8 weights
    md = (out / "trials.md").read_text(encoding="utf-8")
    assert all(f"| {name} |" in md for name in rows)
    assert "failed: injected quantizer crash" in md and "over budget" in md
    # the winners are this CPU class's: the search says which class it measured on
    from edge_albert.runtime.cpu import cpu_facts

    isa = cpu_facts()["isa"]
    assert table["latency"]["measured_on"]["isa"] == isa and f"({isa};" in md
    assert json.loads((out / "manifest.json").read_text())["extra"]["measured_on"]["isa"] == isa


def test_keeps_the_fastest_within_budget_per_backend(searched):
    manifest, table, _ = searched
    rows = table["trials"]
    for backend in ("onnx", "tflite"):
        ref = next(r for r in rows if r["backend"] == backend and r["status"] == "reference")
        ok = [r for r in rows if r["backend"] == backend
              and r["status"] in ("kept", "within budget")]
        assert ok, rows
        kept = [r for r in ok if r["status"] == "kept"]
        assert len(kept) == 1
        assert kept[0]["p50_ms"] == min(r["p50_ms"] for r in ok)
        assert all(100 * (ref["accuracy"] - r["accuracy"]) <= 1.0 + 1e-9 for r in ok)
        assert table["kept"][backend] == kept[0]["recipe"]
    assert set(manifest.extra["kept"]) == {"onnx", "tflite"}
    assert manifest.stage == "quantize"


def test_the_kept_files_load_in_the_runtime_classifier(searched, ft_model, tiny_task):
    from edge_albert.runtime import Classifier

    from edge_albert.data import read_dataset

    manifest, table, out = searched
    dev = read_dataset(tiny_task["dev"])
    assert manifest.extra["labels"] == ["0", "1"]
    config = json.loads((ft_model / "config.json").read_text(encoding="utf-8"))
    assert manifest.extra["vocab_size"] == config["vocab_size"]
    assert (out / "labels.txt").is_file()
    for backend, name in manifest.extra["kept"].items():
        meta = manifest.files[name]
        assert meta["format"] == backend and meta["precision"].startswith("int8")
        assert meta["seq_len"] == 32 and meta["buckets"] == [16, 32]
        assert meta["recipe"]["search_recipe"] == table["kept"][backend]
        assert meta["parity"]["finite"] and "census" in meta
        clf = Classifier.load(out, model=name, threads=1)
        labels, _ = clf.predict(dev.inputs(), batch_size=32)
        acc = float(np.mean(np.asarray(labels) == np.asarray(dev.labels)))
        row = next(r for r in table["trials"] if r["recipe"] == table["kept"][backend])
        assert acc == pytest.approx(row["accuracy"])


# ------------------------------------------------------------------------------ the CLI
@pytest.fixture(scope="module")
def cli():
    from edge_albert.converters.quantize_cli import quantize_command

    from edge_albert.cli import cli as group

    if "quantize" not in group.commands:
        group.add_command(quantize_command)
    return group


def _run(cli, *args):
    return CliRunner().invoke(cli, ["quantize", *args, "--quiet"])


def _one_error(res, code: int) -> str:
    assert res.exit_code == code, res.output
    lines = [ln for ln in res.output.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in res.output, res.output
    return lines[0]


def test_fixed_recipe_over_budget_is_an_accuracy_gate_error(cli, ft_model, tiny_task, tmp_path,
                                                            sabotage):
    out = tmp_path / "q"
    res = _run(cli, "--model", str(ft_model), "--calibration", str(tiny_task["train"]),
               "--dev", str(tiny_task["dev"]), "--recipe", COLLAPSE, "--buckets", "16,32",
               "--threads", "1", "--set", "quantize.latency_runs=5", "--out", str(out))
    line = _one_error(res, 6)
    assert "no int8 recipe within the budget of 1 accuracy point" in line
    assert f"| {COLLAPSE} |" in res.output and "over budget" in res.output  # the table, shown
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".q.")]


@pytest.mark.parametrize("args, code, needle", [
    (["--search", "--max-drop", "-1"], 2,
     "quantize.max_drop: must be a number of accuracy points >= 0, got -1.0"),
    (["--recipe", "onnx-int4"], 2, "unknown recipe 'onnx-int4' (valid: onnx-dynamic-pt,"),
    (["--search", "--backends", "onnx,ort"], 2, "unknown backend 'ort' (valid: onnx, tflite)"),
    (["--recipe", "tflite-dynamic", "--backends", "onnx"], 2, "'tflite-dynamic' is for tflite"),
    ([], 2, "give --search to try every recipe, or one --recipe NAME"),
])
def test_bad_options(cli, tmp_path, args, code, needle):
    # the model is never read: the options are checked first
    res = _run(cli, "--model", str(tmp_path / "none"), "--calibration", "c.tsv", "--dev", "d.tsv",
               "--out", str(tmp_path / "q"), *args)
    assert needle in _one_error(res, code)
    assert not (tmp_path / "q").exists()


def test_unknown_recipe_lists_every_valid_one():
    with pytest.raises(ConfigError) as err:
        QuantizeConfig(recipes=("nope",))
    assert all(name in err.value.message for name in RECIPES)


def test_dev_labels_the_model_does_not_know(cli, ft_model, tiny_task, tmp_path):
    dev = tmp_path / "dev.tsv"
    dev.write_text("sentence\tlabel\nthe film is a joy .\t1\nthe plot drags .\tneutral\n",
                   encoding="utf-8")
    res = _run(cli, "--model", str(ft_model), "--calibration", str(tiny_task["train"]),
               "--dev", str(dev), "--search", "--out", str(tmp_path / "q"))
    line = _one_error(res, 3)
    assert f"{dev}:3:" in line and "label 'neutral' is not among the known labels" in line
    assert not (tmp_path / "q").exists()


def test_calibration_never_sees_the_dev_set(ft_model, tiny_task, tmp_path):
    from edge_albert.errors import DataError

    cfg = QuantizeConfig(recipes=("onnx-dynamic-pt",), buckets=(16, 32))
    with pytest.raises(DataError, match="every calibration row is also a dev row"):
        run_quantize(cfg, ft_model, tmp_path / "q", calibration=tiny_task["dev"],
                   dev=tiny_task["dev"], progress=False)


def test_convert_manifest_records_the_vocab_size(ft_model, tiny_task, tmp_path):
    """The runtime checks a tokenizer against the model's vocabulary: convert must record it."""
    from edge_albert.converters.convert import ConvertConfig, run_convert
    from edge_albert.converters.spec import Format, Precision

    m = run_convert(ConvertConfig(formats=(Format.ONNX,), precisions=(Precision.FP32,),
                                  buckets=(16,), parity_examples=16, threads=1),
                    ft_model, tmp_path / "c", calibration=tiny_task["train"], progress=False)
    config = json.loads((ft_model / "config.json").read_text(encoding="utf-8"))
    assert m.extra["vocab_size"] == config["vocab_size"]
