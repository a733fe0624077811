"""Trainings in fresh processes, N at a time: the benchmark's ``--jobs`` and the tuner's.

A GPU that trains one small recommender is mostly idle: RecBole's data loading and the Python
around each batch keep one CPU core busy while the GPU waits. Running N trainings side by side on
one GPU, each in its own process with its share of the CPU cores, finishes several times sooner.
Results do not change: every training seeds itself as it would alone.

Each training is a fresh ``spawn``-ed process (no CUDA state is forked; all its memory, GPU memory
included, goes back when it ends) that redirects its stdout and stderr, C-level output included,
to its job's log file, and sends its result to the parent, which alone records it. A training
whose process dies (the out-of-memory killer) fails alone; the others go on. A worker whose parent
is gone (killed by a signal, even SIGKILL) exits within a second instead of training on unseen.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, Optional, Sequence, Tuple

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Job:
    """One training (a benchmark run, a tuning trial) and everything its process needs to make it."""

    model: str
    seed: int
    dataset: str
    config_files: Tuple[Path, ...]
    overrides: Tuple[Tuple[str, Any], ...]
    checkpoint_dir: Path
    defaults: Tuple[Tuple[str, Any], ...]
    log_file: Path
    threads: int
    name: str = ""  # what the log calls it; default "<model> seed <seed>"

    @property
    def title(self) -> str:
        return self.name or f"{self.model} seed {self.seed}"


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


def worker_setup(job: Job) -> None:
    """First steps of any worker process: exit with the parent, send stdout and stderr (C-level
    output included) to the job's log file, and take the job's share of CPU threads."""
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


class WorkerDied(RuntimeError):
    """A run's process ended without sending its result (killed by a signal, out of memory)."""


def _exit_description(code: Optional[int]) -> str:
    if code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = ": out of memory, or killed by hand" if -code == signal.SIGKILL else ""
        return f"killed by {name}{hint}"
    return f"exit code {code}"


def _worker(target: Callable[[Job], Dict[str, Any]], job: Job, conn: Connection) -> None:
    """A run's process: ``target(job)``, then its record or its exception back to the parent."""
    try:
        message: Tuple[str, Any] = ("ok", target(job))
    except BaseException as err:  # noqa: BLE001  (the parent reports it, as a sequential failure)
        message = ("error", err)
    try:
        conn.send(message)
    except Exception:  # noqa: BLE001  (an exception that does not pickle: send its text)
        conn.send(("error", RuntimeError(f"{type(message[1]).__name__}: {message[1]}")))
    conn.close()


def run_parallel(
    jobs: Sequence[Job],
    max_workers: int,
    on_done: Callable[[Job, Optional[Dict[str, Any]], Optional[BaseException]], bool],
    target: Callable[[Job], Dict[str, Any]],
) -> None:
    """Run ``jobs`` with at most ``max_workers`` processes, calling ``on_done`` in the parent.

    ``on_done(job, record, error)`` gets the finished run's record or its exception, in order of
    completion; if it returns False no further job is started (the running ones finish). A run
    whose process dies without a result (a signal, the out-of-memory killer) fails alone with
    :class:`WorkerDied`; the others go on. If the parent is interrupted, the runs still going are
    terminated. ``target`` is what each process runs (a module-level function: it is pickled).
    """
    context = multiprocessing.get_context("spawn")  # no CUDA state is forked
    queue: Iterator[Job] = iter(jobs)
    running: Dict[Connection, Tuple[multiprocessing.process.BaseProcess, Job]] = {}  # by result pipe
    go_on = True

    def start_next() -> None:
        job = next(queue, None)
        if job is None:
            return
        reader, writer = context.Pipe(duplex=False)
        process = context.Process(target=_worker, args=(target, job, writer), name=job.name or f"{job.model}-seed{job.seed}")
        process.start()
        writer.close()  # the child holds the only writer: the reader sees EOF once the child is gone
        logger.info(f"started {job.title} (log: {job.log_file})")
        running[reader] = (process, job)

    try:
        for _ in range(max_workers):
            start_next()
        while running:
            for reader in wait(list(running)):
                process, job = running.pop(reader)
                try:
                    status, value = reader.recv()
                except EOFError:
                    status, value = "died", None
                reader.close()
                process.join()
                if status == "ok":
                    record, error = value, None
                elif status == "error":
                    record, error = None, value
                else:
                    record, error = None, WorkerDied(
                        f"{job.title}: its process ended without a result "
                        f"({_exit_description(process.exitcode)}); its log: {job.log_file}"
                    )
                go_on = on_done(job, record, error) and go_on
                if go_on:
                    start_next()
    finally:
        for process, _ in running.values():
            process.terminate()
        for process, _ in running.values():
            process.join()
