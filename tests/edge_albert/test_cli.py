"""The CLI: fast start, worked examples in --help, and one-line errors for bad input."""
from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

from edge_albert.cli import cli

HEAVY = ("torch", "tensorflow", "transformers", "onnxruntime", "onnx")


def run(*args: str):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_help_is_light_and_fast():
    code = ("import sys, time; t = time.perf_counter(); from edge_albert.cli import main\n"
            "sys.argv = ['edge-albert', '--help']\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            f"heavy = [m for m in {HEAVY!r} if m in sys.modules]\n"
            "print('HEAVY', heavy, time.perf_counter() - t)")
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    wall = time.perf_counter() - t0
    assert "Commands:" in out.stdout
    line = out.stdout.strip().splitlines()[-1]
    assert line.startswith("HEAVY [] "), line
    assert wall < 3.0  # interpreter start included; the import itself is ~0.1 s


def test_version():
    r = run("--version")
    assert r.exit_code == 0 and "edge-albert, version" in r.output


@pytest.mark.parametrize("cmd", [["data", "inspect"], ["tokenizer", "train"], ["tokenizer", "encode"],
                                 ["model", "init"], ["model", "inspect"], ["artifact", "verify"],
                                 ["convert"], ["finetune"], ["distill"], ["validate"], ["pipeline"],
                                 ["demo"], ["quantize"], ["bundle"], ["report"]])
def test_every_command_has_a_worked_example(cmd):
    r = run(*cmd, "--help")
    assert r.exit_code == 0 and "Example" in r.output and "edge-albert " + " ".join(cmd) in r.output


def test_data_inspect_real_files(shared_data):
    r = run("data", "inspect", shared_data / "mrpc" / "dev.tsv")
    assert r.exit_code == 0, r.output
    assert "rows      1,500" in r.output and "labels    2" in r.output and "task      pair" in r.output
    r = run("data", "inspect", "--json", shared_data / "agnews" / "dev.tsv")
    info = json.loads(r.output)
    assert sorted(info["labels"]) == ["Business", "Sci/Tech", "Sports", "World"]


def test_tokenizer_train_encode_and_verify(tiny_task, tmp_path):
    out = tmp_path / "tok"
    r = run("tokenizer", "train", "--data", tiny_task["train"], "--vocab-size", "100", "--out", out)
    assert r.exit_code == 0, r.output
    assert {"spiece.model", "tokenizer.json", "tokenizer_config.json", "manifest.json"} <= {
        p.name for p in out.iterdir()}
    r = run("tokenizer", "encode", "--tokenizer", out, "the film is charming", "--pair", "yes")
    assert r.exit_code == 0 and r.output.splitlines()[1].startswith("input_ids      2 ")
    r = run("data", "inspect", tiny_task["dev"], "--tokenizer", out)
    assert r.exit_code == 0 and "tokens" in r.output
    assert run("artifact", "verify", out).exit_code == 0


def _bad_inputs(tmp, tiny_tokenizer, tiny_task):
    """(name, argv, substring expected in the one-line error)."""
    def f(name, content):
        p = tmp / name
        p.write_bytes(content)
        return p

    good = tiny_task["train"]
    changed = tmp / "changed_tok"
    run("tokenizer", "train", "--data", good, "--vocab-size", "60", "--out", changed)
    (changed / "tokenizer_config.json").write_text("{}")
    notmodel = tmp / "notmodel"
    notmodel.mkdir()
    (notmodel / "readme.txt").write_text("x")
    return [
        ("empty file", ["data", "inspect", f("e.tsv", b"")], "e.tsv: file is empty"),
        ("header only", ["data", "inspect", f("h.tsv", b"sentence\tlabel\n")], "h.tsv: header only"),
        ("ragged row", ["data", "inspect", f("r.tsv", b"sentence\tlabel\na\t1\nb\t0\tx\n")],
         "r.tsv:3: row has 3 fields"),
        ("missing label column", ["data", "inspect", good, "--label-column", "gold"],
         "no label column 'gold' (columns: sentence, label)"),
        ("invalid utf-8", ["data", "inspect", f("u.tsv", b"sentence\tlabel\nab\xc3\x28\t1\n")],
         "u.tsv:2: invalid UTF-8 at byte 2"),
        ("empty text", ["data", "inspect", f("t.tsv", b"sentence\tlabel\n\t1\n")],
         "t.tsv:2: empty text in column 'sentence'"),
        ("unknown extension", ["data", "inspect", f("d.xlsx", b"x")], "unknown file extension '.xlsx'"),
        ("toml syntax", ["tokenizer", "train", "--data", good, "--out", tmp / "o1", "--config",
                         f("c1.toml", b"[tokenizer]\nvocab_size = = 3\n")], "c1.toml:2: TOML syntax error"),
        ("unknown key", ["tokenizer", "train", "--data", good, "--out", tmp / "o2", "--config",
                         f("c2.toml", b"[tokenizer]\nvocab = 3\n")],
         "tokenizer.vocab: unknown key (valid keys: character_coverage, lowercase"),
        ("wrong type", ["tokenizer", "train", "--data", good, "--out", tmp / "o3", "--set",
                        "tokenizer.vocab_size=big"], "tokenizer.vocab_size: expected an integer, got 'big'"),
        ("set without =", ["tokenizer", "train", "--data", good, "--out", tmp / "o4", "--set",
                           "tokenizer.vocab_size"], "--set: --set expects section.key=value"),
        ("missing model dir", ["model", "inspect", tmp / "no_model"], "no_model: model directory does not exist"),
        ("not a HF model", ["model", "inspect", notmodel], "not a Hugging Face model directory"),
        ("tokenizer without pieces", ["tokenizer", "encode", "--tokenizer", notmodel, "x"],
         "expected spiece.model, tokenizer.json or vocab.txt"),
        ("artifact changed", ["artifact", "verify", changed],
         "tokenizer_config.json: size 2 bytes does not match the manifest"),
    ]


def test_bad_input_gives_one_line_errors(tmp_path, tiny_tokenizer, tiny_task):
    pytest.importorskip("transformers")
    for name, argv, expected in _bad_inputs(tmp_path, tiny_tokenizer, tiny_task):
        r = CliRunner().invoke(cli, [str(a) for a in argv])
        err = r.stderr if hasattr(r, "stderr") else r.output
        assert r.exit_code >= 2 and isinstance(r.exception, (SystemExit, type(None))), name
        assert "Traceback" not in r.output, name
        lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
        assert len(lines) == 1 and expected in lines[0], (name, err)
    # nothing half-written by the failed training runs
    assert not any((tmp_path / o).exists() for o in ("o1", "o2", "o3", "o4"))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_failed_tokenizer_training_leaves_no_output(tmp_path, tiny_task, monkeypatch):
    import sentencepiece

    def boom(**kw):
        raise RuntimeError("Internal: vocab_size too large")

    monkeypatch.setattr(sentencepiece.SentencePieceTrainer, "train", boom)
    r = run("tokenizer", "train", "--data", tiny_task["train"], "--out", tmp_path / "tok")
    assert r.exit_code == 3 and "error:" in r.output and "hint: a smaller --vocab-size" in r.output
    assert "Traceback" not in r.output
    assert list(tmp_path.iterdir()) == []  # neither the output nor its temporary sibling


def test_verbose_shows_traceback(tmp_path):
    r = run("-v", "data", "inspect", tmp_path / "missing.tsv")
    assert r.exit_code == 3 and "Traceback" in r.output and "error: " in r.output
