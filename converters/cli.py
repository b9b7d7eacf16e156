"""``edge-albert convert``: the click command (added to the CLI group with ``cli.add_command``).

Thin: it builds a :class:`~.convert.ConvertConfig` (TOML ``[convert]`` table, ``--set`` overrides,
then the options), calls :func:`~.convert.run_convert` and prints one line per file. torch,
tensorflow and onnxruntime load inside the command only.
"""
from __future__ import annotations

from pathlib import Path

import click

from ..cli_common import CONTEXT, native_logs_muted


@click.command("convert", context_settings=CONTEXT)
@click.option("--model", "model_dir", required=True, type=click.Path(path_type=Path),
              help="Sequence-classification model directory (an ALBERT student for TFLite).")
@click.option("--out", required=True, type=click.Path(path_type=Path),
              help="Artifact directory to write.")
@click.option("--formats", default=None, metavar="LIST",
              help="Comma-separated: onnx, ort, tflite, onnx-e2e (text in, label out: the"
                   " WordPiece tokenizer inside as onnxruntime-extensions ops; needs"
                   " --calibration), pte (an ExecuTorch program, XNNPACK delegate; needs the"
                   " executorch extra), mediapipe (a TFLite file with MediaPipe's"
                   " TextClassifier metadata: text in, probabilities out; needs the mediapipe"
                   " extra and --calibration). Default: onnx, ort, tflite.")
@click.option("--precisions", default=None, metavar="LIST",
              help="Comma-separated: fp32, fp16, int8-dynamic, int8-static. Default: every"
                   " precision each format supports (onnx/ort: fp32, int8-dynamic, int8-static;"
                   " tflite: also fp16).")
@click.option("--calibration", type=click.Path(path_type=Path), default=None, metavar="DATA",
              help="Labelled task data (TSV/CSV/JSONL): calibrates int8-static and gives the padded"
                   " real inputs for the parity check. Required for int8-static.")
@click.option("--seq-len", type=int, default=None,
              help="One fixed maximum sequence length (same as --buckets N).")
@click.option("--buckets", default=None, metavar="LIST",
              help="Padded sequence lengths the runtime uses, e.g. 32,64,128 (the default).")
@click.option("--calibration-size", type=int, default=None, help="Calibration examples (200).")
@click.option("--calibration-method", default=None,
              type=click.Choice(["minmax", "entropy", "percentile"]),
              help="How int8-static picks activation ranges (minmax).")
@click.option("--fallbacks", default=None, metavar="LIST",
              help="Parts kept in float in int8 files: embeddings, attention, pooler, classifier,"
                   " layernorm, softmax, gelu ('none' for none). Default:"
                   " layernorm,softmax,attention.")
@click.option("--onnx-graph", default=None, type=click.Choice(["plain", "fused"]),
              help="fused: write ONNX Runtime's transformer fusions (Attention, SkipLayerNorm,"
                   " BiasGelu) into the fp32 and int8-dynamic .onnx/.ort files (plain).")
@click.option("--target", default=None,
              type=click.Choice(["portable", "x86-vnni", "x86-avx2", "arm64", "host"]),
              help="CPUs the int8 ONNX/.ort files are for: portable (default) and x86-avx2 use"
                   " 7-bit weights, which ONNX Runtime's non-VNNI x86 kernels cannot saturate;"
                   " x86-vnni and arm64 use 8; host: this machine's class.")
@click.option("--config", "config_file", type=click.Path(path_type=Path), default=None,
              help="TOML file with a [convert] table.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config value, e.g. --set convert.per_channel=false.")
