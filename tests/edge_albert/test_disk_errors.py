"""A full disk or a read-only directory while a stage writes its artifact.

The user sees one ``error:`` line naming the output (and the file being written), a non-zero
exit code and no traceback; the artifact that was there before is unchanged and no temporary
directory is left behind. The disk fills up by monkeypatching ``open`` to raise ENOSPC for files
written under the output's parent (a real full disk needs a mount this test cannot make).
"""
from __future__ import annotations

import builtins
import errno
import hashlib
import io
import os
from pathlib import Path

import pytest

pytest.importorskip("torch")

from click.testing import CliRunner

from edge_albert.artifacts import atomic_write_text
from edge_albert.cli import cli
from edge_albert.errors import ArtifactError

ENOSPC = os.strerror(errno.ENOSPC)


def snapshot(d: Path) -> dict[str, str]:
    return {p.relative_to(d).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(d.rglob("*")) if p.is_file()}


def leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if ".tmp-" in p.name or ".old-" in p.name)


def disk_full(monkeypatch, under: Path, name: str) -> list[str]:
    """Opening ``name`` for writing anywhere below ``under`` raises ENOSPC; returns the hits."""
    real_open = builtins.open
    hits: list[str] = []

    def fake_open(file, mode="r", *args, **kwargs):
        if isinstance(file, (str, bytes, os.PathLike)) and any(c in mode for c in "wax+"):
            p = Path(os.fsdecode(file)).absolute()
            if p.name == name and under.absolute() in p.parents:
                hits.append(str(p))
                raise OSError(errno.ENOSPC, ENOSPC, str(p))
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", fake_open)  # transformers, shutil.copyfile
    monkeypatch.setattr(io, "open", fake_open)  # pathlib's write_text / write_bytes
    return hits


def init(tok: Path, out: Path, *extra: str):
    return CliRunner().invoke(cli, ["model", "init", "--tokenizer", str(tok), "--out", str(out),
                                    *extra])


def error_lines(output: str) -> list[str]:
    return [x for x in output.splitlines() if x.startswith("error:")]


@pytest.fixture(scope="module")
def previous(tmp_path_factory, tiny_tokenizer):
    """A finished ``model init`` artifact (its files and their hashes)."""
    parent = tmp_path_factory.mktemp("disk")
    out = parent / "model"
    r = init(tiny_tokenizer, out)
    assert r.exit_code == 0, r.output
    return out, snapshot(out)


# config.json: the first file transformers writes; spiece.model: our own copy; manifest.json:
# the last file, written after every other one is complete
@pytest.mark.parametrize("name", ["config.json", "spiece.model", "manifest.json"])
def test_disk_full_keeps_the_previous_artifact(previous, tiny_tokenizer, monkeypatch, name):
    out, before = previous
    hits = disk_full(monkeypatch, out.parent, name)
    r = init(tiny_tokenizer, out, "--seed", "1", "--force")
    monkeypatch.undo()
    assert hits, f"{name} was never written"
    assert r.exit_code == 8 and isinstance(r.exception, SystemExit), r.output
    assert "Traceback" not in r.output
    assert error_lines(r.output) == [
        (f"error: {out}: cannot write the artifact ({ENOSPC}: {name}); the previous artifact is"
         " unchanged")]
    assert "hint: free some disk space" in r.output
    assert snapshot(out) == before  # same manifest, same files
    assert leftovers(out.parent) == []


def test_disk_full_on_a_first_write_leaves_nothing(tiny_tokenizer, tmp_path, monkeypatch):
    out = tmp_path / "new"
    disk_full(monkeypatch, tmp_path, "config.json")
    r = init(tiny_tokenizer, out)
    monkeypatch.undo()
    assert r.exit_code == 8 and isinstance(r.exception, SystemExit), r.output
    assert error_lines(r.output) == [
        f"error: {out}: cannot write the artifact ({ENOSPC}: config.json)"]
    assert not out.exists() and os.listdir(tmp_path) == []


def test_failed_rename_moves_the_previous_artifact_back(previous, tiny_tokenizer, monkeypatch):
    """The last step (moving the finished directory into place) fails: the old one returns."""
    out, before = previous
    real_replace = os.replace
    calls: list[tuple[str, str]] = []

    def fake_replace(src, dst, *a, **kw):
        calls.append((Path(src).name, Path(dst).name))
        if Path(src).name.startswith(f".{out.name}.tmp-"):
            raise OSError(errno.EIO, os.strerror(errno.EIO), str(src), None, str(dst))
        return real_replace(src, dst, *a, **kw)

    monkeypatch.setattr(os, "replace", fake_replace)
    r = init(tiny_tokenizer, out, "--seed", "2", "--force")
    monkeypatch.undo()
    ours = [c for c in calls if out.name in c[0] + c[1]]
    assert ours[0][0] == out.name and ours[0][1].startswith(f".{out.name}.old-")  # moved aside
    assert ours[1][0].startswith(f".{out.name}.tmp-") and ours[1][1] == out.name  # fails
    assert ours[2] == (ours[0][1], out.name)  # moved back
    assert r.exit_code == 8 and "Traceback" not in r.output, r.output
    assert error_lines(r.output) == [(f"error: {out}: cannot write the artifact"
                                      f" ({os.strerror(errno.EIO)}); the previous artifact is"
                                      " unchanged")]
    assert snapshot(out) == before
    assert leftovers(out.parent) == []


def test_atomic_write_text_on_a_full_disk(tmp_path, monkeypatch):
    target = tmp_path / "state.json"
    target.write_text("old\n")
    real_open = io.open

    def fake_open(file, mode="r", *a, **kw):
        if "w" in mode:
            raise OSError(errno.ENOSPC, ENOSPC, os.fsdecode(file))
        return real_open(file, mode, *a, **kw)

    monkeypatch.setattr(io, "open", fake_open)
    with pytest.raises(ArtifactError) as e:
        atomic_write_text(target, "new\n")
    monkeypatch.undo()
    assert str(e.value) == f"{target}: cannot write the file ({ENOSPC})"
    assert target.read_text() == "old\n" and os.listdir(tmp_path) == ["state.json"]


@pytest.mark.skipif(os.geteuid() == 0, reason="running as root: chmod does not stop root from"
                    " writing, so a read-only directory cannot be made here (the ENOSPC tests"
                    " above cover the same code path)")
def test_read_only_directory(previous, tiny_tokenizer, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        r = init(tiny_tokenizer, ro / "model")
        assert r.exit_code == 8 and "Traceback" not in r.output, r.output
        assert error_lines(r.output) == [(f"error: {ro / 'model'}: cannot create the output"
                                          f" directory ({os.strerror(errno.EACCES)})")]
        out, before = previous
        out.parent.chmod(0o555)
        try:
            r = init(tiny_tokenizer, out, "--force")
        finally:
            out.parent.chmod(0o755)
        assert r.exit_code == 8 and "cannot create the output directory" in r.output, r.output
        assert snapshot(out) == before
    finally:
        ro.chmod(0o755)
