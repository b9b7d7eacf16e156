"""Pruned students: the teacher's ALBERT form, Fisher scores, shapes at a FLOPs target (tiny, CPU)."""
from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from edge_albert.albert_form import Keep, full_keep, slice_albert, to_albert
from edge_albert.config import DistillConfig, FinetuneConfig, from_mapping
from edge_albert.distill import run_distill
from edge_albert.errors import ConfigError, ModelError
from edge_albert.finetune import run_finetune
from edge_albert.students import flops_per_sequence

from .conftest import FAST, _base_model

WIDE = dict(hidden_size=64, num_hidden_layers=3, num_attention_heads=4, intermediate_size=256)


def _feeds(vocab: int, pad: int = 0):
    ids = torch.randint(5, vocab, (4, 12))
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    mask[3, 3:] = 0
    ids[mask == 0] = pad
    return ids, mask


def _random_classifier(kind: str, vocab: int):
    small = dict(**WIDE, max_position_embeddings=64, num_labels=3)
    cfg = {
        "bert": lambda: transformers.BertConfig(vocab_size=vocab, pad_token_id=0, **small),
        "roberta": lambda: transformers.RobertaConfig(vocab_size=vocab, pad_token_id=1,
                                                      type_vocab_size=1,
                                                      **{**small, "max_position_embeddings": 66}),
        "albert": lambda: transformers.AlbertConfig(vocab_size=vocab, embedding_size=16,
                                                    num_hidden_groups=1, pad_token_id=0, **small),
    }[kind]()
    torch.manual_seed(0)
    return transformers.AutoModelForSequenceClassification.from_config(cfg).eval()


@pytest.mark.parametrize("kind", ["bert", "roberta", "albert"])
def test_albert_form_reproduces_the_teacher(kind):
    teacher = _random_classifier(kind, 300)
    albert = to_albert(teacher)
    assert albert.config.model_type == "albert"
    assert albert.config.num_hidden_groups == albert.config.num_hidden_layers == 3
    ids, mask = _feeds(300, pad=teacher.config.pad_token_id)
    with torch.no_grad():
        want = teacher(input_ids=ids, attention_mask=mask).logits
        got = albert(input_ids=ids, attention_mask=mask).logits
    assert float((want - got).abs().max()) <= 1e-5


def test_unsupported_teacher_is_refused():
    teacher = transformers.AutoModelForSequenceClassification.from_config(
        transformers.DistilBertConfig(vocab_size=100, dim=32, n_layers=1, n_heads=2, hidden_dim=64))
    with pytest.raises(ModelError, match="supports albert, bert, roberta"):
        to_albert(teacher)
    # the converters take it: its ALBERT form (a ReLU pooler) has the same logits, pairs included
    albert = to_albert(teacher.eval(), for_conversion=True)
    ids = torch.randint(5, 100, (3, 11))
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    types = torch.zeros_like(ids)
    types[2, 5:] = 1
    with torch.no_grad():
        want = teacher(input_ids=ids, attention_mask=mask).logits
        got = albert(input_ids=ids, attention_mask=mask, token_type_ids=types).logits
    assert float((want - got).abs().max()) <= 1e-5


def test_slice_keeps_exactly_the_named_units():
    albert = to_albert(_random_classifier("bert", 300))
    full = full_keep(albert)
    keep = Keep((0, 2), ((1, 3), (0, 2)), ((5, 9, 100), (0, 1, 2)), tuple(range(16, 48)))
    cut = slice_albert(albert, keep)
    assert (cut.config.num_hidden_layers, cut.config.num_attention_heads,
            cut.config.intermediate_size, cut.config.hidden_size) == (2, 2, 3, 32)
    src = albert.albert.encoder.albert_layer_groups[2].albert_layers[0]
    dst = cut.albert.encoder.albert_layer_groups[1].albert_layers[0]
    rows = list(range(16)) + list(range(32, 48))  # heads 0 and 2, 16 dims each
    assert torch.equal(dst.attention.query.weight, src.attention.query.weight[rows][:, 16:48])
    assert torch.equal(dst.ffn.weight, src.ffn.weight[[0, 1, 2]][:, 16:48])
    # keeping everything changes nothing
    ids, mask = _feeds(300)
    with torch.no_grad():
        same = slice_albert(albert, full)(input_ids=ids, attention_mask=mask).logits
        assert torch.equal(same, albert(input_ids=ids, attention_mask=mask).logits)
    with pytest.raises(ModelError, match="not a uniform slice"):
        slice_albert(albert, Keep((0,), ((0,),), ((0, 1),), tuple(range(32))))


