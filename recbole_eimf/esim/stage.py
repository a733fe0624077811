"""``run_recbole_eimf.py --stage=esim``: ESIM alone, on the training split of a dataset.

    python run_recbole_eimf.py --stage=esim --dataset=ml-100k
    python run_recbole_eimf.py --stage=esim --dataset=ml-100k --dry_run=True \\
        --llm_base_url=https://api.openai.com/v1 --llm_model=gpt-4o-mini \\
        --llm_price_per_1k_input_tokens=0.00015 --llm_price_per_1k_output_tokens=0.0006

Loads the config and the dataset, splits it as training would (same ``eval_args``), then builds
the semantic targets (or loads them from the cache) and writes the cache and the readable
interests file, logging where. With ``dry_run`` it reports the users it would send, their prompt
tokens and the estimated cost, and makes no request.
"""

from __future__ import annotations

import logging
import sys
from typing import Iterable, Optional, Sequence, Tuple

from recbole.utils import init_seed

from recbole_eimf.config import Config
from recbole_eimf.data import create_dataset
from recbole_eimf.esim.pipeline import dry_run as esim_dry_run
from recbole_eimf.esim.pipeline import run_esim
from recbole_eimf.esim.settings import EsimSettings
from recbole_eimf.quick_start.quick_start import init_logging


def run_esim_stage(
    model: Optional[str] = None,
    dataset: Optional[str] = None,
    config_file_list: Optional[Sequence[str]] = None,
    config_dict: Optional[dict] = None,
    dry_run: Optional[bool] = None,
) -> str:
    """Run ESIM alone (module doc); returns the text to show (summary, or the dry-run estimate)."""
    config = Config(model=model, dataset=dataset, config_file_list=config_file_list, config_dict=config_dict)
    init_seed(config["seed"], config["reproducibility"])
    init_logging(config)
    logger = logging.getLogger()
    logger.info(sys.argv)
    logger.info(config)
    settings = EsimSettings.from_config(config)  # check ESIM's keys before loading any data

    data = create_dataset(config)
    logger.info(data)
    train_dataset, _valid, _test = data.build()

    if dry_run is None:
        dry_run = bool(config["dry_run"])
    if dry_run:
        return esim_dry_run(settings, train_dataset).format()
    return run_esim(settings, train_dataset).summary


def build_esim_caches(configs: Iterable[Tuple[str, Config]], log: logging.Logger) -> None:
    """Build (or find) ESIM's cache once per distinct ESIM setting among ``configs`` (pairs of
    what a run is, e.g. a benchmark label or a trial's parameters, and its Config), in this
    process, before parallel trainings start: runs that start together then neither race on the
    cache nor pay an LLM twice. Configs with equal ESIM settings are built once; each build's
    summary goes to the caller's ``log``."""
    seen = []
    for what, config in configs:
        settings = EsimSettings.from_config(config)
        record = settings.config_record()
        if record in seen:
            continue
        seen.append(record)
        init_seed(config["seed"], config["reproducibility"])
        train_dataset = create_dataset(config).build()[0]
        log.info(f"ESIM for {what}: {run_esim(settings, train_dataset).summary}")