@click.option("--force", is_flag=True, help="Replace --out if it exists.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.pass_context
def convert_command(ctx: click.Context, model_dir: Path, out: Path, formats: str | None,
                    precisions: str | None, calibration: Path | None, seq_len: int | None,
                    buckets: str | None, calibration_size: int | None,
                    calibration_method: str | None, fallbacks: str | None,
                    onnx_graph: str | None, target: str | None, config_file: Path | None,
                    overrides: tuple[str, ...], force: bool,
                    quiet: bool) -> None:
    """Convert a classifier into ONNX, ORT and TFLite files (fp32, fp16, int8), checked against torch.

    Every file is run on padded real inputs and compared with torch (fp32 must stay within 1e-4 of
    its logits, fp16 within 1e-2; int8 files report their difference and agreement), and its graph
    is counted: which weight matmuls hold int8, how many ops run in int8. The directory also gets
    the tokenizer, labels.txt, required_operators.config (for a reduced onnxruntime build) and a
    manifest.json describing each file.

    \b
    Example:
      edge-albert convert --model student/ --out converted/ \\
          --calibration ../shared/data/sst2/dev.tsv
      edge-albert convert --model student/ --out tfl/ --formats tflite \\
          --precisions fp32,fp16,int8-dynamic --seq-len 64
      edge-albert convert --model student/ --out fused/ --formats onnx,ort \\
          --precisions fp32,int8-dynamic --onnx-graph fused
      edge-albert convert --model student/ --out vnni/ --formats onnx \\
          --precisions int8-dynamic --target x86-vnni
      edge-albert convert --model student/ --out e2e/ --formats onnx,onnx-e2e \\
          --precisions int8-dynamic --calibration train.tsv
      edge-albert convert --model student/ --out et/ --formats pte \\
          --precisions fp32,int8-dynamic
      edge-albert convert --model student/ --out mp/ --formats tflite,mediapipe \\
          --precisions fp32,int8-dynamic --calibration train.tsv
    """
    from ..config import cli_overrides, load_sections
    from ..errors import ConfigError
    from .convert import ConvertConfig, run_convert

    if seq_len is not None and buckets is not None:
        raise ConfigError("give --seq-len or --buckets, not both", key="--seq-len")
    if fallbacks is not None and fallbacks.strip().lower() == "none":
        fallbacks = ""
    sets = list(overrides) + cli_overrides(
        "convert", formats=formats, precisions=precisions,
        buckets=f"[{seq_len}]" if seq_len is not None else buckets,
        calibration_size=calibration_size, calibration_method=calibration_method,
        fallbacks=fallbacks, onnx_graph=onnx_graph, target=target)
    config = load_sections({"convert": ConvertConfig}, config_file, sets)["convert"]
    verbose = bool(ctx.find_root().obj and ctx.find_root().obj.get("verbose"))
    with native_logs_muted(not verbose):
        manifest = run_convert(config, model_dir, out, calibration=calibration, force=force,
                               progress=not quiet)
    for name, meta in manifest.files.items():
        if "parity" in meta:
            click.echo(summary_line(name, meta))
    click.echo(f"wrote {out} ({sum('parity' in m for m in manifest.files.values())} model files,"
               f" {manifest.extra['parameters']:,} parameters)")


def summary_line(name: str, meta: dict) -> str:
    """One line per model file: size, parity, and how much of it is int8 (the XNNPACK
    delegate's share for an ExecuTorch program, which has no weight census)."""
    p = meta["parity"]
    tc = meta.get("tokenization_checked")
    if tc is not None:
        client = "MediaPipe's" if meta.get("format") == "mediapipe" else "the file's"
        what = f"{client} ids equal the runtime's on {tc['ids_equal']}/{tc['texts']} texts"
        if tc["ids_equal"] < tc["texts"]:
            what += f" (agree on all {p['agreement_all_texts']:.1%}: see the manifest's why)"
        diff = "dprob" if meta.get("format") == "mediapipe" else "dlogit"
        return (f"{name:<28} {meta['size_bytes'] / 1e6:8.2f} MB  max|{diff}| "
                f"{p['max_abs_logit_diff']:.2e}  agree {p['agreement']:6.1%}  {what}")
    if "census" in meta:
        enc = meta["census"]["weight_ops"].get("encoder", {"int8": 0, "float": 0})
        what = f"encoder weights int8 {enc['int8']}/{enc['int8'] + enc['float']}"
    else:
        rec = meta.get("recipe", {})
        what = (f"XNNPACK pieces {rec.get('delegate_pieces', '?')}, ops outside"
                f" {sum(rec.get('ops_outside_delegate', {}).values())}")
    return (f"{name:<28} {meta['size_bytes'] / 1e6:8.2f} MB  max|dlogit| "
            f"{p['max_abs_logit_diff']:.2e}  agree {p['agreement']:6.1%}  {what}")


__all__ = ["convert_command", "summary_line"]
