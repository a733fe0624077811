"""Dataset creation: RecBole's, with the plugin's download handling in front."""

from recbole.data import create_dataset as recbole_create_dataset
from recbole.data import data_preparation

from recbole_eimf.data.atomic_files import check_atomic_files
from recbole_eimf.data.download import ensure_dataset
from recbole_eimf.data.splits import RECBOLE_EMPTY_FEAT, check_splits, empty_after_filtering
from recbole_eimf.errors import DatasetNotFoundError


def create_dataset(config):
    """Like ``recbole.data.create_dataset``, but fetches or explains a missing dataset first and
    names the file, line and field of a malformed atomic file (:mod:`recbole_eimf.data.atomic_files`)."""
    ensure_dataset(config)
    check_atomic_files(config)
    try:
        return recbole_create_dataset(config)
    except ValueError as err:
        if str(err).startswith(RECBOLE_EMPTY_FEAT):
            raise empty_after_filtering(config, config["dataset"]) from None
        raise


__all__ = ["check_splits", "create_dataset", "data_preparation", "ensure_dataset", "DatasetNotFoundError"]