def test_removed_units_are_exactly_the_lowest_scored(task, tiny_tokenizer):
    from edge_albert.runtime.tokenizer import TextTokenizer

    from edge_albert.prune import fisher_scores, keep_for
    from edge_albert.training import tokenize

    tok = TextTokenizer.load(tiny_tokenizer)
    albert = to_albert(_random_classifier("bert", tok.vocab_size))
    train = task[0]
    data = tokenize(tok, train, ["0", "1", "2"], 32, labels=[int(x) for x in train.labels])
    scores = fisher_scores(albert, data, [np.arange(0, 16), np.arange(16, 32)])
    assert scores.examples == 32 and bool((scores.heads > 0).all())
    scores.layers = torch.tensor([3.0, 1.0, 2.0])
    keep = keep_for(scores, layers=2, heads=2, ffn=100)
    assert keep.layers == (0, 2)  # the layer whose removal hurt least is gone
    for i, layer in enumerate(keep.layers):
        for kept, s in ((keep.heads[i], scores.heads[layer]), (keep.neurons[i], scores.neurons[layer])):
            dropped = [j for j in range(len(s)) if j not in kept]
            assert float(s[list(kept)].min()) >= float(s[dropped].max())
    dropped = [j for j in range(64) if j not in keep.hidden]
    assert len(keep.hidden) == 32
    assert float(scores.hidden[list(keep.hidden)].min()) >= float(scores.hidden[dropped].max())

    # scoring keeps nothing alive: a hook that held its own activation leaked every batch's
    import gc

    def live() -> int:
        gc.collect()
        return sum(issubclass(type(o), torch.Tensor) for o in gc.get_objects())

    fisher_scores(albert, data, [np.arange(0, 16)])
    before = live()
    again = fisher_scores(albert, data, [np.arange(0, 16), np.arange(16, 32)] * 3)
    assert live() - before <= 5  # (the returned scores)
    assert torch.allclose(again.heads, 3 * scores.heads, rtol=1e-4)


@pytest.fixture(scope="module")
def wide_teacher(tmp_path_factory, tiny_tokenizer, task):
    """A fine-tuned BERT wide enough to prune (hidden 64, 4 heads, FFN 256, 3 layers)."""
    from edge_albert.runtime.tokenizer import TextTokenizer

    d = tmp_path_factory.mktemp("wide")
    vocab = TextTokenizer.load(tiny_tokenizer).vocab_size
    torch.manual_seed(0)
    transformers.BertModel(transformers.BertConfig(
        vocab_size=vocab, pad_token_id=0, max_position_embeddings=64, **WIDE)).save_pretrained(d / "base")
    from edge_albert.modeling import copy_tokenizer_files

    copy_tokenizer_files(tiny_tokenizer, d / "base")
    m = run_finetune(FinetuneConfig(**FAST), d / "base", *task, d / "teacher", progress=False)
    assert m is not None
    return d / "teacher"


PRUNE = dict(**{**FAST, "max_steps": 24, "eval_every": 12}, student="pruned", flops=0.4,
             prune_steps=2, prune_score_batches=2)


@pytest.fixture(scope="module")
def pruned_student(wide_teacher, task, tmp_path_factory):
    out = tmp_path_factory.mktemp("pruned") / "student"
    m = run_distill(DistillConfig(**PRUNE, hidden_weight=1.0), wide_teacher, *task, out,
                    progress=False)
    assert m is not None
    return out, m


def test_pruned_student_hits_the_flops_target(pruned_student, wide_teacher):
    from edge_albert.modeling import load_classifier

    out, m = pruned_student
    student, teacher = load_classifier(out), load_classifier(wide_teacher)  # plain reloads
    assert student.config.model_type == "albert"
    target = 0.4 * flops_per_sequence(teacher.config, 32)
    got = flops_per_sequence(student.config, 32)
    assert got <= target and got >= 0.95 * target
    phases = m.extra["prune"]["phases"]
    assert [p["step"] for p in phases] == [1, 2]
    assert phases[0]["flops"] > phases[1]["flops"]  # pruned in steps
    assert m.extra["flops_per_seq_max_length"] == got
    log = [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]
    assert {r.get("prune_step") for r in log} == {1, 2}
    assert not out.with_name("student.partial").exists()


