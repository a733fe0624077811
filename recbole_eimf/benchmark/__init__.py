"""Benchmark harness: every model under the same protocol, several seeds, resumable, with reports.

    python -m recbole_eimf.benchmark --dataset=ml-100k --models=ComiRecSA,SASRec --seeds=2020,2021

See :func:`run_benchmark` and ``python -m recbole_eimf.benchmark --help``.
"""

import recbole_eimf  # noqa: F401  (compatibility shims before RecBole loads)
from recbole_eimf.benchmark.instrument import best_epoch, instrument_trainer
from recbole_eimf.benchmark.runner import BenchmarkSetupError, BenchmarkSummary, run_benchmark, run_one

__all__ = ["run_benchmark", "run_one", "BenchmarkSummary", "BenchmarkSetupError", "instrument_trainer", "best_epoch"]
