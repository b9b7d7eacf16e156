"""Merge on-device results into a report: ``report.json`` gains ``devices``, ``report.md`` (and
``report.html`` when present) a devices table beside the host's figures.

    merge_device_results("reports/sst2", ["pi5/device_results.json"])      # apps.validate output
    merge_android_logs("reports/sst2", ["logs/device.txt", "logs/benchmark_model__m.tflite.log"])

``devices`` is a list of ``{device facts..., kind, source, eval_sha256, artifacts: [rows]}``; each
row has the report's artifact-row keys (name, path, format, precision, size_bytes, accuracy, f1,
agreement, max_abs_logit_diff, mean_abs_logit_diff, mean_kl, latency_ms {p50, p90, p99}, load_ms,
cold_start_ms, peak_rss_mb); a figure the device run could not measure is ``null``. Results from a
different eval set than the report's (by sha256) are refused. Merging the same file again
replaces its earlier entry.

The rendered section sits between ``<!-- edge-albert:devices:begin -->`` and ``...:end -->``
markers, so report.py can re-render the rest of the file and a later merge replaces only it.
"""
from __future__ import annotations

import html
import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .android_logs import parse_android_device, parse_benchmark_model, parse_perf_test
from .artifacts import atomic_write_text, sha256_file
from .errors import ArtifactError, DataError

REPORT_SCHEMA = "edge-albert/report/v1"
RESULTS_SCHEMA = "edge-albert/device-results/v1"
BEGIN, END = "<!-- edge-albert:devices:begin -->", "<!-- edge-albert:devices:end -->"
ROW_KEYS = ("name", "path", "format", "precision", "size_bytes", "accuracy", "f1", "agreement",
            "max_abs_logit_diff", "mean_abs_logit_diff", "mean_kl", "latency_ms", "load_ms",
            "cold_start_ms", "peak_rss_mb")


# ------------------------------------------------------------------------------ report io
def load_report(report_dir: str | Path) -> dict[str, Any]:
    path = Path(report_dir) / "report.json"
    if not path.is_file():
        raise ArtifactError("no report.json here", where=report_dir,
                            hint="run edge-albert validate first, or name the report directory")
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"report.json is not valid JSON ({exc})", where=path,
                            line=getattr(exc, "lineno", None)) from None
    if not isinstance(report, dict) or report.get("schema") != REPORT_SCHEMA:
        raise ArtifactError(f"report.json schema is {report.get('schema') if isinstance(report, dict) else None!r},"
                            f" expected {REPORT_SCHEMA!r}", where=path)
    if not (report.get("eval") or {}).get("sha256"):
        raise ArtifactError("report.json lacks eval.sha256", where=path)
    return report


def _check_eval(report: dict[str, Any], sha: str | None, where: Path) -> None:
    want = report["eval"]["sha256"]
    if sha is not None and sha != want:
        raise DataError(
            f"eval set sha256 {sha[:16]}... differs from the report's {want[:16]}...: these results"
            f" come from a different eval set than {report['eval'].get('path', 'the report')!s}",
            where=where, hint="bundle with --data set to the report's eval file and run it again")


def _add_device(report: dict[str, Any], entry: dict[str, Any]) -> None:
    devices = [d for d in report.get("devices", [])
               if d.get("source_sha256") != entry["source_sha256"]]
    devices.append(entry)
    report["devices"] = devices


def _save(report_dir: Path, report: dict[str, Any]) -> None:
    atomic_write_text(report_dir / "report.json", json.dumps(report, indent=2) + "\n")
    render_devices(report_dir, report)


