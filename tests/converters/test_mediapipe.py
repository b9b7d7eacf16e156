"""MediaPipe TextClassifier files (#17): MediaPipe's own TextClassifier runs them. On 200 texts
(long, upper-case and accented ones included) it feeds the model the ids the runtime makes (read
off an echo file) and returns torch's probabilities; WordPiece texts MediaPipe tokenizes
differently (accents) are measured and recorded, not passed off as equal; validate reports the
files; the Android bundle ships them with a Kotlin snippet; pair tasks are refused."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("tensorflow")
pytest.importorskip("mediapipe")

from edge_albert.errors import ConfigError

from .conftest import generated_rows

LENGTH = 32


def _texts() -> list[str]:
    """200 single texts: sentences, upper case, accents, and texts past the file's length."""
    rows = [s for s, _ in generated_rows(50, seed=7)]
    out: list[str] = []
    for i, t in enumerate(rows):
        out += [t, t.upper(), t.replace("e", "é").replace("a", "À") + " — naïve Café!",
                " ".join(rows[i:i + 5])]
    return out


@pytest.fixture(scope="module")
def sharp_model(tiny_model, tmp_path_factory):
    """The tiny random ALBERT with its classifier scaled up: its probabilities then move with
    every token, so a wrong id shows in them (the plain random model's stay near 0.5)."""
    from edge_albert.modeling import copy_tokenizer_files, load_classifier

    d = tmp_path_factory.mktemp("sharp") / "model"
    model = load_classifier(tiny_model)
    with torch.no_grad():
        model.classifier.weight.mul_(400.0)
    model.save_pretrained(d)
    copy_tokenizer_files(tiny_model, d)
    return d


@pytest.fixture(scope="module")
def converted(sharp_model, task_tsv, tmp_path_factory):
    from edge_albert.converters.convert import ConvertConfig, run_convert

    d = tmp_path_factory.mktemp("mediapipe")
    m = run_convert(ConvertConfig(formats=("tflite", "mediapipe"), buckets=(16, LENGTH),
                                  precisions=("fp32", "int8-dynamic"), calibration_size=32,
                                  parity_examples=32), sharp_model, d / "conv",
                    calibration=task_tsv, progress=False)
    return d, m


def test_mediapipe_reads_the_runtimes_ids_and_returns_torchs_probabilities(converted,
                                                                          sharp_model):
    from edge_albert.converters.mediapipe_file import client_ids, fixed_module, with_metadata
    from edge_albert.converters.tf_albert import make_tf_albert
    from edge_albert.converters.tflite_convert import convert_tflite
    from edge_albert.runtime.backends import MediaPipeBackend
    from edge_albert.runtime.tokenizer import TextTokenizer

    from edge_albert.modeling import load_classifier

    d, m = converted
    meta = m.files["model.fp32.mediapipe.tflite"]
    assert meta["format"] == "mediapipe" and meta["inputs"][0]["shape"] == [1, LENGTH]
    check = meta["tokenization_checked"]
    assert check["ids_equal"] == check["texts"] and not check["first_differences"]
    texts = _texts()
    tok = TextTokenizer.load(d / "conv")
    # the ids MediaPipe feeds a model, text by text, against the runtime's
    model = load_classifier(sharp_model)
    data, _ = convert_tflite(fixed_module(make_tf_albert(model, mask_value=-1e4), LENGTH,
                                          echo=True), "fp32")
    echo = d / "echo.tflite"
    echo.write_bytes(with_metadata(data, d / "conv", [str(i) for i in range(LENGTH)], d))
    encs = [tok.encode([t], max_length=LENGTH, pad_to=LENGTH) for t in texts]
    for t, got, enc in zip(texts, client_ids(echo, texts), encs):
        assert np.array_equal(got, enc.input_ids[0] + 0.5 * enc.attention_mask[0]), t
    assert sum(int(e.attention_mask.sum()) == LENGTH for e in encs) >= 40  # truncation ran
    # the real file: torch's probabilities on the runtime's ids
    with torch.no_grad():
        ref = np.concatenate([torch.softmax(model(**{k: torch.from_numpy(v).long() for k, v in
                                                     e.as_dict().items()}).logits, -1).numpy()
                              for e in encs])
    assert ref.max(-1).mean() > 0.8  # the sharp model is confident: ids matter
    for p, tol in (("fp32", 1e-4), ("int8-dynamic", None)):
        clf = MediaPipeBackend(d / "conv" / f"model.{p}.mediapipe.tflite")
        try:
            got = np.stack([clf.scores(t) for t in texts])
        finally:
            clf.close()
        agree = float(np.mean(got.argmax(-1) == ref.argmax(-1)))
        if tol is not None:
            assert np.abs(got - ref).max() <= tol and agree == 1.0
        else:
            assert agree >= 0.97, agree


def test_sentencepiece_copy_normalises_like_the_runtime(converted):
    import sentencepiece as spm
    from edge_albert.converters.sentencepiece_uncased import uncased_sentencepiece
    from edge_albert.runtime.tokenizer import TextTokenizer

    d, _ = converted
    raw = (d / "conv" / "spiece.model").read_bytes()
    tok = TextTokenizer.load(d / "conv")
    old = spm.SentencePieceProcessor(model_proto=raw)
    new = spm.SentencePieceProcessor(model_proto=uncased_sentencepiece(raw))
    texts = _texts()
    assert all(new.encode(t, out_type=str) == tok.tokenize(t) for t in texts)
    # without it, SentencePiece alone (what MediaPipe runs) differs on upper case and accents
    assert sum(old.encode(t, out_type=str) != tok.tokenize(t) for t in texts) >= 50


