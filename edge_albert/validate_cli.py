"""``edge-albert validate``: the click command (added to the CLI group with ``cli.add_command``).

Thin: builds a :class:`~edge_albert.validate.ValidateConfig`, calls
:func:`~edge_albert.validate.run_validate` and prints the report's table. Everything heavy
(numpy, the runtime, torch for a Hugging Face reference, matplotlib) loads inside the command.
"""
from __future__ import annotations

from pathlib import Path

import click

from .cli_common import CONTEXT


@click.command("validate", context_settings=CONTEXT)
@click.option("--artifacts", "artifact_dirs", multiple=True, required=True,
              type=click.Path(path_type=Path), metavar="DIR",
              help="Artifact directory from 'convert' (repeat for several); every model file in"
                   " it is validated.")
@click.option("--data", "data_file", required=True, type=click.Path(path_type=Path),
              help="Labelled eval file (TSV/CSV/JSONL); every row is used.")
@click.option("--reference", default=None, type=click.Path(path_type=Path),
              help="Float model to compare with: a Hugging Face model directory (run in torch) or"
                   " a float .onnx/.ort/.tflite file. Default: the model the first artifact was"
                   " converted from, else its fp32 file.")
@click.option("--max-drop", type=float, default=1.0, show_default=True,
              help="Fail when a file's accuracy is more than this many percentage points below"
                   " the reference's (the report is written first).")
@click.option("--threads", type=int, default=1, show_default=True,
              help="Interpreter threads (match the device: 4 on a Pi).")
@click.option("--latency-runs", type=int, default=50, show_default=True,
              help="Timed calls per batch size and bucket, and for the per-request distribution.")
@click.option("--warmup", type=int, default=5, show_default=True, help="Untimed calls first.")
@click.option("--batch-sizes", default="1,8", show_default=True, metavar="LIST",
              help="Comma-separated batch sizes for the per-bucket latency.")
@click.option("--out", required=True, type=click.Path(path_type=Path),
              help="Report directory (report.json, report.md, report.html, manifest.json).")
@click.option("--label-map", default=None, metavar="DATA=MODEL,...",
              help="How the data's labels name the model's, e.g. 0=negative,1=positive (default:"
                   " the same names, or integer i for a model's LABEL_i).")
@click.option("--force", is_flag=True, help="Replace --out if it exists.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def validate_command(artifact_dirs: tuple[Path, ...], data_file: Path, reference: Path | None,
                     max_drop: float, threads: int, latency_runs: int, warmup: int,
                     batch_sizes: str, label_map: str | None, out: Path, force: bool,
                     quiet: bool) -> None:
    """Run every model file of the artifacts on the eval set and compare with the float model.

    Reports accuracy, F1, agreement, logit error and KL against the reference, latency
    p50/p90/p99 per bucket at batch 1 and 8, load time, cold start, peak memory and file size,
    in report.json, report.md (a table for an issue) and a self-contained report.html.

    \b
    Example:
      edge-albert validate --artifacts conv/ --data ../shared/data/sst2/dev.tsv \\
          --reference student/ --max-drop 1.0 --threads 4 --out report/
      edge-albert validate --artifacts conv-a/ --artifacts conv-b/ \\
          --data ../shared/data/sst2/dev.tsv --reference conv-a/model.fp32.onnx --out report/
    """
    from .errors import ConfigError
    from .report import COLUMNS, table_rows
    from .validate import ValidateConfig, run_validate

    try:
        sizes = tuple(int(x) for x in batch_sizes.split(",") if x.strip())
    except ValueError:
        raise ConfigError(f"expected comma-separated integers, got {batch_sizes!r}",
                          key="--batch-sizes") from None
    cfg = ValidateConfig(threads=threads, max_drop=max_drop, batch_sizes=sizes,
                         latency_runs=latency_runs, warmup=warmup, label_map=label_map or "")
    from .report import read_report

    run_validate(cfg, list(artifact_dirs), data_file, reference, out, force=force,
                 progress=not quiet)
    report = read_report(out)
    rows = table_rows(report)
    picked = [COLUMNS.index(c) for c in ("file", "size KB", "acc %", "agree %", "max |Δlogit|",
                                         "p50 ms", "cold start ms", "peak RSS MB")]
    widths = [max(len(COLUMNS[i]), *(len(r[i]) for r in rows)) for i in picked]
    click.echo("  ".join(COLUMNS[i].ljust(w) if k == 0 else COLUMNS[i].rjust(w)
                         for k, (i, w) in enumerate(zip(picked, widths))))
    for r in rows:
        click.echo("  ".join(r[i].ljust(w) if k == 0 else r[i].rjust(w)
                             for k, (i, w) in enumerate(zip(picked, widths))))
    ref = report["reference"]
    click.echo(f"reference {ref['name']}: accuracy {ref['accuracy'] * 100:.2f} %"
               f" on {report['eval']['rows']:,} rows; gate (max drop {max_drop:.1f} points) passed")
    click.echo(f"wrote {out}/report.json, report.md, report.html")
