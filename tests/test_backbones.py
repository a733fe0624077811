"""Shapes, masking and the no-leak property of the multi-interest backbones."""

import copy

import pytest
import torch

from recbole_eimf.config import Config
from recbole_eimf.model.abstract_recommender import MultiInterestRecommender
from recbole_eimf.utils import get_model

from conftest import SMALL

BACKBONES = ["ComiRecSA", "ComiRecDR", "MIND", "TransMI"]
K = 3


def build(name, ml100k, **overrides):
    _, dataset, train, _, _ = ml100k
    config = Config(model=name, dataset="ml-100k", config_dict={**SMALL, "n_interests": K, **overrides})
    torch.manual_seed(0)
    return get_model(name)(config, train._dataset).eval(), config


def first_batch(ml100k):
    """A real training batch: sequence prefixes (right-padded with 0) and their next items."""
    return next(iter(ml100k[2]))


@pytest.mark.parametrize("name", BACKBONES)
def test_interest_shapes(name, ml100k):
    model, config = build(name, ml100k)
    batch = first_batch(ml100k)
    seq, seq_len = batch["item_id_list"], batch["item_length"]
    interests = model.multi_interest(seq, seq_len)
    assert interests.shape == (seq.size(0), K, config["embedding_size"])
    assert torch.isfinite(interests).all()
    assert model.full_sort_predict(batch).shape == (seq.size(0), model.n_items)


@pytest.mark.parametrize("name", BACKBONES)
def test_padding_is_masked(name, ml100k):
    model, _ = build(name, ml100k)
    batch = first_batch(ml100k)
    seq, seq_len = batch["item_id_list"], batch["item_length"]
    assert (seq == 0).any(), "the batch should contain padded sequences"
    before = model.multi_interest(seq, seq_len)
    with torch.no_grad():  # padding row gets a large, unrelated vector
        model.item_embedding.weight[0] = torch.randn_like(model.item_embedding.weight[0]) * 100
    after = model.multi_interest(seq, seq_len)
    torch.testing.assert_close(before, after)


@pytest.mark.parametrize("name", BACKBONES)
def test_target_never_reaches_inference(name, ml100k):
    model, _ = build(name, ml100k)
    batch = first_batch(ml100k)
    other = copy.deepcopy(batch)
    other["item_id"] = torch.randint(1, model.n_items, other["item_id"].shape)
    assert not torch.equal(batch["item_id"], other["item_id"])
    with torch.no_grad():
        assert torch.equal(model.full_sort_predict(batch), model.full_sort_predict(other))


@pytest.mark.parametrize("name", BACKBONES)
def test_scores_are_max_over_interests(name, ml100k):
    model, _ = build(name, ml100k)
    batch = first_batch(ml100k)
    with torch.no_grad():
        interests = model.multi_interest(batch["item_id_list"], batch["item_length"])
        expected = torch.einsum("bkd,nd->bkn", interests, model.item_embedding.weight).max(dim=1).values
        full = model.full_sort_predict(batch)
        torch.testing.assert_close(full, expected)
        # predict() scores the given candidate the same way
        rows = torch.arange(full.size(0))
        torch.testing.assert_close(model.predict(batch), full[rows, batch["item_id"]])


@pytest.mark.parametrize("name", BACKBONES)
def test_loss_trains_interests_and_embeddings(name, ml100k):
    model, _ = build(name, ml100k)
    model.train()
    batch = first_batch(ml100k)
    loss = model.calculate_loss(batch)
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    assert all(g is not None and torch.isfinite(g).all() for g in grads.values()), [
        n for n, g in grads.items() if g is None
    ]


def test_hard_readout_picks_the_interest_closest_to_the_target():
    interests = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]], [[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]])
    targets = torch.tensor([[0.1, 2.0], [-3.0, 0.5]])
    picked = MultiInterestRecommender.hard_readout(interests, targets)
    torch.testing.assert_close(picked, torch.tensor([[0.0, 1.0], [-1.0, 0.0]]))


@pytest.mark.parametrize("name", ["ComiRecDR", "MIND"])
def test_routing_start_is_stored_and_inference_is_deterministic(name, ml100k):
    model, _ = build(name, ml100k)
    assert "routing.routing_init" in model.state_dict()
    batch = first_batch(ml100k)
    with torch.no_grad():
        assert torch.equal(model.full_sort_predict(batch), model.full_sort_predict(batch))
    # MIND's shared map needs a random start to tell interests apart; they must differ.
    interests = model.multi_interest(batch["item_id_list"], batch["item_length"])
    assert not torch.allclose(interests[:, 0], interests[:, 1])


