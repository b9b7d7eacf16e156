"""Models as users save them (#16): transformers' default label names, unlabelled calibration
text, labels mapped onto the model's, and a BERT converted to TFLite like an ALBERT."""
from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("tensorflow")

from edge_albert.data import Dataset, label_mapping, read_dataset
from edge_albert.errors import DataError


@pytest.fixture(scope="module", params=["albert", "bert"])
def saved(request, tmp_path_factory, tiny_tokenizer):
    """A classifier saved by save_pretrained with transformers' default labels (LABEL_0/1)."""
    from edge_albert.runtime.tokenizer import TextTokenizer

    from edge_albert.modeling import copy_tokenizer_files

    vocab = TextTokenizer.load(tiny_tokenizer).vocab_size
    small = dict(vocab_size=vocab, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                 intermediate_size=64, max_position_embeddings=64, pad_token_id=0)
    cfg = (transformers.AlbertConfig(embedding_size=16, **small) if request.param == "albert"
           else transformers.BertConfig(**small))
    torch.manual_seed(0)
    d = tmp_path_factory.mktemp(request.param) / "model"
    transformers.AutoModelForSequenceClassification.from_config(cfg).save_pretrained(d)
    copy_tokenizer_files(tiny_tokenizer, d)
    from edge_albert.modeling import label_names_of, load_classifier

    assert label_names_of(load_classifier(d)) == ["LABEL_0", "LABEL_1"]
    return d


def test_default_labels_convert_with_plain_text_and_validate_against_0_1(saved, tiny_task,
                                                                         tmp_path):
    from edge_albert.converters.convert import ConvertConfig, run_convert

    from edge_albert.report import read_report
    from edge_albert.validate import ValidateConfig, run_validate

    plain = tmp_path / "texts.txt"  # calibration needs text, not labels
    plain.write_text("".join(t + "\n" for t in read_dataset(tiny_task["train"]).texts[:80]),
                     encoding="utf-8")
    m = run_convert(ConvertConfig(formats=("onnx", "tflite"), precisions=("fp32", "int8-static"),
                                  buckets=(16, 32), calibration_size=32, parity_examples=32,
                                  fixed_shapes=()),
                    saved, tmp_path / "conv", calibration=plain, progress=False)
    assert m.extra["calibration"]["by_label"] == {"(unlabelled)": 32}
    assert m.files["model.fp32.tflite"]["parity"]["max_abs_logit_diff"] <= 1e-4
    run_validate(ValidateConfig(latency_runs=2, warmup=0, batch_sizes=(1,)), [tmp_path / "conv"],
                 tiny_task["dev"], None, tmp_path / "report", progress=False)
    report = read_report(tmp_path / "report")
    assert report["task"]["label_map"] == {"0": "LABEL_0", "1": "LABEL_1"}
    assert report["eval"]["rows"] == len(read_dataset(tiny_task["dev"]))


def test_string_labels_map_with_label_map_and_bad_maps_are_refused():
    names = ["LABEL_0", "LABEL_1"]
    assert label_mapping(["neg", "pos"], names, "neg=LABEL_0, pos=LABEL_1") == {
        "neg": "LABEL_0", "pos": "LABEL_1"}
    assert label_mapping(["1", "0"], ["negative", "positive"], "0=negative,1=positive") == {
        "0": "negative", "1": "positive"}
    assert label_mapping(["positive"], ["negative", "positive"]) == {"positive": "positive"}
    with pytest.raises(DataError, match="names the data label '0' twice"):
        label_mapping(["0"], names, "0=LABEL_0,0=LABEL_1")
    with pytest.raises(DataError, match="'LABEL_7', which is not among the model's labels"):
        label_mapping(["0"], names, "0=LABEL_7")
    with pytest.raises(DataError, match="label 'pos' is not in --label-map"):
        label_mapping(["neg", "pos"], names, "neg=LABEL_0")
    # no rule maps them: left as they are, for the caller's check to name (with a line)
    assert label_mapping(["neg", "pos"], ["negative", "positive"]) == {"neg": "neg", "pos": "pos"}
    assert label_mapping(["0", "2"], names) == {"0": "0", "2": "2"}  # LABEL_<i>: only i it has
    ds = Dataset(Path("eval.tsv"), ("a", "b"), None, ("neg", "pos"), ("t",), "l")
    with pytest.raises(DataError, match=r"label\(s\) 'neg', 'pos' not among") as e:
        ds.label_ids(["negative", "positive"], label_mapping(ds.labels, ["negative", "positive"]))
    assert "--label-map" in (e.value.hint or "")


def test_cli_label_map_errors_are_one_line(tmp_path, tiny_artifact, tiny_task):
    from click.testing import CliRunner

    from edge_albert.cli import cli

    r = CliRunner().invoke(cli, ["validate", "--artifacts", str(tiny_artifact), "--data",
                                 str(tiny_task["dev"]), "--label-map", "0=zero,1=one", "--out",
                                 str(tmp_path / "r")])
    assert r.exit_code != 0 and "Traceback" not in r.output
    assert "--label-map names 'one', which is not among the model's labels ['0', '1']" in r.output
    assert not (tmp_path / "r").exists()
