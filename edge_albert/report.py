"""The validation report: ``report.json`` (schema ``edge-albert/report/v1``), ``report.md`` and a
self-contained ``report.html``, written atomically as one ``validate`` artifact.

``report.md`` is a table to paste into an issue. ``report.html`` inlines its charts as base64 PNGs
(matplotlib's Agg canvas, no pyplot state): accuracy against latency per backend, file sizes, and
the per-request latency distribution of every file. matplotlib is imported only when rendering.
"""
from __future__ import annotations

import base64
import html
import io
import json
import platform
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .artifacts import Manifest
from .errors import AccuracyGateError
from .runtime.cpu import cpu_facts, interesting_flags, parse_cpuinfo, read_cpuinfo

SCHEMA = "edge-albert/report/v1"
FILES = ("report.json", "report.md", "report.html")
COLORS = {"onnx": "#1f77b4", "ort": "#2ca02c", "tflite": "#d62728", "onnx-e2e": "#9467bd",
          "pte": "#ff7f0e"}
MARKERS = {"fp32": "o", "fp16": "s", "int8-dynamic": "^", "int8-static": "D"}


# ----------------------------------------------------------------------------- host
def _cpuinfo(text: str | None) -> str:
    return read_cpuinfo() if text is None else text


def cpu_flags(text: str | None = None) -> list[str]:
    """The int8/fp16 flags this CPU has (``flags`` on x86, ``Features`` on ARM)."""
    return interesting_flags(parse_cpuinfo(_cpuinfo(text))["flags"])


def cpu_name(text: str | None = None) -> str:
    """``model name`` (x86), the board ``Model`` (Raspberry Pi) or ``Hardware``, else platform's."""
    fields: dict[str, str] = {}
    for line in _cpuinfo(text).splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() not in fields:
            fields[key.strip()] = value.strip()
    for key in ("model name", "Model", "Hardware", "cpu model"):
        if fields.get(key):
            return fields[key]
    return platform.processor() or platform.machine()


def host_info(threads: int, cpuinfo: str | None = None) -> dict[str, Any]:
    """CPU, machine, relevant CPU flags, cores, threads used, Python and library versions."""
    from .artifacts import library_versions

    facts = cpu_facts(cpuinfo)
    return {"cpu": cpu_name(cpuinfo), "machine": facts["machine"], "system": platform.system(),
            "flags": facts["flags"], "int8_dot_product": facts["int8_dot_product"],
            "isa": facts["isa"], "cores": facts["cores"], "usable_cores": facts["usable_cores"],
            "threads": threads,
            "python": platform.python_version(), "libraries": library_versions()}


# ----------------------------------------------------------------------------- gate
def check_gate(report: Mapping[str, Any], *, out_dir: str | Path | None = None) -> None:
    """AccuracyGateError naming every file that lost more than the budget, with the numbers."""
    budget = float(report["gate"]["max_drop_pts"])
    ref = report["reference"]["accuracy"] * 100
    bad = [a for a in report["artifacts"] if a["accuracy_drop_pts"] > budget]
    if not bad:
        return
    parts = [f"{a['name']} in {a['artifact']}: {a['accuracy'] * 100:.2f} %"
             f" (-{a['accuracy_drop_pts']:.2f} points)" for a in bad]
    where = f" ({Path(out_dir) / 'report.md'})" if out_dir is not None else ""
    raise AccuracyGateError(
        f"accuracy gate: {len(bad)} file(s) more than {budget:g} points below the reference"
        f" {report['reference']['name']} ({ref:.2f} %): {'; '.join(parts)}",
        hint=f"the report is written{where}; raise --max-drop or change these files' recipe")


# ----------------------------------------------------------------------------- text
def _f(x: Any, digits: int = 2, scale: float = 1.0) -> str:
    if x is None:
        return "-"
    if isinstance(x, (int, float)):
        return f"{x * scale:.{digits}f}"
    return str(x)


def _g(x: Any) -> str:
    return "-" if x is None else f"{x:.2g}"


COLUMNS = ("file", "format", "precision", "size KB", "acc %", "F1", "agree %", "max |Δlogit|",
           "KL", "p50 ms", "p90 ms", "p99 ms", "cold start ms", "peak RSS MB")


