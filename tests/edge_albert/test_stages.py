"""The stage facade: every stage keeps the one contract, and importing it stays light."""
from __future__ import annotations

import inspect
import subprocess
import sys

import pytest

STAGES = ("run_tokenizer", "run_finetune", "run_distill", "run_trim_vocab", "run_quantize", "run_convert",
          "run_validate", "run_bundle")


@pytest.mark.parametrize("name", STAGES)
def test_every_stage_keeps_the_contract(name):
    pytest.importorskip("torch")
    from edge_albert import stages

    fn = getattr(stages, name)
    params = inspect.signature(fn).parameters
    first = next(iter(params))
    assert first in ("cfg", "config")
    assert "out_dir" in params
    assert params["force"].kind is inspect.Parameter.KEYWORD_ONLY and params["force"].default is False
    assert params["progress"].kind is inspect.Parameter.KEYWORD_ONLY
    assert params["progress"].default is None
    assert "stop_after" not in params  # test hooks stay out of public signatures
    assert "Manifest" in str(inspect.signature(fn).return_annotation)


def test_the_facade_imports_no_heavy_framework():
    code = ("import sys, edge_albert.stages as s; assert s.__all__;"
            " heavy = [m for m in ('torch', 'tensorflow', 'transformers', 'onnxruntime')"
            " if m in sys.modules]; print(heavy); assert not heavy")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
