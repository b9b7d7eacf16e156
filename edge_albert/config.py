"""Stage configs: one frozen dataclass per stage, loaded from TOML, overridable with ``--set``.

A config file is a TOML document with one table per stage (``[tokenizer]``, ``[distill]``, ...).
Unknown sections or keys and wrong value types raise :class:`ConfigError` naming the key, the
file and the valid keys. Overrides use ``section.key=value``; the value is read as a TOML value
when it parses as one (``3``, ``0.5``, ``true``, ``[32, 64]``) and as a plain string otherwise,
then coerced to the field's type.
"""
from __future__ import annotations

import dataclasses
import enum
import math
import re
import sys
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from .errors import ConfigError

T = TypeVar("T")


class ModelType(str, enum.Enum):
    """The tokenizer model SentencePiece trains."""

    UNIGRAM = "unigram"
    BPE = "bpe"


@dataclasses.dataclass(frozen=True)
class TokenizerConfig:
    """``edge-albert tokenizer train``: a SentencePiece model with ALBERT's conventions."""

    vocab_size: int = 8000
    model_type: ModelType = ModelType.UNIGRAM
    lowercase: bool = True
    character_coverage: float = 0.9995
    max_sentences: int = 200_000
    seed: int = 0


def section_name(cls: type) -> str:
    return cls.__name__.removesuffix("Config").lower()


