"""benchmarks/distill.py draws its results: one bar per student, the teacher and the target."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def test_plot_draws_every_student(tmp_path):
    pytest.importorskip("matplotlib")
    from PIL import Image

    spec = importlib.util.spec_from_file_location("distill_bench", BENCH / "distill.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    teacher = {"parameters": 22_000_000, "flops_per_seq_128": 3e9, "dev_accuracy": 0.9}
    students = {f"s{i}": {"parameters": 4e6 + i * 1e6, "flops_per_seq_128": 0.5e9 * (i + 1),
                          "dev_accuracy": 0.8 + i / 100, "heldout_accuracy": 0.78}
                for i in range(6)}
    png = tmp_path / "distill_x.png"
    mod.plot({"task": "x", "teacher": teacher, "students": students}, png)
    with Image.open(png) as im:
        few = im.size
    mod.plot({"task": "x", "teacher": teacher, "students": dict(list(students.items())[:2])}, png)
    with Image.open(png) as im:
        assert im.format == "PNG" and im.size[1] < few[1]  # one row per student
