"""Per-user significance of one model's change over another's, on the seeds both ran.

Three seeds cannot separate a 3% change; thousands of test users, each scored by both models,
can. Each user's metric is averaged over the paired seeds, and the per-user differences go to a
two-sided Wilcoxon signed-rank test (scipy; users whose two values are equal carry no sign and are
left out, ``zero_method="wilcox"``). A rank test, not a t-test: a user's NDCG@20 is 0 for most
users and a few values near 1, far from normal.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

import numpy as np

from recbole_eimf.benchmark.per_user import load_per_user, user_metrics

# RecBole metric keys tested per user (both follow from the target's rank).
TESTED_METRICS = ("recall@20", "ndcg@20")

PerUser = Tuple[str, np.ndarray, np.ndarray]


def paired_p_value(new: np.ndarray, base: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p-value of ``new - base``, paired element by element;
    1.0 when no pair differs (nothing points either way)."""
    from scipy.stats import wilcoxon

    new, base = np.asarray(new, dtype=np.float64), np.asarray(base, dtype=np.float64)
    if new.shape != base.shape or new.ndim != 1:
        raise ValueError(f"paired values must be two 1-d arrays of one length, got {new.shape} and {base.shape}")
    diff = new - base
    if not np.any(diff):
        return 1.0
    return float(wilcoxon(diff, zero_method="wilcox", alternative="two-sided").pvalue)


def seed_mean_metrics(runs: Sequence[PerUser]) -> Optional[Tuple[str, np.ndarray, Dict[str, np.ndarray]]]:
    """Users (fingerprint, ids) and each one's :data:`TESTED_METRICS` averaged over ``runs``
    (one per seed); None when the runs do not score the same users."""
    fingerprint, users, _ = runs[0]
    if any(f != fingerprint or not np.array_equal(u, users) for f, u, _ in runs):
        return None
    sums: Dict[str, np.ndarray] = {}
    for _, _, ranks in runs:
        for key in TESTED_METRICS:
            k = int(key.split("@")[1])
            value = user_metrics(ranks, k)[key]
            sums[key] = sums.get(key, 0.0) + value
    return fingerprint, users, {key: total / len(runs) for key, total in sums.items()}


def paired_user_test(
    pairs: Sequence[Tuple[Dict[str, Any], Dict[str, Any]]], load: Callable[[Dict[str, Any]], Optional[PerUser]]
) -> Dict[str, Optional[float]]:
    """p-value of each :data:`TESTED_METRICS` for ``(run, base_run)`` pairs (one per shared seed):
    None where a run lacks per-user ranks or the two models scored other users."""
    none: Dict[str, Optional[float]] = {key: None for key in TESTED_METRICS}
    new_runs = [load(run) for run, _ in pairs]
    base_runs = [load(base) for _, base in pairs]
    if not pairs or any(r is None for r in new_runs + base_runs):
        return none
    new, base = seed_mean_metrics(new_runs), seed_mean_metrics(base_runs)
    if new is None or base is None or new[0] != base[0] or not np.array_equal(new[1], base[1]):
        return none
    return {key: paired_p_value(new[2][key], base[2][key]) for key in TESTED_METRICS}


def record_loader(default_folder: Path) -> Callable[[Dict[str, Any]], Optional[PerUser]]:
    """Loads a record's per-user ranks from the folder it was read from (``source_dir``, set by
    :class:`RunStore`), else ``default_folder``; each file once per report."""
    cache: Dict[Tuple[str, str], Optional[PerUser]] = {}

    def load(record: Dict[str, Any]) -> Optional[PerUser]:
        folder = str(record.get("source_dir") or default_folder)
        key = (folder, str((record.get("per_user") or {}).get("file")))
        if key not in cache:
            cache[key] = load_per_user(record, folder)
        return cache[key]

    return load
