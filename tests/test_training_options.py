"""Training options of the multi-interest models: sampled softmax with logQ correction, REMI's
hard negatives and routing regulariser, embedding dropout, weight decay, embedding size."""

import math

import pytest
import torch
import torch.nn.functional as F

from recbole_eimf.config import Config
from recbole_eimf.errors import ConfigError
from recbole_eimf.utils import get_model, get_trainer

from conftest import SMALL

BACKBONES = ["ComiRecSA", "ComiRecDR", "MIND", "TransMI"]
K = 3
CHEAPER = {"TransMI": {"n_layers": 1, "inner_size": 64}}
OPTION_KEYS = [
    "sampled_softmax_negatives", "sampled_softmax_distribution", "logq_correction", "logq_correct_positive",
    "hard_negative_beta", "routing_reg_weight", "embedding_dropout", "train_readout",
]


def make_config(name, **overrides):
    settings = {**SMALL, "n_interests": K, **CHEAPER.get(name, {}), **overrides}
    return Config(model=name, dataset="ml-100k", config_dict=settings)


def build(name, ml100k, **overrides):
    torch.manual_seed(0)
    return get_model(name)(make_config(name, **overrides), ml100k[2]._dataset)


@pytest.fixture(scope="module")
def batch(ml100k):
    """The first real training batch (2,048 prefixes of ml-100k and their next items)."""
    return next(iter(ml100k[2]))


def full_softmax_of_hard_readout(model, batch):
    """The loss before the options existed, computed here from its definition."""
    interests = model.user_interests(batch["item_id_list"], batch["item_length"])
    pos_emb = model.item_embedding(batch["item_id"])
    best = torch.einsum("bkd,bd->bk", interests, pos_emb).argmax(dim=1)
    user = interests[torch.arange(interests.size(0)), best]
    return F.cross_entropy(user @ model.item_embedding.weight.t(), batch["item_id"])


def full_softmax_of_max_readout(model, batch):
    """`train_readout: max`: every item's logit is its best interest's, the score inference ranks by."""
    interests = model.user_interests(batch["item_id_list"], batch["item_length"])
    logits = torch.einsum("bkd,nd->bkn", interests, model.item_embedding.weight).max(dim=1).values
    return F.cross_entropy(logits, batch["item_id"])


# TransMI trains on the max readout by default (docs/BENCHMARKS.md section 10); the others on ComiRec's.
DEFAULT_LOSS = {"TransMI": full_softmax_of_max_readout}


def fixed_negatives(model, ids):
    model.sample_negatives = lambda n, device: torch.as_tensor(ids, device=device)


# ---------------------------------------------------------------------- defaults


@pytest.mark.parametrize("name", BACKBONES)
def test_defaults_leave_the_loss_unchanged(name, ml100k, batch):
    model = build(name, ml100k).train()
    assert model.sampled_negatives == 0 and model.hard_negative_beta == 0 and model.routing_reg_weight == 0
    assert isinstance(model.embedding_dropout, torch.nn.Identity)
    torch.manual_seed(1)
    loss = model.calculate_loss(batch)
    torch.manual_seed(1)
    reference = DEFAULT_LOSS.get(name, full_softmax_of_hard_readout)
    assert isinstance(loss, torch.Tensor) and torch.equal(loss, reference(model, batch))
    assert not any("sampling" in key for key in model.state_dict())

    # A config without any of the keys (a checkpoint's from before the options) builds the model of
    # that time: every option off, ComiRec's target readout.
    config = make_config(name)
    for key in OPTION_KEYS:
        config.final_config_dict.pop(key, None)
    torch.manual_seed(0)
    old = get_model(name)(config, ml100k[2]._dataset).train()
    assert old.train_readout == "target"
    torch.manual_seed(1)
    old_loss = old.calculate_loss(batch)
    torch.manual_seed(1)
    assert torch.equal(old_loss, full_softmax_of_hard_readout(old, batch))
    if name not in DEFAULT_LOSS:
        assert torch.equal(old_loss, loss)


