"""Fine-tuning and distillation on tiny random teachers (seconds, CPU)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from edge_albert.config import DistillConfig, FinetuneConfig
from edge_albert.data import read_dataset
from edge_albert.distill import run_distill
from edge_albert.errors import ConfigError, DataError
from edge_albert.finetune import run_finetune
from edge_albert.students import PRESETS, flops_per_sequence, student_config
from edge_albert.training import stop_after

from .conftest import FAST, _base_model


@pytest.mark.parametrize("kind", ["bert", "roberta", "distilbert", "albert"])
def test_every_family_finetunes_and_distils(kind, tmp_path, tiny_tokenizer, task):
    from edge_albert.runtime.tokenizer import TextTokenizer

    vocab = TextTokenizer.load(tiny_tokenizer).vocab_size
    base = _base_model(kind, vocab, tmp_path / "base", tiny_tokenizer)
    ft = run_finetune(FinetuneConfig(**FAST), base, *task, tmp_path / "teacher", progress=False)
    assert ft is not None and ft.extra["dev"]["accuracy"] > 0.7  # the generated task is learnable
    cfg = DistillConfig(**{**FAST, "learning_rate": 3e-3}, student="tiny",
                        hidden_weight=1.0 if kind != "distilbert" else 0.0)
    st = run_distill(cfg, tmp_path / "teacher", *task, tmp_path / "student", progress=False)
    assert st is not None
    log = [json.loads(x) for x in (tmp_path / "student" / "train_log.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in log if "loss" in r]
    assert losses[-1] < losses[0]
    cfg_json = json.loads((tmp_path / "student" / "config.json").read_text())
    assert cfg_json["model_type"] == "albert" and cfg_json["num_hidden_groups"] == 1


def test_svd_and_layer_init_from_teacher(bert_teacher, tmp_path, task):
    from edge_albert.modeling import load_classifier
    from edge_albert.students import init_from_teacher

    teacher = load_classifier(bert_teacher)
    cfg = student_config("tiny", vocab_size=teacher.config.vocab_size, label_names=["0", "1"],
                         max_positions=64)
    cfg.hidden_size, cfg.intermediate_size, cfg.num_attention_heads, cfg.embedding_size = 32, 64, 2, 16
    student = transformers.AlbertForSequenceClassification(cfg)
    done = init_from_teacher(student, teacher)
    assert "word_embeddings (truncated SVD)" in done and "classifier" in done
    # E x H factorisation reproduces the teacher's embeddings up to the truncation
    w_t = teacher.bert.embeddings.word_embeddings.weight
    approx = student.albert.encoder.embedding_hidden_mapping_in(student.albert.embeddings.word_embeddings.weight)
    approx = approx - student.albert.encoder.embedding_hidden_mapping_in.bias
    rel = float((approx - w_t).detach().norm() / w_t.detach().norm())
    assert rel < 0.8  # 16 of 32 singular directions kept
    q = student.albert.encoder.albert_layer_groups[0].albert_layers[0].attention.query.weight
    assert torch.equal(q, teacher.bert.encoder.layer[1].attention.self.query.weight)


def test_chosen_teacher_layers_and_a_narrower_ffn(bert_teacher, tmp_path, task):
    from edge_albert.modeling import load_classifier
    from edge_albert.students import ffn_neuron_order, init_from_teacher

    teacher = load_classifier(bert_teacher)
    cfg = student_config("tiny", vocab_size=teacher.config.vocab_size, label_names=["0", "1"],
                         max_positions=64)
    cfg.hidden_size, cfg.num_attention_heads, cfg.embedding_size = 32, 2, 16
    cfg.intermediate_size, cfg.num_hidden_groups = 40, 2  # the teacher's FFN has 64 neurons
    student = transformers.AlbertForSequenceClassification(cfg)
    done = init_from_teacher(student, teacher, layers=[1, 0])
    assert any("[1, 0]" in d and "top 40 of 64" in d for d in done), done
    for group, src in zip(student.albert.encoder.albert_layer_groups, (1, 0)):
        t_layer, s_layer = teacher.bert.encoder.layer[src], group.albert_layers[0]
        assert torch.equal(s_layer.attention.query.weight, t_layer.attention.self.query.weight)
        w_in, w_out = t_layer.intermediate.dense.weight, t_layer.output.dense.weight
        keep = ffn_neuron_order(w_in, w_out)[:40].sort().values
        assert torch.equal(s_layer.ffn.weight, w_in[keep])
        assert torch.equal(s_layer.ffn_output.weight, w_out[:, keep])
        # the kept neurons are the ones with the largest |in| x |out| norms
        score = w_in.norm(dim=1) * w_out.norm(dim=0)
        dropped = torch.ones(64, dtype=torch.bool)
        dropped[keep] = False
        assert score[keep].min() >= score[dropped].max()


def test_teacher_layers_must_fit_the_groups(bert_teacher, tmp_path, task):
    for layers in ([0, 1], [5]):  # the tiny student has one group; the teacher two layers
        with pytest.raises(ConfigError, match="teacher_layers") as e:
            run_distill(DistillConfig(**FAST, student="tiny", teacher_layers=tuple(layers)),
                        bert_teacher, *task, tmp_path / "s", progress=False)
        assert e.value.key == "distill.teacher_layers"
        assert not (tmp_path / "s").exists() and not list(tmp_path.glob("*.partial"))
    with pytest.raises(ValueError, match="teacher_layers"):
        DistillConfig(teacher_layers=(-1,))


def test_shared_teacher_logit_cache(bert_teacher, tmp_path, task, monkeypatch):
    import edge_albert.distill as d

    monkeypatch.setenv(d.CACHE_ENV, str(tmp_path / "cache"))
    calls: list[int] = []
    real = d.predict_logits

    def counting(model, data, **kw):
        calls.append(len(data))
        return real(model, data, **kw)

    monkeypatch.setattr(d, "predict_logits", counting)
    train, dev = task
    cfg = DistillConfig(**{**FAST, "max_steps": 4, "eval_every": 0}, student="tiny")
    assert run_distill(cfg, bert_teacher, train, dev, tmp_path / "a", progress=False) is not None
    assert calls.count(len(train)) == 1
    assert len(list((tmp_path / "cache" / "teacher-logits").glob("*.npy"))) == 1
    # another student over the same teacher and texts: the logits come from the cache
    other = DistillConfig(**{**cfg.__dict__, "student": "small", "seed": 4})
    assert run_distill(other, bert_teacher, train, dev, tmp_path / "b", progress=False) is not None
    assert calls.count(len(train)) == 1
    # the key follows the texts themselves, not the file's name or row count
    key = d.logits_key(bert_teacher, train.texts, None, 32)
    assert key == d.logits_key(bert_teacher, list(train.texts), None, 32)
    assert key != d.logits_key(bert_teacher, [train.texts[0] + "!", *train.texts[1:]], None, 32)
    assert key != d.logits_key(bert_teacher, train.texts, None, 64)


def test_frozen_embeddings_stay_the_svd_init(bert_teacher, tmp_path, task):
    from safetensors.torch import load_file

    from edge_albert.modeling import load_classifier
    from edge_albert.students import init_from_teacher

    shape = tmp_path / "student.json"  # E 16 < the teacher's H 32: the SVD init applies
    shape.write_text(json.dumps({"embedding_size": 16, "hidden_size": 32, "num_hidden_layers": 2,
                                 "num_attention_heads": 2, "intermediate_size": 64}))
    cfg = DistillConfig(**{**FAST, "max_steps": 12}, student=str(shape))
    m = run_distill(DistillConfig(**{**cfg.__dict__, "freeze_embeddings": True}), bert_teacher,
                    *task, tmp_path / "frozen", progress=False)
    free = run_distill(cfg, bert_teacher, *task, tmp_path / "free", progress=False)
    assert m is not None and free is not None
    key = "albert.embeddings.word_embeddings.weight"
    frozen_w = load_file(tmp_path / "frozen" / "model.safetensors")[key]
    student = transformers.AlbertForSequenceClassification(
        transformers.AlbertConfig.from_pretrained(tmp_path / "frozen"))
    init_from_teacher(student, load_classifier(bert_teacher))
    assert torch.equal(frozen_w, student.albert.embeddings.word_embeddings.weight)
    assert not torch.equal(load_file(tmp_path / "free" / "model.safetensors")[key], frozen_w)


def test_student_dropout_setting(bert_teacher, tmp_path, task):
    m = run_distill(DistillConfig(**{**FAST, "max_steps": 4}, student="tiny", dropout=0.1),
                    bert_teacher, *task, tmp_path / "s", progress=False)
    assert m is not None
    saved = json.loads((tmp_path / "s" / "config.json").read_text())
    assert saved["hidden_dropout_prob"] == saved["attention_probs_dropout_prob"] == 0.1
    with pytest.raises(ValueError, match="dropout"):
        DistillConfig(dropout=1.0)


def test_resume_equals_uninterrupted(bert_teacher, tmp_path, task):
    cfg = DistillConfig(**{**FAST, "checkpoint_every": 8, "max_steps": 20}, student="tiny")
    full = run_distill(cfg, bert_teacher, *task, tmp_path / "a", progress=False)
    with stop_after(16):
        assert run_distill(cfg, bert_teacher, *task, tmp_path / "b", progress=False) is None
    assert not (tmp_path / "b").exists() and (tmp_path / "b.partial" / "checkpoint.pt").is_file()
    resumed = run_distill(cfg, bert_teacher, *task, tmp_path / "b", progress=False, resume=True)
    assert full is not None and resumed is not None
    a = (tmp_path / "a" / "model.safetensors").read_bytes()
    b = (tmp_path / "b" / "model.safetensors").read_bytes()
    assert a == b
    assert not (tmp_path / "b.partial").exists()


def test_resume_with_another_config_names_the_keys(bert_teacher, tmp_path, task):
    cfg = DistillConfig(**{**FAST, "checkpoint_every": 4, "max_steps": 12}, student="tiny")
    with stop_after(4):
        run_distill(cfg, bert_teacher, *task, tmp_path / "s", progress=False)
    other = DistillConfig(**{**FAST, "checkpoint_every": 4, "max_steps": 12, "temperature": 4.0},
                          student="tiny")
    with pytest.raises(ConfigError, match=r"differing keys: temperature"):
        run_distill(other, bert_teacher, *task, tmp_path / "s", progress=False, resume=True)


def test_bad_inputs(bert_teacher, tmp_path, task, tiny_task):
    train, dev = task
    three = tmp_path / "three.tsv"
    three.write_text("sentence\tlabel\na b\t0\nc d\t1\ne f\t2\n")
    with pytest.raises(DataError, match="teacher has 2 labels"):
        run_distill(DistillConfig(**FAST), bert_teacher, read_dataset(three),
                    read_dataset(three), tmp_path / "x", progress=False)
    one = tmp_path / "one.tsv"
    one.write_text("sentence\tlabel\na b\t1\nc d\t1\n")
    with pytest.raises(DataError, match="one class only"):
        run_distill(DistillConfig(**FAST), bert_teacher, read_dataset(one), dev, tmp_path / "x",
                    progress=False)
    bad = tmp_path / "student.json"
    bad.write_text(json.dumps({"hidden_size": 30, "num_attention_heads": 4}))
    with pytest.raises(ConfigError, match="not divisible"):
        run_distill(DistillConfig(**FAST, student=str(bad)), bert_teacher, train, dev,
                    tmp_path / "x", progress=False)
    with pytest.raises(ValueError, match="augment must be >= 0"):
        DistillConfig(augment=-1)
    assert not (tmp_path / "x").exists()


def test_augment_and_groups(bert_teacher, tmp_path, task):
    spec = tmp_path / "grouped.json"
    spec.write_text(json.dumps({"embedding_size": 16, "hidden_size": 32, "num_attention_heads": 2,
                                "intermediate_size": 64, "num_hidden_layers": 4,
                                "num_hidden_groups": 2}))
    cfg = DistillConfig(**FAST, student=str(spec), augment=2)
    m = run_distill(cfg, bert_teacher, *task, tmp_path / "s", progress=False)
    assert m is not None and m.extra["train_rows"] == 3 * len(task[0])
    cfg_json = json.loads((tmp_path / "s" / "config.json").read_text())
    assert cfg_json["num_hidden_groups"] == 2


def test_presets_meet_their_size_and_flop_budgets():
    teacher = transformers.BertConfig(vocab_size=30522, hidden_size=384, num_hidden_layers=6,
                                      num_attention_heads=12, intermediate_size=1536, num_labels=2)
    t_params = 22.7e6
    small = student_config("small", vocab_size=30522, label_names=["0", "1"], max_positions=512)
    assert flops_per_sequence(small, 128) <= flops_per_sequence(teacher, 128) / 3
    n = sum(p.numel() for p in transformers.AlbertForSequenceClassification(small).parameters())
    assert n <= t_params / 4
    assert set(PRESETS) >= {"tiny", "small", "medium", "large"}


DDP_SCRIPT = r"""
import hashlib, sys, torch
from pathlib import Path
from edge_albert.config import DistillConfig
from edge_albert.data import read_dataset
from edge_albert.distill import run_distill
import edge_albert.distill_loss as d
train = read_dataset(sys.argv[2]); dev = read_dataset(sys.argv[3], label_names=train.label_names())
cfg = DistillConfig(max_steps=6, batch_size=8, max_length=32, learning_rate=3e-3, eval_every=6,
                    checkpoint_every=0, seed=3, threads=1, student="tiny")
