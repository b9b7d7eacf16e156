"""Committed benchmark results read the same on every machine: no checkout paths in them."""
from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_committed_results_carry_no_absolute_checkout_path():
    results = REPO / "benchmarks" / "results"
    bad = [p.name for p in sorted(results.iterdir()) if p.suffix in (".json", ".md")
           and (str(REPO) in p.read_text(encoding="utf-8")
                or f"{REPO.parent}/shared" in p.read_text(encoding="utf-8"))]
    assert not bad


def test_portable_rewrites_paths_under_the_repo_and_its_parent():
    sys.path.insert(0, str(REPO / "benchmarks"))
    from _common import portable

    got = portable({"path": f"{REPO}/runs/sst2/teacher", "data": [f"{REPO.parent}/shared/d.tsv"],
                    "n": 3, "note": f"see {REPO}/benchmarks/peers.py"})
    assert got == {"path": "runs/sst2/teacher", "data": ["../shared/d.tsv"], "n": 3,
                   "note": "see benchmarks/peers.py"}
