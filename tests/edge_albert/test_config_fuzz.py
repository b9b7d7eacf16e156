"""Fuzzing config parsing: random TOML files and ``--set`` overrides against the pipeline schema.

Every input either loads into the stage dataclasses or raises a one-line ConfigError that names
the file (and the key, for a bad key or value). What loads must survive a round trip through
``to_dict`` -> TOML -> ``load_sections`` unchanged.
"""
from __future__ import annotations

import dataclasses
import math
import os

import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from edge_albert.config import load_sections, parse_overrides, to_dict
from edge_albert.errors import ConfigError
from edge_albert.recipe import schema

# FUZZ_EXAMPLES=2000 for a deeper run; the default keeps this file to a few seconds
FUZZ = settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", "60")), deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])
SCHEMA = schema()
FIELDS = sorted({f.name for cls in SCHEMA.values() for f in dataclasses.fields(cls)})
ENUM_WORDS = ["onnx", "ort", "tflite", "fp32", "fp16", "int8-dynamic", "int8-static", "bpe",
              "unigram", "minmax", "entropy", "int8", "uint8", "classifier", "gelu", "arm",
              "amd64", "rpi", "android", "intents", "tiny", "3", "0.5", "true", "none", "",
              "1,2", "-1"]


# -- a small TOML writer (the standard library only reads TOML) -------------------------------

def _str(s: str) -> str:
    out = []
    for ch in s:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return _str(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_str(k)} = {_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(v)


def dump_toml(doc: dict) -> str:
    lines = []
    for section, table in doc.items():
        if isinstance(table, dict):
            lines.append(f"[{_str(section)}]")
            lines += [f"{_str(k)} = {_value(v)}" for k, v in table.items()]
        else:
            lines.insert(0, f"{_str(section)} = {_value(table)}")  # a top-level key
    return "\n".join(lines) + "\n"


# -- strategies ---------------------------------------------------------------------------------

SCALARS = st.one_of(
    st.integers(-2**63, 2**63 - 1), st.integers(-20, 300), st.integers(), st.floats(), st.booleans(),
    st.sampled_from(ENUM_WORDS), st.text(max_size=12))
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=8)
KEYS = st.one_of(st.sampled_from(FIELDS), st.text(min_size=1, max_size=10))
SECTIONS = st.one_of(st.sampled_from(sorted(SCHEMA)), st.text(min_size=1, max_size=8))
DOCS = st.dictionaries(SECTIONS, st.one_of(st.dictionaries(KEYS, VALUES, max_size=5), SCALARS),
                       max_size=4)


def _load(path=None, overrides=()):
    """load_sections, checking that a ConfigError is one line and names the file."""
    try:
        cfg = load_sections(SCHEMA, path, overrides)
    except ConfigError as e:
        event("ConfigError")
        msg = str(e)
        assert "\n" not in msg and "\r" not in msg, repr(msg)
        if path is not None:
            assert e.where == str(path) and msg.startswith(str(path)), msg
        return None, e
    event("loaded")
    assert set(cfg) == set(SCHEMA)
    for section, cls in SCHEMA.items():
        assert type(cfg[section]) is cls
    return cfg, None


def _round_trip(cfg, tmp_path):
    again = tmp_path / "again.toml"
    again.write_text(dump_toml({s: to_dict(c) for s, c in cfg.items()}), encoding="utf-8")
    assert load_sections(SCHEMA, again) == cfg


@FUZZ
@given(doc=DOCS)
def test_random_toml_documents(tmp_path, doc):
    path = tmp_path / "recipe.toml"
    path.write_text(dump_toml(doc), encoding="utf-8")
    cfg, err = _load(path)
    if err is not None:
        if err.key is not None:  # the key named is in a section the document has
            assert any(err.key in (s, repr(s)) or err.key.startswith(s + ".") for s in doc), \
                (err.key, list(doc))
    else:
        _round_trip(cfg, tmp_path)


@FUZZ
@given(section=st.sampled_from(sorted(SCHEMA)), data=st.data())
def test_real_keys_with_random_values(tmp_path, section, data):
    """Only real keys, so most documents get as far as the type checks and __post_init__."""
    names = [f.name for f in dataclasses.fields(SCHEMA[section])]
    table = data.draw(st.dictionaries(st.sampled_from(names), VALUES, min_size=1, max_size=4))
    path = tmp_path / "recipe.toml"
    path.write_text(dump_toml({section: table}), encoding="utf-8")
    cfg, err = _load(path)
    if err is not None:
        assert err.key is not None and err.key.split(".")[0] == section, str(err)
        if "." in err.key:
            assert err.key.split(".", 1)[1] in table, str(err)
    else:
        for k, v in table.items():  # a value that loaded is the value given (coerced)
            got = getattr(cfg[section], k)
            if isinstance(v, bool) or isinstance(got, bool):
                assert got == (v if isinstance(v, bool) else str(v).lower() in ("true", "1", "yes"))
            elif isinstance(v, (int, float)) and isinstance(got, (int, float)):
                assert got == (float(v) if isinstance(got, float) else v) and not math.isnan(got)
        _round_trip(cfg, tmp_path)