def _refresh_manifest(report_dir: Path, names: Iterable[str]) -> None:
    """The report directory is a ``validate`` artifact: re-record the size and sha256 of the
    files a merge rewrote, so ``edge-albert artifact verify`` still passes."""
    mpath = report_dir / "manifest.json"
    if not mpath.is_file():
        return
    try:
        raw = json.loads(mpath.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ArtifactError("manifest.json is not valid JSON", where=mpath) from None
    files = raw.get("files", {})
    for name in names:
        path = report_dir / name
        if path.is_file():
            files[name] = {**files.get(name, {}), "size_bytes": path.stat().st_size,
                           "sha256": sha256_file(path)}
    raw["files"] = files
    report = json.loads((report_dir / "report.json").read_text(encoding="utf-8"))
    raw.setdefault("extra", {})["devices_merged"] = [
        {"name": d.get("name"), "kind": d.get("kind"), "source": d.get("source")}
        for d in report.get("devices", [])]
    atomic_write_text(mpath, json.dumps(raw, indent=2) + "\n")


# ------------------------------------------------------------------------------ device results
def merge_device_results(report_dir: str | Path,
                         device_result_files: Iterable[str | Path]) -> dict[str, Any]:
    """Add ``device_results.json`` files (from ``apps.validate``) to a report; returns it."""
    report_dir = Path(report_dir)
    report = load_report(report_dir)
    files = [Path(f) for f in device_result_files]
    if not files:
        raise DataError("no device results to merge", where=report_dir)
    entries = []
    for path in files:
        try:
            res = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise DataError(f"cannot read device results ({exc.strerror})", where=path) from None
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DataError(f"not valid JSON ({exc})", where=path,
                            line=getattr(exc, "lineno", None)) from None
        if not isinstance(res, dict) or res.get("schema") != RESULTS_SCHEMA:
            raise DataError(f"not a device results file (schema {RESULTS_SCHEMA})", where=path)
        _check_eval(report, (res.get("eval") or {}).get("sha256"), path)
        rows = []
        for i, row in enumerate(res.get("artifacts", [])):
            missing = [k for k in ROW_KEYS if k not in row]
            if missing:
                raise DataError(f"artifacts[{i}] lacks {', '.join(missing)}", where=path)
            rows.append({k: row[k] for k in ROW_KEYS})
        entries.append({
            **res.get("device", {}),
            "kind": (res.get("bundle") or {}).get("target") or "device",
            "source": str(path),
            "source_sha256": sha256_file(path),
            "created": res.get("created"),
            "eval_sha256": res["eval"]["sha256"],
            "reference": res.get("reference"),
            "settings": res.get("settings"),
            "artifacts": rows,
            "skipped": res.get("skipped", []),
            "failed": res.get("failed", []),
        })
    for e in entries:
        _add_device(report, e)
    _save(report_dir, report)
    return report


# ------------------------------------------------------------------------------ android logs
def _precision_format(name: str) -> tuple[str | None, str]:
    parts = Path(name).name.split(".")
    fmt = parts[-1] if len(parts) > 1 else ""
    return (parts[-2] if len(parts) >= 3 else None), fmt


def _android_row(parsed: dict[str, Any], where: Path) -> dict[str, Any]:
    head = parsed["header"]
    name = head.get("model") or Path(parsed.get("graph", "")).name
    if not name:
        m = re.match(r"^(?:benchmark_model|onnxruntime_perf_test)__(.+)\.log$", where.name)
        name = m.group(1) if m else ""
    if not name:
        raise DataError("cannot tell which model file this log measured (no '# edge-albert:"
                        " model=...' header, no Graph line, no tool__MODEL.log name)", where=where)
    precision, fmt = _precision_format(name)
    load = parsed.get("init_ms")
    first = parsed.get("first_ms")
    return {
        "name": name, "path": name, "format": fmt, "precision": precision,
        "size_bytes": int(head["size_bytes"]) if head.get("size_bytes", "").isdigit() else None,
        "accuracy": None, "f1": None, "agreement": None, "max_abs_logit_diff": None,
        "mean_abs_logit_diff": None, "mean_kl": None,
        "latency_ms": {"p50": parsed.get("p50_ms"), "p90": parsed.get("p90_ms"),
                       "p99": parsed.get("p99_ms"), "mean": parsed["mean_ms"],
                       **({"p95": parsed["p95_ms"]} if parsed.get("p95_ms") is not None else {})},
        "load_ms": load,
        "cold_start_ms": (load + first) if load is not None and first is not None else None,
        "peak_rss_mb": parsed.get("peak_mb", parsed.get("memory_overall_mb")),
    }


def merge_android_logs(report_dir: str | Path, log_files: Iterable[str | Path]) -> dict[str, Any]:
    """Add one phone's ``benchmark_model`` / ``onnxruntime_perf_test`` logs (and its device.txt,
    from run_android.sh) to a report as one device; returns the report."""
    report_dir = Path(report_dir)
    report = load_report(report_dir)
    paths: list[Path] = []
    for f in log_files:
        p = Path(f)
        paths += sorted(q for q in p.iterdir() if q.is_file() and q.suffix in (".log", ".txt")) \
            if p.is_dir() else [p]
    if not paths:
        raise DataError("no logs to merge", where=report_dir)
    device: dict[str, Any] | None = None
    rows: dict[str, dict[str, Any]] = {}
    tools: dict[str, str] = {}
    evals: set[str] = set()
    digest = []
    for path in paths:
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            raise DataError(f"cannot read ({exc.strerror})", where=path) from None
        digest.append(sha256_file(path))
        if text.startswith("edge-albert-device:") or "[ro.product.model]" in text:
            if device is not None:
                raise DataError("a second device.txt: merge one phone's logs at a time", where=path)
            device = parse_android_device(text, path)
            continue
        if "Inference timings in us" in text or "benchmark_model" in path.name \
                or "tool=benchmark_model" in text:
            parsed = parse_benchmark_model(text, path)
        elif "inference time cost" in text or "onnxruntime_perf_test" in path.name \
                or "tool=onnxruntime_perf_test" in text:
            parsed = parse_perf_test(text, path)
        else:
            raise DataError("neither benchmark_model nor onnxruntime_perf_test output, nor a"
                            " run_android.sh device.txt", where=path, line=1)
        head = parsed["header"]
        if head.get("eval_sha256"):
            _check_eval(report, head["eval_sha256"], path)
            evals.add(head["eval_sha256"])
        row = _android_row(parsed, path)
        rows[row["name"]] = row
        tools[row["name"]] = (f"{parsed['tool']} ({parsed.get('runs') or '?'} runs,"
                              f" threads {head.get('threads') or parsed.get('threads') or '?'},"
                              f" seq_len {head.get('seq_len', '?')})")
    if not rows:
        raise DataError("only a device.txt: no benchmark logs to merge", where=paths[0])
    import hashlib

    entry = {
        **(device or {"name": "android device", "machine": "arm64-v8a", "cpu": "", "board": None,
                      "cores": None, "threads": None, "flags": [], "os": "Android",
                      "python": None, "versions": {}}),
        "kind": "android",
        "source": ", ".join(str(p) for p in paths),
        "source_sha256": hashlib.sha256("".join(sorted(digest)).encode()).hexdigest(),
        "eval_sha256": next(iter(evals)) if len(evals) == 1 else None,
        "measured_with": tools,
        "note": "benchmark_model / onnxruntime_perf_test on one representative eval row; accuracy"
                " is not measured by these tools",
        "artifacts": sorted(rows.values(), key=lambda r: r["name"]),
        "skipped": [], "failed": [],
    }
    _add_device(report, entry)
    _save(report_dir, report)
    return report


# ------------------------------------------------------------------------------ rendering
def _f(v: Any, fmt: str = "{:.4f}") -> str:
    if v is None:
        return "–"
    try:
        return fmt.format(v)
    except (ValueError, TypeError):
        return str(v)


def _device_title(d: dict[str, Any]) -> str:
    parts = [str(d.get("kind", "device")), str(d.get("name", "?"))]
    if d.get("board"):
        parts.append(str(d["board"]))
    parts += [x for x in (d.get("machine"), d.get("cpu")) if x]
    if d.get("cores"):
        parts.append(f"{d['cores']} cores" + (f", {d['threads']} threads" if d.get("threads") else ""))
    if d.get("flags"):
        parts.append("flags " + " ".join(d["flags"]))
    vers = d.get("interpreters") or {}
    if vers:
        parts.append(", ".join(sorted(set(vers.values()))))
    if d.get("python"):
        parts.append(f"Python {d['python']}")
    return " · ".join(parts)


HEADERS = ("file", "accuracy", "host accuracy", "agreement", "max abs logit diff", "p50 ms",
           "p90 ms", "p99 ms", "host p50 ms", "device / host p50", "load ms", "cold start ms",
           "peak RSS MB", "size KB")


def _table_rows(report: dict[str, Any], d: dict[str, Any]) -> list[list[str]]:
    host = {a.get("name"): a for a in report.get("artifacts", [])}
    out = []
    for r in d.get("artifacts", []):
        h = host.get(r["name"], {})
        lat, hlat = r.get("latency_ms") or {}, h.get("latency_ms") or {}
        p50 = lat.get("p50") if lat.get("p50") is not None else lat.get("mean")
        ratio = (p50 / hlat["p50"]) if p50 and hlat.get("p50") else None
        out.append([
            r["name"], _f(r.get("accuracy")), _f(h.get("accuracy")), _f(r.get("agreement")),
            _f(r.get("max_abs_logit_diff"), "{:.2e}"),
            _f(lat.get("p50")) if lat.get("p50") is not None else
            (f"{_f(lat.get('mean'))} (mean)" if lat.get("mean") is not None else "–"),
            _f(lat.get("p90")), _f(lat.get("p99")), _f(hlat.get("p50")), _f(ratio, "{:.2f}x"),
            _f(r.get("load_ms"), "{:.1f}"), _f(r.get("cold_start_ms"), "{:.1f}"),
            _f(r.get("peak_rss_mb"), "{:.1f}"),
            _f(r["size_bytes"] / 1024 if r.get("size_bytes") else None, "{:.1f}"),
        ])
    return out


def _notes(d: dict[str, Any]) -> list[str]:
    notes = []
    if d.get("note"):
        notes.append(str(d["note"]))
    for s in d.get("skipped", []):
        notes.append(f"skipped {s['name']}: {s['reason']} ({s.get('install', '')})")
    for s in d.get("failed", []):
        notes.append(f"failed {s['name']}: {s['error']}")
    return notes


def devices_markdown(report: dict[str, Any]) -> str:
    ev = report["eval"]
    out = [BEGIN, "## On-device results", "",
           (f"Eval set `{ev.get('path', '')}` ({ev.get('rows', '?')} rows, sha256"
           f" `{ev['sha256'][:16]}…`); host columns are this report's own artifact rows. Agreement"
           " is with the float model's predictions stored in the bundle."), ""]
    for d in report.get("devices", []):
        out += [f"### {_device_title(d)}", "", "| " + " | ".join(HEADERS) + " |",
                "|" + "|".join("---" for _ in HEADERS) + "|"]
        out += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |"
                for row in _table_rows(report, d)]
        out += [""] + [f"- {n}" for n in _notes(d)] + ([""] if _notes(d) else [])
    out.append(END)
    return "\n".join(out) + "\n"


