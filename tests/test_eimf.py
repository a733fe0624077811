"""EIMF: backbone + semantic prediction + modality alignment, LLM-free inference."""

import shutil

import pytest
import torch

from recbole.utils import init_seed

from recbole_eimf.compat import trusted_load
from recbole_eimf.config import Config
from recbole_eimf.data import create_dataset, data_preparation
from recbole_eimf.errors import ConfigError
from recbole_eimf.quick_start import build_model, load_data_and_model, run_recbole_eimf
from recbole_eimf.utils import get_model, get_trainer

from conftest import SMALL


def esim_settings(cache_dir):
    """Real ESIM on ml-100k without an LLM: extractive interests, tf-idf text encoder."""
    return {
        "llm_backend": "extractive",
        "text_encoder": "tfidf",
        "n_clusters": 4,
        "users_per_cluster": 5,
        "n_concepts": 8,
        "esim_cache_dir": str(cache_dir),
    }


def eimf_config(cache_dir, **extra):
    return Config(model="EIMF", dataset="ml-100k", config_dict={**SMALL, **esim_settings(cache_dir), **extra})


def test_backbone_defaults_load_under_eimf():
    config = Config(model="EIMF", dataset="ml-100k", config_dict={"backbone": "MIND"})
    assert config["routing_iterations"] == 3 and config["relu_layer"] is False
    assert config["sp_weight"] == 0.5 and config["ma_weight"] == 0.5
    assert Config(model="EIMF", dataset="ml-100k")["include_last"] is True  # TransMI, the default backbone


@pytest.mark.parametrize(
    "overrides, key",
    [
        ({"backbone": "SASRec"}, "backbone"),
        ({"sp_weight": -0.1}, "sp_weight"),
        ({"ma_weight": -1}, "ma_weight"),
        ({"n_interests": 0}, "n_interests"),
        ({"sp_temperature": 0}, "sp_temperature"),
        ({"ma_contrast": "no"}, "ma_contrast"),
        ({"aux_interests": "last"}, "aux_interests"),
        ({"aux_interests": "pooled", "backbone": "ComiRecSA"}, "aux_interests"),  # every interest pools
        ({"aux_interests": "pooled", "backbone": "TransMI", "include_last": False}, "aux_interests"),
    ],
)
def test_bad_config_fails_before_training_naming_the_key(overrides, key, ml100k, tmp_path):
    config = eimf_config(tmp_path / "esim", **overrides)
    with pytest.raises(ConfigError, match=key):
        build_model(config, ml100k[2]._dataset)
    if overrides.get("aux_interests") != "pooled":  # checked before the model's stages run (check_config)
        assert not (tmp_path / "esim").exists()  # ESIM did not run either


def test_eimf_scores_exactly_like_its_backbone(ml100k, tmp_path):
    train = ml100k[2]
    config = eimf_config(tmp_path / "esim", backbone="ComiRecDR")
    eimf = build_model(config, train._dataset).eval()
    backbone = get_model("ComiRecDR")(config, train._dataset).eval()
    eimf.backbone.load_state_dict(backbone.state_dict())
    batch = next(iter(train))
    with torch.no_grad():
        assert torch.equal(eimf.full_sort_predict(batch), backbone.full_sort_predict(batch))
        assert torch.equal(eimf.predict(batch), backbone.predict(batch))
        # Scoring must not read the semantic targets: poison them and score again.
        targets = eimf._semantic_targets()
        targets.concepts.fill_(float("nan"))
        targets.interests.fill_(float("nan"))
        assert torch.equal(eimf.full_sort_predict(batch), backbone.full_sort_predict(batch))


def test_auxiliary_losses_reach_the_interests_only_for_users_with_targets(ml100k, tmp_path):
    train = ml100k[2]
    config = eimf_config(tmp_path / "esim")
    model = build_model(config, train._dataset).train()
    targets = model._semantic_targets()
    assert 0 < int(targets.has_target.sum()) < targets.has_target.numel()

    batch = next(iter(train))
    users = batch["user_id"]
    assert targets.has_target[users].any()
    rec, sp, ma = model.calculate_loss(batch)
    assert sp > 0 and ma > 0 and torch.isfinite(rec)
    (rec + sp + ma).backward()
    assert model.head.weight.grad is not None and model.head.weight.grad.abs().sum() > 0

    # A batch of users without targets adds nothing.
    keep = ~targets.has_target[users]
    plain = batch[keep.nonzero().squeeze(1)]
    _, sp0, ma0 = model.calculate_loss(plain)
    assert sp0.item() == 0.0 and ma0.item() == 0.0