def table_rows(report: Mapping[str, Any]) -> list[list[str]]:
    """One row of :data:`COLUMNS` per file, as text."""
    rows = []
    for a in report["artifacts"]:
        lat = a.get("latency_ms") or {}
        rows.append([a["name"], a.get("format") or "-", a.get("precision") or "-",
                     _f(a.get("size_bytes"), 1, 1 / 1024), _f(a["accuracy"], 2, 100),
                     _f(a["f1"], 4), _f(a["agreement"], 2, 100), _g(a["max_abs_logit_diff"]),
                     _g(a["mean_kl"]), _f(lat.get("p50"), 3), _f(lat.get("p90"), 3),
                     _f(lat.get("p99"), 3), _f(a.get("cold_start_ms"), 1),
                     _f(a.get("peak_rss_mb"), 1)])
    return rows


def bucket_rows(report: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    """p50 latency per (batch size, bucket): header and rows."""
    keys: list[tuple[str, str]] = []
    for a in report["artifacts"]:
        for batch, cells in (a.get("latency_by_bucket") or {}).items():
            for b in cells:
                if (batch, b) not in keys:
                    keys.append((batch, b))
    keys.sort(key=lambda k: (int(k[0].split("_")[-1]), int(k[1])))
    header = ["file"] + [f"b{batch.split('_')[-1]} × {b} ms" for batch, b in keys]
    rows = []
    for a in report["artifacts"]:
        lb = a.get("latency_by_bucket") or {}
        rows.append([a["name"]] + [_f((lb.get(batch) or {}).get(b, {}).get("p50"), 3)
                                   for batch, b in keys])
    return header, rows


def _md_table(header: Sequence[str], rows: list[list[str]], text_cols: int = 1) -> str:
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    sep = ["---" if i < text_cols else "---:" for i in range(len(header))]
    return "\n".join([line(header), line(sep)] + [line(r) for r in rows])


def _summary_lines(report: Mapping[str, Any]) -> list[tuple[str, str]]:
    ref, ev, host, task = report["reference"], report["eval"], report["host"], report["task"]
    gate = report["gate"]
    flags = ", ".join(host["flags"]) or "none found"
    return [
        ("eval", (f"{ev['path']} ({ev['rows']:,} rows, {task['kind']}, labels"
                  f" {', '.join(task['labels'])}; sha256 {ev['sha256'][:12]})")),
        ("reference", (f"{ref['name']}: accuracy {ref['accuracy'] * 100:.2f} %,"
                       f" {task['f1']} {ref['f1']:.4f}")),
        ("host", (f"{host['cpu']} ({host['machine']}, {host['cores']} cores,"
                  f" {host['threads']} thread(s), Python {host['python']})")),
        ("cpu flags", f"{flags}; int8 dot product: {'yes' if host['int8_dot_product'] else 'no'}"),
        ("runtimes", ", ".join(f"{k} {v}" for k, v in host["libraries"].items()
                               if k in ("onnxruntime", "ai-edge-litert", "tflite-runtime",
                                        "tensorflow", "torch"))),
        ("gate", f"max drop {gate['max_drop_pts']:.1f} points: "
                 + ("passed" if not gate["failed"] else "FAILED: " + ", ".join(gate["failed"]))),
    ]


def render_markdown(report: Mapping[str, Any]) -> str:
    """A summary and the per-file table, ready to paste into an issue."""
    out = [f"## edge-albert validate: {report['task']['name']}", ""]
    out += [f"- **{k}**: {v}" for k, v in _summary_lines(report)]
    out += ["", _md_table(COLUMNS, table_rows(report), text_cols=3), ""]
    out += [(f"Latency: {report['measurement']['latency_ms']}. Agreement, logit diff and KL"
             " are against the reference."), ""]
    header, rows = bucket_rows(report)
    out += ["<details><summary>p50 latency by batch size × bucket</summary>", "",
            _md_table(header, rows), "", "</details>", ""]
    return "\n".join(out)


# ----------------------------------------------------------------------------- charts
def _png(fig: Any) -> str:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _short(name: str) -> str:
    return name.rsplit("/", 1)[-1].removeprefix("model.")


def _format_legend(ax: Any, arts: Sequence[Mapping[str, Any]]) -> None:
    from matplotlib.patches import Patch

    fmts = list(dict.fromkeys(a.get("format") or "?" for a in arts))
    ax.legend(handles=[Patch(color=COLORS.get(f, "gray"), label=f) for f in fmts], fontsize=8,
              loc="upper left", bbox_to_anchor=(1.01, 1.0), title="format", title_fontsize=8)


def accuracy_latency_png(report: Mapping[str, Any]) -> str:
    """Accuracy against p50 latency, one panel per backend, reference and budget as lines."""
    from matplotlib.figure import Figure

    arts = report["artifacts"]
    backends = sorted({a.get("backend") or "?" for a in arts})
    fig = Figure(figsize=(5.2 * len(backends), 4.2))
    ref = report["reference"]["accuracy"] * 100
    floor = ref - float(report["gate"]["max_drop_pts"])
    accs = [a["accuracy"] * 100 for a in arts] + [ref, floor]
    lo, hi = min(accs), max(accs)
    pad = max(1.0, (hi - lo) * 0.15)
    for k, backend in enumerate(backends):
        ax = fig.add_subplot(1, len(backends), k + 1)
        mine = [a for a in arts if (a.get("backend") or "?") == backend]
        for a in mine:
            x = (a.get("latency_ms") or {}).get("p50")
            if x is None:
                continue
            ax.scatter([x], [a["accuracy"] * 100], s=60, color=COLORS.get(a.get("format"), "gray"),
                       marker=MARKERS.get(a.get("precision"), "o"), zorder=3,
                       label=f"{a.get('format')} {a.get('precision')}")
        ax.axhline(ref, color="black", ls="--", lw=1, label=f"reference {ref:.1f} %")
        ax.axhline(floor, color="#d62728", ls=":", lw=1, label=f"budget floor {floor:.1f} %")
        ax.set_ylim(lo - pad, hi + pad)
        xs = [(a.get("latency_ms") or {}).get("p50") or 0 for a in mine]
        ax.set_xlim(0, max([*xs, 0.001]) * 1.2)
        ax.set_title(backend)
        ax.set_xlabel("p50 latency, batch 1 (ms)")
        ax.set_ylabel("accuracy (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    fig.suptitle("accuracy vs latency per backend")
    return _png(fig)


def size_png(report: Mapping[str, Any]) -> str:
    """File size of every file (KB), coloured by format."""
    from matplotlib.figure import Figure

    arts = report["artifacts"]
    fig = Figure(figsize=(8, 0.45 * len(arts) + 1.2))
    ax = fig.add_subplot(1, 1, 1)
    sizes = [(a.get("size_bytes") or 0) / 1024 for a in arts]
    names = [_short(a["name"]) for a in arts]
    ys = list(range(len(arts)))[::-1]
    ax.barh(ys, sizes, color=[COLORS.get(a.get("format"), "gray") for a in arts])
    for y, s in zip(ys, sizes):
        ax.text(s, y, f" {s:,.0f}", va="center", fontsize=8)
    ax.set_yticks(ys, names, fontsize=8)
    ax.set_xlabel("file size (KB)")
    ax.set_xlim(0, max([*sizes, 1]) * 1.15)
    ax.set_title("file size")
    ax.grid(axis="x", alpha=0.3)
    _format_legend(ax, arts)
    return _png(fig)


def latency_png(report: Mapping[str, Any]) -> str:
    """Per-request latency distribution (batch 1, the eval set's length mix) of every file."""
    from matplotlib.figure import Figure

    arts = [a for a in report["artifacts"] if a.get("latency_samples_ms")]
    fig = Figure(figsize=(8, 0.45 * max(1, len(arts)) + 1.2))
    ax = fig.add_subplot(1, 1, 1)
    if arts:
        ys = list(range(len(arts)))[::-1]
        import matplotlib

        major, minor = (int(x) for x in matplotlib.__version__.split(".")[:2])
        horizontal = ({"orientation": "horizontal"} if (major, minor) >= (3, 10)
                      else {"vert": False})
        box = ax.boxplot([a["latency_samples_ms"] for a in arts], positions=ys, **horizontal,
                         widths=0.6, patch_artist=True, showfliers=True,
                         flierprops={"markersize": 3})
        for patch, a in zip(box["boxes"], arts):
            patch.set_facecolor(COLORS.get(a.get("format"), "gray"))
            patch.set_alpha(0.55)
        ax.set_yticks(ys, [_short(a["name"]) for a in arts], fontsize=8)
        _format_legend(ax, arts)
    from matplotlib.ticker import FuncFormatter

    ax.set_xscale("log")  # a few scheduler spikes must not squash every box
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.set_xlabel("latency per request, batch 1 (ms, log scale)")
    ax.set_title("latency distribution")
    ax.grid(axis="x", which="both", alpha=0.3)
    return _png(fig)


# ----------------------------------------------------------------------------- html
CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222;
max-width:1200px}
h1{font-size:22px;margin:0 0 12px}h2{font-size:17px;margin:28px 0 8px}
dl{display:grid;grid-template-columns:max-content auto;gap:4px 16px;font-size:14px}
dt{font-weight:600}dd{margin:0}
table{border-collapse:collapse;font-size:13px;margin:8px 0}
th,td{border:1px solid #ddd;padding:4px 8px;text-align:right;white-space:nowrap}
th{background:#f4f4f4}td:first-child,th:first-child,td.t{text-align:left}
tr:nth-child(even) td{background:#fafafa}tr.fail td{background:#fde8e8}
.gate{padding:8px 12px;border-radius:4px;font-weight:600;display:inline-block}
.pass{background:#e6f4ea;color:#1e6b34}.failbox{background:#fde8e8;color:#a01b1b}
img{max-width:100%;display:block;margin:8px 0}.note{color:#666;font-size:13px}
"""


def _html_table(header: Sequence[str], rows: list[list[str]],
                fail: Sequence[bool] | None = None, text_cols: int = 1) -> str:
    e = html.escape
    out = ["<table><thead><tr>" + "".join(f"<th>{e(h)}</th>" for h in header) + "</tr></thead>",
           "<tbody>"]
    for i, r in enumerate(rows):
        cls = ' class="fail"' if fail and fail[i] else ""
        cells = "".join(f'<td class="t">{e(c)}</td>' if j < text_cols else f"<td>{e(c)}</td>"
                        for j, c in enumerate(r))
        out.append(f"<tr{cls}>{cells}</tr>")
    return "\n".join([*out, "</tbody></table>"])


def render_html(report: Mapping[str, Any]) -> str:
    """One self-contained page: summary, gate, tables and the three charts as inline PNGs."""
    e = html.escape
    gate = report["gate"]
    failed = set(gate["failed"])
    banner = (f'<div class="gate pass">accuracy gate passed (max drop {gate["max_drop_pts"]:.1f}'
              " points)</div>" if not failed else
              f'<div class="gate failbox">accuracy gate FAILED (max drop'
              f' {gate["max_drop_pts"]:.1f} points): {e(", ".join(gate["failed"]))}</div>')
    summary = "".join(f"<dt>{e(k)}</dt><dd>{e(v)}</dd>" for k, v in _summary_lines(report))
    charts = [("accuracy vs latency", accuracy_latency_png(report)),
              ("file size", size_png(report)), ("latency distribution", latency_png(report))]
    imgs = "\n".join(f'<img alt="{e(t)}" src="data:image/png;base64,{b64}">' for t, b64 in charts)
    header, brows = bucket_rows(report)
    body = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>edge-albert validate: {e(report['task']['name'])}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>edge-albert validate: {e(report['task']['name'])}</h1>",
        banner, f"<dl>{summary}</dl>",
        "<h2>Files</h2>",
        _html_table(COLUMNS, table_rows(report),
                    [a["name"] in failed for a in report["artifacts"]], text_cols=3),
        (f'<p class="note">Latency: {e(report["measurement"]["latency_ms"])}. Cold start:'
         f' {e(report["measurement"]["cold_start_ms"])}. Agreement, logit difference and KL are'
         " against the reference.</p>"),
        "<h2>Charts</h2>", imgs,
        "<h2>p50 latency by batch size × bucket (ms)</h2>", _html_table(header, brows),
        (f'<p class="note">{e(report["measurement"]["latency_by_bucket"])}; rows per bucket in'
         f' the eval set: {e(json.dumps(report["eval"].get("bucket_rows", {})))}.</p>'),
        (f'<p class="note">schema {e(report["schema"])}, created'
         f' {e(str(report.get("created")))}</p>'),
        "</body></html>",
    ]
    return "\n".join(body) + "\n"


# ----------------------------------------------------------------------------- write
def write_report(report: Mapping[str, Any], out_dir: str | Path, *, config: Mapping[str, Any],
                 inputs: Sequence[str | Path] = (), force: bool = False) -> Manifest:
    """Render and write report.json, report.md and report.html as one ``validate`` artifact.

    Everything is rendered before anything is written; the directory appears complete or not
    at all (:func:`~edge_albert.artifacts.write_artifact`).
    """
    from .artifacts import write_artifact

    texts = {"report.json": json.dumps(report, indent=2, allow_nan=False) + "\n",
             "report.md": render_markdown(report), "report.html": render_html(report)}
    with write_artifact(out_dir, stage="validate", config=config, inputs=list(inputs),
                        force=force) as w:
        for name, text in texts.items():
            (w.path / name).write_text(text, encoding="utf-8")
        w.describe("report.json", kind="report", schema=report["schema"])
    assert w.manifest is not None
    return w.manifest


def read_report(out_dir: str | Path) -> dict[str, Any]:
    """The report dict a ``validate`` artifact holds."""
    return json.loads((Path(out_dir) / "report.json").read_text(encoding="utf-8"))


__all__ = ["SCHEMA", "check_gate", "cpu_flags", "cpu_name", "host_info", "read_report",
           "render_html", "render_markdown", "write_report"]
