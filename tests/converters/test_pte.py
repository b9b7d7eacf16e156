"""ExecuTorch programs (#17): ExecuTorch's own runtime runs the ``.pte`` files of a tiny ALBERT; on
200 texts (pairs, long, upper-case and accented ones included) their labels equal the runtime's
ONNX file's and their logits are within the fp32 / int8 tolerances; the XNNPACK delegate's share
is recorded; validate reports the files beside the others."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("executorch")

from .conftest import generated_rows

PRECISIONS = ("fp32", "int8-dynamic", "int8-static")


def _items() -> list:
    """200 texts: sentences, upper case, accents, pairs, and texts past the longest bucket."""
    rows = [s for s, _ in generated_rows(40, seed=5)]
    out: list = []
    for i, t in enumerate(rows):
        out += [t, t.upper(), t.replace("e", "é").replace("a", "à") + " — naïve café!",
                (t, rows[(i + 1) % len(rows)])]
    out += [" ".join(rows[k:k + 6]) for k in range(40)]
    return out


@pytest.fixture(scope="module")
def converted(tiny_model, task_tsv, tmp_path_factory):
    from edge_albert.converters.convert import ConvertConfig, run_convert

    d = tmp_path_factory.mktemp("pte")
    m = run_convert(ConvertConfig(formats=("onnx", "pte"), buckets=(16, 32),
                                  calibration_size=32, parity_examples=32, fixed_shapes=(),
                                  precisions=PRECISIONS), tiny_model, d / "conv",
                    calibration=task_tsv, progress=False)
    return d, m


def test_pte_files_are_described_and_delegated(converted):
    _, m = converted
    for p in PRECISIONS:
        meta = m.files[f"model.{p}.pte"]
        assert meta["format"] == "pte" and meta["precision"] == p
        assert meta["inputs"][0]["dtype"] == "int64"
        rec = meta["recipe"]
        assert rec["delegate"] == "XnnpackBackend" and rec["delegate_pieces"] >= 1
        # the matmuls went to XNNPACK: none is left among the ops outside the delegate
        assert not any(k.startswith(("aten.mm", "aten.addmm", "aten.bmm", "aten.linear"))
                       for k in rec["ops_outside_delegate"]), rec["ops_outside_delegate"]
        assert "pow" not in " ".join(rec["ops_outside_delegate"])  # GELU is one op, delegated
        assert meta["parity"]["agreement"] >= 0.97, (p, meta["parity"])
    assert m.files["model.fp32.pte"]["parity"]["max_abs_logit_diff"] <= 1e-4
    # 4 bytes a weight plus each delegate piece's serialised graph (~1.6 KB here; a 12-pass
    # shared tiny ALBERT's file grows by that per piece, not by a copy of the layer per pass)
    fp32 = m.files["model.fp32.pte"]
    bound = 4 * 1.05 * m.extra["parameters"] + 4096 * fp32["recipe"]["delegate_pieces"] + 65536
    assert fp32["bytes_per_parameter"] * m.extra["parameters"] <= bound
    assert (m.files["model.int8-dynamic.pte"]["bytes_per_parameter"]
            < fp32["bytes_per_parameter"])


def test_convert_command_summarises_every_file(converted):
    """The CLI's closing lines (a KeyError on the census once: .pte files have none)."""
    from edge_albert.converters.cli import summary_line

    _, m = converted
    lines = [summary_line(n, meta) for n, meta in m.files.items() if "parity" in meta]
    assert len(lines) == 6
    assert any("model.int8-dynamic.pte" in ln and "XNNPACK pieces" in ln for ln in lines)
    assert any("model.fp32.onnx" in ln and "encoder weights int8 0/" in ln for ln in lines)


def test_executorch_runtime_agrees_with_the_runtime_on_200_texts(converted):
    from edge_albert.runtime import Classifier

    d, _ = converted
    items = _items()
    assert len(items) == 200 and sum(isinstance(x, tuple) for x in items) == 40
    # a batch is all single texts or all pairs
    groups = [[x for x in items if not isinstance(x, tuple)], [x for x in items if isinstance(x, tuple)]]

    def logits(clf) -> np.ndarray:
        return np.concatenate([clf.logits(g[i:i + 16]) for g in groups
                               for i in range(0, len(g), 16)])

    want = logits(Classifier.load(d / "conv", model="model.fp32.onnx", threads=1))
    for p, tol in (("fp32", 1e-4), ("int8-dynamic", None), ("int8-static", None)):
        clf = Classifier.load(d / "conv", model=f"model.{p}.pte", threads=1)
        assert clf.backend.name == "executorch"
        got = logits(clf)
        agree = float(np.mean(got.argmax(-1) == want.argmax(-1)))
        if tol is not None:
            assert np.abs(got - want).max() <= tol
            assert agree == 1.0
        else:
            assert agree >= 0.97, (p, agree)


def test_validate_reports_pte_beside_onnx(converted, task_tsv, tiny_model):
    from edge_albert.report import read_report
    from edge_albert.validate import ValidateConfig, run_validate

    d, _ = converted
    run_validate(ValidateConfig(latency_runs=1, warmup=0, batch_sizes=(1, 4)), [d / "conv"],
                 task_tsv, tiny_model, d / "report", progress=False)
    files = {f["name"]: f for f in read_report(d / "report")["artifacts"]}
    fp32 = files["model.fp32.pte"]
    assert fp32["format"] == "pte" and fp32["backend"] == "executorch"
    assert fp32["agreement"] == files["model.fp32.onnx"]["agreement"] == 1.0
    for p in PRECISIONS:
        row = files[f"model.{p}.pte"]
        assert row["latency_ms"]["p50"] > 0 and "batch_4" in row["latency_by_bucket"]
        assert row["size_bytes"] > 0


def test_missing_executorch_is_one_line_naming_the_extra(converted, monkeypatch):
    import sys

    from edge_albert.runtime.backends import open_backend

    from edge_albert.errors import RuntimeBackendError

    d, _ = converted
    monkeypatch.setitem(sys.modules, "executorch.runtime", None)
    with pytest.raises(RuntimeBackendError, match="ExecuTorch is not installed") as err:
        open_backend(d / "conv" / "model.fp32.pte")
    assert "edge-albert[executorch]" in str(err.value.hint)


def test_tanh_gelu_is_lowered_as_the_tanh_form(tiny_model):
    """XNNPACK lowers GELU(approximate="tanh") to its exact (erf) GELU, 4.7e-4 away: a trained
    demo student's fp32 file missed the parity gate. The written-out tanh form stays exact."""
    from edge_albert.converters.pte import _logits_module, _quiet

    from edge_albert.modeling import load_classifier

    with _quiet():  # ExecuTorch's own imports warn (see _quiet)
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import (
            XnnpackPartitioner,
        )
        from executorch.exir import to_edge_transform_and_lower
        from executorch.runtime import Runtime

    model = load_classifier(tiny_model)
    assert model.config.hidden_act in ("gelu_new", "gelu_pytorch_tanh")
    act = next(m.activation for m in _logits_module(model).modules()
               if type(m).__name__ == "AlbertLayer")
    x = torch.linspace(-6, 6, 4096).reshape(64, 64)
    with _quiet():
        prog = to_edge_transform_and_lower(torch.export.export(act, (x,)),
                                           partitioner=[XnnpackPartitioner()]).to_executorch()
        out = Runtime.get().load_program(prog.buffer).load_method("forward").execute([x])[0]
    want = torch.nn.functional.gelu(x, approximate="tanh")
    assert float((out - want).abs().max()) <= 1e-5
