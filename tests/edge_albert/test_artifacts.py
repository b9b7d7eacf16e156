import json

import pytest

from edge_albert.artifacts import SCHEMA, load_manifest, verify, write_artifact
from edge_albert.errors import ArtifactError


def _write(out, text="hello", **kw):
    with write_artifact(out, stage="demo", config={"a": 1}, **kw) as w:
        (w.path / "f.txt").write_text(text)
        (w.path / "sub").mkdir()
        (w.path / "sub" / "g.bin").write_bytes(b"\x00\x01")
        w.describe("f.txt", format="text")
    return w.manifest


def test_manifest_lists_every_file_with_hash(tmp_path):
    m = _write(tmp_path / "a")
    raw = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert raw["schema"] == SCHEMA and raw["stage"] == "demo" and raw["config"] == {"a": 1}
    assert set(raw["files"]) == {"f.txt", "sub/g.bin"}
    assert raw["files"]["f.txt"]["format"] == "text" and raw["files"]["f.txt"]["size_bytes"] == 5
    assert "numpy" in raw["libraries"]
    assert verify(tmp_path / "a").files == m.files


def test_inputs_are_recorded_by_manifest_hash(tmp_path):
    _write(tmp_path / "a")
    with write_artifact(tmp_path / "b", stage="next", config={}, inputs=[tmp_path / "a"]) as w:
        (w.path / "x").write_text("x")
    ref = load_manifest(tmp_path / "b").inputs[0]
    assert ref["path"].endswith("a") and len(ref["manifest_sha256"]) == 64


def test_failed_stage_leaves_nothing_and_keeps_old(tmp_path):
    out = tmp_path / "a"
    _write(out, "old")
    with pytest.raises(RuntimeError), write_artifact(out, stage="demo", config={}, force=True) as w:
        (w.path / "f.txt").write_text("new half")
        raise RuntimeError("killed")
    assert (out / "f.txt").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a"]  # no temp dirs left behind


def test_existing_output_needs_force(tmp_path):
    _write(tmp_path / "a")
    with pytest.raises(ArtifactError, match="already exists"):
        _write(tmp_path / "a")
    _write(tmp_path / "a", "replaced", force=True)
    assert (tmp_path / "a" / "f.txt").read_text() == "replaced"


@pytest.mark.parametrize("damage, message", [
    (lambda d: (d / "f.txt").write_text("hellO"), "sha256"),
    (lambda d: (d / "f.txt").write_text("hi"), "size"),
    (lambda d: (d / "f.txt").unlink(), "missing"),
    (lambda d: (d / "manifest.json").unlink(), "no manifest.json"),
    (lambda d: (d / "manifest.json").write_text("{"), "not valid JSON"),
])
def test_verify_names_the_damaged_file(tmp_path, damage, message):
    _write(tmp_path / "a")
    damage(tmp_path / "a")
    with pytest.raises(ArtifactError, match=message) as e:
        verify(tmp_path / "a")
    assert str(tmp_path / "a") in str(e.value)


@pytest.mark.parametrize("edit, message", [
    (lambda m: m.pop("files"), "lacks key"),
    (lambda m: m.update(schema="edge-albert/manifest/v0"), "schema"),
])
def test_bad_manifest_contents(tmp_path, edit, message):
    _write(tmp_path / "a")
    p = tmp_path / "a" / "manifest.json"
    m = json.loads(p.read_text())
    edit(m)
    p.write_text(json.dumps(m))
    with pytest.raises(ArtifactError, match=message):
        load_manifest(tmp_path / "a")


def test_verify_checks_the_stage(tmp_path):
    _write(tmp_path / "a")
    with pytest.raises(ArtifactError, match="expected a 'convert' artifact"):
        verify(tmp_path / "a", stage="convert")
