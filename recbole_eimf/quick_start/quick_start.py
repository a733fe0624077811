"""Train-and-test entry points, as ``recbole.quick_start`` offers them (without importing ray)."""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, Optional, Sequence, Union

import torch

from recbole.utils import init_logger, init_seed, set_color

from recbole_eimf import distributed
from recbole_eimf.checkpoint import check_fingerprint, read_checkpoint, stamp_fingerprint
from recbole_eimf.config import Config
from recbole_eimf.data import check_splits, create_dataset, data_preparation
from recbole_eimf.data.length_grouping import apply_length_grouping
from recbole_eimf.environment import log_environment
from recbole_eimf.memory import check_memory
from recbole_eimf.quick_start.stages import prepare_stages, stage_provenance
from recbole_eimf.threads import apply_threads
from recbole_eimf.trim import apply_trim_padding
from recbole_eimf.utils import get_model, get_trainer


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


def start_run(config) -> Dict[str, Any]:
    """Seed, then log the command line, the config and the environment: how every run of the
    plugin starts (training, tuning trials, benchmark runs, ESIM alone). Returns the environment
    (:mod:`recbole_eimf.environment`) for the run's record."""
    init_seed(config["seed"], config["reproducibility"])
    logger = logging.getLogger()
    logger.info(sys.argv)
    logger.info(config)
    logger.info(apply_threads(config))  # before the environment is recorded: it names the threads
    return log_environment(logger, config["device"])


@dataclass
class PreparedRun:
    """A run's data splits and model, and what the model's pipeline stages handed it."""

    dataset: Any
    train_data: Any
    valid_data: Any
    test_data: Any
    model: torch.nn.Module
    stage_outputs: Dict[str, Any] = field(default_factory=dict)

    def provenance(self) -> Dict[str, Any]:
        """What produced each stage output (e.g. EIMF's semantic targets), for records."""
        return stage_provenance(self.stage_outputs)


def build_model(config, train_dataset, stage_outputs: Optional[Dict[str, Any]] = None) -> torch.nn.Module:
    """The config's model on ``config["device"]``, built from a fixed seed after its stages ran,
    running on trimmed batches where that gives the same outputs (``trim_padding``).

    ``stage_outputs``: what :func:`~recbole_eimf.quick_start.stages.prepare_stages` returned; run
    here when None. A model that declares no stage gets none."""
    if stage_outputs is None:
        stage_outputs = prepare_stages(config, train_dataset)
    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    model = get_model(config["model"])(config, train_dataset, **stage_outputs).to(config["device"])
    logging.getLogger().info(apply_trim_padding(model, config))  # on trimmed batches where that is exact
    return model


def prepare_run(config) -> PreparedRun:
    """Dataset, splits, pipeline stages and model of one run, in ``run_recbole``'s order and seeding.

    Every training entry point (:func:`run_recbole_eimf`, the tuner, the benchmark harness)
    builds its run here, so they train the same model from the same seed."""
    logger = logging.getLogger()
    dataset = create_dataset(config)
    logger.info(dataset)
    stamp_fingerprint(config, dataset)  # saved with every checkpoint: see load_data_and_model
    train_data, valid_data, test_data = data_preparation(config, dataset)
    check_splits(config, dataset, train_data, valid_data, test_data)  # before a stage (ESIM) needs histories
    stage_outputs = prepare_stages(config, train_data._dataset, logger)
    logger.info(apply_length_grouping(train_data, config))
    model = build_model(config, train_data._dataset, stage_outputs)
    logger.info(model)
    check_memory(config, model, train_data)  # a run that cannot fit stops here, naming the key
    return PreparedRun(dataset, train_data, valid_data, test_data, model, stage_outputs)


@dataclass
class TrainedRun:
    """What :func:`train_and_test` measured: RecBole's results and the test pass's seconds."""

    best_valid_score: Optional[float]
    best_valid_result: Optional[dict]
    test_result: Optional[dict]
    test_seconds: float


def _synchronize(device) -> None:
    if torch.cuda.is_available() and str(device).startswith("cuda"):
        torch.cuda.synchronize(device)


