"""The held-out sets written for this project read as tasks, are balanced, and share no text
with ../shared (they re-check accuracy claims, so any overlap would make them dev data)."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from edge_albert.data import read_dataset

HELDOUT = Path(__file__).resolve().parents[2] / "benchmarks" / "heldout"
SETS = {  # file -> (shared task, rows, rows per label)
    "sentiment_heldout.tsv": ("sst2", 400, 200),
    "agnews_heldout.tsv": ("agnews", 200, 50),
    "mrpc_heldout.tsv": ("mrpc", 120, 60),
}


@pytest.mark.parametrize("name", sorted(SETS))
def test_heldout_set_is_balanced_and_disjoint_from_shared(name, shared_data):
    task, rows, per_label = SETS[name]
    held = read_dataset(HELDOUT / name)
    assert len(held) == rows
    assert set(Counter(held.labels).values()) == {per_label}
    texts = set(held.texts) | set(held.pairs or ())
    for split in ("train", "dev"):
        shared = read_dataset(shared_data / task / f"{split}.tsv")
        assert held.is_pair == shared.is_pair
        assert not texts & (set(shared.texts) | set(shared.pairs or ())), f"overlap with {split}"
    # the models' label names: the set must read with them
    shared_names = read_dataset(shared_data / task / "train.tsv").label_names()
    assert sorted(held.label_names()) == sorted(shared_names)
