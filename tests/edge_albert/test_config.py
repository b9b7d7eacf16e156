import dataclasses

import pytest

from edge_albert.config import ModelType, TokenizerConfig, load_sections, parse_overrides, to_dict
from edge_albert.errors import ConfigError

SCHEMA = {"tokenizer": TokenizerConfig}


def test_defaults_file_and_overrides(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text('[tokenizer]\nvocab_size = 500\nmodel_type = "bpe"\n')
    cfg = load_sections(SCHEMA, p, ["tokenizer.lowercase=false", "tokenizer.seed=7"])["tokenizer"]
    assert cfg == TokenizerConfig(vocab_size=500, model_type=ModelType.BPE, lowercase=False, seed=7)
    assert to_dict(cfg)["model_type"] == "bpe"
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.vocab_size = 1  # type: ignore[misc]


def test_override_values_are_coerced():
    assert parse_overrides(["a.b=3", "a.c=0.5", "a.d=x y", "a.e=[1, 2]"]) == {
        "a": {"b": 3, "c": 0.5, "d": "x y", "e": [1, 2]}}
    cfg = load_sections(SCHEMA, None, ["tokenizer.character_coverage=1"])["tokenizer"]
    assert cfg.character_coverage == 1.0 and isinstance(cfg.character_coverage, float)


def test_toml_syntax_error_names_the_line(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text("[tokenizer]\nvocab_size = 5\nlowercase = = true\n")
    with pytest.raises(ConfigError) as e:
        load_sections(SCHEMA, p)
    assert e.value.line == 3 and str(p) in str(e.value)


def test_unknown_key_lists_the_valid_ones(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text("[tokenizer]\nvocab = 5\n")
    with pytest.raises(ConfigError, match=r"tokenizer\.vocab: unknown key \(valid keys: .*vocab_size"):
        load_sections(SCHEMA, p)


def test_unknown_section(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text("[distil]\nepochs = 5\n")
    with pytest.raises(ConfigError, match="unknown section"):
        load_sections(SCHEMA, p)


@pytest.mark.parametrize("override, expected", [
    ("tokenizer.vocab_size=many", "expected an integer"),
    ("tokenizer.vocab_size=true", "expected an integer"),
    ("tokenizer.lowercase=maybe", "expected true or false"),
    ("tokenizer.model_type=wordpiece", "one of 'unigram', 'bpe'"),
])
def test_wrong_types(override, expected):
    with pytest.raises(ConfigError, match=expected):
        load_sections(SCHEMA, None, [override])


@pytest.mark.parametrize("bad", ["tokenizer.vocab_size", "vocab_size=3"])
def test_set_needs_section_key_value(bad):
    with pytest.raises(ConfigError, match=r"section.key=value"):
        parse_overrides([bad])


def _list_fields():
    """Every list-valued key of every recipe section, with a valid item for it."""
    import typing

    from edge_albert.recipe import schema

    items = {"buckets": (32, 64), "precisions": ("fp32", "int8-dynamic"),
             "formats": ("onnx", "tflite"), "fixed_shapes": ("fp32", "int8-static"),
             "if_installed": ("mediapipe", "pte"),
             "batch_sizes": (1, 8), "fallbacks": ("softmax", "gelu"), "teacher_layers": (0, 1)}
    for section, cls in schema().items():
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if typing.get_origin(hints[f.name]) in (tuple, list):
                yield section, f.name, items.get(f.name, ("x", "y"))


@pytest.mark.parametrize("section,key,items", list(_list_fields()))
def test_every_list_option_takes_one_value_spaces_and_a_trailing_comma(section, key, items):
    from edge_albert.recipe import schema

    item, other = items
    one = load_sections(schema(), None, [f"{section}.{key}={item}"])[section]
    assert len(getattr(one, key)) == 1
    two = load_sections(schema(), None, [f"{section}.{key}={item}, {other}"])[section]
    trailing = load_sections(schema(), None, [f"{section}.{key}={item},"])[section]
    assert len(getattr(two, key)) == 2 and getattr(trailing, key) == getattr(one, key)


def test_convert_buckets_option_takes_a_single_value(tmp_path):
    from click.testing import CliRunner

    from edge_albert.cli import cli

    r = CliRunner().invoke(cli, ["convert", "--model", str(tmp_path / "missing"), "--out",
                                 str(tmp_path / "o"), "--buckets", "64", "--precisions", "fp32"])
    assert "expected a list" not in r.output
    assert "missing" in r.output  # it got as far as the model directory
