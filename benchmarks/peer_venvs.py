"""The peers' virtual environments under runs/peer-venvs/<peer>: built from pinned requirements,
recorded with a marker file, and checked for whether the peer could share the project's own
environment (``pip --dry-run``)."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from peer_common import MARKER, VENVS, versions


def venv_python(root: Path) -> Path:
    return root / "bin" / "python"


def venv_state(name: str, venvs: Path) -> dict | None:
    """The marker of a built venv whose requirements match, else None."""
    marker = venvs / name / MARKER
    if not marker.is_file() or not venv_python(venvs / name).is_file():
        return None
    state = json.loads(marker.read_text())
    return state if state.get("requirements") == VENVS[name]["requirements"] else None


def _pip(python: Path | str, args: Sequence[str],
         timeout: int = 1800) -> subprocess.CompletedProcess:
    return subprocess.run([str(python), "-m", "pip", *args], capture_output=True, text=True,
                          timeout=timeout, check=False)


def _pip_error(proc: subprocess.CompletedProcess, keep: int = 12) -> str:
    lines = [x for x in (proc.stderr + proc.stdout).splitlines()
             if x.strip() and not x.startswith("WARNING: Location")]
    return "\n".join(lines[-keep:])


def coinstall_check(name: str) -> str:
    """What pip says about installing the peer beside the project's torch and transformers."""
    pins = []
    for pkg in ("torch", "transformers"):
        v = versions([pkg]).get(pkg)
        if v:
            pins.append(f"{pkg}=={v.split('+')[0]}")
    proc = _pip(sys.executable, ["install", "--dry-run", *VENVS[name]["coinstall"], *pins],
                timeout=900)
    text = _pip_error(proc, keep=400)
    if proc.returncode == 0:
        would = next((x for x in text.splitlines() if x.startswith("Would install")), "")
        return (f"installs beside {', '.join(pins)} (pip --dry-run), but would change the"
                f" project's environment: {would[:900]}")
    conflict = [x.strip() for x in text.splitlines() if "depends on" in x or "requested" in x]
    return (f"cannot install beside {', '.join(pins)}: "
            + ("; ".join(conflict[:4]) if conflict else text.splitlines()[-1]))


_VERSIONS_SNIPPET = """
import json, sys
from importlib import metadata
out = {}
for n in sys.argv[1:]:
    try:
        out[n] = metadata.version(n)
    except metadata.PackageNotFoundError:
        pass
print(json.dumps(out))
"""


def build_venv(name: str, venvs: Path) -> dict:
    """Create ``venvs/name`` and pip-install its requirements; the marker records the outcome."""
    root = venvs / name
    venvs.mkdir(parents=True, exist_ok=True)
    reqs = VENVS[name]["requirements"]
    print(f"[peers] building venv {root} ({' '.join(reqs)}); minutes", file=sys.stderr)
    t = time.perf_counter()
    if not venv_python(root).is_file():
        base = getattr(sys, "_base_executable", sys.executable)
        subprocess.run([base, "-m", "venv", str(root)], check=True)
    proc = _pip(venv_python(root), ["install", "--quiet", *reqs])
    state: dict[str, Any] = {"requirements": reqs, "seconds": round(time.perf_counter() - t, 1)}
    if proc.returncode != 0:
        state["install_error"] = _pip_error(proc)
        return state  # no marker: a later run tries again
    freeze = subprocess.run([str(venv_python(root)), "-c", _VERSIONS_SNIPPET,
                             *VENVS[name]["record"]], capture_output=True, text=True,
                            check=False)
    state["versions"] = json.loads(freeze.stdout or "{}")
    state["coinstall"] = coinstall_check(name)
    (root / MARKER).write_text(json.dumps(state, indent=2) + "\n")
    return state