# ---------------------------------------------------------------------- sampled softmax


def test_logq_corrected_sampled_softmax_tends_to_full_softmax(ml100k, batch):
    rows = batch[torch.arange(256)]
    models = {}
    for n in (0, 32, 1024, 32768):
        models[n] = build("ComiRecSA", ml100k, sampled_softmax_negatives=n)
        with torch.no_grad():  # spread the scores, so that a few items dominate the softmax
            models[n].item_embedding.weight.mul_(100)
    with torch.no_grad():
        full = models[0].calculate_loss(rows).item()
        torch.manual_seed(3)
        error = {n: abs(torch.stack([models[n].calculate_loss(rows) for _ in range(3)]).mean().item() - full)
                 for n in (32, 1024, 32768)}
    assert error[32768] < error[1024] < error[32], error
    assert error[32768] < 0.01 * full, (error, full)

    # Without the correction the same sample estimates N / n_items times the partition function.
    uncorrected = build("ComiRecSA", ml100k, sampled_softmax_negatives=32768, logq_correction=False)
    with torch.no_grad():
        uncorrected.item_embedding.weight.mul_(100)
        gap = uncorrected.calculate_loss(rows).item() - full
    assert gap > 1.0, gap


@pytest.mark.parametrize("correct_positive", [False, True])
def test_sampled_softmax_masks_accidental_hits_and_corrects_by_log_expected_count(correct_positive, ml100k, batch):
    rows = batch[torch.arange(8)]
    model = build("ComiRecSA", ml100k, sampled_softmax_negatives=6, logq_correct_positive=correct_positive)
    pos = rows["item_id"]
    negatives = torch.tensor([pos[0], pos[0], pos[3], 5, 7, 11])  # rows 0 and 3 draw their own target
    fixed_negatives(model, negatives)
    with torch.no_grad():
        loss = model.calculate_loss(rows)
        interests = model.multi_interest(rows["item_id_list"], rows["item_length"])
        user = model.hard_readout(interests, model.item_embedding(pos))
        log_expected = math.log(6 / (model.n_items - 1))  # uniform over items 1 .. n-1
        expected, unmasked = [], []
        for i in range(8):
            s_pos = user[i] @ model.item_embedding.weight[pos[i]] - (log_expected if correct_positive else 0.0)
            s_neg = user[i] @ model.item_embedding.weight[negatives].t() - log_expected
            keep = negatives != pos[i]
            expected.append(torch.logsumexp(torch.cat([s_pos.view(1), s_neg[keep]]), 0) - s_pos)
            unmasked.append(torch.logsumexp(torch.cat([s_pos.view(1), s_neg]), 0) - s_pos)
    torch.testing.assert_close(loss, torch.stack(expected).mean())
    assert not torch.allclose(loss, torch.stack(unmasked).mean())


def test_popularity_sampling_draws_frequent_items_more_often(ml100k):
    model = build("ComiRecSA", ml100k, sampled_softmax_negatives=64, sampled_softmax_distribution="popularity")
    counts = torch.zeros(model.n_items)
    for item, count in ml100k[2]._dataset.item_counter.items():
        counts[int(item)] = count
    torch.manual_seed(0)
    draws = torch.bincount(model.sample_negatives(400_000, torch.device("cpu")), minlength=model.n_items).float()
    assert draws[0] == 0  # never the padding item
    frequent, rare = counts.topk(20).indices, (counts == 1).nonzero().squeeze(1)
    assert draws[frequent].mean() > 50 * draws[rare].mean()
    # Empirical frequencies follow the counts (q proportional to training target counts).
    q = counts.clamp(min=1)
    q[0] = 0
    torch.testing.assert_close(draws[frequent] / draws.sum(), (q / q.sum())[frequent], rtol=0.1, atol=0)
    uniform = build("ComiRecSA", ml100k, sampled_softmax_negatives=64)
    draws = torch.bincount(uniform.sample_negatives(400_000, torch.device("cpu")), minlength=model.n_items)
    assert draws[0] == 0 and draws[1:].min() > 0 and draws[frequent].float().mean() < 2 * draws[1:].float().mean()


