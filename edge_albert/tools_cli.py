"""The tool commands around the stages: ``data``, ``tokenizer``, ``model`` and ``artifact``
(inspect a data file, train or try a tokenizer, make, describe, re-form or trim a model, check
an artifact). Thin like every command: build a config, call one library function, print."""
from __future__ import annotations

import json
from pathlib import Path

import click

from .cli_common import CONTEXT, ErrorGroup


# ----------------------------------------------------------------------------- data
@click.group(cls=ErrorGroup, context_settings=CONTEXT)
def data() -> None:
    """Look at labelled data files (TSV, CSV, JSONL)."""


@data.command("inspect", context_settings=CONTEXT)
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--text-column", "text_columns", multiple=True,
              help="Text column by name or 0-based index (twice for a pair task). Default: detected.")
@click.option("--label-column", default=None, help="Label column by name or index. Default: detected.")
@click.option("--tokenizer", "tokenizer_dir", type=click.Path(path_type=Path), default=None,
              help="Also report token-length percentiles with this tokenizer directory.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def data_inspect(path: Path, text_columns: tuple[str, ...], label_column: str | None,
                 tokenizer_dir: Path | None, as_json: bool) -> None:
    """Rows, task kind, label distribution and text lengths of a data file.

    \b
    Example:
      edge-albert data inspect ../shared/data/mrpc/dev.tsv
      edge-albert data inspect ../shared/data/sst2/dev.tsv --tokenizer tok/
    """
    from .data import percentiles, read_dataset, summarize

    ds = read_dataset(path, text_columns=text_columns or None, label_column=label_column)
    info = summarize(ds)
    if tokenizer_dir is not None:
        from .runtime.tokenizer import TextTokenizer

        tok = TextTokenizer.load(tokenizer_dir)
        enc = tok.encode(list(ds.texts), list(ds.pairs) if ds.pairs else None, max_length=100_000)
        info["tokens"] = percentiles([int(x) for x in enc.lengths])
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    click.echo(f"file      {info['path']}")
    click.echo(f"rows      {info['rows']:,}")
    click.echo(f"task      {info['task']} (text: {', '.join(info['text_columns'])};"  # type: ignore[arg-type]
               f" label: {info['label_column']})")
    labels: dict[str, int] = info["labels"]  # type: ignore[assignment]
    click.echo(f"labels    {len(labels)}")
    for name, n in labels.items():
        click.echo(f"  {name:<20} {n:>8,}  {100 * n / info['rows']:5.1f} %")  # type: ignore[operator]
    for what in ("chars", "tokens"):
        if what in info:
            p = info[what]
            click.echo(f"{what:<9} " + "  ".join(f"{k} {v}" for k, v in p.items()))  # type: ignore[attr-defined]


# ----------------------------------------------------------------------------- tokenizer
@click.group(cls=ErrorGroup, context_settings=CONTEXT)
def tokenizer() -> None:
    """Train and try SentencePiece / WordPiece tokenizers."""


@tokenizer.command("train", context_settings=CONTEXT)
@click.option("--data", "data_files", multiple=True, required=True,
              type=click.Path(path_type=Path), help="Labelled data file(s) to learn pieces from.")
@click.option("--vocab-size", type=int, default=None, help="Number of pieces (default 8000).")
@click.option("--config", "config_file", type=click.Path(path_type=Path), default=None,
              help="TOML file with a [tokenizer] table.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config value, e.g. --set tokenizer.lowercase=false.")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Output directory.")
@click.option("--force", is_flag=True, help="Replace --out if it exists.")
def tokenizer_train(data_files: tuple[Path, ...], vocab_size: int | None, config_file: Path | None,
                    overrides: tuple[str, ...], out: Path, force: bool) -> None:
    """Train an ALBERT-style SentencePiece unigram tokenizer.

    The directory it writes (spiece.model, tokenizer.json, tokenizer_config.json, manifest.json)
    loads in the edge-albert runtime and in transformers' AutoTokenizer alike.

    \b
    Example:
      edge-albert tokenizer train --data ../shared/data/sst2/train.tsv --vocab-size 8000 --out tok/
    """
    from .config import TokenizerConfig, cli_overrides, load_sections
    from .tokenizer_train import run_tokenizer

    sets = list(overrides) + cli_overrides("tokenizer", vocab_size=vocab_size)
    cfg = load_sections({"tokenizer": TokenizerConfig}, config_file, sets)["tokenizer"]
    manifest = run_tokenizer(cfg, data_files, out, force=force)
    click.echo(f"wrote {out} ({manifest.extra['vocab_size']} pieces from"
               f" {manifest.extra['sentences']:,} sentences)")