def test_pruned_student_converts_with_fp32_parity(pruned_student, task, tmp_path):
    from edge_albert.converters.convert import ConvertConfig, run_convert

    out, _ = pruned_student
    cfg = ConvertConfig(precisions=("fp32", "int8-dynamic"), buckets=(16, 32), parity_examples=64)
    m = run_convert(cfg, out, tmp_path / "conv", calibration=task[0].path, progress=False)
    files = {n: f for n, f in m.files.items() if "parity" in f}
    assert {n.rsplit(".", 1)[1] for n in files} == {"onnx", "ort", "tflite"}
    for name, f in files.items():
        if "fp32" in name:
            assert f["parity"]["max_abs_logit_diff"] <= 1e-4, name
        else:
            assert f["parity"]["agreement"] >= 0.95, name


@pytest.mark.parametrize("value", [0, 1, 1.5, -0.2])
def test_flops_target_outside_zero_one_is_refused(value):
    with pytest.raises(ConfigError, match=r"distill.flops"):
        from_mapping(DistillConfig, {"flops": value}, section="distill")


def test_unsupported_teacher_writes_nothing(tmp_path, tiny_tokenizer, task):
    from edge_albert.runtime.tokenizer import TextTokenizer

    base = _base_model("distilbert", TextTokenizer.load(tiny_tokenizer).vocab_size,
                       tmp_path / "base", tiny_tokenizer)
    ft = run_finetune(FinetuneConfig(**{**FAST, "max_steps": 2}), base, *task, tmp_path / "t",
                      progress=False)
    assert ft is not None
    with pytest.raises(ModelError, match="supports albert, bert"):
        run_distill(DistillConfig(**PRUNE), tmp_path / "t", *task, tmp_path / "s", progress=False)
    assert not (tmp_path / "s").exists() and not (tmp_path / "s.partial").exists()


# ----------------------------------------------------------------------------- unlabelled text
def test_unlabelled_text_joins_the_transfer_set(bert_teacher, task, tmp_path, monkeypatch):
    from edge_albert.data import read_texts

    monkeypatch.setenv("EDGE_ALBERT_CACHE", str(tmp_path / "cache"))
    prose = tmp_path / "prose.txt"
    prose.write_text("the film was long\n\nan actor spoke\na quiet evening\n", encoding="utf-8")
    cfg = DistillConfig(**{**FAST, "max_steps": 2}, student="tiny")
    m = run_distill(cfg, bert_teacher, *task, tmp_path / "s1", unlabelled=read_texts(prose),
                    progress=False)
    assert m is not None
    assert m.extra["train_rows"] == len(task[0]) + 3
    assert m.extra["unlabelled"] == {"rows": 3, "ignored_label_column": None}
    prose.write_text("the film was long\nan actor spoke\na loud evening\n", encoding="utf-8")
    run_distill(cfg, bert_teacher, *task, tmp_path / "s2", unlabelled=read_texts(prose),
                progress=False)
    cached = sorted((tmp_path / "cache" / "teacher-logits").glob("*.npy"))
    assert len(cached) == 2  # other texts, another key: the logits were computed again


def test_labelled_file_as_unlabelled_ignores_its_labels(task):
    from edge_albert.data import read_texts

    t = read_texts(task[0].path)
    assert t.ignored_labels == "label" and t.texts == task[0].texts and t.pairs is None


def test_unlabelled_pairs_and_bad_files(tmp_path):
    from edge_albert.data import read_texts
    from edge_albert.errors import DataError

    (tmp_path / "pairs.txt").write_text("a cat\ta dog\nsun\tmoon\n", encoding="utf-8")
    t = read_texts(tmp_path / "pairs.txt")
    assert t.texts == ("a cat", "sun") and t.pairs == ("a dog", "moon")
    (tmp_path / "empty.txt").write_text("\n  \n", encoding="utf-8")
    with pytest.raises(DataError, match="no text") as e:
        read_texts(tmp_path / "empty.txt")
    assert "empty.txt" in str(e.value)
    (tmp_path / "mixed.txt").write_text("one\ntwo\tthree\n", encoding="utf-8")
    with pytest.raises(DataError, match="on every line"):
        read_texts(tmp_path / "mixed.txt")


