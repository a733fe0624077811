"""Trimmed batches (recbole_eimf/trim.py): which models give the same loss, gradients and scores.

One ml-100k batch per model, padded vs trimmed, same seed, dropout on (training) and off
(full-sort scores). The exact models make properties/trim_padding.yaml; the others must differ.
"""

import copy
import logging
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from recbole.data.transform import construct_transform
from recbole.utils import init_seed

from recbole_eimf.config import Config
from recbole_eimf.data import create_dataset, data_preparation
from recbole_eimf.errors import ConfigError
from recbole_eimf.trim import GroupedForward, apply_trim_padding, exact_models
from recbole_eimf.utils import get_model, plugin_model_names

from conftest import SMALL

FEATURES = {"selected_features": ["class"], "pooling_mode": "mean"}
SETTINGS = {**SMALL, "MAX_ITEM_LIST_LENGTH": 20, "hidden_size": 32, "inner_size": 64, **FEATURES}
RECBOLE_MODELS = ["SASRec", "GRU4Rec", "BERT4Rec", "SINE", "SASRecF", "GRU4RecF", "NARM", "STAMP", "Caser", "LightSANs", "FDSA", "CORE"]
CLOSE = {"rtol": 1e-4, "atol": 1e-6}


@pytest.fixture(scope="module")
def data():
    """ml-100k with its genres (``class``) and sequences of up to 20 items, and 48 training rows of
    varied lengths, some full."""
    argv, sys.argv = sys.argv, ["pytest"]
    try:
        config = Config(model="SASRec", dataset="ml-100k", config_dict=SETTINGS)
        dataset = create_dataset(config)
        train, _, _ = data_preparation(config, dataset)
    finally:
        sys.argv = argv
    rows = train._dataset[np.arange(0, 48 * 331, 331)]
    lengths = rows["item_length"]
    assert lengths.max() == 20 and lengths.min() < 5, "the batch should mix short and full rows"
    return train, rows


def build(name, data, **settings):
    train, rows = data
    argv, sys.argv = sys.argv, ["pytest"]
    try:
        config = Config(model=name, dataset="ml-100k", config_dict={**SETTINGS, **settings})
    finally:
        sys.argv = argv
    transform = construct_transform(config)  # BERT4Rec's masking (names its fields in the config)
    init_seed(0, True)
    model = get_model(name)(config, train._dataset)
    batch = transform(train._dataset, copy.deepcopy(rows))
    return model, batch, config


def outputs(model, batch):
    """Loss and gradients in training (dropout on, seeded), full-sort scores in evaluation."""
    model.train()
    model.zero_grad()
    torch.manual_seed(7)
    loss = model.calculate_loss(batch)
    loss = sum(loss) if isinstance(loss, tuple) else loss
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.eval()
    with torch.no_grad():
        scores = model.full_sort_predict(batch)
    return loss.detach(), grads, scores


def same(a, b) -> bool:
    loss_a, grads_a, scores_a = a
    loss_b, grads_b, scores_b = b
    return (
        torch.allclose(loss_a, loss_b, **CLOSE)
        and torch.allclose(scores_a, scores_b, **CLOSE)
        and grads_a.keys() == grads_b.keys()
        and all(torch.allclose(grads_a[n], grads_b[n], **CLOSE) for n in grads_a)
    )


@pytest.mark.parametrize("name", RECBOLE_MODELS)
def test_recbole_model_is_exact_under_trimming_as_the_table_says(name, data):
    model, batch, _ = build(name, data)
    trimmed = copy.deepcopy(model)
    table = exact_models()
    calls = []
    trimmed.forward = GroupedForward(trimmed, table.get(name, "pooled"))
    original = trimmed.forward.original
    trimmed.forward.original = lambda *args: calls.append(args) or original(*args)
    stock = outputs(model, batch)
    if name in table:
        got = outputs(trimmed, batch)
        widths = {a.size(1) for args in calls for a in args if isinstance(a, torch.Tensor) and a.dim() == 2 and not a.is_floating_point()}
        assert len(widths) > 1 and max(widths) <= 21, "the rows ran in groups cut to their length"
        loss, grads, scores = got
        assert same(stock, got), f"{name} is listed as exact in trim_padding.yaml"
        assert stock[0] > 0 and scores.std() > 0 and len(grads) > 1
    else:
        try:
            got = outputs(trimmed, batch)
        except (RuntimeError, ValueError, IndexError):
            return  # cannot even run on trimmed rows (e.g. Caser's convolution spans all positions)
        assert not same(stock, got), f"{name} is exact under trimming: add it to trim_padding.yaml"


