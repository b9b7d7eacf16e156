"""The ``edge-albert`` command line: thin wrappers that build a config and call one library function.

Heavy libraries (torch, tensorflow, transformers, onnxruntime) are imported inside the commands
that need them, so ``edge-albert --help`` starts instantly. Errors the library raises on purpose
become one ``error:`` line (plus a ``hint:``) and a non-zero exit code; ``--verbose`` shows the
traceback.
"""
from __future__ import annotations

import logging
from pathlib import Path

import click

from . import __version__
from .cli_common import CONTEXT, ErrorGroup


@click.group(cls=ErrorGroup, context_settings=CONTEXT)
@click.version_option(__version__, "--version", prog_name="edge-albert")
@click.option("-v", "--verbose", is_flag=True, help="Log more, and show tracebacks on errors.")
@click.pass_context
def cli(ctx: click.Context, verbose: bool) -> None:
    """Distil, int8-quantize and convert text classifiers into small ALBERTs for the edge.

    \b
    Examples:
      edge-albert data inspect ../shared/data/mrpc/dev.tsv
      edge-albert tokenizer train --data train.tsv --vocab-size 8000 --out tok/
      edge-albert tokenizer encode --tokenizer tok/ "a charming and affecting journey"
    """
    ctx.ensure_object(dict)
    ctx.obj["verbose"] = verbose
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")


# ----------------------------------------------------------------------------- training
def _train_options(f):
    f = click.option("--force", is_flag=True, help="Replace --out if it exists.")(f)
    f = click.option("--resume", is_flag=True,
                     help="Continue a killed run from OUT.partial/ (same settings required).")(f)
    f = click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                     help="Override a setting, e.g. --set finetune.epochs=2.")(f)
    f = click.option("--device", default=None, metavar="auto|cpu|cuda[:N]",
                     help="Where to train (default auto: the GPU when torch sees one).")(f)
    f = click.option("--config", "config_file", type=click.Path(path_type=Path), default=None,
                     help="TOML file with the stage's table.")(f)
    f = click.option("--out", required=True, type=click.Path(path_type=Path))(f)
    f = click.option("--dev", "dev_file", required=True, type=click.Path(path_type=Path),
                     help="Dev file: the best state on it is kept.")(f)
    f = click.option("--train", "train_file", required=True, type=click.Path(path_type=Path))(f)
    return f


def _read_task(train_file: Path, dev_file: Path):
    from .data import read_dataset

    train = read_dataset(train_file)
    return train, read_dataset(dev_file)


@cli.command("finetune", context_settings=CONTEXT)
@click.option("--model", "model_name", required=True,
              help="Base encoder: a local Hugging Face directory or a hub id (BERT, RoBERTa, "
                   "DistilBERT, ALBERT, MiniLM).")
@_train_options
def finetune_command(model_name: str, train_file: Path, dev_file: Path, out: Path,
                     config_file: Path | None, overrides: tuple[str, ...], device: str | None,
                     resume: bool, force: bool) -> None:
    """Fine-tune an encoder into a task teacher (a Hugging Face classifier directory).

    \b
    Example:
      edge-albert finetune --model minilm/ --train ../shared/data/sst2/train.tsv \\
          --dev ../shared/data/sst2/dev.tsv --set finetune.epochs=1 --out teacher/
    """
    from .config import FinetuneConfig, cli_overrides, load_sections
    from .finetune import run_finetune

    sets = list(overrides) + cli_overrides("finetune", device=device)
    cfg = load_sections({"finetune": FinetuneConfig}, config_file, sets)["finetune"]
    train, dev = _read_task(train_file, dev_file)
    m = run_finetune(cfg, model_name, train, dev, out, resume=resume, force=force)
    if m is not None:
        d = m.extra["dev"]
        click.echo(f"wrote {out}: dev accuracy {d['accuracy']:.4f}, F1 {d['f1']:.4f}"
                   f" ({m.extra['steps']} steps, {m.extra['train_seconds']} s)")


@cli.command("distill", context_settings=CONTEXT)
@click.option("--teacher", "teacher_dir", required=True, type=click.Path(path_type=Path),
              help="Fine-tuned teacher classifier directory.")
@click.option("--student", default=None,
              help="Student: 'pruned' (cut from the teacher's own weights to --flops), a preset"
                   " (tiny, small, medium, large) or an AlbertConfig JSON file.")
@click.option("--flops", type=float, default=None,
              help="For --student pruned: FLOPs target as a fraction of the teacher's (0-1,"
                   " default 0.33).")
