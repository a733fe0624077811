"""ComiRec-SA's own options (LayerNorm and projection of the interests, LayerNorm of the sequence,
attention dropout, position embeddings) and the defaults that let it train on few prefixes per item
(docs/BENCHMARKS.md section 31)."""

import math
import sys

import pytest
import torch

from recbole_eimf.config import Config
from recbole_eimf.data import create_dataset, data_preparation
from recbole_eimf.errors import ConfigError
from recbole_eimf.model.layers import attentive_pooling
from recbole_eimf.model.sequential_recommender.comirecsa import SA_FALLBACKS
from recbole_eimf.utils import get_model, get_trainer

from conftest import SMALL

COMIREC = dict(SA_FALLBACKS)  # every option at ComiRec's model


def build(ml100k, **options):
    config = Config(model="ComiRecSA", dataset="ml-100k", config_dict={**SMALL, **options})
    torch.manual_seed(0)
    return get_model("ComiRecSA")(config, ml100k[2]._dataset)


@pytest.fixture(scope="module")
def batch(ml100k):
    return next(iter(ml100k[2]))


def interests(model, batch):
    return model.multi_interest(batch["item_id_list"], batch["item_length"])


def test_options_at_their_fallbacks_are_comirecs_model(ml100k, batch):
    model = build(ml100k, **COMIREC).eval()
    seq = batch["item_id_list"]
    h = model.item_embedding(seq) + model.position_embedding.weight[: seq.size(1)].unsqueeze(0)
    expected, _ = attentive_pooling(h, model.W2(torch.tanh(model.W1(h))), seq)
    torch.testing.assert_close(interests(model, batch), expected)

    # A config without the keys (a checkpoint's from before them) builds that model too.
    config = Config(model="ComiRecSA", dataset="ml-100k", config_dict=dict(SMALL))
    for key in SA_FALLBACKS:
        config.final_config_dict.pop(key, None)
    torch.manual_seed(0)
    old = get_model("ComiRecSA")(config, ml100k[2]._dataset).eval()
    assert set(old.state_dict()) == set(model.state_dict())
    old.load_state_dict(model.state_dict())
    torch.testing.assert_close(interests(old, batch), expected)


def test_defaults_normalise_and_project_the_interests(ml100k, batch):
    model = build(ml100k).eval()  # ComiRecSA.yaml
    assert isinstance(model.interest_norm, torch.nn.LayerNorm)
    assert isinstance(model.interest_projection, torch.nn.Linear)
    plain = build(ml100k, interest_projection=False).eval()
    normed = interests(plain, batch).norm(dim=-1)  # [B, K]; LayerNorm's gain starts at 1
    raw = interests(build(ml100k, **COMIREC).eval(), batch).norm(dim=-1)
    # LayerNorm's eps (1e-5) is not small against the variance of a mean of embeddings of std 0.02,
    # so the norms stay a little under sqrt(d). Without it an interest's norm follows how many items
    # its attention spreads over (a mean of n random embeddings: about 1/sqrt(n) of one's).
    assert normed.max() <= math.sqrt(plain.embedding_size) and normed.max() / normed.min() < 1.5
    assert raw.max() / raw.min() > 3
    # The projection is applied to the normalised interests, and learns.
    plain.load_state_dict(model.state_dict(), strict=False)
    torch.testing.assert_close(interests(model, batch), model.interest_projection(interests(plain, batch)))
    model.train()
    model.calculate_loss(batch).backward()
    for name in ("interest_projection.weight", "interest_norm.weight"):
        grad = dict(model.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name


@pytest.mark.parametrize("option", ["sequence_layer_norm", "attention_dropout", "position_embedding"])
def test_each_sequence_option_changes_the_interests(option, ml100k, batch):
    value = {"sequence_layer_norm": True, "attention_dropout": 0.5, "position_embedding": False}[option]
    base = build(ml100k).train()
    other = build(ml100k, **{option: value}).train()
    other.load_state_dict(base.state_dict(), strict=False)
    torch.manual_seed(1)
    a = interests(base, batch)
    torch.manual_seed(1)
    b = interests(other, batch)
    assert not torch.allclose(a, b)
    if option == "attention_dropout":  # training only
        base.eval(), other.eval()
        torch.testing.assert_close(interests(base, batch), interests(other, batch))
    if option == "position_embedding":
        assert "position_embedding.weight" not in other.state_dict()


@pytest.mark.parametrize(
    "key, value", [("interest_layer_norm", "yes"), ("interest_projection", 1), ("attention_dropout", 1.0),
                   ("attention_dropout", -0.1), ("position_embedding", None)]
)
def test_bad_option_values_name_their_key(key, value, ml100k):
    config = Config(model="ComiRecSA", dataset="ml-100k", config_dict=dict(SMALL))
    config.final_config_dict[key] = value if value is not None else "off"
    with pytest.raises(ConfigError, match=f"`{key}`"):
        get_model("ComiRecSA")(config, ml100k[2]._dataset)


@pytest.fixture(scope="module")
def few_prefixes():
    """The ml-100k users with at most 40 ratings: 4 training batches an epoch (section 31's slice)."""
    argv, sys.argv = sys.argv, ["pytest"]
    try:
        config = Config(model="ComiRecSA", dataset="ml-100k",
                        config_dict={**SMALL, "user_inter_num_interval": "[5,40]"})
        train, _, _ = data_preparation(config, create_dataset(config))
    finally:
        sys.argv = argv
    return train


@pytest.mark.parametrize("options, trains", [({}, True), (COMIREC, False)])
def test_default_leaves_the_uniform_softmax_on_few_prefixes(options, trains, few_prefixes):
    """ComiRec's model stays at the uniform softmax's loss (ln of the items) for the first 32 Adam
    updates at the protocol's learning rate; the default falls well below it."""
    config = Config(model="ComiRecSA", dataset="ml-100k",
                    config_dict={**SMALL, "user_inter_num_interval": "[5,40]", **options})
    torch.manual_seed(0)
    model = get_model("ComiRecSA")(config, few_prefixes._dataset)
    trainer = get_trainer(config["MODEL_TYPE"], "ComiRecSA")(config, model)
    assert config["learning_rate"] == 0.001 and len(few_prefixes) == 4
    for epoch in range(8):
        loss = trainer._train_epoch(few_prefixes, epoch, show_progress=False) / len(few_prefixes)
    uniform = math.log(few_prefixes._dataset.item_num - 1)
    assert (loss < 0.95 * uniform) == trains, (loss, uniform)
