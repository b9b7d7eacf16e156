"""benchmarks/peers.py's result as people read it: the Markdown table and notes, and the plot of
accuracy against batch-1 latency for every file of every tool."""
from __future__ import annotations

from pathlib import Path


def markdown(result: dict) -> str:
    rows = result["rows"]
    lat = result["latency"]
    what = "quick: tiny random ALBERT" if result["quick"] else result["model"]
    L = [f"# Peers on the same student ({what})",
         "",
         (f"Dev: `{result['dev']}` ({result['n_dev']} rows), every file fed the same tokenized"
         f" rows, one at a time, padded to {result['max_length']} tokens. Latency: batch 1,"
         f" sequence {lat['seq_len']},"
         f" {result['threads']} thread(s), {lat['calls']} calls per file over {lat['inputs']} in"
         f" {lat['rounds']} interleaved rounds (shuffled order each round): median (p50), p90 and"
         " the fastest call (min, the least disturbed by other load). All files run in one process"
         " through the project's runtime backends (onnxruntime"
         f" {result['versions'].get('onnxruntime', '?')}, ai-edge-litert"
         f" {result['versions'].get('ai-edge-litert', '?')}); torch rows in torch"
         f" {result['versions'].get('torch', '?')}. Load average at start:"
         f" {result['machine']['load_average_1m']} on {result['machine']['cpus']} CPUs (a shared"
         " box: compare rows with each other, not with other runs)."),
         "",
         ("| tool | recipe | size MB | int8 weight ops | accuracy % | agree % | max abs dlogit |"
          " p50 ms | p90 ms | min ms | status |"),
         "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]

    def f(x, fmt):
        return "" if x is None else format(x, fmt)

    for r in rows:
        err = (r["error"] or "").removeprefix(f"{r['status']}: ")
        status = r["status"] if r["status"] == "ok" else f"**{r['status']}**: {err}"
        status = status.replace("|", "\\|").replace("\n", " ")
        L.append(f"| {r['tool']} | {r['recipe']} |"
                 f" {f(r['size_bytes'] and r['size_bytes'] / 1e6, '.2f')} |"
                 f" {(r.get('census') or {}).get('int8_weight_ops', '')} |"
                 f" {f(r['accuracy'], '.2f')} | {f(r['agreement_with_torch_fp32'], '.1f')} |"
                 f" {f(r['max_abs_logit_diff'], '.2g')} | {f(r['p50_ms'], '.3f')} |"
                 f" {f(r['p90_ms'], '.3f')} | {f(r['min_ms'], '.3f')} | {status} |")
    h = result["headline"]
    L += ["", "## Headline: the project's best file against each peer's best", "",
          (f"Rule: {h['rule']} ({h['torch_fp32_accuracy']:.2f} %). Ratios are peer / project"
           " (above 1: the project's file is faster or smaller; speed from p50, and from the"
           " fastest call in brackets); accuracy diff is project minus peer, in points.")]
    for pool, title in (("all_project_files", "all the project's files"),
                        ("run_convert_defaults", "run_convert's default files only")):
        e = h.get(pool)
        if not e or not e["project"]:
            continue
        p = e["project"]
        L += ["", (f"Against {title}: project's best is **{p['short']}** ({p['p50_ms']:.3f}"
                   f" ms, {p['size_bytes'] / 1e6:.2f} MB, {p['accuracy']:.2f} %)"), "",
              ("| peer | peer's best | p50 ms | size MB | accuracy % | speed ratio | size ratio |"
               " accuracy diff (pts) |"), "|---|---|---:|---:|---:|---:|---:|---:|"]
        for tool, q in e["peers"].items():
            if q.get("best") is None:
                L.append(f"| {tool} | {q.get('note')} | | | | | | |")
            else:
                b = q["best"]
                L.append(f"| {tool} | {b['short']} | {b['p50_ms']:.3f} |"
                         f" {b['size_bytes'] / 1e6:.2f} | {b['accuracy']:.2f} |"
                         f" {q['speed_ratio']:.2f} ({q['speed_ratio_min']:.2f}) |"
                         f" {q['size_ratio']:.2f} | {q['accuracy_diff_points']:+.2f} |")
    L += ["", "## Peer environments", ""]
    for name, info in result["venvs"].items():
        v = info.get("versions") or {}
        L.append(f"- **{name}**: `{info['venv']}` from"
                 f" `pip install {' '.join(info['requirements'])}`"
                 + (f"; versions: {', '.join(f'{k} {x}' for k, x in v.items())}" if v else "")
                 + (f". Beside the project: {info['coinstall']}" if info.get("coinstall") else "")
                 + (f". Install error: {info['install_error']}" if info.get("install_error")
                    else ""))
    if result.get("notes"):
        L += ["", "## Notes", ""] + [f"- {n}" for n in result["notes"]]
    return "\n".join(L) + "\n"


def plot(result: dict, path: Path) -> None:
    """Accuracy vs p50 latency, one numbered point per measured file, marker area ~ size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in result["rows"] if r["status"] == "ok" and r["p50_ms"] is not None]
    failed = [r for r in result["rows"] if r["status"] != "ok"]
    colors = {"edge-albert": "tab:blue", "optimum": "tab:orange", "litert-torch": "tab:green",
              "torch.ao": "tab:red", "torch": "tab:gray"}
    fig, (ax, key) = plt.subplots(1, 2, figsize=(14, 7), gridspec_kw={"width_ratios": [3, 2]})
    biggest = max([r["size_bytes"] for r in rows] or [1])
    for tool, color in colors.items():
        pts = [r for r in rows if r["tool"] == tool]
        if pts:
            ax.scatter([r["p50_ms"] for r in pts], [r["accuracy"] for r in pts],
                       s=[30 + 900 * r["size_bytes"] / biggest for r in pts], alpha=0.45,
                       color=color, edgecolors="black", linewidths=0.6, label=tool)
    lines = []
    for i, r in enumerate(rows, 1):
        ax.annotate(str(i), (r["p50_ms"], r["accuracy"]), fontsize=8, weight="bold",
                    xytext=(3, 3), textcoords="offset points")
        lines.append(f"{i:>2}  {r['short']}: {r['size_bytes'] / 1e6:.2f} MB, {r['p50_ms']:.2f} ms,"
                     f" {r['accuracy']:.2f} %")
    lines += ["", "not plotted:"] + [f"    {r['short']}: {r['status']}" for r in failed] \
        if failed else []
    ax.set_xscale("log")
    from matplotlib.ticker import FormatStrFormatter

    ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))
    ax.xaxis.set_minor_formatter(FormatStrFormatter("%g"))
    ax.tick_params(axis="x", which="minor", labelsize=7)
    ax.set_xlabel(f"p50 latency, ms (log; batch 1, seq {result['max_length']},"
                  f" {result['threads']} thread(s))")
    ax.set_ylabel(f"dev accuracy, % ({result['n_dev']} rows)")
    ax.set_title("Same ALBERT student, every tool's files (marker area ~ file size)", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="lower right", markerscale=0.4, fontsize=8)
    key.axis("off")
    key.text(0, 1, "\n".join(lines), va="top", family="monospace", fontsize=7.5,
             transform=key.transAxes)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