def test_wordpiece_differences_are_measured_and_recorded(wordpiece_albert, tmp_path):
    from edge_albert.converters.convert import ConvertConfig, run_convert

    cal = tmp_path / "cal.tsv"
    cal.write_text("sentence\tlabel\n" + "".join(f"{s}\t{y}\n" for s, y in generated_rows(40)))
    m = run_convert(ConvertConfig(formats=("mediapipe",), precisions=("fp32",), buckets=(32,),
                                  parity_examples=24), wordpiece_albert["model"], tmp_path / "c",
                    calibration=cal, progress=False)
    meta = m.files["model.fp32.mediapipe.tflite"]
    check = meta["tokenization_checked"]
    assert 0 < check["texts"] - check["ids_equal"] <= 8  # the accented variants, no others
    assert all(any(ch in x for ch in "éà") for x in check["first_differences"])
    assert "strips no accents" in check["why"]
    assert meta["parity"]["n"] == check["ids_equal"]
    assert meta["parity"]["max_abs_logit_diff"] <= 1e-4


def test_classifier_and_validate_run_the_file_in_mediapipe(converted, task_tsv, sharp_model):
    from edge_albert.runtime import Classifier

    from edge_albert.report import read_report
    from edge_albert.validate import ValidateConfig, run_validate

    d, _ = converted
    texts = _texts()[:24]
    mp = Classifier.load(d / "conv", model="model.fp32.mediapipe.tflite")
    assert mp.backend.name == "mediapipe"
    tfl = Classifier.load(d / "conv", model="model.fp32.tflite")
    a, b = mp.logits(texts), tfl.logits(texts)
    mp.backend.close()  # type: ignore[attr-defined]
    pa = np.exp(a)  # log-probabilities: exp gives MediaPipe's probabilities
    pb = np.exp(b - b.max(-1, keepdims=True))
    pb /= pb.sum(-1, keepdims=True)
    assert np.abs(pa - pb).max() <= 1e-4 and (a.argmax(-1) == b.argmax(-1)).all()
    run_validate(ValidateConfig(latency_runs=1, warmup=0, batch_sizes=(1,)), [d / "conv"],
                 task_tsv, sharp_model, d / "report", progress=False)
    files = {f["name"]: f for f in read_report(d / "report")["artifacts"]}
    row = files["model.fp32.mediapipe.tflite"]
    assert row["format"] == "mediapipe" and row["backend"] == "mediapipe"
    assert row["agreement"] == files["model.fp32.tflite"]["agreement"] == 1.0
    assert row["max_abs_logit_diff"] <= 1e-3  # log-probabilities against log-softmax
    assert row["latency_ms"]["p50"] > 0
    assert row["heavy_modules"] == []  # MediaPipe's import of TensorFlow is hidden, as on a phone


def test_android_bundle_ships_the_files_with_a_kotlin_snippet(converted, task_tsv, tmp_path):
    from edge_albert.bundle import BundleConfig, Target, run_bundle

    d, _ = converted
    m = run_bundle(BundleConfig(target=Target.ANDROID), d / "conv", task_tsv, tmp_path / "b",
                   progress=False)
    assert m.extra["mediapipe"] == ["mediapipe/model.fp32.mediapipe.tflite",
                                    "mediapipe/model.int8-dynamic.mediapipe.tflite"]
    assert not any("mediapipe" in n for n in m.extra["models"])  # adb's tools do not time them
    readme = (tmp_path / "b" / "README.txt").read_text()
    assert 'TextClassifier.createFromFile(context, "model.fp32.mediapipe.tflite")' in readme
    assert (tmp_path / "b" / "mediapipe" / "model.int8-dynamic.mediapipe.tflite").is_file()


def test_pairs_and_missing_calibration_are_refused(tiny_model, tmp_path):
    from edge_albert.converters.convert import ConvertConfig, run_convert

    cfg = ConvertConfig(formats=("mediapipe",), precisions=("fp32",), buckets=(16,))
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("sentence1\tsentence2\tlabel\n" + "".join(
        f"{s}\t{s}\t{y}\n" for s, y in generated_rows(20)))
    with pytest.raises(ConfigError, match="MediaPipe's TextClassifier takes one text") as e:
        run_convert(cfg, tiny_model, tmp_path / "a", calibration=pairs, progress=False)
    assert "\n" not in str(e.value) and e.value.key == "--formats"
    with pytest.raises(ConfigError, match="mediapipe needs calibration text"):
        run_convert(cfg, tiny_model, tmp_path / "b", progress=False)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_if_installed_formats_are_added_or_skipped_with_the_extra_named(monkeypatch):
    import importlib.util

    from edge_albert.converters.convert import ConvertConfig
    from edge_albert.converters.spec import Format

    cfg = ConvertConfig(formats=("onnx",), if_installed=("mediapipe", "pte"))
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "executorch" else real(name, *a))
    got, skipped = cfg.installed()
    assert got.formats == (Format.ONNX, Format.MEDIAPIPE)
    assert skipped == {"pte": "executorch is not installed (pip install"
                              " 'edge-albert[executorch]')"}
    with pytest.raises(ConfigError, match="unknown value 'coreml'"):
        ConvertConfig(if_installed=("coreml",))
