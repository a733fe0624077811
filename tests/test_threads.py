"""The run's torch thread count (recbole_eimf/threads.py): never more than the free cores."""

import pytest
import torch

from recbole_eimf import threads
from recbole_eimf.errors import ConfigError


def test_free_cores_leave_out_the_load_of_other_processes():
    assert threads.free_cores(cores=2, load=0.3) == 2  # idle: this run's own load only
    assert threads.free_cores(cores=2, load=1.6) == 1  # one other busy process
    assert threads.free_cores(cores=2, load=7.9) == 1  # a shared machine: never 0
    assert threads.free_cores(cores=16, load=4.2) == 12


def test_threads_setting_the_environment_and_auto(monkeypatch):
    monkeypatch.setattr(threads, "_GIVEN", [4])
    monkeypatch.setattr(threads, "usable_cores", lambda: 16)
    assert threads.choose_threads(3, environ={}) == (3, "threads")
    monkeypatch.setattr(threads, "free_cores", lambda: 1)
    count, why = threads.choose_threads(None, environ={})
    assert count == 1 and why.startswith("auto: 1 of")
    monkeypatch.setattr(threads, "free_cores", lambda: 8)
    assert threads.choose_threads("auto", environ={})[0] == 4, "never more than the process was given"
    monkeypatch.setattr(threads, "_GIVEN", [16])
    monkeypatch.setattr(threads, "free_cores", lambda: 16)
    assert threads.choose_threads(None, environ={})[0] == 8, "never more than half the cores"
    monkeypatch.setattr(threads, "usable_cores", lambda: 2)
    assert threads.choose_threads(None, environ={})[0] == 1, "two runs started together must not both take 2"
    assert threads.choose_threads(None, environ={"OMP_NUM_THREADS": "1"}) == (torch.get_num_threads(), "OMP_NUM_THREADS")
    for bad in (0, "many", True, 1.5):
        with pytest.raises(ConfigError, match="`threads`"):
            threads.choose_threads(bad, environ={})


def test_a_run_sets_and_logs_its_threads(monkeypatch):
    before = torch.get_num_threads()
    monkeypatch.setattr(threads, "_GIVEN", [before])
    try:
        assert threads.apply_threads({"threads": 1}) == "threads: 1 (threads)"
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