def _type_name(tp: Any) -> str:
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return "one of " + ", ".join(repr(m.value) for m in tp)
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, *, key: str, where: str | None) -> Any:
    """Check/convert ``value`` to the annotated type ``tp``; ConfigError naming ``key`` if it can't."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)

    def bad(expected: str) -> ConfigError:
        return ConfigError(f"expected {expected}, got {value!r}", where=where, key=key)

    if origin in (typing.Union, types.UnionType):
        return _coerce_union(value, args, key=key, where=where)
    if origin in (tuple, list):
        items = [_coerce(v, args[0] if args else Any, key=key, where=where)
                 for v in _as_list(value, bad)]
        return tuple(items) if origin is tuple else items
    if tp is Any:
        return value
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return tp(value)
        except ValueError:
            raise bad(_type_name(tp)) from None
    if tp is dict or origin is dict:
        if isinstance(value, dict):
            return dict(value)
        raise bad("a table")
    scalar = _SCALARS.get(tp)
    if scalar is None:
        raise ConfigError(f"unsupported config field type {tp!r}", where=where, key=key)
    return scalar(value, bad)


def _coerce_union(value: Any, args: tuple[Any, ...], *, key: str, where: str | None) -> Any:
    if (value is None or (isinstance(value, str) and value.lower() in ("none", "null"))) \
            and type(None) in args:
        return None
    last: ConfigError | None = None
    for a in args:
        if a is type(None):
            continue
        try:
            return _coerce(value, a, key=key, where=where)
        except ConfigError as exc:
            last = exc
    assert last is not None
    raise last


def _as_list(value: Any, bad: Any) -> list[Any]:
    if isinstance(value, str):  # "32,64", "32, 64", "64," (spaces and a trailing comma)
        value = [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = [value]  # one value is a list of one: --buckets 64
    if not isinstance(value, (list, tuple)):
        raise bad("a list")
    return list(value)


def _to_bool(value: Any, bad: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
        return value.lower() in ("true", "1", "yes")
    raise bad("true or false")


def _to_int(value: Any, bad: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            return int(value.replace("_", ""))
        except ValueError:
            pass
    raise bad("an integer")


def _to_float(value: Any, bad: Any) -> float:
    if isinstance(value, (int, float, str)) and not isinstance(value, bool):
        try:
            f = float(value)
        except (ValueError, OverflowError):  # not a number; an integer beyond float's range
            raise bad("a number") from None
        if not math.isnan(f):  # NaN is never a setting
            return f
    raise bad("a number")


def _to_str(value: Any, bad: Any) -> str:
    if isinstance(value, str):
        return value
    raise bad("a string")


def _to_path(value: Any, bad: Any) -> Path:
    if isinstance(value, (str, Path)):
        return Path(value)
    raise bad("a path string")


_SCALARS: dict[Any, Any] = {bool: _to_bool, int: _to_int, float: _to_float, str: _to_str,
                            Path: _to_path}


def _shown(name: str) -> str:
    """A key for a one-line message: one with a newline or control character shown as repr."""
    return name if name.isprintable() else repr(name)


def from_mapping(cls: type[T], data: Mapping[str, Any], *, where: str | None = None,
                 section: str | None = None) -> T:
    """Build the frozen dataclass ``cls`` from a mapping, strictly."""
    section = section or section_name(cls)
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    kwargs: dict[str, Any] = {}
    for k, v in data.items():
        key = f"{section}.{_shown(k)}"
        if k not in fields:
            raise ConfigError(f"unknown key (valid keys: {', '.join(sorted(fields))})",
                              where=where, key=key)
        kwargs[k] = _coerce(v, hints[k], key=key, where=where)
    try:
        return cls(**kwargs)
    except ValueError as exc:  # a __post_init__ check
        raise ConfigError(str(exc), where=where, key=section) from None
    except ConfigError as exc:  # a __post_init__ check that names its key: add the file
        if exc.where is not None or where is None:
            raise
        raise ConfigError(exc.message, where=where, key=exc.key, hint=exc.hint) from None


def parse_overrides(items: list[str] | tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """``["distill.epochs=3", ...]`` -> ``{"distill": {"epochs": 3}}``."""
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--set expects section.key=value, got {item!r}", key="--set")
        dotted, raw = item.split("=", 1)
        if "." not in dotted:
            raise ConfigError(f"--set expects section.key=value, got {item!r}", key="--set")
        section, key = dotted.strip().split(".", 1)
        try:
            value: Any = tomllib.loads(f"v = {raw}")["v"]
        except (ValueError, RecursionError):  # TOMLDecodeError, a huge integer, deep nesting
            value = raw
        out.setdefault(section, {})[key] = value
    return out


def cli_overrides(section: str, **values: Any) -> list[str]:
    """``--set`` strings for the CLI options a user actually gave (``None`` = not given).

    Lets a command's dedicated options (``--buckets 32,64``) and ``--set`` share one path
    through :func:`load_sections`, with the same type checks and error messages.
    """
    return [f"{section}.{key}={value!r}" if isinstance(value, float) else f"{section}.{key}={value}"
            for key, value in values.items() if value is not None]


def read_toml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError("config file does not exist", where=path)
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ConfigError("config file is not UTF-8 text", where=path) from None
    except tomllib.TOMLDecodeError as exc:
        msg = str(exc)
        line = None
        if "(at line " in msg:
            try:
                line = int(msg.split("(at line ", 1)[1].split(",", 1)[0])
            except ValueError:
                line = None
            msg = msg.split(" (at line ", 1)[0]
        raise ConfigError(f"TOML syntax error: {msg}", where=path, line=line) from None
    except ValueError as exc:  # an integer of more than 4300 digits
        raise ConfigError(f"TOML value error: {str(exc).split(':')[0]}", where=path) from None
    except RecursionError:
        raise ConfigError("TOML syntax error: arrays or tables nested too deeply",
                          where=path) from None


def load_sections(
    schema: Mapping[str, type],
    path: str | Path | None = None,
    overrides: list[str] | tuple[str, ...] = (),
) -> dict[str, Any]:
    """Load a config file with one table per stage and apply ``--set`` overrides.

    ``schema`` maps section names to their dataclasses; sections missing from the file get
    their defaults.
    """
    data: dict[str, Any] = read_toml(path) if path is not None else {}
    where = str(path) if path is not None else None
    for section, values in parse_overrides(overrides).items():
        data.setdefault(section, {})
        if not isinstance(data[section], dict):
            raise ConfigError("is not a table", where=where, key=_shown(section))
        data[section].update(values)
    unknown = set(data) - set(schema)
    if unknown:
        raise ConfigError(f"unknown section (valid sections: {', '.join(sorted(schema))})",
                          where=where, key=_shown(min(unknown)))
    out: dict[str, Any] = {}
    for section, cls in schema.items():
        values = data.get(section, {})
        if not isinstance(values, dict):
            raise ConfigError("expected a table", where=where, key=section)
        out[section] = from_mapping(cls, values, where=where, section=section)
    return out


def to_dict(cfg: Any) -> dict[str, Any]:
    """A JSON-ready dict of a config dataclass (Enums as values, Paths as strings)."""
    def conv(v: Any) -> Any:
        if isinstance(v, enum.Enum):
            return v.value
        if isinstance(v, Path):
            return str(v)
        if isinstance(v, (list, tuple)):
            return [conv(x) for x in v]
        if isinstance(v, dict):
            return {k: conv(x) for k, x in v.items()}
        return v
    return {f.name: conv(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings shared by fine-tuning and distillation."""

    epochs: float = 3.0
    max_steps: int = 0  # > 0 overrides epochs
    batch_size: int = 32
    learning_rate: float = 5e-5
    weight_decay: float = 0.01
    warmup_ratio: float = 0.06
    grad_clip: float = 1.0
    max_length: int = 128
    eval_every: int = 0  # steps; 0 = once per epoch
    checkpoint_every: int = 200  # steps; 0 = never
    seed: int = 42
    threads: int = 0  # torch intra-op threads; 0 = torch's default
    # on CPU, use only the cores other busy processes leave idle (edge_albert/core_share.py)
    share_cores: bool = True
    device: str = "auto"  # "auto" (the GPU when torch sees one), "cpu", "cuda" or "cuda:N"
    # "fp32"; "bf16": the forward's matmuls under bfloat16 autocast (losses stay fp32); "auto":
    # bf16 where the device computes it natively (AVX512-BF16/AMX/Arm BF16 CPUs, bf16 GPUs)
    precision: str = "fp32"

    def __post_init__(self) -> None:
        if self.precision not in ("fp32", "bf16", "auto"):
            raise ValueError(f"precision must be fp32, bf16 or auto, got {self.precision!r}")
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", self.device):
            raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {self.device!r}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.max_length < 8:
            raise ValueError(f"max_length must be >= 8, got {self.max_length}")