@tokenizer.command("encode", context_settings=CONTEXT)
@click.option("--tokenizer", "tokenizer_dir", required=True, type=click.Path(path_type=Path),
              help="Tokenizer directory (SentencePiece or WordPiece).")
@click.option("--pair", default=None, help="Second text, for a pair task.")
@click.option("--max-length", type=int, default=128, show_default=True)
@click.argument("text")
def tokenizer_encode(tokenizer_dir: Path, pair: str | None, max_length: int, text: str) -> None:
    """Show the pieces and ids one text (or pair) becomes.

    \b
    Example:
      edge-albert tokenizer encode --tokenizer tok/ "it 's a charming journey ."
    """
    from .runtime.tokenizer import TextTokenizer

    tok = TextTokenizer.load(tokenizer_dir)
    enc = tok.encode([text], [pair] if pair is not None else None, max_length=max_length)
    n = int(enc.lengths[0])
    click.echo("pieces         " + " ".join(tok.tokenize(text)
                                           + (["|", *tok.tokenize(pair)] if pair else [])))
    click.echo("input_ids      " + " ".join(map(str, enc.input_ids[0, :n].tolist())))
    click.echo("token_type_ids " + " ".join(map(str, enc.token_type_ids[0, :n].tolist())))
    click.echo(f"length         {n} (max {max_length})")


# ----------------------------------------------------------------------------- model
@click.group(cls=ErrorGroup, context_settings=CONTEXT)
def model() -> None:
    """Create and describe model directories."""


@model.command("init", context_settings=CONTEXT)
@click.option("--shape", default="tiny", show_default=True,
              help="tiny, tiny-12, base, large, xlarge or xxlarge (the published ALBERT v2 shapes).")
@click.option("--tokenizer", "tokenizer_dir", required=True, type=click.Path(path_type=Path),
              help="Tokenizer directory; sets the vocabulary size and is copied in.")
@click.option("--labels", default="0,1", show_default=True, help="Comma-separated label names.")
@click.option("--max-positions", type=int, default=None, help="max_position_embeddings override.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", required=True, type=click.Path(path_type=Path))
@click.option("--force", is_flag=True, help="Replace --out if it exists.")
def model_init(shape: str, tokenizer_dir: Path, labels: str, max_positions: int | None, seed: int,
               out: Path, force: bool) -> None:
    """Write a randomly initialised ALBERT classifier (for conversion tests and benchmarks).

    \b
    Example:
      edge-albert model init --shape base --tokenizer tok/ --labels 0,1 --out albert-base-random/
    """
    from .modeling import init_model_dir

    names = [x.strip() for x in labels.split(",") if x.strip()]
    manifest = init_model_dir(shape, tokenizer_dir, out, label_names=names, seed=seed,
                              max_position_embeddings=max_positions, force=force)
    assert manifest is not None
    click.echo(f"wrote {out} ({shape}, {manifest.extra['parameters']:,} parameters,"
               f" labels {names})")


@model.command("inspect", context_settings=CONTEXT)
@click.argument("model_dir")
def model_inspect(model_dir: str) -> None:
    """Architecture, parameter count, vocabulary and labels of a classifier.

    \b
    Example:
      edge-albert model inspect albert-base-random/
    """
    from .modeling import describe_model

    for k, v in describe_model(model_dir).items():
        click.echo(f"{k:<24} {v}")


@model.command("albert-form", context_settings=CONTEXT)
@click.option("--model", "model_dir", required=True, type=click.Path(path_type=Path),
              help="A fine-tuned BERT, MiniLM, RoBERTa or ALBERT classifier directory.")