def devices_html(report: dict[str, Any]) -> str:
    e = html.escape
    parts = [BEGIN, "<section id='devices'><h2>On-device results</h2>",
             (f"<p>Eval set <code>{e(str(report['eval'].get('path', '')))}</code> (sha256"
             f" <code>{e(report['eval']['sha256'][:16])}…</code>); host columns are this report's"
             " artifact rows.</p>")]
    for d in report.get("devices", []):
        parts.append(f"<h3>{e(_device_title(d))}</h3><table><thead><tr>"
                     + "".join(f"<th>{e(h)}</th>" for h in HEADERS) + "</tr></thead><tbody>")
        for row in _table_rows(report, d):
            parts.append("<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>")
        parts.append("</tbody></table>")
        notes = _notes(d)
        if notes:
            parts.append("<ul>" + "".join(f"<li>{e(n)}</li>" for n in notes) + "</ul>")
    parts += ["</section>", END]
    return "\n".join(parts) + "\n"


def _splice(text: str, section: str, before: str | None = None) -> str:
    if BEGIN in text and END in text:
        start, end = text.index(BEGIN), text.index(END) + len(END)
        return text[:start] + section.rstrip("\n") + text[end:]
    if before and before in text:
        i = text.rindex(before)
        return text[:i] + section + text[i:]
    return text.rstrip("\n") + ("\n\n" if text.strip() else "") + section