@pytest.mark.parametrize("bad", [0, -2])
def test_n_interests_below_one_is_rejected(bad, ml100k):
    with pytest.raises(ValueError, match="n_interests"):
        build("ComiRecSA", ml100k, n_interests=bad)


@pytest.mark.parametrize("name", BACKBONES)
def test_trim_padding_gives_the_interests_of_the_full_padded_batch(name, ml100k):
    model, _ = build(name, ml100k)
    assert model.trim_padding, "on by default"
    batch = first_batch(ml100k)
    seq, seq_len = batch["item_id_list"], batch["item_length"]
    assert seq_len.min() < seq.size(1) // 4, "the batch should mix short and long sequences"
    widths = []
    raw = model.multi_interest

    def spy(item_seq, item_seq_len):
        widths.append(item_seq.size(1))
        assert (item_seq[:, -1] != 0).any(), "each group is cut to its longest sequence"
        return raw(item_seq, item_seq_len)

    model.multi_interest = spy
    with torch.no_grad():
        trimmed = model.user_interests(seq, seq_len)
        assert len(widths) > 1 and min(widths) < seq.size(1)
        del model.multi_interest
        torch.testing.assert_close(trimmed, model.multi_interest(seq, seq_len))
        # The routing matrix comes back at the batch's width and row order, padding at 0.
        model.trim_padding = False
        plain, plain_routing = model.interests_and_routing(seq, seq_len)
        model.trim_padding = True
        trimmed, trimmed_routing = model.interests_and_routing(seq, seq_len)
    torch.testing.assert_close(trimmed, plain)
    torch.testing.assert_close(trimmed_routing, plain_routing)


def test_trim_padding_must_be_a_bool(ml100k):
    with pytest.raises(ValueError, match="trim_padding"):
        build("ComiRecSA", ml100k, trim_padding="yes")


def test_transmi_with_one_interest_is_sasrec(ml100k):
    """`TransMI-K1` (one interest, the last position's) is RecBole's SASRec: with SASRec's weights
    it gives SASRec's scores and loss, trimmed padding and all."""
    _, _, train, _, _ = ml100k
    config = Config(model="SASRec", dataset="ml-100k", config_dict={**SMALL, "hidden_size": SMALL["embedding_size"]})
    torch.manual_seed(0)
    sasrec = get_model("SASRec")(config, train._dataset).eval()
    transmi, _ = build("TransMI", ml100k, n_interests=1, include_last=True)
    assert transmi.trim_padding
    transmi.load_state_dict(sasrec.state_dict())  # the same parameter names, nothing left over
    batch = first_batch(ml100k)
    with torch.no_grad():
        torch.testing.assert_close(transmi.full_sort_predict(batch), sasrec.full_sort_predict(batch))
        torch.testing.assert_close(transmi.calculate_loss(batch), sasrec.calculate_loss(batch))


class TensorsMade(torch.utils._python_dispatch.TorchDispatchMode):
    """Records the storage and element count of every tensor an op returns."""

    def __init__(self):
        super().__init__()
        self.made = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if isinstance(out, torch.Tensor):
            self.made.append((out.untyped_storage().data_ptr(), out.numel()))
        return out

    def largest_besides(self, result: torch.Tensor) -> int:
        """The largest tensor made that is not (a view of) ``result``."""
        return max(n for storage, n in self.made if storage != result.untyped_storage().data_ptr())


@pytest.mark.parametrize("name", ["ComiRecSA", "TransMI"])
def test_full_sort_scores_are_computed_over_blocks_of_items_with_the_same_result(name, ml100k, monkeypatch):
    import recbole_eimf.model.abstract_recommender as base

    model, _ = build(name, ml100k)
    batch = first_batch(ml100k)
    with torch.no_grad():
        interests = model(batch["item_id_list"], batch["item_length"])
        items = model.item_embedding.weight
        expected = torch.einsum("bkd,nd->bkn", interests, items).amax(dim=1)
        whole = model.full_sort_predict(batch)  # ml-100k's 1,683 items fit one block
        # Blocks of 100 items: no op makes more than a [B, 100] product (the old running max over
        # interests made [B, n_items] ones next to the scores).
        rows = interests.size(0)
        monkeypatch.setattr(base, "SCORE_BLOCK_BYTES", base.SCORE_BLOCK_COPIES * 4 * rows * 100)
        assert base.score_block_items(rows) == 100
        with TensorsMade() as ops:
            blocked = base.max_scores(interests, items)
        assert ops.largest_besides(blocked) <= rows * 100
        assert torch.equal(model.full_sort_predict(batch), blocked)
    assert torch.equal(blocked, whole)
    torch.testing.assert_close(blocked, expected)