def test_aux_decay_lowers_the_weights_epoch_by_epoch_to_zero(ml100k, tmp_path):
    train = ml100k[2]
    # This test iterates the shared loader: restore its shuffle state afterwards, so that later
    # tests see the batches they would see without it.
    state = train.generator.get_state()
    try:
        _check_aux_decay(train, tmp_path)
    finally:
        train.generator.set_state(state)


def _check_aux_decay(train, tmp_path):
    model = build_model(eimf_config(tmp_path / "esim", aux_decay_epochs=2), train._dataset).train()
    assert model.steps_per_epoch == sum(1 for _ in train)  # the batches RecBole's loader serves per epoch
    batch = next(iter(train))

    def losses_at(step):
        model.training_steps = step
        torch.manual_seed(0)  # the same dropout draws at every step
        return model.calculate_loss(batch)

    rec, sp, ma = losses_at(0)
    assert sp > 0 and ma > 0 and model.training_steps == 1
    rec_1, sp_1, ma_1 = losses_at(model.steps_per_epoch - 1)  # still epoch 0
    assert torch.equal(sp_1, sp) and torch.equal(ma_1, ma)
    rec_2, sp_2, ma_2 = losses_at(model.steps_per_epoch)  # epoch 1: half the weights
    assert torch.allclose(sp_2, 0.5 * sp) and torch.allclose(ma_2, 0.5 * ma) and torch.equal(rec_2, rec)
    rec_3, sp_3, ma_3 = losses_at(2 * model.steps_per_epoch)  # epoch 2: the backbone's loss alone
    assert sp_3.item() == 0.0 and ma_3.item() == 0.0 and torch.equal(rec_3, rec)

    # Scoring and evaluation do not advance the schedule.
    model.eval()
    model.training_steps = 0
    with torch.no_grad():
        model.calculate_loss(batch)
    assert model.training_steps == 0

    with pytest.raises(ConfigError, match="aux_decay_epochs"):
        build_model(eimf_config(tmp_path / "esim", aux_decay_epochs=-1), train._dataset)


def test_alignment_does_not_contrast_rows_that_share_a_semantic_target(ml100k, tmp_path):
    """Prefixes of one user's sequence share its semantic target: InfoNCE must not treat them as
    negatives of each other: two rows of one user contrast with nothing, two users do."""
    model = build_model(eimf_config(tmp_path / "esim"), ml100k[2]._dataset)
    torch.manual_seed(0)
    projected = torch.nn.functional.normalize(torch.randn(3, 4, 16), dim=-1)
    semantic = torch.nn.functional.normalize(torch.randn(2, 3, 16), dim=-1)
    mask = torch.ones(2, 3, dtype=torch.bool)

    def match_only(p, s, m):
        closest = torch.einsum("bjt,bkt->bjk", s, p).max(dim=2).values
        return ((1.0 - closest) * m).sum() / m.sum()

    # Rows 0 and 1: one user (same semantic target); alone they have no negatives at all.
    same_user = model.modality_alignment_loss(projected[:2], semantic[[0, 0]], mask[[0, 0]])
    assert torch.allclose(same_user, match_only(projected[:2], semantic[[0, 0]], mask[[0, 0]].float()))
    # Two users: each row has the other as a negative, so the contrastive term is there.
    two_users = model.modality_alignment_loss(projected[:2], semantic, mask)
    assert two_users - match_only(projected[:2], semantic, mask.float()) > 0.1
    # `ma_contrast: False` keeps the pull towards the closest interest and drops the InfoNCE term.
    model.ma_contrast = False
    assert torch.allclose(model.modality_alignment_loss(projected[:2], semantic, mask),
                          match_only(projected[:2], semantic, mask.float()))