@pytest.mark.parametrize("name", ["ComiRecSA", "ComiRecDR", "MIND", "TransMI"])
def test_plugin_models_trim_their_own_batches_exactly(name, data):
    """Without dropout: the plugin's groups draw their own dropout masks (user_interests)."""
    model, batch, _ = build(name, data, trim_padding=False, hidden_dropout_prob=0.0, attn_dropout_prob=0.0)
    trimmed = copy.deepcopy(model)
    trimmed.trim_padding = True
    assert type(model).TRIMS_PADDING
    assert same(outputs(model, batch), outputs(trimmed, batch))


def test_apply_trim_padding_follows_the_key_and_the_table(data, caplog):
    model, _, config = build("SASRec", data)
    assert apply_trim_padding(model, config) == "trim_padding: on (exact for SASRec; dropout masks drawn per padded batch)"
    assert isinstance(model.forward, GroupedForward)
    model, _, config = build("SASRec", data, trim_padding=False)
    assert apply_trim_padding(model, config) == "trim_padding: off (trim_padding: False)"
    assert not isinstance(model.forward, GroupedForward)
    model, _, config = build("Caser", data)
    assert apply_trim_padding(model, config) == "trim_padding: off: Caser is not exact under trimming"
    model, _, config = build("Caser", data, trim_padding=True)
    with pytest.raises(ConfigError, match="trim_padding: True, but Caser"):
        apply_trim_padding(model, config)
    model, _, config = build("SASRec", data, trim_padding="yes")
    with pytest.raises(ConfigError, match="`trim_padding` must be True or False"):
        apply_trim_padding(model, config)
    assert set(plugin_model_names()).isdisjoint(exact_models()), "the plugin's models trim themselves"


def test_group_dropout_masks_train_the_stock_model_in_distribution(data):
    """`trim_dropout: group`: each group draws its own masks. Scores are the stock ones; in training
    the sequence outputs differ draw for draw, but stray from the evaluation outputs as far as the
    stock model's do (a statistic that dropout moves a long way from 1)."""
    model, batch, config = build("SASRec", data, trim_dropout="group")
    trimmed = copy.deepcopy(model)
    assert apply_trim_padding(trimmed, config) == "trim_padding: on (exact for SASRec; dropout masks drawn per group)"
    seq, lengths = batch["item_id_list"], batch["item_length"]
    with torch.no_grad():
        model.eval(), trimmed.eval()
        clean = model.forward(seq, lengths)
        assert torch.allclose(clean, trimmed.forward(seq, lengths), **CLOSE)

        def agreement(m, draws=40):
            m.train()
            return torch.stack([F.cosine_similarity(m.forward(seq, lengths), clean, dim=1) for _ in range(draws)])

        torch.manual_seed(3)
        stock, grouped = agreement(model), agreement(trimmed)
    assert not torch.allclose(stock[0], grouped[0])  # other draws
    stock, grouped = stock.mean(dim=1), grouped.mean(dim=1)  # one value per draw
    noise = (stock.var() / len(stock) + grouped.var() / len(grouped)).sqrt()
    assert abs(stock.mean() - grouped.mean()) < 4 * noise
    assert 1 - stock.mean() > 20 * noise  # dropout moves the outputs far more than the noise
    with pytest.raises(ConfigError, match="trim_dropout"):
        apply_trim_padding(copy.deepcopy(model), build("SASRec", data, trim_dropout="rows")[2])
