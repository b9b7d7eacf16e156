"""Facts about the machine the runtime runs on: CPU, cores, int8-relevant flags, OS, versions.

The CPU facts come from :mod:`edge_albert.runtime.cpu`; the OS from ``/etc/os-release``, the
board from the device tree.
Nothing here imports an interpreter: versions come from package metadata.
"""
from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

from ..artifacts import installed_versions
from ..runtime.cpu import ARM_FLAGS, X86_FLAGS, auxv_flags, cpu_facts, parse_cpuinfo

RUNTIME_PACKAGES = ("numpy", "tokenizers", "sentencepiece", "onnxruntime", "ai-edge-litert",
                    "tflite-runtime", "tensorflow")


def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def os_release() -> str:
    for line in _read("/etc/os-release").splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip().strip('"')
    return f"{platform.system()} {platform.release()}".strip()


def package_versions(names: tuple[str, ...] = RUNTIME_PACKAGES) -> dict[str, str]:
    return installed_versions(names)


def device_facts(*, threads: int | None = None, name: str | None = None) -> dict[str, Any]:
    """The device section of ``device_results.json`` (same keys as the report's ``host``)."""
    cpu = cpu_facts()
    dt_model = _read("/proc/device-tree/model").strip("\x00\n ")
    facts: dict[str, Any] = {
        "name": name or platform.node() or "device",
        "machine": cpu["machine"],
        "cpu": cpu["cpu"],
        "board": dt_model or cpu["board"],
        "cores": cpu["usable_cores"],
        "threads": threads,
        "flags": cpu["flags"],
        "flags_source": cpu["flags_source"],
        "isa": cpu["isa"],
        "os": os_release(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "versions": package_versions(),
    }
    note = os.environ.get("EDGE_ALBERT_DEVICE_NOTE")
    if note:
        facts["note"] = note
    return facts


__all__ = ["ARM_FLAGS", "X86_FLAGS", "auxv_flags", "device_facts", "os_release",
           "package_versions", "parse_cpuinfo"]
