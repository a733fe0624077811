"""Thread pools for ESIM's small scikit-learn steps (SVD, k-means, clustering of a user's items).

On matrices this small one BLAS/OpenMP thread is about as fast as several on an idle machine, and
many times faster on a shared one: on 2 busy cores, OpenBLAS's spinning threads made the tfidf
SVD of ml-100k's 1,682 titles take 16 s instead of 0.4 s. Text encoders (torch) are not limited.
"""

from __future__ import annotations

from contextlib import contextmanager


@contextmanager
def few_threads(limit: int = 1):
    """Limit BLAS and OpenMP pools to ``limit`` threads inside the block (no-op without threadpoolctl)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield
        return
    with threadpool_limits(limits=limit):
        yield