# ---------------------------------------------------------------------- hard negatives


def test_hard_negative_weights_follow_remi(ml100k):
    model = build("ComiRecSA", ml100k, hard_negative_beta=2.0)
    pos = torch.tensor([1.0, 0.5], requires_grad=True)
    neg = torch.tensor([[3.0, 0.0, -1.0, float("-inf")], [0.2, 0.1, 0.0, -0.5]], requires_grad=True)
    loss = model.softmax_loss(pos, neg)

    # REMI's NCELoss.sampled_softmax_loss: Ng = sum(imp * exp(s)) / mean(imp), imp = exp(beta s).
    expected = []
    for i in range(2):
        s = neg[i][torch.isfinite(neg[i])]
        imp = torch.exp(2.0 * s)
        ng = (imp * torch.exp(s)).sum() / imp.mean()
        expected.append(-(pos[i] - torch.log(torch.exp(pos[i]) + ng)))
    torch.testing.assert_close(loss, torch.stack(expected).mean())

    # High-scoring negatives get more of the push-down than under the plain softmax, low-scoring
    # ones less (REMI does not detach the weights, so the lowest may even be pushed up a little).
    def grad(beta):
        model.hard_negative_beta = beta
        s = torch.tensor([[3.0, 1.0, 0.0, -1.0]], requires_grad=True)
        model.softmax_loss(torch.tensor([1.0]), s).backward()
        return s.grad[0]

    plain = grad(0.0)
    assert plain.min() > 0
    for beta in (0.5, 1.0, 4.0):
        hard = grad(beta)
        assert hard[0] > plain[0] + 0.2 and (hard[1:] < plain[1:]).all(), (beta, hard, plain)


def test_hard_negatives_change_the_full_softmax_loss(ml100k, batch):
    plain = build("ComiRecSA", ml100k)
    tiny = build("ComiRecSA", ml100k, hard_negative_beta=1e-6)
    hard = build("ComiRecSA", ml100k, hard_negative_beta=1.0)
    with torch.no_grad():
        for model in (plain, tiny, hard):  # spread the scores, as training does
            model.item_embedding.weight.mul_(100)
        base = plain.calculate_loss(batch)
        torch.testing.assert_close(tiny.calculate_loss(batch), base)  # beta -> 0 is the plain softmax
        assert hard.calculate_loss(batch) > base + 1e-3
    sampled = build("ComiRecSA", ml100k, hard_negative_beta=1.0, sampled_softmax_negatives=128)
    loss = sampled.calculate_loss(batch)
    loss.backward()
    assert torch.isfinite(loss) and sampled.item_embedding.weight.grad.abs().sum() > 0


# ---------------------------------------------------------------------- routing regulariser

ATTENTION_PARAMS = {"ComiRecSA": "W2.weight", "ComiRecDR": "routing.bilinear", "MIND": "routing.bilinear",
                    "TransMI": "pooling.2.weight"}


