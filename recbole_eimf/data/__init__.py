"""Dataset creation: RecBole's, with the plugin's download handling in front."""

from recbole.data import create_dataset as recbole_create_dataset
from recbole.data import data_preparation

from recbole_eimf.data.atomic_files import check_atomic_files
from recbole_eimf.data.download import ensure_dataset
from recbole_eimf.errors import DatasetNotFoundError


def create_dataset(config):
    """Like ``recbole.data.create_dataset``, but fetches or explains a missing dataset first and
    names the file, line and field of a malformed atomic file (:mod:`recbole_eimf.data.atomic_files`)."""
    ensure_dataset(config)
    check_atomic_files(config)
    return recbole_create_dataset(config)


__all__ = ["create_dataset", "data_preparation", "ensure_dataset", "DatasetNotFoundError"]
