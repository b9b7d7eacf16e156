"""``edge-albert quantize``: the click command (added to the CLI group with ``cli.add_command``).

Thin: it builds a :class:`~.quantize.QuantizeConfig` (TOML ``[quantize]`` table, ``--set`` overrides,
then the options), calls :func:`~.quantize.run_quantize` and prints the trial table. torch,
tensorflow and onnxruntime load inside the command only.
"""
from __future__ import annotations

from pathlib import Path

import click

from ..cli_common import CONTEXT, csv_list, native_logs_muted


@click.command("quantize", context_settings=CONTEXT)
@click.option("--model", "model_dir", required=True, type=click.Path(path_type=Path),
              help="Sequence-classification model directory (an ALBERT student for TFLite).")
@click.option("--calibration", required=True, type=click.Path(path_type=Path), metavar="DATA",
              help="Labelled task data (TSV/CSV/JSONL) to calibrate on, e.g. the train split;"
                   " rows that are also in --dev are left out.")
@click.option("--dev", required=True, type=click.Path(path_type=Path), metavar="DATA",
              help="Labelled task data every recipe is judged on (accuracy, agreement).")
@click.option("--out", required=True, type=click.Path(path_type=Path),
              help="Artifact directory to write.")
@click.option("--search", is_flag=True,
              help="Try every recipe (of --backends, or those named by --recipe) and keep the"
                   " fastest within the budget, per backend.")
@click.option("--recipe", "recipes", multiple=True, metavar="NAME",
              help="A recipe by name (comma-separated or repeated). Without --search: the one"
                   " recipe to convert; with --search: limits the search to these.")
@click.option("--max-drop", type=float, default=None,
              help="Accuracy budget: points below the fp32 file of the same backend (1.0).")
@click.option("--backends", default=None, metavar="LIST",
              help="Comma-separated: onnx, tflite. Default: both (or those of --recipe).")
@click.option("--threads", type=int, default=None,
              help="Interpreter threads for evaluation and latency (2).")
@click.option("--seq-len", type=int, default=None,
              help="One fixed maximum sequence length (same as --buckets N).")
@click.option("--buckets", default=None, metavar="LIST",
              help="Padded sequence lengths the runtime uses, e.g. 32,64,128 (the default);"
                   " latency is measured at the largest.")
@click.option("--calibration-size", type=int, default=None, help="Calibration examples (200).")
@click.option("--label-map", default=None, metavar="DATA=MODEL,...",
              help="How the data's labels name the model's, e.g. 0=negative,1=positive (default:"
                   " the same names, or integer i for a model's LABEL_i).")
@click.option("--config", "config_file", type=click.Path(path_type=Path), default=None,
              help="TOML file with a [quantize] table.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config value, e.g. --set quantize.latency_runs=50.")
@click.option("--list-recipes", is_flag=True, is_eager=True, expose_value=False,
              callback=lambda ctx, _p, v: _list_recipes(ctx) if v else None,
              help="Print the recipe table and exit.")
@click.option("--force", is_flag=True, help="Replace --out if it exists.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.pass_context
def quantize_command(ctx: click.Context, model_dir: Path, calibration: Path, dev: Path, out: Path,
                     search: bool, recipes: tuple[str, ...], max_drop: float | None,
                     backends: str | None, threads: int | None, seq_len: int | None,
                     buckets: str | None, calibration_size: int | None, label_map: str | None,
                     config_file: Path | None,
                     overrides: tuple[str, ...], force: bool, quiet: bool) -> None:
    """Find the fastest int8 recipe that keeps accuracy, per backend (ONNX Runtime, TFLite).

    Each recipe (ONNX dynamic and static QDQ with minmax / entropy / percentile calibration,
    per-channel or per-tensor, TFLite dynamic-range and full-integer, each with several sets of
    float fallbacks) is built, run on the whole --dev set through the device runtime, and
    compared with the fp32 file of its backend: accuracy drop, agreement, batch-1 latency at the
    largest bucket, size and how many weights are int8. The fastest recipe within --max-drop is
    kept; every trial, failed or not, is printed and saved in trials.json / trials.md.

    \b
    Example:
      edge-albert quantize --model student/ --calibration ../shared/data/sst2/train.tsv \\
          --dev ../shared/data/sst2/dev.tsv --search --out quantized/
      edge-albert quantize --model student/ --calibration train.tsv --dev dev.tsv \\
          --recipe onnx-qdq-minmax-pc --out q/
    """
    from ..config import cli_overrides, load_sections
    from ..errors import ConfigError
    from .quantize import RECIPES, QuantizeConfig, QuantizeGateError, run_quantize
    from .quantize_trials import format_table

    names = [n for r in recipes for n in csv_list(r)]
    if not search and len(names) != 1:
        raise ConfigError("give --search to try every recipe, or one --recipe NAME"
                          + (f" (got {len(names)})" if names else ""), key="--recipe",
                          hint="recipes: " + ", ".join(RECIPES))
    if seq_len is not None and buckets is not None:
        raise ConfigError("give --seq-len or --buckets, not both", key="--seq-len")
    sets = list(overrides) + cli_overrides(
        "quantize", recipes=",".join(names) if names else None, backends=backends,
        max_drop=max_drop, threads=threads,
        buckets=f"[{seq_len}]" if seq_len is not None else buckets,
        calibration_size=calibration_size, label_map=label_map)
    config = load_sections({"quantize": QuantizeConfig}, config_file, sets)["quantize"]
    verbose = bool(ctx.find_root().obj and ctx.find_root().obj.get("verbose"))
    try:
        with native_logs_muted(not verbose):
            manifest = run_quantize(config, model_dir, out, calibration=calibration, dev=dev,
                                    force=force, progress=not quiet)
    except QuantizeGateError as exc:
        click.echo(format_table(exc.trials))
        raise
    from .quantize import Trial, TrialStatus

    trials = [Trial(**{**row, "status": TrialStatus(row["status"]) if row["status"] else None})
              for row in _load_trials(manifest)]
    click.echo(format_table(trials))
    for name in manifest.extra["kept"].values():
        meta = manifest.files[name]
        s = meta["search"]
        click.echo(f"kept {name:<26} {meta['recipe']['search_recipe']:<28} accuracy"
                   f" {100 * s['accuracy']:.2f} % (drop {s['drop']:+.2f})  p50"
                   f" {s['latency_ms']['p50']:.3f} ms  {meta['size_bytes'] / 1e6:.2f} MB")
    click.echo(f"wrote {out} (trials.json, trials.md)")


def _load_trials(manifest) -> list[dict]:
    import json

    from .quantize import TRIALS_JSON

    return json.loads(manifest.file(TRIALS_JSON).read_text(encoding="utf-8"))["trials"]


def _list_recipes(ctx: click.Context) -> None:
    from .quantize import RECIPES

    for r in RECIPES.values():
        click.echo(f"{r.name:<30} {r.format.value:<7} {r.settings()}")
    ctx.exit(0)


__all__ = ["quantize_command"]
