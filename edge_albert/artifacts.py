"""Artifact directories that describe themselves, written atomically.

Every stage writes one directory holding its files and a ``manifest.json``
(schema ``edge-albert/manifest/v1``): the stage, when it ran, tool and library versions, the
config it ran with, the manifests of its inputs (path and sha256), and every file with its size
and sha256. Writes go to a temporary sibling directory that is moved into place only when
complete, so a killed stage leaves the previous artifact or the new one, never half of one.

Torch-free: the device runtime uses :func:`verify` and :func:`load_manifest` too.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import hashlib
import json
import os
import re
import shutil
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from .errors import ArtifactError

SCHEMA = "edge-albert/manifest/v1"
MANIFEST = "manifest.json"
REQUIRED_KEYS = ("schema", "stage", "created", "tool_version", "config", "inputs", "files")
_LIBRARIES = (
    "numpy", "torch", "transformers", "onnx", "onnxscript", "onnxruntime", "tensorflow",
    "ai-edge-litert", "tflite-runtime", "sentencepiece", "tokenizers",
)


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def installed_versions(names: tuple[str, ...]) -> dict[str, str]:
    """Versions of those of ``names`` that are installed (package metadata; nothing imported)."""
    out: dict[str, str] = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def library_versions() -> dict[str, str]:
    """Versions of the libraries that shape an artifact (only those installed)."""
    return installed_versions(_LIBRARIES)


def tool_version() -> str:
    try:
        return metadata.version("edge-albert")
    except metadata.PackageNotFoundError:  # running from a source tree
        return "0+source"


@dataclass
class Manifest:
    """The parsed ``manifest.json`` of an artifact directory."""

    stage: str
    config: dict[str, Any]
    files: dict[str, dict[str, Any]]
    inputs: list[dict[str, str]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    created: str = ""
    tool_version: str = ""
    libraries: dict[str, str] = field(default_factory=dict)
    schema: str = SCHEMA
    path: Path | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": self.schema,
            "stage": self.stage,
            "created": self.created,
            "tool_version": self.tool_version,
            "libraries": self.libraries,
            "config": self.config,
            "inputs": self.inputs,
            "files": self.files,
            "extra": self.extra,
        }

    def file(self, name: str) -> Path:
        """Absolute path of a listed file; ArtifactError if the manifest does not list it."""
        if name not in self.files:
            raise ArtifactError(
                f"the manifest lists no file {name!r} (it lists: {', '.join(sorted(self.files))})",
                where=self._manifest_path(),
            )
        assert self.path is not None
        return self.path / name

    def _manifest_path(self) -> str:
        return str(self.path / MANIFEST) if self.path else MANIFEST


def load_manifest(directory: str | Path) -> Manifest:
    """Read and check the manifest of ``directory`` (no hashing; see :func:`verify`)."""
    directory = Path(directory)
    mpath = directory / MANIFEST
    if not directory.is_dir():
        raise ArtifactError("artifact directory does not exist", where=directory)
    if not mpath.is_file():
        raise ArtifactError(
            "no manifest.json: not an edge-albert artifact, or a stage that never finished",
            where=directory,
            hint="re-run the stage that produces it",
        )
    try:
        raw = json.loads(mpath.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        line = getattr(exc, "lineno", None)
        raise ArtifactError(f"manifest is not valid JSON ({exc.__class__.__name__})", where=mpath,
                            line=line) from None
    if not isinstance(raw, dict):
        raise ArtifactError("manifest must be a JSON object", where=mpath)
    missing = [k for k in REQUIRED_KEYS if k not in raw]
    if missing:
        raise ArtifactError(f"manifest lacks key(s) {', '.join(missing)}", where=mpath)
    if raw["schema"] != SCHEMA:
        raise ArtifactError(f"manifest schema is {raw['schema']!r}, expected {SCHEMA!r}", where=mpath)
    files = raw["files"]
    if not isinstance(files, dict) or not all(
        isinstance(v, dict) and isinstance(v.get("sha256"), str)
        and isinstance(v.get("size_bytes"), int) and not isinstance(v["size_bytes"], bool)
        for v in files.values()
    ):
        raise ArtifactError("manifest 'files' must map names to {size_bytes, sha256, ...}", where=mpath)
    for key, kind in (("config", dict), ("inputs", list), ("extra", dict), ("libraries", dict)):
        if key in raw and not isinstance(raw[key], kind):
            what = "object" if kind is dict else "array"
            raise ArtifactError(f"manifest {key!r} must be a JSON {what}", where=mpath)
    if not all(isinstance(i, dict) for i in raw["inputs"]):
        raise ArtifactError("manifest 'inputs' must be a list of {path, manifest_sha256}",
                            where=mpath)
    return Manifest(
        stage=str(raw["stage"]),
        config=raw["config"],
        files=files,
        inputs=list(raw["inputs"]),
        extra=dict(raw.get("extra", {})),
        created=str(raw["created"]),
        tool_version=str(raw["tool_version"]),
        libraries=dict(raw.get("libraries", {})),
        schema=raw["schema"],
        path=directory,
    )


def verify_file(manifest: Manifest, name: str) -> Path:
    """Re-hash one listed file; ArtifactError naming it if missing or changed."""
    path = manifest.file(name)
    entry = manifest.files[name]
    if not path.is_file():
        raise ArtifactError("file listed in the manifest is missing", where=path)
    size = path.stat().st_size
    if size != entry["size_bytes"]:
        raise ArtifactError(
            f"size {size} bytes does not match the manifest's {entry['size_bytes']}"
            " (truncated or replaced)", where=path)
    digest = sha256_file(path)
    if digest != entry["sha256"]:
        raise ArtifactError(
            f"sha256 {digest[:12]}... does not match the manifest's {entry['sha256'][:12]}..."
            " (the file changed after the stage wrote it)", where=path)
    return path


def verify(directory: str | Path, *, stage: str | None = None) -> Manifest:
    """Load the manifest and re-hash every file. Raises ArtifactError naming the first bad file."""
    manifest = load_manifest(directory)
    if stage is not None and manifest.stage != stage:
        raise ArtifactError(
            f"is a {manifest.stage!r} artifact, expected a {stage!r} artifact",
            where=Path(directory) / MANIFEST)
    for name in manifest.files:
        verify_file(manifest, name)
    return manifest


def input_ref(directory: str | Path) -> dict[str, str]:
    """How a stage records an input artifact: its path and its manifest's sha256."""
    directory = Path(directory)
    mpath = directory / MANIFEST
    return {"path": str(directory.resolve()), "manifest_sha256": sha256_file(mpath)}