@click.option("--out", required=True, type=click.Path(path_type=Path))
@click.option("--force", is_flag=True, help="Replace --out if it exists.")
def model_albert_form(model_dir: Path, out: Path, force: bool) -> None:
    """Write a BERT-family classifier as an ALBERT with the same logits.

    One layer group per layer (nothing shared), the embedding size equal to the hidden size.
    The result converts to every format (TFLite included) without distillation: the way to
    quantize a teacher as it is, and the start of a pruned student.

    \b
    Example:
      edge-albert model albert-form --model teacher/ --out teacher-albert/
      edge-albert convert --model teacher-albert/ --calibration train.tsv --out converted/
    """
    from .albert_form import write_albert_form

    m = write_albert_form(model_dir, out, force=force)
    click.echo(f"wrote {out}: {m.extra['source_model_type']} -> albert,"
               f" {m.extra['parameters']:,} parameters, max |logit difference|"
               f" {m.extra['max_abs_logit_diff']:.2g}")


@model.command("trim-vocab", context_settings=CONTEXT)
@click.option("--model", "model_dir", required=True, type=click.Path(path_type=Path),
              help="Classifier directory with a WordPiece tokenizer.json (e.g. a student).")
@click.option("--corpus", "corpus", required=True, multiple=True, type=click.Path(path_type=Path),
              help="Text the deployment sees: a task file (TSV/CSV/JSONL) or .txt, one text a"
                   " line. Repeat for several files.")
@click.option("--dev", "dev_file", type=click.Path(path_type=Path), default=None,
              help="Labelled file to compare accuracy before and after (recorded in the manifest).")
@click.option("--out", required=True, type=click.Path(path_type=Path))
@click.option("--config", "config_file", type=click.Path(path_type=Path), default=None,
              help="TOML file with a [trim_vocab] table.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a setting, e.g. --set trim_vocab.keep_first=10000.")
@click.option("--force", is_flag=True, help="Replace --out if it exists.")
def model_trim_vocab(model_dir: Path, corpus: tuple[Path, ...], dev_file: Path | None, out: Path,
                     config_file: Path | None, overrides: tuple[str, ...], force: bool) -> None:
    """Drop the word-embedding rows the corpus never uses (WordPiece vocabularies).

    Keeps the special tokens, every single character (so any word still splits into pieces),
    the ids the corpus uses (trim_vocab.min_count, default 1) and the first
    trim_vocab.keep_first ids. Text made only of kept pieces gives the same logits as before.

    \b
    Example:
      edge-albert model trim-vocab --model student/ --corpus ../shared/data/sst2/train.tsv \\
          --dev ../shared/data/sst2/dev.tsv --out student-trimmed/
    """
    from .config import load_sections
    from .data import read_dataset
    from .trim_vocab import TrimVocabConfig, run_trim_vocab

    cfg = load_sections({"trim_vocab": TrimVocabConfig}, config_file, list(overrides))["trim_vocab"]
    dev = read_dataset(dev_file) if dev_file is not None else None
    m = run_trim_vocab(cfg, model_dir, list(corpus), out, dev=dev, force=force)
    e = m.extra
    click.echo(f"wrote {out}: vocabulary {e['vocab_before']:,} -> {e['vocab_after']:,} ids,"
               f" parameters {e['parameters_before']:,} -> {e['parameters']:,}")
    if "dev" in e:
        d = e["dev"]
        click.echo(f"dev ({d['rows']:,} rows): accuracy {d['accuracy_before']:.4f} ->"
                   f" {d['accuracy']:.4f}, agreement {d['agreement']:.4f}, tokenization changed"
                   f" for {d['tokenization_changed']:.1%} of the texts")


# ----------------------------------------------------------------------------- artifact
@click.group(cls=ErrorGroup, context_settings=CONTEXT)
def artifact() -> None:
    """Check artifact directories against their manifests."""


@artifact.command("verify", context_settings=CONTEXT)
@click.argument("directory", type=click.Path(path_type=Path))
def artifact_verify(directory: Path) -> None:
    """Re-hash every file an artifact's manifest lists; fail naming the first that changed.

    \b
    Example:
      edge-albert artifact verify tok/
    """
    from .artifacts import verify

    m = verify(directory)
    click.echo(f"ok: {directory} ({m.stage}, {len(m.files)} files match manifest.json)")


GROUPS = (data, tokenizer, model, artifact)