def test_pooled_aux_interests_leave_sasrecs_interest_to_the_recommendation_loss(ml100k, tmp_path):
    """`aux_interests: pooled` on TransMI: the auxiliary losses do not depend on interest 0 (the
    last position's state) and do depend on the pooled ones; with `all` they depend on both."""
    train = ml100k[2]
    batch = next(iter(train))

    def aux_losses(aux_interests, shift):
        model = build_model(
            eimf_config(tmp_path / "esim", backbone="TransMI", aux_interests=aux_interests), train._dataset
        ).eval()  # no dropout: the same interests on every call
        plain = model.backbone.interests_and_losses

        def shifted(interaction):
            interests, losses = plain(interaction)
            interests = interests.clone()
            interests[:, shift] += 3.0  # move one interest far away
            return interests, losses

        with torch.no_grad():
            _, sp, ma = model.calculate_loss(batch)
            model.backbone.interests_and_losses = shifted
            _, sp_moved, ma_moved = model.calculate_loss(batch)
        assert sp > 0 and ma > 0
        return (sp, ma), (sp_moved, ma_moved)

    (sp, ma), (sp_moved, ma_moved) = aux_losses("pooled", shift=0)
    assert torch.equal(sp, sp_moved) and torch.equal(ma, ma_moved)
    (sp, ma), (sp_moved, ma_moved) = aux_losses("pooled", shift=2)
    assert not torch.allclose(sp, sp_moved) and not torch.allclose(ma, ma_moved)
    (sp, ma), (sp_moved, ma_moved) = aux_losses("all", shift=0)
    assert not torch.allclose(sp, sp_moved) and not torch.allclose(ma, ma_moved)


def train_and_test(model_name, tmp_path, **extra):
    config = Config(
        model=model_name,
        dataset="ml-100k",
        config_dict={**SMALL, **esim_settings(tmp_path / "esim"), "epochs": 2, "learning_rate": 0.005,
                     "checkpoint_dir": str(tmp_path / model_name), **extra},
    )
    train, valid, test = data_preparation(config, create_dataset(config))  # same shuffles for both runs
    init_seed(config["seed"], config["reproducibility"])
    model = get_model(model_name)(config, train._dataset)
    trainer = get_trainer(config["MODEL_TYPE"], model_name)(config, model)
    trainer.fit(train, valid, saved=False, verbose=False)
    return trainer.evaluate(test, load_best_model=False), model


def test_zero_weights_reproduce_the_backbone_exactly(tmp_path):
    backbone_result, backbone = train_and_test("ComiRecSA", tmp_path)
    eimf_result, eimf = train_and_test("EIMF", tmp_path, backbone="ComiRecSA", sp_weight=0, ma_weight=0)
    assert eimf_result == backbone_result
    for name, value in backbone.state_dict().items():
        assert torch.equal(eimf.backbone.state_dict()[name], value), name
    assert not (tmp_path / "esim").exists()  # no semantic targets needed, none built


def test_checkpoint_reloads_and_scores_without_esim_cache(tmp_path):
    cache = tmp_path / "esim"
    result = run_recbole_eimf(
        model="EIMF",
        dataset="ml-100k",
        config_dict={**SMALL, **esim_settings(cache), "epochs": 1, "checkpoint_dir": str(tmp_path / "saved")},
    )
    assert cache.exists()
    shutil.rmtree(cache)

    config, model, _, train_data, _, test_data = load_data_and_model(result["model_file"])
    assert model.training_steps == len(train_data) > 0  # one epoch's batches: a resumed run continues the decay
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    reloaded = trainer.evaluate(test_data, load_best_model=False)
    assert reloaded == pytest.approx(result["test_result"])
    assert not cache.exists()  # scoring built nothing

    if not torch.cuda.is_available():  # a checkpoint from a GPU reloads on a machine without one
        checkpoint = trusted_load(result["model_file"], map_location="cpu")
        checkpoint["config"]["device"] = torch.device("cuda")
        torch.save(checkpoint, tmp_path / "from-gpu.pth")
        config, model, _, _, _, test_data = load_data_and_model(str(tmp_path / "from-gpu.pth"))
        assert config["device"].type == "cpu" and model.head.weight.device.type == "cpu"
        trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
        assert trainer.evaluate(test_data, load_best_model=False) == pytest.approx(result["test_result"])