class ArtifactWriter:
    """Collects the files of an artifact in a temporary directory; see :func:`write_artifact`."""

    def __init__(self, tmp: Path, stage: str, config: Mapping[str, Any],
                 inputs: list[dict[str, str]]) -> None:
        self.path = tmp
        self.stage = stage
        self.config = dict(config)
        self.inputs = inputs
        self.file_meta: dict[str, dict[str, Any]] = {}
        self.extra: dict[str, Any] = {}
        self.manifest: Manifest | None = None  # set once the artifact is in place

    def describe(self, name: str, **meta: Any) -> None:
        """Attach metadata (format, precision, shapes, ...) to a file of the artifact."""
        self.file_meta.setdefault(name, {}).update(meta)

    def _finish(self) -> Manifest:
        files: dict[str, dict[str, Any]] = {}
        for p in sorted(self.path.rglob("*")):
            if not p.is_file() or p.name == MANIFEST:
                continue
            rel = p.relative_to(self.path).as_posix()
            files[rel] = {"size_bytes": p.stat().st_size, "sha256": sha256_file(p),
                          **self.file_meta.get(rel, {})}
        unknown = set(self.file_meta) - set(files)
        if unknown:
            raise ArtifactError(f"described file(s) were never written: {', '.join(sorted(unknown))}",
                                where=self.path)
        manifest = Manifest(
            stage=self.stage, config=self.config, files=files, inputs=self.inputs,
            extra=self.extra,
            created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            tool_version=tool_version(), libraries=library_versions(),
        )
        text = json.dumps(manifest.to_json(), indent=2, sort_keys=False, default=str)
        (self.path / MANIFEST).write_text(text + "\n", encoding="utf-8")
        return manifest


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists (ours counts as alive)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale(out_dir: str | Path) -> None:
    """Tidy what a killed writer of ``out_dir`` left beside it.

    A writer that died (SIGKILL, power loss) leaves ``.NAME.tmp-PID-*`` (the unfinished
    artifact: removed) and, when killed between the two renames of :func:`_move_into_place`,
    ``.NAME.old-PID-*`` (the previous complete artifact: moved back when ``out_dir`` is missing,
    else removed). Entries of a live process (another run, or this one) are left alone.
    """
    out = Path(out_dir)
    parent = out.parent
    if not parent.is_dir():
        return
    pattern = re.compile(rf"\.{re.escape(out.name)}\.(tmp|old)-(\d+)-[0-9a-f]{{8}}")
    stale = []
    for p in parent.iterdir():
        m = pattern.fullmatch(p.name)
        if m and p.is_dir() and not pid_alive(int(m.group(2))):
            stale.append((m.group(1), p))
    for kind, p in sorted(stale, key=lambda x: x[0] != "old"):  # restore before removing
        if kind == "old" and not out.exists() and (p / MANIFEST).is_file():
            os.replace(p, out)
        else:
            shutil.rmtree(p, ignore_errors=True)


