"""Several benchmark runs at a time (``--jobs=N``), each in a fresh process of
:mod:`recbole_eimf.process_pool`: each (model, seed) run logs to ``<output_dir>/logs/<model>-seed<seed>.log``
and sends its record to the parent, which alone appends it to ``runs.jsonl`` and writes the reports.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Sequence, Tuple

from recbole_eimf.process_pool import Job, worker_setup

LOGS_DIR = "logs"


def run_job(job: Job) -> Dict[str, Any]:
    """Body of one benchmark worker process: :func:`worker_setup`, then the run itself."""
    worker_setup(job)
    from recbole_eimf.benchmark.runner import run_one

    return run_one(
        job.model, job.dataset, job.seed, list(job.config_files), dict(job.overrides), job.checkpoint_dir,
        dict(job.defaults),
    )


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
    """One job per pending (model, seed) run, each logging to ``<output_dir>/logs/<model>-seed<seed>.log``."""
    return [
        Job(
            model=model, seed=seed, dataset=dataset, config_files=tuple(files_per_model[model]),
            overrides=tuple(overrides.items()), checkpoint_dir=checkpoint_dir(model, seed),
            defaults=tuple(defaults.items()), log_file=output_dir / LOGS_DIR / f"{model}-seed{seed}.log",
            threads=threads,
        )
        for model, seed in pending
    ]
