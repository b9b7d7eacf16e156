"""Text-in ONNX (#17): the real ONNX Runtime with onnxruntime-extensions runs the file; its ids
equal the runtime's, its logits equal the same ONNX file's on those ids, pairs and long, upper-case
and accented texts included, for WordPiece and for ALBERT's SentencePiece; what it cannot take is
refused in one line."""
from __future__ import annotations

import json

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


def _convert(model, d):
    from edge_albert.converters.convert import ConvertConfig, run_convert

    cal = d / "pairs.tsv"  # a pair task's layout: the e2e parity check sees pairs too
    rows = make_sentiment_rows(60, seed=3)
    cal.write_text("sentence1\tsentence2\tlabel\n" + "".join(
        f"{a}\t{rows[(i + 5) % len(rows)][0]}\t{lab}\n" for i, (a, lab) in enumerate(rows)))
    m = run_convert(ConvertConfig(formats=("onnx", "onnx-e2e"), buckets=(16, 32),
                                  precisions=("fp32", "int8-dynamic"), parity_examples=32),
                    model, d / "conv", calibration=cal, progress=False)
    return d / "conv", m


@pytest.fixture(scope="module")
def converted(wordpiece_albert, tmp_path_factory):
    return _convert(wordpiece_albert["model"], tmp_path_factory.mktemp("e2e"))


@pytest.fixture(scope="module")
def converted_spiece(tiny_model, tmp_path_factory):
    return _convert(tiny_model, tmp_path_factory.mktemp("e2e-spiece"))


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
    assert e2e["heavy_modules"] == []  # the extensions' library without their package's import


def test_sentencepiece_e2e_gives_the_runtime_ids_and_labels(converted_spiece):
    """ALBERT's SentencePiece through the extensions' op: the uncased copy of the model in the
    file gives the runtime's ids (accents, upper case, tabs and newlines, pairs, long texts);
    texts it segments otherwise are recorded, and the labels still agree."""
    from edge_albert.converters.onnx_e2e import preprocessing, session
    from edge_albert.runtime import Classifier, TextTokenizer

    conv, m = converted_spiece
    meta = m.files["model.fp32.e2e.onnx"]
    check = meta["tokenization_checked"]
    assert check["texts"] >= 40 and check["ids_equal"] >= check["texts"] - 2
    assert "SentencepieceTokenizer" in meta["recipe"]["recipe"]
    assert meta["parity"]["max_abs_logit_diff"] <= 1e-4
    assert meta["parity"]["agreement_all_texts"] >= 0.95
    tok = TextTokenizer.load(conv)
    pre = session(preprocessing(conv, 32).SerializeToString())
    items = [*_items(), "\tthe film\nis  charming \u00a0 !\r\n",
             "\uff26\uff35\uff2c\uff2c width \ufb01ne \u00bd"]  # full-width, ligature, fraction
    same = labels_equal = 0
    e2e = {p: session(conv / f"model.{p}.e2e.onnx") for p in ("fp32", "int8-dynamic")}
    plain = ort.InferenceSession(str(conv / "model.fp32.onnx"))
    for item in items:
        texts = list(item) if isinstance(item, tuple) else [item]
        enc = tok.encode([texts[0]], texts[1:] or None, max_length=32)
        n = int(enc.attention_mask[0].sum())
        want = {k: v[:, :n].astype(np.int64) for k, v in enc.as_dict().items()}
        got = dict(zip(want, pre.run(list(want), {"text": np.array(texts, dtype=object)})))
        ids_same = all(np.array_equal(got[k], want[k]) for k in want)
        same += ids_same
        ref = plain.run(["logits"], want)[0]
        logits, _, label = e2e["fp32"].run(None, {"text": np.array(texts, dtype=object)})
        if ids_same:
            assert np.abs(logits - ref).max() <= 1e-5, item
        labels_equal += label.tolist() == [["0", "1"][int(ref.argmax())]]
        e2e["int8-dynamic"].run(None, {"text": np.array(texts, dtype=object)})
    assert same >= len(items) - 4 and labels_equal >= len(items) - 2, (same, labels_equal)
    clf = Classifier.load(conv, model="model.int8-dynamic.e2e.onnx")
    labels, probs = clf.predict([("the film is charming", "it is"), ("a pair", "of texts")])
    assert clf.backend.takes_text and set(labels) <= {"0", "1"} and probs.shape == (2, 2)


def test_extension_ops_survive_tensorflow_imported_first(converted_spiece):
    """TensorFlow's protobuf, loaded globally, crashed the SentencePiece op's model parse (a
    segmentation fault opening the session) until the library was loaded to bind to itself."""
    import subprocess
    import sys

    conv, _ = converted_spiece
    code = ("import tensorflow\nimport numpy as np\n"
            "from edge_albert.converters.onnx_e2e import session\n"
            f"s = session({str(conv / 'model.fp32.e2e.onnx')!r})\n"
            "print(s.run(['label'], {'text': np.array(['a fine film'], dtype=object)})[0])\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() in ("['0']", "['1']")


def test_other_tokenizers_and_missing_calibration_are_refused(tiny_model, wordpiece_albert,
                                                              tmp_path):
    from edge_albert.converters.convert import ConvertConfig, run_convert
    from edge_albert.converters.onnx_e2e import e2e_refusal

    cased = tmp_path / "cased"
    cased.mkdir()
    (cased / "spiece.model").write_bytes((tiny_model / "spiece.model").read_bytes())
    (cased / "tokenizer_config.json").write_text('{"do_lower_case": false}')
    assert "lower-casing SentencePiece" in e2e_refusal(cased)
    (wp := tmp_path / "wp").mkdir()
    spec = json.loads((wordpiece_albert["model"] / "tokenizer.json").read_text())
    spec["normalizer"] = {"type": "NFC"}
    (wp / "tokenizer.json").write_text(json.dumps(spec))
    assert "BERT's normaliser" in e2e_refusal(wp)
    cfg = ConvertConfig(formats=("onnx-e2e",), precisions=("fp32",), buckets=(16,))
    with pytest.raises(ConfigError, match="onnx-e2e needs calibration text") as e:
        run_convert(cfg, wordpiece_albert["model"], tmp_path / "b", progress=False)
    assert "\n" not in str(e.value)
    assert not (tmp_path / "b").exists()


def test_int8_files_do_not_depend_on_what_the_process_imported(converted):
    """quant_pre_process saves every domain registered in the process: once the extensions were
    imported, the same model's int8 file gained ai.onnx.contrib (a flaky hash in the kill test)."""
    import onnx

    conv, _ = converted
    model = onnx.load(str(conv / "model.int8-dynamic.onnx"))
    used = {n.domain for n in model.graph.node} | {""}
    assert {o.domain for o in model.opset_import} == used
