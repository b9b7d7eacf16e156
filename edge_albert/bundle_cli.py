"""``edge-albert bundle`` and ``edge-albert report`` (merging device results): click commands that
the CLI group adds with ``cli.add_command``. Thin: each calls one library function.

    edge-albert bundle --artifacts conv/ --target rpi --data dev.tsv --out bundle-pi/
    edge-albert report --merge bundle-pi/device_results.json reports/sst2/
    edge-albert report --merge-android logs/device.txt logs/*.log reports/sst2/

Standalone (before the commands are registered): ``python -m edge_albert.bundle_cli bundle ...``.
"""
from __future__ import annotations

from pathlib import Path

import click

from .cli_common import CONTEXT, csv_list


@click.command("bundle", context_settings=CONTEXT)
@click.option("--artifacts", "artifacts_dir", required=True, type=click.Path(path_type=Path),
              help="Convert artifact directory (model.<precision>.<format> files + manifest).")
@click.option("--target", required=True, type=click.Choice(["rpi", "android"]),
              help="rpi: models + runtime code + run.sh (venv, install, validate). android:"
                   " .tflite/.ort + token-id inputs + run_android.sh (adb, benchmark_model,"
                   " onnxruntime_perf_test).")
@click.option("--data", "data_file", required=True, type=click.Path(path_type=Path),
              metavar="EVAL_FILE", help="Labelled eval set (TSV/CSV/JSONL), copied byte for byte;"
              " use the report's eval file so the results merge.")
@click.option("--reference-predictions", "reference", default="fp32", show_default=True,
              metavar="fp32|MODEL_FILE|PATH",
              help="The float model's predictions stored in the bundle: 'fp32' runs the"
                   " artifact's fp32 file (.onnx, else .tflite, else .ort) through the runtime on"
                   " this host; or name another model file of the artifact; or give a .json"
                   " ({\"logits\": [[...]]} or {\"predictions\": [...]}) or .npy logits file.")
@click.option("--models", default=None, metavar="LIST",
              help="Comma-separated model files or precisions to include (default: all).")
@click.option("--text-column", "text_columns", multiple=True,
              help="Text column by name or index (twice for pairs). Default: detected.")
@click.option("--label-column", default=None, help="Label column. Default: detected.")
@click.option("--label-map", default=None, metavar="DATA=MODEL,...",
              help="How the data's labels name the model's, e.g. 0=negative,1=positive (default:"
                   " the same names, or integer i for a model's LABEL_i).")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Bundle directory.")
@click.option("--force", is_flag=True, help="Replace --out if it exists.")
def bundle_command(artifacts_dir: Path, target: str, data_file: Path, reference: str,
                   models: str | None, text_columns: tuple[str, ...], label_column: str | None,
                   label_map: str | None, out: Path, force: bool) -> None:
    """A folder to copy to a Raspberry Pi or an Android phone; its results merge into the report.

    \b
    Examples:
      edge-albert bundle --artifacts conv/ --target rpi --data dev.tsv --out pi/
      scp -r pi/ pi@raspberrypi.local: && ssh pi@raspberrypi.local 'bash pi/run.sh'
      edge-albert bundle --artifacts conv/ --target android --data dev.tsv --out phone/
    """
    from .bundle import BundleConfig, Target, run_bundle

    cfg = BundleConfig(target=Target(target), models=csv_list(models), reference=reference,
                       text_columns=text_columns, label_column=label_column or "",
                       label_map=label_map or "")
    manifest = run_bundle(cfg, artifacts_dir, data_file, out, force=force,
                          progress=lambda s: click.echo(s, err=True))
    models_in = manifest.extra.get("models", [])
    ref = manifest.extra["reference"]
    click.echo(f"bundle {out} ({target}): {len(models_in)} model file(s), eval"
               f" {manifest.extra['eval']['rows']} rows, reference {ref['name']} accuracy"
               f" {ref['accuracy']:.4f}")
    for name in models_in:
        click.echo(f"  {name}")
    run = "bash run.sh" if target == "rpi" else "bash run_android.sh (binaries in bin/)"
    click.echo(f"next: copy it to the device and run {run}")


@click.command("report", context_settings=CONTEXT)
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--merge", "merge", is_flag=True,
              help="PATHS are device_results.json files, then the report directory.")
@click.option("--merge-android", "merge_android", is_flag=True,
              help="PATHS are run_android.sh logs (benchmark_model, onnxruntime_perf_test,"
                   " device.txt; or their folder), then the report directory.")
def report_command(paths: tuple[Path, ...], merge: bool, merge_android: bool) -> None:
    """Merge on-device results into a report (report.json devices + report.md table).

    \b
    Examples:
      edge-albert report --merge pi5/device_results.json pi4/device_results.json reports/sst2
      edge-albert report --merge-android phone/logs/device.txt phone/logs/*.log reports/sst2
      edge-albert report reports/sst2          # re-render the devices section only
    """
    from .errors import ConfigError
    from .merge import load_report, merge_android_logs, merge_device_results, render_devices

    if merge and merge_android:
        raise ConfigError("use --merge or --merge-android, not both (one kind of input per call)")
    *inputs, report_dir = paths
    if not (merge or merge_android):
        if inputs:
            raise ConfigError("extra arguments: pass --merge or --merge-android to merge files",
                              hint="edge-albert report --merge device_results.json REPORT_DIR")
        render_devices(report_dir, load_report(report_dir))
        click.echo(f"re-rendered the devices section of {report_dir / 'report.md'}")
        return
    if not inputs:
        raise ConfigError("nothing to merge: give the files, then the report directory",
                          hint="edge-albert report --merge device_results.json REPORT_DIR")
    fn = merge_device_results if merge else merge_android_logs
    report = fn(report_dir, inputs)
    for d in report.get("devices", []):
        click.echo(f"{d.get('kind')}: {d.get('name')} ({d.get('machine')}, {d.get('cpu')}):"
                   f" {len(d.get('artifacts', []))} file(s)")
    click.echo(f"updated {report_dir / 'report.json'} and {report_dir / 'report.md'}")
