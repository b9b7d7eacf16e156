"""Parsers for what ``run_android.sh`` brings back: TFLite's ``benchmark_model`` and ONNX
Runtime's ``onnxruntime_perf_test`` logs, and the device facts (getprop, nproc, /proc/cpuinfo).

Tested on hand-written samples of each tool's output (``tests/edge_albert/data_android``); a line
that does not parse is a :class:`~edge_albert.errors.DataError` naming the file and line.
:mod:`~edge_albert.merge` turns what they return into report rows.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from .errors import DataError

_PREFIX = re.compile(
    r"^(?:\d\d-\d\d\s+\d\d:\d\d:\d\d\.\d+\s+(?:\d+\s+\d+\s+)?[VDIWEF][/ ]\s*\S*?\s*(?:\(\s*\d+\))?:\s*"
    r"|(?:INFO|WARNING|ERROR|VERBOSE|DEBUG): )")
_NUM = r"([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"
_HEADER = re.compile(r"^#\s*edge-albert:\s*(.*)$")
_BM_TIMINGS = re.compile(rf"^Inference timings in us: Init: {_NUM}, First inference: {_NUM},"
                         rf" Warmup \(avg\): {_NUM}, Inference \(avg\): {_NUM}\s*$")
_BM_MEMORY = re.compile(rf"^Memory footprint delta from the start of the tool \(MB\):"
                        rf" init={_NUM} overall={_NUM}\s*$")
_BM_PEAK = re.compile(rf"^Overall peak memory footprint \(MB\) via periodic monitoring: {_NUM}\s*$")
_BM_COUNT = re.compile(r"^count=\d+(?:\s+\w+=\S+)*\s*$")
_PT_VALUE = re.compile(rf"^([A-Za-z0-9 ]+?):\s*{_NUM}\s*(s|ms|us|bytes|%)?\s*$")
_PT_KEYS = {"Session creation time cost", "First inference time cost", "Total inference time cost",
            "Total inference requests", "Average inference time cost", "Total inference run time",
            "Number of inferences per second", "Avg CPU usage", "Total CPU usage",
            "Peak working set size", "Runs", "Min Latency", "Max Latency", "P50 Latency",
            "P90 Latency", "P95 Latency", "P99 Latency", "P999 Latency"}
_TO_MS = {"s": 1000.0, "ms": 1.0, "us": 0.001}


def _lines(text: str) -> list[tuple[int, str, str]]:
    """(line number, raw line, line without logcat / INFO: prefixes)."""
    out = []
    for n, raw in enumerate(text.splitlines(), start=1):
        line = raw.rstrip("\r")
        out.append((n, line, _PREFIX.sub("", line).strip()))
    return out


def _header(lines: list[tuple[int, str, str]]) -> dict[str, str]:
    for _, raw, _ in lines:
        m = _HEADER.match(raw.strip())
        if m:
            return dict(kv.split("=", 1) for kv in m.group(1).split() if "=" in kv)
    return {}


def _kv_floats(line: str, where: Path, n: int) -> dict[str, float]:
    out: dict[str, float] = {}
    for tok in line.split():
        key, sep, val = tok.partition("=")
        if not sep:
            raise DataError(f"malformed statistics line (expected key=value pairs): {line!r}",
                            where=where, line=n)
        try:
            out[key] = float(val)
        except ValueError:
            raise DataError(f"malformed statistics line: {key}={val!r} is not a number",
                            where=where, line=n) from None
    return out


def parse_benchmark_model(text: str, where: str | Path = "<log>") -> dict[str, Any]:
    """Figures from TFLite ``benchmark_model`` output (times in ms, memory in MB)."""
    where = Path(where)
    lines = _lines(text)
    out: dict[str, Any] = {"tool": "benchmark_model", "header": _header(lines)}
    stats: dict[str, float] | None = None  # the last count= line: the timed run, not warmup
    for n, raw, line in lines:
        if raw.lstrip().startswith("#"):
            continue
        if line.startswith("Graph: ["):
            out["graph"] = line[len("Graph: ["):].rstrip("]")
        elif line.startswith("Num threads: ["):
            out["threads"] = line[len("Num threads: ["):].rstrip("]")
        elif line.startswith("count="):
            if not _BM_COUNT.match(line):
                raise DataError(f"malformed statistics line: {line!r}", where=where, line=n)
            stats = _kv_floats(line, where, n)
        elif line.startswith("Inference timings in us"):
            m = _BM_TIMINGS.match(line)
            if not m:
                raise DataError("malformed 'Inference timings in us' line: expected 'Init: N, First"
                                f" inference: N, Warmup (avg): N, Inference (avg): N', got {line!r}",
                                where=where, line=n)
            init, first, _warm, avg = (float(g) for g in m.groups())
            out.update(init_ms=init / 1000, first_ms=first / 1000, mean_ms=avg / 1000)
        elif line.startswith("Memory footprint delta"):
            m = _BM_MEMORY.match(line)
            if not m:
                raise DataError(f"malformed memory footprint line: {line!r}", where=where, line=n)
            out["memory_init_mb"], out["memory_overall_mb"] = float(m.group(1)), float(m.group(2))
        elif line.startswith("Overall peak memory footprint"):
            m = _BM_PEAK.match(line)
            if not m:
                raise DataError(f"malformed peak memory line: {line!r}", where=where, line=n)
            out["peak_mb"] = float(m.group(1))
        elif raw.lstrip().startswith("ERROR") or line.startswith("Failed to") or "Aborted" in line:
            raise DataError(f"benchmark_model reported an error: {line!r}", where=where, line=n)
    if "mean_ms" not in out:
        last = next(((n, raw) for n, raw, _ in reversed(lines) if raw.strip()), (len(lines), ""))
        raise DataError("no 'Inference timings in us' line: the benchmark did not finish"
                        f" (last line: {last[1]!r})", where=where, line=last[0] or None)
    if stats is not None:
        out["runs"] = int(stats.get("count", 0))
        if "median" in stats:
            out["p50_ms"] = stats["median"] / 1000
        if "p95" in stats:
            out["p95_ms"] = stats["p95"] / 1000
        if "std" in stats:
            out["std_ms"] = stats["std"] / 1000
    return out


def parse_perf_test(text: str, where: str | Path = "<log>") -> dict[str, Any]:
    """Figures from ``onnxruntime_perf_test`` output (times in ms, memory in MB)."""
    where = Path(where)
    lines = _lines(text)
    out: dict[str, Any] = {"tool": "onnxruntime_perf_test", "header": _header(lines)}
    vals: dict[str, float] = {}
    for n, raw, line in lines:
        if raw.lstrip().startswith("#") or ":" not in line:
            continue
        key = line.split(":", 1)[0].strip()
        if key not in _PT_KEYS:
            if line.lower().startswith(("error", "fail")) or "exception" in line.lower():
                raise DataError(f"onnxruntime_perf_test reported an error: {line!r}",
                                where=where, line=n)
            continue
        m = _PT_VALUE.match(line)
        if not m:
            raise DataError(f"malformed '{key}' line: expected a number and a unit, got {line!r}",
                            where=where, line=n)
        value, unit = float(m.group(2)), m.group(3)
        if unit in _TO_MS:
            value *= _TO_MS[unit]
        elif unit == "bytes" or (key == "Peak working set size" and unit is None):
            value /= 1024 * 1024
        vals.setdefault(key, value)
    if "Average inference time cost" not in vals:
        last = next(((n, raw) for n, raw, _ in reversed(lines) if raw.strip()), (len(lines), ""))
        raise DataError("no 'Average inference time cost' line: the run did not finish"
                        f" (last line: {last[1]!r})", where=where, line=last[0] or None)
    out.update(
        mean_ms=vals["Average inference time cost"],
        init_ms=vals.get("Session creation time cost"),
        first_ms=vals.get("First inference time cost"),
        runs=int(vals.get("Total inference requests", vals.get("Runs", 0))),
        p50_ms=vals.get("P50 Latency"), p90_ms=vals.get("P90 Latency"),
        p95_ms=vals.get("P95 Latency"), p99_ms=vals.get("P99 Latency"),
        peak_mb=vals.get("Peak working set size"),
    )
    return out


def parse_android_device(text: str, where: str | Path = "<device>") -> dict[str, Any]:
    """Device facts from run_android.sh's ``device.txt`` (getprop lines, nproc, /proc/cpuinfo)."""
    from .runtime.cpu import ARM_FLAGS, isa_class, parse_cpuinfo

    props: dict[str, str] = {}
    cores = None
    cpuinfo = ""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        m = re.match(r"^\[([^\]]+)\]:\s*\[(.*)\]\s*$", line.strip())
        if m:
            props[m.group(1)] = m.group(2)
        elif line.startswith("cores:"):
            try:
                cores = int(line.split(":", 1)[1])
            except ValueError:
                raise DataError(f"malformed cores line: {line!r}", where=where, line=i + 1) from None
        elif line.startswith("--- /proc/cpuinfo"):
            cpuinfo = "\n".join(lines[i + 1:])
            break
    info = parse_cpuinfo(cpuinfo)
    name = " ".join(x for x in (props.get("ro.product.manufacturer"), props.get("ro.product.model"))
                    if x) or "android device"
    release, sdk = props.get("ro.build.version.release"), props.get("ro.build.version.sdk")
    return {
        "name": name,
        "machine": props.get("ro.product.cpu.abi", "arm64-v8a"),
        "cpu": info["cpu"] or props.get("ro.soc.model") or "",
        "board": props.get("ro.soc.model") or props.get("ro.board.platform") or info["board"] or None,
        "cores": cores,
        "threads": None,
        "flags": [f for f in ARM_FLAGS if f in info["flags"]],
        "flags_source": "/proc/cpuinfo",
        "isa": isa_class(info["flags"], "aarch64"),
        "os": f"Android {release} (API {sdk})" if release else "Android",
        "python": None,
        "versions": {},
    }


__all__ = ["parse_android_device", "parse_benchmark_model", "parse_perf_test"]
