"""Short real training runs on ml-100k with RecBole's own trainer and evaluator."""

import math

import pytest
import torch

from recbole_eimf.config import Config
from recbole_eimf.utils import get_model, get_trainer

from conftest import SMALL

# A one-layer transformer keeps TransMI's CPU time near the other backbones'.
CHEAPER = {"TransMI": {"n_layers": 1, "inner_size": 64}}


@pytest.mark.parametrize("name", ["ComiRecSA", "ComiRecDR", "MIND", "TransMI"])
def test_loss_falls_and_test_metrics_beat_random(name, ml100k, tmp_path):
    _, dataset, train, valid, test = ml100k
    config = Config(
        model=name,
        dataset="ml-100k",
        config_dict={**SMALL, **CHEAPER.get(name, {}), "epochs": 3, "learning_rate": 0.005, "checkpoint_dir": str(tmp_path)},
    )
    torch.manual_seed(config["seed"])
    model = get_model(name)(config, train._dataset)
    trainer = get_trainer(config["MODEL_TYPE"], name)(config, model)
    trainer.fit(train, valid, saved=True, verbose=False)
    result = trainer.evaluate(test, load_best_model=True)

    losses = trainer.train_loss_dict
    assert losses[2] < losses[0], losses
    assert all(math.isfinite(v) and 0.0 <= v <= 1.0 for v in result.values()), result
    # Ranking 1,682 movies at random gives Recall@50 of about 0.03.
    assert result["recall@50"] > 0.06, result


def test_training_log_names_each_loss_part(ml100k):
    # RecBole logs a tuple loss as train_loss1, train_loss2, ...: the plugin's trainer names the
    # parts a model declares, and leaves single losses and models without names as RecBole does.
    _, _, train, _, _ = ml100k
    config = Config(model="ComiRecSA", dataset="ml-100k", config_dict={**SMALL, "routing_reg_weight": 0.1})
    model = get_model("ComiRecSA")(config, train._dataset)
    trainer = get_trainer(config["MODEL_TYPE"], "ComiRecSA")(config, model)
    line = trainer._generate_train_loss_output(3, 0.0, 1.5, (7.25, 0.125))
    assert "recommendation" in line and "7.2500" in line and "routing_regularization" in line and "0.1250" in line
    assert "train_loss1" not in line
    assert "train loss" in trainer._generate_train_loss_output(3, 0.0, 1.5, 7.25)

    sasrec_config = Config(model="SASRec", dataset="ml-100k", config_dict=dict(SMALL))
    sasrec = get_trainer(sasrec_config["MODEL_TYPE"], "SASRec")(sasrec_config, get_model("SASRec")(sasrec_config, train._dataset))
    assert "train_loss1" in sasrec._generate_train_loss_output(3, 0.0, 1.5, (7.25, 0.125))