captured = {}
orig = d.DistillLoss.__init__
def keep(self, student, *a, **k):
    orig(self, student, *a, **k); captured["s"] = student
d.DistillLoss.__init__ = keep
run_distill(cfg, sys.argv[1], train, dev, Path(sys.argv[4]), progress=False)
h = hashlib.sha256(b"".join(p.detach().numpy().tobytes() for p in captured["s"].parameters())).hexdigest()
rank = torch.distributed.get_rank()
Path(sys.argv[4] + f".rank{rank}").write_text(h)
torch.distributed.destroy_process_group()
"""


def test_two_process_gloo_ranks_end_identical(bert_teacher, tmp_path, tiny_task):
    script = tmp_path / "ddp.py"
    script.write_text(DDP_SCRIPT)
    out = tmp_path / "student"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    import socket

    with socket.socket() as sock:  # a free port: a fixed one may be held by another process
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                        "--master_port", str(port), "--tee", "3", str(script), str(bert_teacher),
                        str(tiny_task["train"]), str(tiny_task["dev"]), str(out)], check=False,
                       capture_output=True, text=True, env=env, timeout=300)
    # each rank's own output is teed with a "[rank]:" prefix: show its errors, not the launcher's
    errors = [x for x in (r.stdout + r.stderr).splitlines() if "Error" in x or "error" in x]
    assert r.returncode == 0, "\n".join(errors[:20]) or r.stderr[-2000:]
    h0 = (tmp_path / "student.rank0").read_text()
    h1 = (tmp_path / "student.rank1").read_text()
    assert h0 == h1 and (out / "manifest.json").is_file()
    assert np.isfinite(json.loads((out / "manifest.json").read_text())["extra"]["dev"]["accuracy"])