def _typed(tp):
    """Values of the field's own type (as TOML holds them), so most documents load."""
    import enum
    import typing
    from pathlib import Path

    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return st.sampled_from([m.value for m in tp])
    if typing.get_origin(tp) is tuple:
        inner = typing.get_args(tp)[0]
        if isinstance(inner, type) and issubclass(inner, enum.Enum):
            return st.lists(st.sampled_from([m.value for m in inner]), unique=True, max_size=3)
        return st.lists(_typed(inner), max_size=3)
    return {bool: st.booleans(), int: st.integers(1, 600), float: st.floats(0.01, 1e3),
            str: st.text(max_size=10), Path: st.text(max_size=10)}[tp]


@FUZZ
@given(section=st.sampled_from(sorted(SCHEMA)), data=st.data())
def test_well_typed_values_round_trip(tmp_path, section, data):
    import typing

    hints = typing.get_type_hints(SCHEMA[section])
    names = st.sampled_from(sorted(hints))
    table = {}
    for k in data.draw(st.lists(names, unique=True, max_size=5)):
        table[k] = data.draw(_typed(hints[k]))
    path = tmp_path / "recipe.toml"
    path.write_text(dump_toml({section: table}), encoding="utf-8")
    cfg, err = _load(path)
    if err is None:
        _round_trip(cfg, tmp_path)
        assert to_dict(cfg[section]) == {**to_dict(SCHEMA[section]()), **{
            k: (sorted(set(v)) if k == "buckets" else v) for k, v in table.items()}}
    else:
        assert err.key.split(".")[0] == section, str(err)


@FUZZ
@given(text=st.text(max_size=300))
@example(text="[tokenizer]\nvocab_size = " + "1" * 5000)
@example(text="[convert]\nbuckets = " + "[" * 5000)
@example(text="[validate]\nthreads = 0")
@example(text="[distill]\ntemperature = nan")
def test_random_text_files(tmp_path, text):
    path = tmp_path / "recipe.toml"
    path.write_text(text, encoding="utf-8")
    _load(path)


@FUZZ
@given(raw=st.binary(max_size=300))
def test_random_bytes_files(tmp_path, raw):
    path = tmp_path / "recipe.toml"
    path.write_bytes(raw)
    _load(path)


OVERRIDE = st.builds(
    lambda s, k, v: f"{s}.{k}={v}",
    SECTIONS, KEYS,
    st.one_of(st.text(max_size=20), VALUES.map(lambda v: _value(v)), st.sampled_from(ENUM_WORDS)))


@FUZZ
@given(overrides=st.lists(st.one_of(OVERRIDE, st.text(max_size=20)), max_size=3))
@example(overrides=["tokenizer.vocab_size=" + "9" * 5000])
@example(overrides=["convert.buckets=" + "[" * 5000])
@example(overrides=["validate.max_drop=nan"])
def test_random_overrides(overrides):
    try:
        parsed = parse_overrides(overrides)
    except ConfigError as e:
        assert e.key == "--set"
        return
    assert all(isinstance(v, dict) for v in parsed.values())
    _cfg, err = _load(None, overrides)
    if err is not None:
        assert err.key is not None, str(err)
        assert any(err.key in (s, repr(s)) or err.key.startswith(s + ".") for s in parsed), \
            (err.key, list(parsed))


@pytest.mark.parametrize("key, value", [("distill.temperature", "nan"),
                                        ("finetune.learning_rate", "nan"),
                                        ("validate.max_drop", "1" + "0" * 400)])
def test_nan_and_overflow_are_refused(tmp_path, key, value):
    section, name = key.split(".")
    path = tmp_path / "recipe.toml"
    path.write_text(f"[{section}]\n{name} = {value}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=f"expected a number, got {value[:20]}") as e:
        load_sections(SCHEMA, path)
    assert e.value.key == key and e.value.where == str(path)


def test_post_init_errors_name_the_file(tmp_path):
    """Checks a dataclass makes itself (validate.threads >= 1) still name the recipe file."""
    path = tmp_path / "recipe.toml"
    path.write_text("[validate]\nthreads = 0\n", encoding="utf-8")
    with pytest.raises(ConfigError) as e:
        load_sections(SCHEMA, path)
    assert e.value.key == "validate.threads"
    assert str(e.value).startswith(f"{path}: validate.threads: must be >= 1")
