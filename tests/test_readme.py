"""The README stays true: CI runs its test command verbatim, and its tested blocks run here."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()


def _bash_blocks(text: str) -> list[str]:
    return re.findall(r"```bash\n(.*?)```", text, flags=re.DOTALL)


def _tested_blocks() -> dict[str, tuple[str, str]]:
    """name -> (language, code) of the blocks preceded by ``<!-- tested: name ... -->``."""
    found = re.findall(r"<!-- tested: ([\w-]+)[^>]*-->\n```(\w+)\n(.*?)```", README, flags=re.DOTALL)
    return {name: (lang, code) for name, lang, code in found}


def test_readme_has_two_setup_commands_and_ci_runs_the_test_one():
    setup = README.split("## Set up", 1)[1].split("\n## ", 1)[0]
    blocks = [b.strip() for b in _bash_blocks(setup)]
    assert len(blocks) == 2, blocks
    assert blocks[0].endswith("edge-albert demo")
    test_cmd = blocks[1]
    assert "pytest" in test_cmd
    ci = (REPO / ".ci" / "run").read_text()
    assert test_cmd in ci.splitlines()


def test_tested_blocks_run(tmp_path, tiny_task, tiny_tokenizer):
    """The 'your own model' commands and the embedding snippet, on a tiny BERT."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("tensorflow")
    from edge_albert.runtime.tokenizer import TextTokenizer

    from edge_albert.modeling import copy_tokenizer_files

    blocks = _tested_blocks()
    assert set(blocks) == {"own-model", "own-classifier", "embed"}
    base = tmp_path / "path" / "to" / "bert-or-minilm"
    cfg = transformers.BertConfig(vocab_size=TextTokenizer.load(tiny_tokenizer).vocab_size,
                                  hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                  intermediate_size=64, max_position_embeddings=128, pad_token_id=0)
    torch.manual_seed(0)
    transformers.BertModel(cfg).save_pretrained(base)
    copy_tokenizer_files(tiny_tokenizer, base)
    (tmp_path / "train.tsv").write_bytes(tiny_task["train"].read_bytes())
    (tmp_path / "dev.tsv").write_bytes(tiny_task["dev"].read_bytes())
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    lang, code = blocks["own-model"]
    r = subprocess.run(["bash", "-euo", "pipefail", "-c", code], cwd=tmp_path, env=env,
                       check=False, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (tmp_path / "report" / "report.html").is_file()
    # a classifier as users have it: default labels, plain-text calibration, named data labels
    byo = tmp_path / "byo"
    mine = byo / "path" / "to" / "my-classifier"
    transformers.BertForSequenceClassification(cfg).save_pretrained(mine)
    copy_tokenizer_files(tiny_tokenizer, mine)
    (byo / "texts.txt").write_text("".join(
        line.split("\t")[0] + "\n" for line in tiny_task["train"].read_text().splitlines()[1:80]))
    named = {"0": "negative", "1": "positive"}
    rows = [line.split("\t") for line in tiny_task["dev"].read_text().splitlines()]
    (byo / "dev.tsv").write_text("\n".join(
        "\t".join([*r[:-1], named.get(r[-1], r[-1])]) for r in rows) + "\n")
    r = subprocess.run(["bash", "-euo", "pipefail", "-c", blocks["own-classifier"][1]],
                       cwd=byo, env=env, check=False, capture_output=True, text=True,
                       timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    report = (byo / "report" / "report.json").read_text()
    assert '"negative": "LABEL_0"' in report and "model.int8-dynamic.tflite" in report
    lang, code = blocks["embed"]
    assert lang == "python"
    r = subprocess.run([sys.executable, "-c", code + "\nprint(labels, probs.shape)"],
                       cwd=tmp_path, env=env, check=False, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "(2, 2)" in r.stdout
