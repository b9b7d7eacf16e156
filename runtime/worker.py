"""A measurement in a fresh Python process: its load time, cold start and peak memory are its own.

Both validators use it: the host's (:mod:`edge_albert.validate`, a cold start per file) and the
device's (:mod:`edge_albert.apps.validate`, a whole model per process). The worker prints one JSON
object as its last stdout line (:func:`reply`); the parent (:func:`run_fresh`) turns the worker's
own :class:`~edge_albert.errors.EdgeAlbertError` back into the same error, and a crash, a hang or
a silent exit into a :class:`~edge_albert.errors.RuntimeBackendError` naming the file.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .. import errors
from ..errors import EdgeAlbertError, RuntimeBackendError


def _package_root() -> str:
    """The directory holding the ``edge_albert`` package this code was imported from."""
    return str(Path(sys.modules["edge_albert"].__file__ or ".").resolve().parent.parent)


def run_fresh(module_args: list[str], *, where: str | Path,
              timeout_s: float | None = None) -> dict[str, Any]:
    """``python -m <module_args>`` with this ``edge_albert`` importable; the worker's result."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([_package_root()] + (
        [env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    try:
        proc = subprocess.run([sys.executable, "-m", *module_args], capture_output=True,
                              text=True, timeout=timeout_s, env=env, check=False)
    except subprocess.TimeoutExpired:
        raise RuntimeBackendError(f"loading and running this file took over {timeout_s:g} s",
                                  where=where) from None
    if proc.returncode < 0:
        try:
            sig = signal.Signals(-proc.returncode).name
        except ValueError:
            sig = f"signal {-proc.returncode}"
        raise RuntimeBackendError(f"the interpreter crashed ({sig}) loading or running this file"
                                  " (corrupt or truncated?)", where=where)
    lines = [x for x in proc.stdout.splitlines() if x.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1][:200]
        raise RuntimeBackendError(f"the measurement worker failed ({tail})", where=where)
    result: dict[str, Any] = json.loads(lines[-1])
    err = result.get("error")
    if isinstance(err, dict):
        cls = getattr(errors, str(err.get("type")), None)
        if not (isinstance(cls, type) and issubclass(cls, EdgeAlbertError)):
            cls = RuntimeBackendError
        raise cls(str(err.get("message")), where=err.get("where"), hint=err.get("hint"))
    return result


def reply(measure: Callable[[], dict[str, Any]]) -> int:
    """Worker side: print ``measure()`` (or the EdgeAlbertError it raised) as one JSON line."""
    try:
        result = measure()
    except EdgeAlbertError as exc:
        result = {"error": {"type": type(exc).__name__, "message": exc.message,
                            "where": None if exc.where is None else str(exc.where),
                            "hint": exc.hint}}
    sys.stdout.write("\n" + json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


__all__ = ["reply", "run_fresh"]
