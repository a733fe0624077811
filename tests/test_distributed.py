"""Data-parallel training on gloo ranks (recbole_eimf.distributed), RecBole's own DDP path."""

import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from recbole.trainer import Trainer

from recbole_eimf import distributed
from recbole_eimf.config import Config
from recbole_eimf.errors import ConfigError
from recbole_eimf.quick_start import load_data_and_model, run_recbole_eimf
from recbole_eimf.utils import get_model, get_trainer

from conftest import SMALL
from test_eimf import esim_settings

# Dropout off and plain SGD: one step is then a function of the gradient alone.
STEP = {**SMALL, "hidden_dropout_prob": 0.0, "attn_dropout_prob": 0.0, "learner": "sgd", "learning_rate": 0.1}


class OneBatch(list):
    """A training 'dataloader' of one batch, for ``Trainer._train_epoch``."""

    shuffle = False


def _rank_step(local_rank, config, model, halves, port, queue):
    """One training step of RecBole's trainer on this rank's half of the batch; its gradients."""
    config.final_config_dict.update({"local_rank": local_rank, "world_size": 2, "nproc": 2, "port": port})
    distributed.init_rank(config.final_config_dict)
    trainer = distributed.make_trainer(Trainer, config, model)
    trainer._train_epoch(OneBatch([halves[local_rank]]), epoch_idx=0)
    queue.put((local_rank, {name: p.grad.numpy() for name, p in model.named_parameters()}))  # by value
    distributed.finish(config)


def test_two_gloo_ranks_with_half_the_batch_each_average_the_whole_batchs_gradient(ml100k):
    _, _, train, _, _ = ml100k
    config = Config(model="SASRec", dataset="ml-100k", config_dict=STEP)
    torch.manual_seed(0)
    model = get_model("SASRec")(config, train._dataset)
    batch = next(iter(train))[:64]
    model.calculate_loss(batch).backward()
    whole = {name: p.grad.clone() for name, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)

    queue = mp.get_context("spawn").SimpleQueue()
    halves = [batch[:32], batch[32:]]
    ranks = mp.spawn(_rank_step, args=(config, model, halves, distributed.free_port(), queue), nprocs=2, join=False)
    grads = dict(queue.get() for _ in range(2))  # before joining: a rank's put waits for this read
    while not ranks.join():
        pass
    for rank in (0, 1):
        for name, grad in whole.items():
            assert torch.allclose(torch.from_numpy(grads[rank][name]), grad, atol=1e-6, rtol=1e-4), (rank, name)
    # Not vacuous: either half alone gives another gradient.
    model.calculate_loss(halves[0]).backward()
    assert not torch.allclose(model.item_embedding.weight.grad, whole["item_embedding.weight"], atol=1e-6)


def _two_rank_run(model, tmp_path, **extra):
    """A 2-rank run of ``model`` (1 epoch, the ml-100k users of fewer than 60 ratings); and its
    checkpoint evaluated on the test set in this process."""
    result = run_recbole_eimf(model=model, dataset="ml-100k", config_dict={
        **SMALL, "epochs": 1, "nproc": 2, "port": distributed.free_port(), "user_inter_num_interval": "[0,60)",
        "checkpoint_dir": str(tmp_path / "saved"), **extra,
    })
    assert result is not None and result["model_file"]
    config, trained, _, _, _, test_data = load_data_and_model(result["model_file"])
    assert config["world_size"] == 2  # trained on the ranks
    alone = get_trainer(config["MODEL_TYPE"], config["model"])(config, trained).evaluate(test_data, load_best_model=False)
    return result, alone, len(test_data.dataset)


def assert_gathered(result, alone, users):
    """The test metrics gathered over both ranks are those of all test users: each rank holds half
    of them (one repeated to even the halves: at most 1/users) and the means are averaged."""
    assert set(result["test_result"]) == set(alone)
    for metric, value in alone.items():
        assert result["test_result"][metric] == pytest.approx(value, abs=1 / users + 1e-4), metric
    assert result["best_valid_result"]["recall@50"] > 0


def test_two_ranks_train_validate_and_test_a_backbone_with_the_evaluation_gathered(tmp_path):
    assert_gathered(*_two_rank_run("ComiRecSA", tmp_path))


def test_two_ranks_train_eimf_on_esim_targets_built_once_before_the_ranks(tmp_path, caplog):
    caplog.set_level("INFO")
    result, *gathered = _two_rank_run("EIMF", tmp_path, state="INFO", **esim_settings(tmp_path / "esim"))
    assert_gathered(result, *gathered)
    # This process built the targets, then started the ranks; rank 0 (which logs) loaded them.
    assert "semantic targets written to" in caplog.text and "training on 2 rank(s)" in caplog.text
    (rank0,) = [log for log in map(Path.read_text, (tmp_path / "log" / "EIMF").glob("*.log")) if "test result" in log]
    assert "semantic targets loaded from the cache" in rank0 and "semantic targets written to" not in rank0
    assert len(list((tmp_path / "esim").rglob("semantic_targets.pt"))) == 1


def test_more_ranks_than_cores_is_refused_naming_nproc():
    cores = len(os.sched_getaffinity(0))
    with pytest.raises(ConfigError, match=r"`nproc` \[%d\] is more than the %d CPU core" % (cores + 1, cores)):
        run_recbole_eimf(model="SASRec", dataset="ml-100k", config_dict={**SMALL, "nproc": cores + 1})


def test_a_port_in_use_is_refused_naming_port():
    with socket.socket() as taken:
        taken.bind(("localhost", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match=rf"`port` \[{port}\] .* not free"):
            run_recbole_eimf(model="SASRec", dataset="ml-100k", config_dict={**SMALL, "nproc": 2, "port": port})
