"""Shared fixtures: every test runs in its own folder with a clean command line."""

import os
import sys

import pytest

import recbole_eimf  # noqa: F401  (compat shims before RecBole)

if os.environ.get("PYTEST_XDIST_WORKER"):
    # Test processes share the cores (README: `-n 2`): one torch thread each, and in the processes
    # they start, as the harness gives each of its --jobs. OpenMP threads spinning for a core that
    # another process holds would slow every test down.
    import torch

    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)

# Small but real settings: ml-100k with short sequences trains in seconds on 2 CPU cores.
SMALL = {
    "MAX_ITEM_LIST_LENGTH": 10,
    "embedding_size": 32,
    "show_progress": False,
    "state": "WARNING",
}


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """RecBole reads --key=value from sys.argv and writes ./log and ./saved: keep both local."""
    monkeypatch.setattr(sys, "argv", ["pytest"])
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(scope="session")
def ml100k(tmp_path_factory):
    """ml-100k loaded and split once under the small settings: (config, dataset, train, valid, test)."""
    from recbole_eimf.config import Config
    from recbole_eimf.data import create_dataset, data_preparation

    argv, sys.argv = sys.argv, ["pytest"]
    try:
        config = Config(model="ComiRecSA", dataset="ml-100k", config_dict=dict(SMALL))
        dataset = create_dataset(config)
        train, valid, test = data_preparation(config, dataset)
    finally:
        sys.argv = argv
    return config, dataset, train, valid, test