def check_new_output(out_dir: str | Path, force: bool) -> None:
    """ArtifactError when ``out_dir`` exists and ``force`` is off.

    Stages call it before their long work, so a run does not train for an hour and then refuse.
    Leftovers of a killed earlier writer are tidied first (:func:`clean_stale`), so a killed run
    neither blocks the next one nor loses the artifact it was replacing.
    """
    out = Path(out_dir)
    clean_stale(out)
    if out.exists() and not force:
        raise ArtifactError("output directory already exists", where=out,
                            hint="pass --force to replace it, or choose another --out")


@contextlib.contextmanager
def write_artifact(
    out_dir: str | Path,
    *,
    stage: str,
    config: Mapping[str, Any],
    inputs: Sequence[str | Path] | None = None,
    force: bool = False,
) -> Iterator[ArtifactWriter]:
    """Write an artifact atomically.

    Yields a writer whose ``path`` is a temporary sibling of ``out_dir``; write the files there.
    On success the manifest is written and the directory moved into place; on any exception the
    temporary directory is removed and ``out_dir`` is left as it was.
    """
    out = Path(out_dir)
    check_new_output(out, force)
    parent = out.resolve().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp = parent / f".{out.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
    except OSError as exc:
        raise ArtifactError(f"cannot create the output directory ({exc.strerror})", where=out) from None
    refs = [input_ref(i) for i in (inputs or [])]
    writer = ArtifactWriter(tmp, stage, config, refs)
    try:
        yield writer
        manifest = writer._finish()
        _move_into_place(tmp, out)
        manifest.path = out
        writer.path = out
        writer.manifest = manifest
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError) and _is_write_error(exc, tmp, out):
            kept = "; the previous artifact is unchanged" if out.exists() else ""
            raise ArtifactError(f"cannot write the artifact ({_why(exc, tmp)}){kept}", where=out,
                                hint="free some disk space, or choose another --out") from exc
        raise


# A full disk, a quota, a read-only file system: whatever file the writer was writing.
_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG}


def _is_write_error(exc: OSError, *dirs: Path) -> bool:
    """True for an OSError of writing: a full disk, or any error on a path inside ``dirs``."""
    if exc.errno in _WRITE_ERRNOS:
        return True
    names = [Path(os.fsdecode(f)) for f in (exc.filename, exc.filename2)
             if isinstance(f, (str, bytes, os.PathLike))]
    roots = [d.absolute() for d in dirs]
    return any(n.absolute() == r or r in n.absolute().parents for n in names for r in roots)


def _why(exc: OSError, tmp: Path) -> str:
    """``<strerror>: <file>``, the file named inside the artifact when it was one of its own."""
    what = exc.strerror or str(exc) or type(exc).__name__
    if not isinstance(exc.filename, (str, bytes, os.PathLike)):
        return what
    name = Path(os.fsdecode(exc.filename)).absolute()
    if name == tmp.absolute():  # the unfinished directory itself: an internal name
        return what
    if tmp.absolute() in name.parents:
        return f"{what}: {name.relative_to(tmp.absolute()).as_posix()}"
    return f"{what}: {name}"


def _move_into_place(tmp: Path, out: Path) -> None:
    """Rename ``tmp`` to ``out``; an existing ``out`` is moved aside first, then deleted."""
    old: Path | None = None
    if out.exists():
        old = out.parent / f".{out.name}.old-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        os.replace(out, old)
    try:
        os.replace(tmp, out)
    except OSError:
        if old is not None:
            os.replace(old, out)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def scratch_dir(parent: str | Path) -> Iterator[Path]:
    """A scratch directory inside ``parent`` (a stage's temporary artifact directory), which is
    also Python's default temp dir while it is open.

    Libraries that write temp files of their own (the ONNX Runtime quantizer, TensorFlow's
    converter and autograph) then write them here: a SIGKILL leaves nothing in the system temp
    dir, and the next run's :func:`clean_stale` removes the whole temporary artifact. Not for
    threads that need their own temp dir meanwhile (``tempfile.tempdir`` is process-wide).
    """
    import tempfile

    path = Path(tempfile.mkdtemp(prefix=".scratch-", dir=parent))
    saved = tempfile.tempdir
    tempfile.tempdir = str(path)
    try:
        yield path
    finally:
        tempfile.tempdir = saved
        shutil.rmtree(path, ignore_errors=True)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write a single file atomically (temp file in the same directory + os.replace)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)  # the old file, if any, is untouched
        raise ArtifactError(f"cannot write the file ({exc.strerror or exc})", where=path,
                            hint="free some disk space, or check the directory's permissions"
                            ) from exc
