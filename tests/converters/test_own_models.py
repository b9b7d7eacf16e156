"""Models as users save them (#16): transformers' default label names, unlabelled calibration
text, labels mapped onto the model's, and a BERT converted to TFLite like an ALBERT."""
from __future__ import annotations

import json
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


@pytest.fixture(scope="module")
def bert_cls(tmp_path_factory, tiny_tokenizer):
    from edge_albert.runtime.tokenizer import TextTokenizer

    from edge_albert.modeling import copy_tokenizer_files

    cfg = transformers.BertConfig(vocab_size=TextTokenizer.load(tiny_tokenizer).vocab_size,
                                  hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                  intermediate_size=64, max_position_embeddings=64,
                                  pad_token_id=0, num_labels=3)
    torch.manual_seed(0)
    model = transformers.BertForSequenceClassification(cfg).eval()
    return model, tiny_tokenizer, copy_tokenizer_files


def _save(model, path, layout: str) -> None:
    """A checkpoint as users have them: safetensors (whole or sharded, as transformers 5 writes
    them), or PyTorch's pickled pytorch_model.bin (whole or sharded, as older versions did)."""
    if layout.endswith("safetensors"):
        model.save_pretrained(path, max_shard_size="20KB" if layout.startswith("sharded") else "5GB")
        return
    model.config.save_pretrained(path)
    state = model.state_dict()
    if layout == "bin":
        torch.save(state, path / "pytorch_model.bin")
        return
    keys = sorted(state)
    parts = [keys[i::3] for i in range(3)]
    weight_map = {}
    for n, part in enumerate(parts, 1):
        name = f"pytorch_model-{n:05d}-of-00003.bin"
        torch.save({k: state[k] for k in part}, path / name)
        weight_map.update({k: name for k in part})
    (path / "pytorch_model.bin.index.json").write_text(json.dumps(
        {"metadata": {}, "weight_map": weight_map}))


@pytest.mark.parametrize("layout", ["safetensors", "bin", "sharded-safetensors", "sharded-bin"])
def test_checkpoint_layouts_load_with_the_same_logits(bert_cls, tmp_path, layout):
    from edge_albert.modeling import load_classifier

    model, tok, copy = bert_cls
    (tmp_path / "m").mkdir()
    _save(model, tmp_path / "m", layout)
    copy(tok, tmp_path / "m")
    names = {p.name for p in (tmp_path / "m").iterdir()}
    assert any(n.endswith(".index.json") for n in names) == layout.startswith("sharded")
    loaded = load_classifier(tmp_path / "m")
    ids = torch.randint(5, model.config.vocab_size, (2, 9))
    with torch.no_grad():
        assert torch.equal(loaded(input_ids=ids).logits, model(input_ids=ids).logits)
    assert loaded.config.num_labels == 3


def test_another_head_and_mismatched_weights_are_one_line_errors(bert_cls, tmp_path):
    from edge_albert.errors import ModelError
    from edge_albert.modeling import load_classifier

    model, _, _ = bert_cls
    mlm = transformers.BertForMaskedLM(model.config)
    mlm.save_pretrained(tmp_path / "mlm")
    with pytest.raises(ModelError, match=r"not a sequence-classification model \(architectures:"
                                         r" \['BertForMaskedLM'\]\)"):
        load_classifier(tmp_path / "mlm")
    model.save_pretrained(tmp_path / "bad")
    cfg = json.loads((tmp_path / "bad" / "config.json").read_text())
    cfg["intermediate_size"] = 48  # the weights say 64
    (tmp_path / "bad" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelError) as e:
        load_classifier(tmp_path / "bad")
    msg = str(e.value)
    assert "\n" not in msg and "the weights do not fit config.json" in msg
    assert "intermediate.dense" in msg and "is [64] in the weights, config.json makes it [48]" in msg


@pytest.mark.parametrize("kind", ["bert", "minilm", "roberta", "distilbert"])
def test_bert_family_reaches_every_tflite_precision(kind, tiny_tokenizer, tiny_task, tmp_path):
    """Through its ALBERT form: builtin ops only, fp32 parity <= 1e-4, encoder weights in int8.
    (DistilBERT's form has a ReLU pooler; it is converted, never written as an ALBERT.)"""
    from ai_edge_litert import schema_py_generated as schema
    from edge_albert.converters.census import census
    from edge_albert.converters.convert import ConvertConfig, run_convert
    from edge_albert.runtime.tokenizer import TextTokenizer

    from edge_albert.modeling import copy_tokenizer_files

    small = dict(vocab_size=TextTokenizer.load(tiny_tokenizer).vocab_size, hidden_size=32,
                 num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
    if kind == "bert":
        cfg = transformers.BertConfig(max_position_embeddings=64, pad_token_id=0, **small)
    elif kind == "minilm":  # MiniLM's shape: a BERT with many narrow heads (here 12 of 4 dims)
        cfg = transformers.BertConfig(**{**small, "hidden_size": 48, "num_attention_heads": 12,
                                         "intermediate_size": 192},
                                      max_position_embeddings=64, pad_token_id=0)
    elif kind == "roberta":
        cfg = transformers.RobertaConfig(max_position_embeddings=66, pad_token_id=1,
                                         type_vocab_size=1, **small)
    else:
        cfg = transformers.DistilBertConfig(vocab_size=small["vocab_size"], dim=32, n_layers=2,
                                            n_heads=2, hidden_dim=64, max_position_embeddings=64,
                                            pad_token_id=0)
    torch.manual_seed(0)
    transformers.AutoModelForSequenceClassification.from_config(cfg).save_pretrained(tmp_path / "m")
    copy_tokenizer_files(tiny_tokenizer, tmp_path / "m")
    m = run_convert(ConvertConfig(formats=("tflite",), buckets=(16, 32), calibration_size=32,
                                  parity_examples=32), tmp_path / "m", tmp_path / "conv",
                    calibration=tiny_task["train"], progress=False)
    assert m.extra["source_model_type"] == ("bert" if kind == "minilm" else kind)
    builtin = {k for k in vars(schema.BuiltinOperator) if not k.startswith("_")} - {"CUSTOM"}
    for precision in ("fp32", "fp16", "int8-dynamic", "int8-static"):
        name = f"model.{precision}.tflite"
        c = census(tmp_path / "conv" / name)
        assert c.custom_ops == [] and set(c.ops) <= builtin, name
        par = m.files[name]["parity"]
        if precision == "fp32":
            assert par["max_abs_logit_diff"] <= 1e-4
        elif precision == "fp16":
            assert par["max_abs_logit_diff"] <= 1e-2
        else:
            assert m.files[name]["census"]["weight_ops"]["encoder"]["int8"] >= 8, name