@click.option("--unlabelled", "unlabelled_file", type=click.Path(path_type=Path), default=None,
              help="More transfer text without labels (one text per line, or a data file whose"
                   " labels are ignored), labelled by the teacher.")
@click.option("--student-tokenizer", type=click.Path(path_type=Path), default=None,
              help="Give the student its own SentencePiece tokenizer (default: the teacher's).")
@click.option("--augment", type=int, default=None, help="Variants per training text (>= 0).")
@_train_options
def distill_command(teacher_dir: Path, student: str | None, flops: float | None,
                    unlabelled_file: Path | None, student_tokenizer: Path | None,
                    augment: int | None, train_file: Path, dev_file: Path, out: Path,
                    config_file: Path | None, overrides: tuple[str, ...], device: str | None,
                    resume: bool, force: bool) -> None:
    """Distil a teacher into a smaller ALBERT student.

    \b
    pruned: the teacher's own weights (BERT, MiniLM, RoBERTa or ALBERT teachers), cut in steps
    to --flops of its FLOPs (layers, heads, FFN neurons, hidden width ranked by their Fisher
    information on the task), each step followed by distillation. Keeps most of the teacher's
    accuracy; see README "Results".

    \b
    Presets (parameters with a 30k vocabulary; FLOPs against a 6-layer, 384-wide teacher):
      tiny    H128 x 4 passes    ~2.1M   ~0.08x
      small   H256 x 4 passes    ~4.8M   ~0.30x   (default)
      medium  H384 x 2 passes    ~5.8M   ~0.34x   (shared layer copied from the teacher)
      large   H384 x 6 passes, 2 groups ~7.6M ~1.0x

    \b
    Example:
      edge-albert distill --teacher teacher/ --train ../shared/data/sst2/train.tsv \\
          --dev ../shared/data/sst2/dev.tsv --student pruned --flops 0.33 --out student/
      edge-albert distill ... --student small --unlabelled reviews.txt
      edge-albert distill ... --device cuda --augment 16 --set distill.batch_size=256
      edge-albert distill ... --student two_groups.json --set 'distill.teacher_layers=[0, 1]'

    \b
    The teacher's logits are cached in the run's checkpoint folder; set EDGE_ALBERT_CACHE=DIR
    to share them between runs over the same teacher and texts (e.g. several presets).
    """
    from .config import DistillConfig, cli_overrides, load_sections
    from .distill import run_distill

    sets = list(overrides) + cli_overrides("distill", student=student, augment=augment,
                                           device=device, flops=flops)
    cfg = load_sections({"distill": DistillConfig}, config_file, sets)["distill"]
    train, dev = _read_task(train_file, dev_file)
    extra = None
    if unlabelled_file is not None:
        from .data import read_texts

        extra = read_texts(unlabelled_file)
        if extra.ignored_labels:
            click.echo(f"note: {unlabelled_file}: column {extra.ignored_labels!r} ignored (the"
                       " teacher labels this text)", err=True)
    m = run_distill(cfg, teacher_dir, train, dev, out, unlabelled=extra,
                    student_tokenizer=student_tokenizer, resume=resume, force=force)
    if m is not None:
        d = m.extra["dev"]
        click.echo(f"wrote {out}: {m.extra['parameters']:,} parameters, dev accuracy"
                   f" {d['accuracy']:.4f}, agreement with the teacher {d['agreement']:.4f}")


def _register_stage_commands() -> None:
    """Commands whose code lives beside its stage (their heavy imports stay inside them)."""
    from .bundle_cli import bundle_command, report_command
    from .converters.cli import convert_command
    from .converters.quantize_cli import quantize_command
    from .tools_cli import GROUPS
    from .validate_cli import validate_command

    cli.add_command(convert_command)
    cli.add_command(quantize_command)
    cli.add_command(validate_command)
    cli.add_command(bundle_command)
    cli.add_command(report_command)
    for group in GROUPS:
        cli.add_command(group)


_register_stage_commands()


# ----------------------------------------------------------------------------- pipeline
def _run_and_summarise(config: Path | None, run_dir: Path, overrides: tuple[str, ...],
                       start: str | None, force: bool) -> None:
    from .pipeline import format_summary, run_pipeline

    p = run_pipeline(config, run_dir, overrides=overrides, start=start, force=force,
                     echo=lambda m: click.echo(m, err=True))
    table = format_summary(run_dir)
    if table:
        click.echo(table)
    html = run_dir / "validate" / "report.html"
    if html.is_file():
        click.echo(f"report: {html}")
    bundle = run_dir / "bundle"
    if bundle.is_dir():
        click.echo(f"bundle: {bundle}")
    ran = sum(r.status == "ran" for r in p.results)
    click.echo(f"done: {ran} stage(s) ran, {sum(r.status == 'up to date' for r in p.results)}"
               " up to date", err=True)


