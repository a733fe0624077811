"""Several benchmark runs at a time, each in a fresh process (``--jobs=N``).

A GPU that trains one small recommender is mostly idle: RecBole's data loading and the Python
around each batch keep one CPU core busy while the GPU waits. Running N (model, seed) runs side by
side on one GPU, each in its own process with its share of the CPU cores, finishes a benchmark
several times sooner. Results do not change: every run seeds itself as it would alone.

Each run is a ``spawn``-ed process (no CUDA state is forked) that redirects its stdout and stderr,
C-level output included, to ``<output_dir>/logs/<model>-seed<seed>.log``, and returns the run's
record to the parent, which alone appends it to ``runs.jsonl`` and writes the reports. A worker
whose parent is gone (killed by a signal, even SIGKILL) exits within a second instead of training
on unseen.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

logger = logging.getLogger(__name__)

LOGS_DIR = "logs"


@dataclass(frozen=True)
class Job:
    """One (model, seed) run and everything its process needs to make it."""

    model: str
    seed: int
    dataset: str
    config_files: Tuple[Path, ...]
    overrides: Tuple[Tuple[str, Any], ...]
    checkpoint_dir: Path
    defaults: Tuple[Tuple[str, Any], ...]
    log_file: Path
    threads: int


def cpu_threads_per_job(jobs: int, cpus: Optional[int] = None) -> int:
    """Each process's torch threads: the machine's cores shared out, at least one."""
    cpus = cpus or os.cpu_count() or 1
    return max(1, cpus // max(1, jobs))


def exit_with_parent(parent_pid: int, interval: float = 1.0) -> None:
    """Exit this process (status 1) soon after process ``parent_pid`` stops being its parent.

    A killed benchmark would otherwise leave its workers training on, holding cores and GPU
    memory, with no one left to record their results. An orphan is adopted by another process,
    which changes ``os.getppid()``: a daemon thread watches for that."""

    def watch() -> None:
        while True:
            time.sleep(interval)
            if os.getppid() != parent_pid:
                os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _run_job(job: Job) -> Dict[str, Any]:
    """Body of one worker process: output to the run's log file, then the run itself."""
    exit_with_parent(os.getppid())
    job.log_file.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    fd = os.open(job.log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    import torch

    torch.set_num_threads(job.threads)
    from recbole_eimf.benchmark.runner import run_one

    return run_one(
        job.model, job.dataset, job.seed, list(job.config_files), dict(job.overrides), job.checkpoint_dir,
        dict(job.defaults),
    )


def run_parallel(
    jobs: Sequence[Job], max_workers: int, on_done: Callable[[Job, Optional[Dict[str, Any]], Optional[BaseException]], bool]
) -> None:
    """Run ``jobs`` with at most ``max_workers`` processes, calling ``on_done`` in the parent.

    ``on_done(job, record, error)`` gets the finished run's record or its exception, in order of
    completion; if it returns False no further job is started (the running ones finish).
    """
    kwargs: Dict[str, Any] = {"max_workers": max_workers, "mp_context": multiprocessing.get_context("spawn")}
    if sys.version_info >= (3, 11):
        kwargs["max_tasks_per_child"] = 1  # a fresh process per run: all its memory (GPU too) goes back
    queue: Iterator[Job] = iter(jobs)
    running: Dict[Future, Job] = {}
    go_on = True
    with ProcessPoolExecutor(**kwargs) as pool:

        def submit_next() -> None:
            job = next(queue, None)
            if job is not None:
                logger.info(f"started {job.model} seed {job.seed} (log: {job.log_file})")
                running[pool.submit(_run_job, job)] = job

        for _ in range(max_workers):
            submit_next()
        while running:
            done, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for future in done:
                job = running.pop(future)
                try:
                    record, error = future.result(), None
                except BrokenProcessPool as err:  # a worker died (killed, out of memory): the pool is gone
                    record, error = None, err
                    go_on = False
                except Exception as err:  # noqa: BLE001  (reported by on_done, like a sequential failure)
                    record, error = None, err
                go_on = on_done(job, record, error) and go_on
                if go_on:
                    submit_next()


def make_jobs(
    pending: Sequence[Tuple[str, int]],
    dataset: str,
    files_per_model: Mapping[str, Sequence[Path]],
    overrides: Mapping[str, Any],
    checkpoint_dir: Callable[[str, int], Path],
    defaults: Mapping[str, Any],
    output_dir: Path,
    threads: int,
) -> List[Job]:
    return [
        Job(
            model=model, seed=seed, dataset=dataset, config_files=tuple(files_per_model[model]),
            overrides=tuple(overrides.items()), checkpoint_dir=checkpoint_dir(model, seed),
            defaults=tuple(defaults.items()), log_file=output_dir / LOGS_DIR / f"{model}-seed{seed}.log",
            threads=threads,
        )
        for model, seed in pending
    ]
