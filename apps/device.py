"""Facts about the machine the runtime runs on: CPU, cores, int8-relevant flags, OS, versions.

Read from ``/proc/cpuinfo``, ``/proc/self/auxv`` (the kernel's, or qemu-user's, hardware
capabilities: what the interpreters' kernels really see), ``/etc/os-release`` and the device tree.
Nothing here imports an interpreter: versions come from package metadata.
"""
from __future__ import annotations

import os
import platform
import struct
from pathlib import Path
from typing import Any

from ..artifacts import installed_versions

# Flags that decide int8 and fp16 speed (asimddp = SDOT/UDOT, Cortex-A76 and later; i8mm = SMMLA).
ARM_FLAGS = ("asimd", "asimdhp", "fphp", "asimddp", "i8mm", "bf16", "sve", "sve2", "sme")
X86_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512_vnni",
             "avx_vnni", "avx512_bf16", "amx_int8", "amx_bf16")
# arch/arm64/include/uapi/asm/hwcap.h
_HWCAP = {"asimd": 1, "fphp": 9, "asimdhp": 10, "asimddp": 20, "sve": 22}
_HWCAP2 = {"sve2": 1, "i8mm": 13, "bf16": 14, "sme": 23}
_AT_HWCAP, _AT_HWCAP2 = 16, 26
ARM_PARTS = {
    "0xd03": "Cortex-A53", "0xd04": "Cortex-A35", "0xd05": "Cortex-A55", "0xd07": "Cortex-A57",
    "0xd08": "Cortex-A72", "0xd09": "Cortex-A73", "0xd0a": "Cortex-A75", "0xd0b": "Cortex-A76",
    "0xd0c": "Neoverse-N1", "0xd0d": "Cortex-A77", "0xd40": "Neoverse-V1", "0xd41": "Cortex-A78",
    "0xd44": "Cortex-X1", "0xd46": "Cortex-A510", "0xd47": "Cortex-A710", "0xd48": "Cortex-X2",
    "0xd49": "Neoverse-N2", "0xd4d": "Cortex-A715", "0xd4e": "Cortex-X3", "0xd4f": "Neoverse-V2",
    "0xd80": "Cortex-A520", "0xd81": "Cortex-A720", "0xd82": "Cortex-X4",
}
RUNTIME_PACKAGES = ("numpy", "tokenizers", "sentencepiece", "onnxruntime", "ai-edge-litert",
                    "tflite-runtime", "tensorflow")


def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def parse_cpuinfo(text: str) -> dict[str, Any]:
    """CPU model, board model and feature flags from the text of a ``/proc/cpuinfo``."""
    fields: dict[str, list[str]] = {}
    exact: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip().lower(), []).append(value.strip())
            exact.setdefault(key.strip(), value.strip())
    flags: set[str] = set()
    for key in ("flags", "features"):
        for v in fields.get(key, []):
            flags.update(v.split())
    cpu = next(iter(fields.get("model name", [])), "")
    if not cpu and fields.get("cpu part"):
        parts = []
        for p in fields["cpu part"]:
            name = ARM_PARTS.get(p.lower(), f"ARM part {p}")
            if name not in parts:
                parts.append(name)
        cpu = " + ".join(parts)
    # ARM boards print "Model : Raspberry Pi 5 ..." (x86's lower-case "model : 167" is a number)
    board = exact.get("Model", "") or exact.get("Hardware", "")
    return {"cpu": cpu, "board": board, "flags": flags}


def auxv_flags(path: str = "/proc/self/auxv") -> set[str] | None:
    """aarch64 HWCAP/HWCAP2 flags from the auxiliary vector (None when unreadable)."""
    try:
        raw = Path(path).read_bytes()
    except OSError:
        return None
    caps: dict[int, int] = {}
    for i in range(0, len(raw) - 15, 16):
        key, value = struct.unpack_from("<QQ", raw, i)
        if key == 0:
            break
        caps[key] = value
    if _AT_HWCAP not in caps:
        return None
    hw, hw2 = caps.get(_AT_HWCAP, 0), caps.get(_AT_HWCAP2, 0)
    out = {n for n, bit in _HWCAP.items() if hw >> bit & 1}
    out |= {n for n, bit in _HWCAP2.items() if hw2 >> bit & 1}
    return out


def os_release() -> str:
    for line in _read("/etc/os-release").splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip().strip('"')
    return f"{platform.system()} {platform.release()}".strip()


def package_versions(names: tuple[str, ...] = RUNTIME_PACKAGES) -> dict[str, str]:
    return installed_versions(names)


def device_facts(*, threads: int | None = None, name: str | None = None) -> dict[str, Any]:
    """The device section of ``device_results.json`` (same keys as the report's ``host``)."""
    machine = platform.machine()
    info = parse_cpuinfo(_read("/proc/cpuinfo"))
    dt_model = _read("/proc/device-tree/model").strip("\x00\n ")
    interesting = ARM_FLAGS if machine.lower() in ("aarch64", "arm64") or machine.startswith("arm") \
        else X86_FLAGS
    flags, source = info["flags"], "/proc/cpuinfo"
    if machine.lower() in ("aarch64", "arm64"):
        hw = auxv_flags()
        if hw is not None:
            flags, source = hw, "auxv (HWCAP)"
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    facts: dict[str, Any] = {
        "name": name or platform.node() or "device",
        "machine": machine,
        "cpu": info["cpu"] or platform.processor() or machine,
        "board": dt_model or info["board"] or None,
        "cores": cores,
        "threads": threads,
        "flags": [f for f in interesting if f in flags],
        "flags_source": source,
        "os": os_release(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "versions": package_versions(),
    }
    note = os.environ.get("EDGE_ALBERT_DEVICE_NOTE")
    if note:
        facts["note"] = note
    return facts
