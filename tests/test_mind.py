"""MIND's validation collapse (docs/BENCHMARKS.md, "MIND: validation collapse and fix (CPU)").

With ComiRec's ReLU projection on, MIND's validation NDCG@20 on amazon-beauty peaked at epoch 0
(a popularity-like fit through the projection's bias) and fell while the training loss fell. The
default is now the squashed capsules scored directly, as ComiRec-DR does.
"""

import torch

from recbole_eimf.config import Config
from recbole_eimf.utils import get_model, get_trainer

from conftest import SMALL


def test_default_scores_the_squashed_capsules(ml100k):
    """The default config has no ReLU projection: interests are signed capsules of norm < 1."""
    _, _, train, _, _ = ml100k
    config = Config(model="MIND", dataset="ml-100k", config_dict=dict(SMALL))
    assert config["relu_layer"] is False
    torch.manual_seed(0)
    model = get_model("MIND")(config, train._dataset).eval()
    assert isinstance(model.projection, torch.nn.Identity)
    batch = next(iter(train))
    with torch.no_grad():
        interests = model.multi_interest(batch["item_id_list"], batch["item_length"])
    assert (interests.norm(dim=-1) < 1).all()
    assert (interests < 0).any()


def _valid_curve(name, train, valid, tmp_path, epochs, **overrides):
    config = Config(
        model=name,
        dataset="ml-100k",
        config_dict={**SMALL, "epochs": epochs, "checkpoint_dir": str(tmp_path), **overrides},
    )
    torch.manual_seed(config["seed"])
    model = get_model(name)(config, train._dataset)
    trainer = get_trainer(config["MODEL_TYPE"], name)(config, model)
    curve = []
    for epoch in range(epochs):
        model.train()
        trainer._train_epoch(train, epoch, show_progress=False)
        curve.append(trainer._valid_epoch(valid, show_progress=False)[1]["ndcg@20"])
    return curve


def test_validation_rises_above_epoch_zero_and_popularity(ml100k, tmp_path):
    """Two epochs of default MIND: valid NDCG@20 does not fall below epoch 0 and doubles popularity.

    Measured (2026-11-27): Pop 0.0165; MIND 0.0444 -> 0.0524. The old default
    (``relu_layer: True``) gives 0.0269 -> 0.0246 and fails both assertions.
    """
    _, _, train, valid, _ = ml100k
    (pop,) = _valid_curve("Pop", train, valid, tmp_path, 1)
    curve = _valid_curve("MIND", train, valid, tmp_path, 2, learning_rate=0.005)
    assert curve[-1] >= curve[0], curve
    assert curve[-1] > 2 * pop, (curve, pop)
