"""Torch's intra-op thread count for a run (the ``threads`` key).

A thread that finds no free core stalls its siblings at every operator's barrier: on a shared
2-core machine a training epoch took 4.2x longer at 2 threads than at 1, while on an idle one 2
threads were no faster (docs/BENCHMARKS.md). So the automatic count never exceeds the cores that
are free when the run starts, nor the count this process was given (OMP_NUM_THREADS, the
harness's and the tuner's share per ``--jobs``), nor half the cores: the load average lags by a
minute, so two runs started together both see every core free (seen: 2 threads each on 2 cores,
an epoch 4x slower), and the half left over is what a neighbour started beside it gets.
"""

from __future__ import annotations

import os
from typing import Optional, Tuple

import torch

from recbole_eimf.errors import ConfigError


def usable_cores() -> int:
    """Cores this process may run on (its affinity mask), at least one."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def free_cores(cores: Optional[int] = None, load: Optional[float] = None) -> int:
    """Cores not busy with other processes: ``cores - load + 1`` (this process counts in the
    load it measures), rounded down, between 1 and ``cores``."""
    cores = cores or usable_cores()
    load = os.getloadavg()[0] if load is None else load
    return max(1, min(cores, int(cores - load + 1)))


def choose_threads(setting, environ=os.environ) -> Tuple[int, str]:
    """``(threads, why)`` for a ``threads`` setting: a count, or ``None`` / ``"auto"``."""
    if setting not in (None, "auto"):
        if isinstance(setting, bool) or not isinstance(setting, int) or setting < 1:
            raise ConfigError(f"`threads` must be a positive integer or 'auto', got {setting!r}")
        return setting, "threads"
    if environ.get("OMP_NUM_THREADS"):
        return torch.get_num_threads(), "OMP_NUM_THREADS"
    given, free, cores = _given_threads(), free_cores(), usable_cores()
    half = max(1, cores // 2)
    return min(given, free, half), f"auto: {free} of {cores} cores free, at most {min(given, half)}"


_GIVEN: list = []


def _given_threads() -> int:
    """Torch's thread count before the first run of this process chose one: later runs in the
    same process (the tuner, tests) start from it again, not from the previous run's choice."""
    if not _GIVEN:
        _GIVEN.append(torch.get_num_threads())
    return _GIVEN[0]


def apply_threads(config) -> str:
    """Set torch's thread count for the run from ``config["threads"]``; returns the log line."""
    _given_threads()
    threads, why = choose_threads(config["threads"])
    torch.set_num_threads(threads)
    return f"threads: {threads} ({why})"
