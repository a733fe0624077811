"""Train-and-test entry points, as ``recbole.quick_start`` offers them (without importing ray)."""

from __future__ import annotations

import contextlib
import logging
import sys
from typing import Iterator, Optional, Sequence, Tuple, Union

import torch

from recbole.utils import init_logger, init_seed, set_color

from recbole_eimf import distributed
from recbole_eimf.compat import trusted_load
from recbole_eimf.config import Config
from recbole_eimf.data import create_dataset, data_preparation
from recbole_eimf.environment import log_environment
from recbole_eimf.utils import get_model, get_trainer

REPORTED_SPLITS = ("best_valid_result", "test_result")


def init_logging(config) -> None:
    """RecBole's ``init_logger``, also for the second and later runs in one process.

    ``init_logger`` ends in ``logging.basicConfig``, which does nothing once the root logger has
    handlers, so a second run would keep logging into the first run's file. The handlers a
    previous ``init_logger`` installed (plain stream and file handlers) are removed first; other
    handlers (pytest's, a user's) stay.
    """
    root = logging.getLogger()
    for handler in list(root.handlers):
        if type(handler) in (logging.StreamHandler, logging.FileHandler):
            root.removeHandler(handler)
            handler.close()
    init_logger(config)


@contextlib.contextmanager
def run_logging(config) -> Iterator[logging.Logger]:
    """RecBole's console and file logging for one run, taken down again when the run ends.

    For callers that run many trainings in one process (the benchmark harness): each run logs to
    its own file, and nothing of a finished run's logging is left behind. Yields the root logger.
    """
    root = logging.getLogger()
    before = list(root.handlers)
    init_logging(config)
    added = [handler for handler in root.handlers if handler not in before]
    try:
        yield root
    finally:
        for handler in added:
            root.removeHandler(handler)
            handler.close()


def prepare_run(config) -> Tuple[object, object, object, object, torch.nn.Module]:
    """Dataset, splits and model of one run, in ``run_recbole``'s order and with its seeding.

    Returns ``(dataset, train_data, valid_data, test_data, model)``; the model is on
    ``config["device"]``. Every training entry point of the plugin (:func:`run_recbole_eimf`, the
    benchmark harness) builds its run here, so they train the same model from the same seed.
    """
    logger = logging.getLogger()
    dataset = create_dataset(config)
    logger.info(dataset)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    logger.info(model)
    return dataset, train_data, valid_data, test_data, model


def run_recbole_eimf(
    model: Union[str, type, None] = None,
    dataset: Optional[str] = None,
    config_file_list: Optional[Sequence[str]] = None,
    config_dict: Optional[dict] = None,
    saved: bool = True,
) -> dict:
    """Train ``model`` on ``dataset``, then test its best checkpoint (RecBole's ``run_recbole``).

    Any RecBole model or plugin model can be named. Returns the same dict as RecBole's
    ``run_recbole``: ``best_valid_score``, ``valid_score_bigger``, ``best_valid_result`` and
    ``test_result``, plus ``model_file`` (the saved checkpoint, when ``saved``) and
    ``environment`` (versions, processor and threads: :mod:`recbole_eimf.environment`).

    With ``nproc`` > 1 (or ``world_size``) it trains on that many ranks of this machine
    (:mod:`recbole_eimf.distributed`) and returns rank 0's result.
    """
    config = Config(model=model, dataset=dataset, config_file_list=config_file_list, config_dict=config_dict)
    launch = distributed.launch_settings(config)
    if config["single_spec"] and launch.distributed:
        distributed.check_launch(config, launch)
    init_seed(config["seed"], config["reproducibility"])
    init_logging(config)
    logger = logging.getLogger()
    logger.info(sys.argv)
    logger.info(config)
    if launch.distributed:
        distributed.build_esim_first(config, logger)  # once, not by every rank at the same moment
    if config["single_spec"] and launch.distributed:
        logger.info(f"training on {launch.nproc} rank(s) of {launch.world_size}")
        return distributed.spawn_ranks(run_recbole_eimf, launch, config_dict, model=model, dataset=dataset,
                                       config_file_list=config_file_list, saved=saved)
    environment = log_environment(logger, config["device"])

    _, train_data, valid_data, test_data, model = prepare_run(config)
    trainer = distributed.make_trainer(get_trainer(config["MODEL_TYPE"], config["model"]), config, model)
    distributed.share_checkpoint(trainer)
    best_valid_score, best_valid_result = trainer.fit(
        train_data, valid_data, saved=saved, show_progress=config["show_progress"]
    )
    distributed.barrier(config)  # rank 0's last checkpoint is written before any rank loads it
    test_result = trainer.evaluate(test_data, load_best_model=saved, show_progress=config["show_progress"])
    distributed.finish(config)

    logger.info(set_color("best valid ", "yellow") + f": {best_valid_result}")
    logger.info(set_color("test result", "yellow") + f": {test_result}")
    return {
        "best_valid_score": best_valid_score,
        "valid_score_bigger": config["valid_metric_bigger"],
        "best_valid_result": best_valid_result,
        "test_result": test_result,
        "model_file": trainer.saved_model_file if saved else None,
        "environment": environment,
    }


def load_data_and_model(model_file: str):
    """Reload a checkpoint written by :func:`run_recbole_eimf` with its data (RecBole's helper).

    Returns ``(config, model, dataset, train_data, valid_data, test_data)``.
    """
    checkpoint = trusted_load(model_file, map_location="cpu")
    config = checkpoint["config"]
    distributed.as_single_process(config)  # trained on several ranks: reloaded in one process
    if torch.device(config["device"]).type == "cuda" and not torch.cuda.is_available():
        # Trained on a GPU, reloaded where there is none (e.g. to analyse it on a laptop).
        logging.getLogger(__name__).warning(
            f"{model_file} was trained on {config['device']}; there is no GPU here: loading it on the CPU"
        )
        config["device"] = torch.device("cpu")
    init_seed(config["seed"], config["reproducibility"])
    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    init_seed(config["seed"], config["reproducibility"])
    model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    model.load_state_dict(checkpoint["state_dict"])
    model.load_other_parameter(checkpoint.get("other_parameter"))
    return config, model, dataset, train_data, valid_data, test_data


def format_results(result: dict) -> str:
    """A plain-text table of the validation and test metrics of a :func:`run_recbole_eimf` result."""
    valid = result.get("best_valid_result") or {}
    test = result.get("test_result") or {}
    metrics = list(test) or list(valid)
    width = max([len("metric")] + [len(m) for m in metrics])
    lines = [f"{'metric':<{width}}  {'valid':>8}  {'test':>8}", f"{'-' * width}  {'-' * 8}  {'-' * 8}"]
    for name in metrics:
        v = f"{valid[name]:.4f}" if name in valid else "-"
        t = f"{test[name]:.4f}" if name in test else "-"
        lines.append(f"{name:<{width}}  {v:>8}  {t:>8}")
    return "\n".join(lines)