@pytest.mark.parametrize("name", BACKBONES)
def test_routing_regulariser(name, ml100k, batch):
    model = build(name, ml100k, routing_reg_weight=100.0).train()
    seq, seq_len = batch["item_id_list"], batch["item_length"]
    torch.manual_seed(1)
    plain = model.user_interests(seq, seq_len)
    torch.manual_seed(1)
    interests, routing = model.interests_and_routing(seq, seq_len)
    assert torch.equal(interests, plain)  # the hook changes nothing the loss sees
    n_routed = K - 1 if name == "TransMI" else K  # TransMI's first interest is SASRec's, not pooled
    assert routing.shape == (seq.size(0), n_routed, seq.size(1))
    assert (routing[(seq == 0).unsqueeze(1).expand_as(routing)] == 0).all()

    # One real item: every interest's weights sit on it, nothing varies, the penalty is 0.
    single = seq_len == 1
    assert single.any()
    assert model.routing_regularization(routing[single], seq[single]).item() == 0.0
    reg = model.routing_regularization(routing, seq)
    assert reg > 0
    reg.backward()
    grad = dict(model.named_parameters())[ATTENTION_PARAMS[name]].grad
    assert grad is not None and grad.abs().sum() > 0

    model.zero_grad()
    torch.manual_seed(1)
    rec, weighted = model.calculate_loss(batch)
    torch.testing.assert_close(weighted, 100.0 * reg.detach())
    plain_model = build(name, ml100k).train()
    torch.manual_seed(1)
    assert torch.equal(rec, plain_model.calculate_loss(batch))


def test_routing_regulariser_is_zero_for_even_attention(ml100k, batch):
    model = build("ComiRecSA", ml100k, routing_reg_weight=1.0)
    with torch.no_grad():
        model.W2.weight.zero_()  # equal logits: each interest spreads evenly over the real items
    _, routing = model.interests_and_routing(batch["item_id_list"], batch["item_length"])
    assert model.routing_regularization(routing, batch["item_id_list"]).item() < 1e-12
    # ... and a collapsed interest (all weight on one item) is penalised.
    collapsed = routing.detach().clone()
    collapsed[:, 0] = 0
    collapsed[:, 0, 0] = 1
    assert model.routing_regularization(collapsed, batch["item_id_list"]) > 1e-6


def test_capsule_routing_hook_keeps_the_recommendation_gradient(ml100k, batch):
    grads = []
    for weight in (0.0, 1.0):
        model = build("MIND", ml100k, routing_reg_weight=weight)
        losses = model.calculate_loss(batch)
        (losses if weight == 0 else losses[0]).backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    for n, g in grads[0].items():
        assert torch.equal(g, grads[1][n]), n


@pytest.mark.parametrize("backbone", ["ComiRecDR", "TransMI"])
def test_eimf_gets_the_options_through_its_backbone(backbone, ml100k, batch, tmp_path):
    options = {"routing_reg_weight": 10.0, "sampled_softmax_negatives": 64, "hard_negative_beta": 0.5}
    extra = {"sp_weight": 0, "ma_weight": 0, "esim_cache_dir": str(tmp_path / "esim"), **CHEAPER.get(backbone, {})}
    eimf = build("EIMF", ml100k, backbone=backbone, **options, **extra)
    alone = build(backbone, ml100k, **options, **extra)
    torch.manual_seed(5)
    rec, sp, ma, reg = eimf.calculate_loss(batch)
    torch.manual_seed(5)
    rec_alone, reg_alone = alone.calculate_loss(batch)
    assert sp == 0 and ma == 0
    assert torch.equal(rec, rec_alone) and torch.equal(reg, reg_alone) and reg > 0
    eimf_plain = build("EIMF", ml100k, backbone=backbone, **extra)
    assert len(eimf_plain.calculate_loss(batch)) == 3


# ---------------------------------------------------------------------- max readout


@pytest.mark.parametrize("name", BACKBONES)
def test_max_readout_trains_on_the_scores_inference_ranks_by(name, ml100k, batch):
    model = build(name, ml100k, train_readout="max").eval()  # eval: no dropout, same interests twice
    with torch.no_grad():
        model.item_embedding.weight.mul_(20)  # scores far from 0, as after training
        loss = model.calculate_loss(batch)
        ranked = model.full_sort_predict(batch)  # what the evaluator ranks the items by
    torch.testing.assert_close(loss, F.cross_entropy(ranked, batch["item_id"]))
    with torch.no_grad():
        assert not torch.allclose(loss, full_softmax_of_hard_readout(model, batch))


