"""The recipes the package ships (edge-albert demo, demo --task sst2) are the ones in configs/."""
from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["demo", "sst2"])
def test_packaged_recipes_equal_the_configs(name):
    shipped = REPO / "edge_albert" / "recipes" / f"{name}.toml"
    assert shipped.read_bytes() == (REPO / "configs" / f"{name}.toml").read_bytes(), (
        f"edit configs/{name}.toml and copy it to {shipped.relative_to(REPO)}")


@pytest.mark.parametrize("path", sorted((REPO / "configs").glob("*.toml")), ids=lambda p: p.name)
def test_every_recipe_loads(path):
    from edge_albert.config import load_sections, read_toml
    from edge_albert.recipe import schema

    read_toml(path)
    load_sections(schema(), path)  # strict: unknown keys or wrong types would raise
