import pytest

torch = pytest.importorskip("torch")

from edge_albert.errors import ModelError
from edge_albert.modeling import (
    SHAPES,
    albert_config,
    build_albert_classifier,
    describe_model,
    load_classifier,
    parameter_count,
    resolve_model,
)


def test_published_shapes_have_published_sizes():
    # albert-base-v2 has about 11.7M parameters with a 30k vocabulary (12M in the paper)
    base = build_albert_classifier(albert_config("base", vocab_size=30000))
    assert 11.0e6 < parameter_count(base) < 12.5e6
    assert set(SHAPES) >= {"base", "large", "xlarge", "xxlarge", "tiny"}


def test_tiny_model_dir_round_trip(tiny_model):
    info = describe_model(tiny_model)
    assert info["architecture"] == "AlbertForSequenceClassification" and info["labels"] == ["0", "1"]
    m = load_classifier(tiny_model)
    ids = torch.tensor([[2, 10, 11, 3]])
    assert m(input_ids=ids).logits.shape == (1, 2)


def test_shared_layer_is_shared():
    one = parameter_count(build_albert_classifier(albert_config("tiny", vocab_size=100)))
    twelve = parameter_count(build_albert_classifier(albert_config("tiny-12", vocab_size=100)))
    assert one == twelve


def test_bad_heads_and_hub_ids(tmp_path):
    from edge_albert.modeling import AlbertShape

    with pytest.raises(ModelError, match="not divisible"):
        albert_config(AlbertShape(16, 30, 2, 4, 64), vocab_size=100)
    assert resolve_model("albert-base-v2") == "albert-base-v2"  # passed through to from_pretrained
    with pytest.raises(ModelError, match="does not exist"):
        resolve_model(tmp_path / "nope")


def test_not_a_classifier(tmp_path):
    from transformers import AlbertConfig, AlbertModel

    AlbertModel(AlbertConfig(vocab_size=50, hidden_size=32, num_attention_heads=2,
                             intermediate_size=32, embedding_size=16)).save_pretrained(tmp_path)
    with pytest.raises(ModelError, match="not a sequence-classification model"):
        load_classifier(tmp_path)