def train_and_test(config, run: PreparedRun, trainer, saved: bool = True) -> TrainedRun:
    """Fit with early stopping on the validation split, then test the best checkpoint (the last
    model when ``saved`` is False); logs both results. The test pass (full-sort inference,
    loading the checkpoint included) is timed."""
    logger = logging.getLogger()
    distributed.share_checkpoint(trainer)  # every rank loads the checkpoint rank 0 writes
    best_valid_score, best_valid_result = trainer.fit(
        run.train_data, run.valid_data, saved=saved, show_progress=config["show_progress"]
    )
    distributed.barrier(config)  # rank 0's last checkpoint is written before any rank loads it
    _synchronize(config["device"])
    started = time.perf_counter()
    test_result = trainer.evaluate(run.test_data, load_best_model=saved, show_progress=config["show_progress"])
    _synchronize(config["device"])
    seconds = time.perf_counter() - started
    distributed.finish(config)
    logger.info(set_color("best valid ", "yellow") + f": {best_valid_result}")
    logger.info(set_color("test result", "yellow") + f": {test_result}")
    return TrainedRun(best_valid_score, best_valid_result, test_result, seconds)


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
    init_logging(config)
    environment = start_run(config)
    if launch.distributed:
        distributed.build_stages_first(config, logging.getLogger())  # once, not by every rank at the same moment
    if config["single_spec"] and launch.distributed:
        logging.getLogger().info(f"training on {launch.nproc} rank(s) of {launch.world_size}")
        return distributed.spawn_ranks(run_recbole_eimf, launch, config_dict, model=model, dataset=dataset,
                                       config_file_list=config_file_list, saved=saved)
    run = prepare_run(config)
    trainer = distributed.make_trainer(get_trainer(config["MODEL_TYPE"], config["model"]), config, run.model)
    result = train_and_test(config, run, trainer, saved=saved)
    return {
        "best_valid_score": result.best_valid_score,
        "valid_score_bigger": config["valid_metric_bigger"],
        "best_valid_result": result.best_valid_result,
        "test_result": result.test_result,
        "model_file": trainer.saved_model_file if saved else None,
        "environment": environment,
    }


def run_esim_stage(
    model: Optional[str] = None,
    dataset: Optional[str] = None,
    config_file_list: Optional[Sequence[str]] = None,
    config_dict: Optional[dict] = None,
    dry_run: Optional[bool] = None,
) -> str:
    """``run_recbole_eimf.py --stage=esim``: ESIM alone, on the training split training would use
    (same ``eval_args``). Builds the semantic targets (or loads them from the cache) and writes
    the cache and the readable interests file; with ``dry_run`` it reports the users it would
    send, their prompt tokens and the estimated cost, and makes no request. Returns the text to
    show."""
    from recbole_eimf.esim import EsimSettings, run_esim
    from recbole_eimf.esim import dry_run as esim_dry_run

    config = Config(model=model, dataset=dataset, config_file_list=config_file_list, config_dict=config_dict)
    init_logging(config)
    start_run(config)
    settings = EsimSettings.from_config(config)  # check ESIM's keys before loading any data
    data = create_dataset(config)
    logging.getLogger().info(data)
    train_dataset = data.build()[0]
    if dry_run is None:
        dry_run = bool(config["dry_run"])
    if dry_run:
        return esim_dry_run(settings, train_dataset).format()
    return run_esim(settings, train_dataset).summary


def load_data_and_model(model_file: str):
    """Reload a checkpoint written by :func:`run_recbole_eimf` with its data (RecBole's helper).

    Returns ``(config, model, dataset, train_data, valid_data, test_data)``. Raises
    :class:`~recbole_eimf.errors.CheckpointError` for a file that is not a readable checkpoint, or
    when the dataset's users and items are not those the model was trained on.
    """
    checkpoint = read_checkpoint(model_file)
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
    check_fingerprint(config, dataset, model_file)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    init_seed(config["seed"], config["reproducibility"])
    model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    model.load_state_dict(checkpoint["state_dict"])
    model.load_other_parameter(checkpoint.get("other_parameter"))
    apply_trim_padding(model, config)
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
