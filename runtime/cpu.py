"""What this CPU can do for int8 and fp16: the one home of the CPU facts every report records.

Read from ``/proc/cpuinfo`` and, on aarch64, ``/proc/self/auxv`` (the kernel's, or qemu-user's,
hardware capabilities: what the interpreters' kernels really see). The report, the on-device
validator and every benchmark result take their CPU facts from :func:`cpu_facts`, so a reader
can tell a VNNI Xeon from an AVX2-only EPYC or a Pi 4 from a Pi 5.
"""
from __future__ import annotations

import os
import platform
import struct
from pathlib import Path
from typing import Any

#: flags that decide int8 and fp16 speed. x86: AVX2, AVX-512, VNNI, AMX. ARM: asimddp = SDOT/UDOT
#: (Cortex-A76 and later; a Pi 4's A72 lacks it), i8mm = SMMLA, asimdhp = fp16 vectors
X86_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512_vnni",
             "avx_vnni", "avx512_bf16", "amx_int8", "amx_bf16")
ARM_FLAGS = ("neon", "asimd", "asimdhp", "asimddp", "i8mm", "bf16", "sve", "sve2", "sme")
#: any of these: the CPU has an int8 dot-product instruction
INT8_DOT = ("avx512_vnni", "avx_vnni", "amx_int8", "asimddp", "i8mm")
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


def read_cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
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


def is_arm(machine: str) -> bool:
    m = machine.lower()
    return m in ("aarch64", "arm64") or m.startswith("arm")


def interesting_flags(flags: set[str] | list[str]) -> list[str]:
    """The int8/fp16 flags among ``flags``, x86 first, in a fixed order."""
    have = set(flags)
    return [f for f in (*X86_FLAGS, *ARM_FLAGS) if f in have]


def isa_class(flags: set[str] | list[str], machine: str) -> str:
    """A short name for the CPU class int8 speed depends on: ``amx``, ``avx512vnni``,
    ``avxvnni``, ``avx512``, ``avx2``, ``x86``, ``arm64-i8mm``, ``arm64-dotprod``, ``arm64``."""
    f = set(flags)
    if is_arm(machine) or "asimd" in f:
        return "arm64-i8mm" if "i8mm" in f else "arm64-dotprod" if "asimddp" in f else "arm64"
    for name, flag in (("amx", "amx_int8"), ("avx512vnni", "avx512_vnni"), ("avxvnni", "avx_vnni"),
                       ("avx512", "avx512f"), ("avx2", "avx2")):
        if flag in f:
            return name
    return "x86"


def native_bf16(flags: set[str] | list[str]) -> bool:
    """Whether the CPU computes bfloat16 dot products itself (AVX512-BF16, AMX, Armv8.6 BF16),
    so bf16 autocast in training is faster than fp32 rather than emulated and slower."""
    return bool(set(flags) & {"avx512_bf16", "amx_bf16", "bf16"})


def cpu_facts(cpuinfo: str | None = None) -> dict[str, Any]:
    """CPU model, board, the int8/fp16 flags (and where they were read), the ISA class, cores."""
    machine = platform.machine()
    info = parse_cpuinfo(read_cpuinfo() if cpuinfo is None else cpuinfo)
    flags, source = info["flags"], "/proc/cpuinfo"
    if cpuinfo is None and machine.lower() in ("aarch64", "arm64"):
        hw = auxv_flags()
        if hw is not None:
            flags, source = hw, "auxv (HWCAP)"
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count() or 1
    kept = interesting_flags(flags)
    return {"cpu": info["cpu"] or platform.processor() or machine, "board": info["board"] or None,
            "machine": machine, "flags": kept, "flags_source": source,
            "int8_dot_product": any(f in kept for f in INT8_DOT),
            "isa": isa_class(kept, machine), "cores": os.cpu_count() or 1, "usable_cores": usable}


__all__ = ["ARM_FLAGS", "INT8_DOT", "X86_FLAGS", "auxv_flags", "cpu_facts", "interesting_flags",
           "is_arm", "isa_class", "native_bf16", "parse_cpuinfo", "read_cpuinfo"]