def test_cli_refuses_a_bad_flops_target_and_an_empty_unlabelled_file(bert_teacher, task, tmp_path):
    from click.testing import CliRunner

    from edge_albert.cli import cli

    base = ["distill", "--teacher", str(bert_teacher), "--train", str(task[0].path), "--dev",
            str(task[1].path)]
    r = CliRunner().invoke(cli, [*base, "--student", "pruned", "--flops", "1.2", "--out",
                                 str(tmp_path / "a")])
    assert r.exit_code == 2 and "distill.flops" in r.output and "Traceback" not in r.output
    (tmp_path / "empty.txt").write_text("", encoding="utf-8")
    r = CliRunner().invoke(cli, [*base, "--unlabelled", str(tmp_path / "empty.txt"), "--out",
                                 str(tmp_path / "b")])
    assert r.exit_code != 0 and "empty.txt" in r.output and "no text" in r.output
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_albert_form_command_writes_a_convertible_copy(bert_teacher, tmp_path):
    from click.testing import CliRunner

    from edge_albert.cli import cli
    from edge_albert.modeling import load_classifier

    r = CliRunner().invoke(cli, ["model", "albert-form", "--model", str(bert_teacher), "--out",
                                 str(tmp_path / "a")])
    assert r.exit_code == 0, r.output
    assert "bert -> albert" in r.output
    m = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert m["stage"] == "albert-form" and m["extra"]["max_abs_logit_diff"] <= 1e-5
    assert load_classifier(tmp_path / "a").config.model_type == "albert"


def test_share_layers_merges_consecutive_layers_into_groups():
    from edge_albert.albert_form import share_layers

    albert = to_albert(_random_classifier("bert", 300))
    shared = share_layers(slice_albert(albert, Keep(
        (0, 1), tuple((0, 1, 2, 3) for _ in range(2)), tuple(tuple(range(256)) for _ in range(2)),
        tuple(range(64)))), 1)
    assert shared.config.num_hidden_groups == 1 and shared.config.num_hidden_layers == 2
    q = [albert.albert.encoder.albert_layer_groups[i].albert_layers[0].attention.query.weight
         for i in (0, 1)]
    got = shared.albert.encoder.albert_layer_groups[0].albert_layers[0].attention.query.weight
    assert torch.allclose(got, (q[0] + q[1]) / 2)
    with pytest.raises(ModelError, match="cannot share 3 layers in 2 groups"):
        share_layers(albert, 2)


def test_factorised_embeddings_keep_the_top_singular_directions():
    from edge_albert.albert_form import factorise_embeddings

    albert = to_albert(_random_classifier("bert", 300))
    small = factorise_embeddings(albert, 16)
    assert small.config.embedding_size == 16
    assert small.albert.embeddings.word_embeddings.weight.shape == (300, 16)
    assert small.albert.encoder.embedding_hidden_mapping_in.weight.shape == (64, 16)
    w = albert.albert.embeddings.word_embeddings.weight
    _, _, vt = torch.linalg.svd(w, full_matrices=False)
    got = small.albert.embeddings.word_embeddings.weight
    assert torch.allclose(got, w @ vt[:16].T, atol=1e-5)  # the rank-16 projection
    with pytest.raises(ModelError, match="embedding size 64"):
        factorise_embeddings(albert, 64)


@pytest.mark.parametrize("setting,kind,check", [
    ({"share_groups": 1}, "share", ("num_hidden_groups", 1)),
    ({"embedding_size": 16}, "factorise", ("embedding_size", 16))])
def test_pruned_student_then_shared_or_factorised(wide_teacher, task, tmp_path, setting, kind,
                                                  check):
    from edge_albert.modeling import load_classifier

    cfg = DistillConfig(**{**PRUNE, "prune_steps": 1, "flops": 0.5}, **setting)
    m = run_distill(cfg, wide_teacher, *task, tmp_path / "s", progress=False)
    assert m is not None
    phases = m.extra["prune"]["phases"]
    assert [p["kind"] for p in phases] == ["prune", kind]
    assert getattr(load_classifier(tmp_path / "s").config, check[0]) == check[1]
    if kind == "share":  # the same FLOPs, fewer parameters
        assert phases[1]["flops"] == phases[0]["flops"]