@cli.command("pipeline", context_settings=CONTEXT)
@click.argument("config", type=click.Path(path_type=Path))
@click.option("--run-dir", type=click.Path(path_type=Path), default=None,
              help="Where the stage directories go (default: runs/<config name>).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a recipe value, e.g. --set distill.epochs=1.")
@click.option("--from", "start", default=None,
              help="Re-run from this stage: tokenizer, teacher, student, convert, validate, bundle.")
@click.option("--force", is_flag=True, help="Accept a run directory made with another config.")
def pipeline_command(config: Path, run_dir: Path | None, overrides: tuple[str, ...],
                     start: str | None, force: bool) -> None:
    """Run a recipe end to end: (finetune) -> distill -> convert -> validate -> bundle.

    Each stage writes its own artifact directory under the run directory; a stage whose
    config and inputs are unchanged is skipped as up to date, and a killed run continues where
    it stopped when run again.

    \b
    Example:
      edge-albert pipeline configs/sst2.toml --set teacher.model=/models/minilm
      edge-albert pipeline configs/demo.toml --from convert
    """
    _run_and_summarise(config, run_dir or Path("runs") / config.stem, overrides, start, force)


@cli.command("demo", context_settings=CONTEXT)
@click.option("--task", type=click.Choice(["intents", "sst2"]), default="intents", show_default=True,
              help="intents: the built-in task (no data or network needed); sst2: the real recipe.")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None,
              help="For --task sst2: the folder holding sst2/train.tsv and sst2/dev.tsv.")
@click.option("--run-dir", type=click.Path(path_type=Path), default=None,
              help="Where to write (default: runs/demo or runs/sst2).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a value.")
@click.option("--force", is_flag=True, help="Accept a run directory made with another config.")
def demo_command(task: str, data_dir: Path | None, run_dir: Path | None,
                 overrides: tuple[str, ...], force: bool) -> None:
    """Run the whole pipeline on a built-in task, offline, in minutes on 2 CPU cores.

    Generates voice-assistant command intents, trains a SentencePiece tokenizer and a small
    ALBERT teacher from scratch, distils a smaller student, converts it to ONNX, .ort and
    TFLite in every precision, validates every file against the float model and writes
    report.html and a Raspberry Pi bundle. Prints where the report is; opens nothing.

    \b
    Example:
      edge-albert demo
      edge-albert demo --task sst2 --data-dir ../shared/data --set teacher.model=/models/minilm
    """
    from importlib import resources

    if task == "intents":
        cfg_text = resources.files("edge_albert").joinpath("recipes/demo.toml").read_text()
        sets = list(overrides)
    else:
        from .errors import ConfigError

        if data_dir is None:
            raise ConfigError("--task sst2 needs --data-dir (the folder with sst2/train.tsv)",
                              key="--data-dir")
        cfg_text = resources.files("edge_albert").joinpath("recipes/sst2.toml").read_text()
        sets = [f"task.train={(data_dir / 'sst2' / 'train.tsv').resolve()}",
                f"task.dev={(data_dir / 'sst2' / 'dev.tsv').resolve()}", *overrides]
    run = run_dir or Path("runs") / ("demo" if task == "intents" else "sst2")
    made_run = not run.exists()
    run.mkdir(parents=True, exist_ok=True)
    recipe = run / "recipe.toml"
    made_recipe = not recipe.exists()
    # written before the pipeline takes the run's lock: so only when it differs (a new package
    # version), and atomically, so a second demo into a running dir never touches the first's file
    if not recipe.is_file() or recipe.read_text(encoding="utf-8") != cfg_text:
        from .artifacts import atomic_write_text

        atomic_write_text(recipe, cfg_text)
    from .errors import EdgeAlbertError
    from .recipe import load_pipeline_config

    try:
        load_pipeline_config(recipe, tuple(sets))  # a bad --set fails here, before any stage
    except EdgeAlbertError:
        if made_recipe:  # leave no run directory behind that only a typo made
            recipe.unlink(missing_ok=True)
        if made_run and not any(run.iterdir()):
            run.rmdir()
        raise
    _run_and_summarise(recipe, run, tuple(sets), None, force)


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="edge-albert")


if __name__ == "__main__":  # pragma: no cover
    main()
