"""A pipeline recipe: one TOML table per stage, loaded strictly; data paths relative to it.

    [task]     train/dev files (or the built-in demo task), optional unlabelled transfer text
    [teacher]  a fine-tuned classifier, a base encoder to fine-tune, or "scratch"
    [tokenizer] [finetune] [distill] [trim_vocab] [convert] [validate] [bundle]: each stage's config
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .bundle import BundleConfig
from .config import DistillConfig, FinetuneConfig, TokenizerConfig, load_sections
from .errors import ConfigError
from .trim_vocab import TrimVocabConfig


@dataclass(frozen=True)
class TaskConfig:
    """Where the data is. ``builtin = "intents"`` generates the demo task instead."""

    train: str = ""
    dev: str = ""
    eval: str = ""  # defaults to dev
    unlabelled: str = ""  # more transfer text for distillation, labelled by the teacher
    label_map: str = ""  # "0=negative,1=positive": the eval file's labels -> the model's
    builtin: str = ""
    builtin_train_rows: int = 4000
    builtin_dev_rows: int = 1000
    seed: int = 0


@dataclass(frozen=True)
class TeacherConfig:
    """The teacher: a fine-tuned classifier, a base encoder to fine-tune, or ``scratch``."""

    model: str = "albert-base-v2"
    finetune: bool = True
    scratch_shape: str = "tiny"  # for model = "scratch": an ALBERT shape name (modeling.SHAPES)
    scratch_vocab_size: int = 2000


def schema() -> dict[str, type]:
    """Section -> config dataclass of a pipeline TOML file."""
    from .converters.convert import ConvertConfig
    from .validate import ValidateConfig

    return {"task": TaskConfig, "teacher": TeacherConfig, "tokenizer": TokenizerConfig,
            "finetune": FinetuneConfig, "distill": DistillConfig, "trim_vocab": TrimVocabConfig,
            "convert": ConvertConfig, "validate": ValidateConfig, "bundle": BundleConfig}


def load_pipeline_config(path: str | Path | None, overrides: tuple[str, ...] | list[str] = ()
                         ) -> dict[str, Any]:
    """Load a recipe; relative data paths are resolved against the recipe's directory."""
    cfg = load_sections(schema(), path, overrides)
    task: TaskConfig = cfg["task"]
    base = Path(path).absolute().parent if path else Path.cwd()  # a symlinked recipe reads beside the link
    fixed: dict[str, Any] = {}
    for key in ("train", "dev", "eval", "unlabelled"):
        value = getattr(task, key)
        if value and not Path(value).is_absolute():
            fixed[key] = str(Path(os.path.normpath(base / value)))
    if fixed:
        cfg["task"] = dataclasses.replace(task, **fixed)
    task = cfg["task"]
    if not task.builtin:
        for key in ("train", "dev"):
            value = getattr(task, key)
            if not value:
                raise ConfigError("no data file set", where=str(path) if path else None,
                                  key=f"task.{key}", hint="set it, or task.builtin = \"intents\"")
            if not Path(value).is_file():
                raise ConfigError(f"data file {value} does not exist",
                                  where=str(path) if path else None, key=f"task.{key}")
    elif task.builtin != "intents":
        raise ConfigError(f"unknown built-in task {task.builtin!r} (known: intents)",
                          where=str(path) if path else None, key="task.builtin")
    if task.unlabelled and not Path(task.unlabelled).is_file():
        raise ConfigError(f"data file {task.unlabelled} does not exist",
                          where=str(path) if path else None, key="task.unlabelled")
    if cfg["trim_vocab"].enabled and cfg["teacher"].model == "scratch":
        raise ConfigError("vocabulary trimming needs a WordPiece teacher; a scratch teacher's"
                          " tokenizer is SentencePiece (size it with tokenizer.vocab_size)",
                          where=str(path) if path else None, key="trim_vocab.enabled")
    return cfg


__all__ = ["TaskConfig", "TeacherConfig", "load_pipeline_config", "schema"]
