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


@pytest.mark.parametrize("family", ["albert", "bert", "roberta"])
def test_trim_positions_keeps_every_logit_up_to_the_length(family):
    """The cut table gives the same logits for any input up to ``length`` tokens, and fails loudly
    past it (no silent reuse of a wrong row); RoBERTa keeps its padding offset."""
    import transformers

    from edge_albert.modeling import trim_positions

    torch.manual_seed(0)
    if family == "albert":
        model = build_albert_classifier(albert_config("tiny", vocab_size=100))
    else:
        cls = {"bert": (transformers.BertConfig, transformers.BertForSequenceClassification),
               "roberta": (transformers.RobertaConfig,
                           transformers.RobertaForSequenceClassification)}[family]
        model = cls[1](cls[0](vocab_size=100, hidden_size=16, num_hidden_layers=1,
                              num_attention_heads=2, intermediate_size=32,
                              max_position_embeddings=130, pad_token_id=1))
    model.eval()
    before = parameter_count(model)
    ids = torch.randint(5, 100, (2, 32))
    mask = torch.ones_like(ids)
    mask[1, 20:] = 0
    with torch.no_grad():
        ref = model(input_ids=ids, attention_mask=mask).logits
        dropped = trim_positions(model, 32)
        got = model(input_ids=ids, attention_mask=mask).logits
    offset = 2 if family == "roberta" else 0
    table = model.base_model.embeddings.position_embeddings
    assert table.num_embeddings == model.config.max_position_embeddings == 32 + offset
    assert dropped > 0 and before - parameter_count(model) == dropped * table.embedding_dim
    assert torch.equal(ref, got)
    assert trim_positions(model, 32) == 0  # already cut: nothing to do
    with pytest.raises((IndexError, RuntimeError)):
        model(input_ids=torch.randint(5, 100, (1, 33)))
