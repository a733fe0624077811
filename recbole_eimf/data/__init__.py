"""Dataset creation: RecBole's, with the plugin's download handling in front."""

import importlib
import os

from recbole.data import create_dataset as recbole_create_dataset
from recbole.data import data_preparation
from recbole.utils import ModelType

from recbole_eimf.data.atomic_files import check_atomic_files
from recbole_eimf.data.download import ensure_dataset
from recbole_eimf.data.sequential import SequentialDataset
from recbole_eimf.data.splits import RECBOLE_EMPTY_FEAT, check_splits, empty_after_filtering
from recbole_eimf.errors import DatasetNotFoundError


def create_dataset(config):
    """Like ``recbole.data.create_dataset``, but fetches or explains a missing dataset first and
    names the file, line and field of a malformed atomic file (:mod:`recbole_eimf.data.atomic_files`)."""
    ensure_dataset(config)
    check_atomic_files(config)
    try:
        return _create(config)
    except ValueError as err:
        if str(err).startswith(RECBOLE_EMPTY_FEAT):
            raise empty_after_filtering(config, config["dataset"]) from None
        raise


def _create(config):
    """RecBole's ``create_dataset``, with the plugin's :class:`SequentialDataset` where RecBole
    would build its own from the atomic files (a saved dataset RecBole still reads itself)."""
    recbole_datasets = importlib.import_module("recbole.data.dataset")
    if config["MODEL_TYPE"] != ModelType.SEQUENTIAL or hasattr(recbole_datasets, config["model"] + "Dataset"):
        return recbole_create_dataset(config)
    saved = config["dataset_save_path"] or os.path.join(
        config["checkpoint_dir"], f'{config["dataset"]}-{SequentialDataset.__name__}.pth'
    )
    if os.path.exists(saved):
        return recbole_create_dataset(config)
    dataset = SequentialDataset(config)
    if config["save_dataset"]:
        dataset.save()
    return dataset


__all__ = ["check_splits", "create_dataset", "data_preparation", "ensure_dataset", "DatasetNotFoundError"]