@dataclasses.dataclass(frozen=True)
class FinetuneConfig(TrainConfig):
    """``edge-albert finetune``: a base encoder becomes a task teacher."""

    learning_rate: float = 5e-5


@dataclasses.dataclass(frozen=True)
class DistillConfig(TrainConfig):
    """``edge-albert distill``: teacher -> ALBERT student.

    Loss = ce_weight * CE(labels) + kd_weight * T^2 * KL(teacher_T || student_T)
         + hidden_weight * MSE(proj(student hidden), teacher hidden)   [same tokenizer only]
         + attention_weight * KL(teacher attention || student attention) [same tokenizer only]
    """

    student: str = "small"  # a preset name or a path to an AlbertConfig JSON
    learning_rate: float = 2e-4
    epochs: float = 3.0
    temperature: float = 2.0
    ce_weight: float = 0.5
    kd_weight: float = 1.0
    hidden_weight: float = 0.0
    attention_weight: float = 0.0
    init_from_teacher: bool = True
    # teacher layers that initialise the student's layer groups, one index per group (e.g. [0, 1]:
    # the teacher's bottom layers, a truncated teacher); [] = the middle layer of each group's share
    teacher_layers: tuple[int, ...] = ()
    freeze_embeddings: bool = False  # keep the SVD-initialised word embeddings fixed
    dropout: float = -1.0  # student hidden + attention dropout; < 0 keeps the config's (v2: 0)
    augment: int = 0  # variants per training text, labelled by the teacher
    augment_seed: int = 7
    # student = "pruned": the teacher's own weights cut to this fraction of its FLOPs at
    # max_length tokens, in prune_steps steps, each scored on prune_score_batches batches and
    # followed by distillation; prune_hidden lets a step narrow the residual stream (and so the
    # head count) as well as drop layers and FFN neurons (see edge_albert/prune.py)
    flops: float = 0.33
    prune_steps: int = 3
    prune_score_batches: int = 32
    prune_hidden: bool = True
    share_groups: int = 0  # > 0: after pruning, merge the layers into this many shared groups
    embedding_size: int = 0  # > 0: after pruning, factorise the word embeddings to this size

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.augment < 0:
            raise ValueError(f"augment must be >= 0, got {self.augment}")
        if self.dropout >= 1:
            raise ValueError(f"dropout must be < 1, got {self.dropout}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if not 0 < self.flops < 1:
            raise ConfigError(f"flops is a fraction of the teacher's FLOPs: expected a number"
                              f" between 0 and 1 (exclusive), got {self.flops}",
                              key="distill.flops")
        if self.share_groups < 0 or self.embedding_size < 0:
            raise ValueError("share_groups and embedding_size must be >= 0")
        if self.prune_steps < 1 or self.prune_score_batches < 1:
            raise ValueError("prune_steps and prune_score_batches must be >= 1")
        if any(i < 0 for i in self.teacher_layers):
            raise ValueError(f"teacher_layers must be >= 0, got {list(self.teacher_layers)}")