def test_max_readout_teaches_every_interest_target_readout_only_the_chosen_one(ml100k, batch):
    model = build("ComiRecSA", ml100k).eval()
    seq, seq_len = batch["item_id_list"], batch["item_length"]
    touched = {}
    for readout in ("target", "max"):
        model.train_readout = readout
        interests = model.user_interests(seq, seq_len).detach().requires_grad_(True)
        model.recommendation_loss(batch, interests).backward()
        touched[readout] = (interests.grad.abs().sum(-1) > 0).sum(1)  # interests with a gradient, per row
    assert (touched["target"] == 1).all()
    assert (touched["max"] > 1).float().mean() > 0.5


def test_max_readout_with_one_interest_is_the_target_readout(ml100k, batch):
    losses = []
    for readout in ("target", "max"):
        model = build("TransMI", ml100k, n_interests=1, train_readout=readout).eval()
        with torch.no_grad():
            losses.append(model.calculate_loss(batch))
    torch.testing.assert_close(losses[0], losses[1])


def test_max_readout_scores_sampled_negatives_by_the_best_interest(ml100k, batch):
    model = build("MIND", ml100k, train_readout="max", sampled_softmax_negatives=5, logq_correction=False).eval()
    ids = [3, 7, 11, 40, 41]
    fixed_negatives(model, ids)
    with torch.no_grad():
        loss = model.calculate_loss(batch)
        interests = model.user_interests(batch["item_id_list"], batch["item_length"])
        scores = torch.einsum("bkd,nd->bkn", interests, model.item_embedding.weight).amax(1)
    pos, negs = batch["item_id"], torch.tensor(ids)
    logits = torch.cat([scores.gather(1, pos.unsqueeze(1)), scores[:, negs].masked_fill(negs == pos.unsqueeze(1), float("-inf"))], 1)
    torch.testing.assert_close(loss, F.cross_entropy(logits, torch.zeros_like(pos)))


# ---------------------------------------------------------------------- end to end and config


@pytest.fixture(scope="module")
def few_batches(ml100k):
    """An epoch of three training batches of 512 (a whole ml-100k epoch takes minutes on 2 cores)."""
    from recbole.data.dataloader import TrainDataLoader

    train = ml100k[2]._dataset
    config = make_config("ComiRecSA", train_batch_size=512)
    return TrainDataLoader(config, train.copy(train.inter_feat[: 3 * 512]), None, shuffle=True)


@pytest.mark.parametrize(
    "name, options",
    [
        ("TransMI", {"sampled_softmax_negatives": 256}),
        ("ComiRecSA", {"sampled_softmax_negatives": 256, "sampled_softmax_distribution": "popularity",
                       "logq_correct_positive": True}),
        ("ComiRecSA", {"hard_negative_beta": 1.0}),
        ("TransMI", {"train_readout": "max", "hard_negative_beta": 1.0}),
        ("ComiRecDR", {"train_readout": "max", "sampled_softmax_negatives": 256}),
        ("MIND", {"routing_reg_weight": 1000.0}),
        ("ComiRecDR", {"embedding_dropout": 0.3, "weight_decay": 1e-4, "embedding_size": 16}),
    ],
)
def test_each_option_trains_with_recbole_trainer(name, options, ml100k, few_batches, tmp_path):
    _, _, train, _, test = ml100k
    config = make_config(name, **options, epochs=1, learning_rate=0.005,
                         checkpoint_dir=str(tmp_path))
    torch.manual_seed(0)
    model = get_model(name)(config, train._dataset)
    trainer = get_trainer(config["MODEL_TYPE"], name)(config, model)
    before = model.item_embedding.weight.detach().clone()
    trainer.fit(few_batches, None, saved=False, verbose=False)
    assert math.isfinite(trainer.train_loss_dict[0])
    assert not torch.equal(before, model.item_embedding.weight)
    result = trainer.evaluate(test, load_best_model=False)
    assert all(0.0 <= v <= 1.0 for v in result.values()), result
    assert trainer.optimizer.param_groups[0]["weight_decay"] == options.get("weight_decay", 0.0)
    assert model.item_embedding.embedding_dim == options.get("embedding_size", SMALL["embedding_size"])
    if "embedding_dropout" in options:
        assert model.embedding_dropout.p == options["embedding_dropout"]


