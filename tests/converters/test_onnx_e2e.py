"""Text-in ONNX (#17): the real ONNX Runtime with onnxruntime-extensions runs the file; its ids
equal the runtime's, its logits equal the same ONNX file's on those ids, pairs and long, upper-case
and accented texts included; what it cannot take is refused in one line."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxruntime_extensions")

from edge_albert.errors import ConfigError

from ..conftest import WORDPIECE_OTHER, make_sentiment_rows


def _items() -> list:
    """200 texts: single sentences, pairs, long ones, upper case, accents, punctuation."""
    rows = [t for t, _ in make_sentiment_rows(37, seed=11)] + WORDPIECE_OTHER
    out: list = []
    for i, t in enumerate(rows):
        out += [t, t.upper(), t.replace("e", "é").replace("o", "ö") + " — naïve café!",
                (t, rows[(i + 1) % len(rows)])]
    for k in range(10):  # past the maximum length: one text, and pairs cut longest_first
        out += [" ".join(rows[k:k + 12]), (" ".join(rows[k:k + 9]), rows[k]),
                (rows[k], " ".join(rows[k + 3:k + 14])),
                (" ".join(rows[k:k + 7]), " ".join(rows[k + 7:k + 15]))]
    return out


@pytest.fixture(scope="module")
def converted(wordpiece_albert, tmp_path_factory):
    from edge_albert.converters.convert import ConvertConfig, run_convert

    d = tmp_path_factory.mktemp("e2e")
    cal = d / "pairs.tsv"  # a pair task's layout: the e2e parity check sees pairs too
    rows = make_sentiment_rows(60, seed=3)
    cal.write_text("sentence1\tsentence2\tlabel\n" + "".join(
        f"{a}\t{rows[(i + 5) % len(rows)][0]}\t{lab}\n" for i, (a, lab) in enumerate(rows)))
    m = run_convert(ConvertConfig(formats=("onnx", "onnx-e2e"), buckets=(16, 32),
                                  precisions=("fp32", "int8-dynamic"), parity_examples=32),
                    wordpiece_albert["model"], d / "conv", calibration=cal, progress=False)
    return d / "conv", m


def test_e2e_ids_and_logits_equal_the_runtime_and_its_onnx_file(converted):
    from edge_albert.converters.onnx_e2e import preprocessing, session
    from edge_albert.runtime import Classifier, TextTokenizer

    conv, m = converted
    for p in ("fp32", "int8-dynamic"):
        meta = m.files[f"model.{p}.e2e.onnx"]
        assert meta["format"] == "onnx-e2e" and meta["inputs"][0]["dtype"] == "string"
        assert meta["tokenization_checked"]["ids_equal"] == meta["tokenization_checked"]["texts"]
    assert m.files["model.fp32.e2e.onnx"]["parity"]["max_abs_logit_diff"] <= 1e-4
    tok = TextTokenizer.load(conv)
    pre = session(preprocessing(conv, 32).SerializeToString())
    items = _items()
    assert len(items) == 200 and sum(isinstance(x, tuple) for x in items) >= 50
    long = 0
    for p in ("fp32", "int8-dynamic"):
        e2e = session(conv / f"model.{p}.e2e.onnx")  # the real client, as an app would open it
        plain = ort.InferenceSession(str(conv / f"model.{p}.onnx"))
        for item in items:
            texts = list(item) if isinstance(item, tuple) else [item]
            enc = tok.encode([texts[0]], texts[1:] or None, max_length=32)
            n = int(enc.attention_mask[0].sum())
            want = {k: v[:, :n].astype(np.int64) for k, v in enc.as_dict().items()}
            long += n == 32
            got = dict(zip(want, pre.run(list(want), {"text": np.array(texts, dtype=object)})))
            for k in want:
                assert np.array_equal(got[k], want[k]), (item, k)
            logits, probs, label = e2e.run(None, {"text": np.array(texts, dtype=object)})
            ref = plain.run(["logits"], want)[0]
            assert np.abs(logits - ref).max() <= 1e-5, item
            assert np.allclose(probs.sum(-1), 1.0, atol=1e-5)
            assert label.tolist() == [["0", "1"][int(ref.argmax())]]
    assert long >= 20  # truncation was exercised, pairs cut longest_first
    # the device runtime runs it too: same labels as the token-id file on every text
    a = Classifier.load(conv, model="model.fp32.e2e.onnx")
    b = Classifier.load(conv, model="model.fp32.onnx")
    assert a.backend.takes_text and a.info["format"] == "onnx-e2e"
    singles = [x for x in items if isinstance(x, str)]
    la, lb = a.logits(singles), b.logits(singles)
    assert np.abs(la - lb).max() <= 1e-4 and (la.argmax(-1) == lb.argmax(-1)).all()


def test_validate_reports_the_text_in_files(converted, wordpiece_albert, tmp_path):
    from edge_albert.report import read_report
    from edge_albert.validate import ValidateConfig, run_validate

    conv, _ = converted
    run_validate(ValidateConfig(latency_runs=2, warmup=0, batch_sizes=(1, 4)), [conv],
                 wordpiece_albert["dev"], wordpiece_albert["model"], tmp_path / "r",
                 progress=False)
    files = {f["name"]: f for f in read_report(tmp_path / "r")["artifacts"]}
    e2e = files["model.fp32.e2e.onnx"]
    assert e2e["format"] == "onnx-e2e" and e2e["backend"] == "onnxruntime+extensions"
    assert e2e["agreement"] == files["model.fp32.onnx"]["agreement"] == 1.0
    assert e2e["latency_ms"]["p50"] > 0 and "batch_4" in e2e["latency_by_bucket"]


def test_sentencepiece_and_missing_calibration_are_refused(tiny_model, wordpiece_albert,
                                                          tiny_task, tmp_path):
    from edge_albert.converters.convert import ConvertConfig, run_convert

    cfg = ConvertConfig(formats=("onnx-e2e",), precisions=("fp32",), buckets=(16,))
    with pytest.raises(ConfigError, match="onnx-e2e: it takes WordPiece tokenizers, not 'Unigram'") as e:
        run_convert(cfg, tiny_model, tmp_path / "a", calibration=tiny_task["train"],
                    progress=False)
    assert "\n" not in str(e.value) and e.value.key == "--formats"
    with pytest.raises(ConfigError, match="onnx-e2e needs calibration text"):
        run_convert(cfg, wordpiece_albert["model"], tmp_path / "b", progress=False)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_int8_files_do_not_depend_on_what_the_process_imported(converted):
    """quant_pre_process saves every domain registered in the process: once the extensions were
    imported, the same model's int8 file gained ai.onnx.contrib (a flaky hash in the kill test)."""
    import onnx

    conv, _ = converted
    model = onnx.load(str(conv / "model.int8-dynamic.onnx"))
    used = {n.domain for n in model.graph.node} | {""}
    assert {o.domain for o in model.opset_import} == used