def _base_pages(report_dir: Path, report: dict[str, Any]) -> tuple[str, str | None]:
    """report.md and report.html without the devices section: re-rendered by edge_albert.report
    when the report is one it wrote (it has gate, measurement, task), else the files as they are."""
    page = report_dir / "report.html"
    if all(k in report for k in ("gate", "measurement", "task")):
        try:
            from . import report as report_py
        except ImportError:
            report_py = None  # type: ignore[assignment]
        if report_py is not None and hasattr(report_py, "render_markdown"):
            return report_py.render_markdown(report), report_py.render_html(report)
    md = report_dir / "report.md"
    return (md.read_text(encoding="utf-8") if md.is_file() else "",
            page.read_text(encoding="utf-8") if page.is_file() else None)


def render_devices(report_dir: str | Path, report: dict[str, Any] | None = None) -> None:
    """(Re-)write report.md (and report.html when it exists) with the devices section, and
    re-record their hashes in the report directory's manifest."""
    report_dir = Path(report_dir)
    report = report if report is not None else load_report(report_dir)
    md_text, html_text = _base_pages(report_dir, report)
    atomic_write_text(report_dir / "report.md", _splice(md_text, devices_markdown(report)))
    if html_text is not None:
        atomic_write_text(report_dir / "report.html",
                          _splice(html_text, devices_html(report), before="</body>"))
    _refresh_manifest(report_dir, ("report.json", "report.md", "report.html"))