@pytest.mark.parametrize(
    "name, overrides, key",
    [
        ("ComiRecSA", {"sampled_softmax_negatives": -1}, "sampled_softmax_negatives"),
        ("ComiRecSA", {"sampled_softmax_negatives": 2.5}, "sampled_softmax_negatives"),
        ("MIND", {"sampled_softmax_distribution": "zipf"}, "sampled_softmax_distribution"),
        ("ComiRecDR", {"logq_correction": "yes"}, "logq_correction"),
        ("TransMI", {"hard_negative_beta": -0.5}, "hard_negative_beta"),
        ("ComiRecSA", {"routing_reg_weight": -1}, "routing_reg_weight"),
        ("ComiRecSA", {"embedding_dropout": 1.0}, "embedding_dropout"),
        ("ComiRecSA", {"embedding_dropout": -0.1}, "embedding_dropout"),
        ("ComiRecSA", {"weight_decay": -1e-4}, "weight_decay"),
        ("ComiRecSA", {"loss_type": "BPR", "sampled_softmax_negatives": 10}, "sampled_softmax_negatives"),
        ("TransMI", {"n_interests": 1, "routing_reg_weight": 1.0}, "routing_reg_weight"),
        ("EIMF", {"backbone": "MIND", "routing_reg_weight": -2}, "routing_reg_weight"),
        ("ComiRecSA", {"train_readout": "mean"}, "train_readout"),
        ("ComiRecSA", {"full_softmax_max_items": 0}, "full_softmax_max_items"),
    ],
)
def test_bad_values_are_rejected_at_construction(name, overrides, key, ml100k):
    with pytest.raises(ConfigError, match=key):
        build(name, ml100k, **overrides)


@pytest.mark.parametrize("name", BACKBONES)
def test_small_catalogues_keep_the_full_softmax(name, ml100k):
    """ml-100k (1,682 items) and amazon-beauty (12,101) train exactly as before the key existed."""
    assert make_config("EIMF")["full_softmax_max_items"] > 12_101
    model = build(name, ml100k, train_readout="max")
    assert model.sampled_negatives == 0 and not hasattr(model, "sampling_log_q")


def test_above_full_softmax_max_items_the_sampled_softmax_is_chosen_and_says_so(ml100k, batch, caplog):
    import recbole_eimf.model.abstract_recommender as base

    with caplog.at_level("INFO", logger=base.__name__):
        model = build("TransMI", ml100k, full_softmax_max_items=1000, train_readout="max")
    assert model.sampled_negatives == base.AUTO_SAMPLED_NEGATIVES
    assert "1,682 items > `full_softmax_max_items` 1,000" in caplog.text
    assert "logQ correction" in caplog.text and "raise `full_softmax_max_items`" in caplog.text
    assert model.logq_correction
    # The sampled path trains: the negatives' logits are [B, 4096], not [B, n_items].
    seen = []
    model.item_scores = lambda user, items: seen.append(items.shape[0]) or base.MultiInterestRecommender.item_scores(user, items)
    loss = model.calculate_loss(batch)
    loss.backward()
    assert seen == [base.AUTO_SAMPLED_NEGATIVES] and torch.isfinite(loss)
    # An explicit count wins, and BPR has no softmax to replace.
    assert build("TransMI", ml100k, full_softmax_max_items=1000, sampled_softmax_negatives=64).sampled_negatives == 64
    assert build("ComiRecSA", ml100k, full_softmax_max_items=1000, loss_type="BPR").sampled_negatives == 0


