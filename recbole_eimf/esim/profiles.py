"""User profiles (``cluster_on``) and the choice of typical users (k-means, nearest the centroid).

* ``text``: the mean of the unit-length text embeddings of the items in the user's training
  sequence; ``behavior``: the user's row of the binary training user-item matrix, reduced with
  TruncatedSVD to ``behavior_dim``. Profiles are scaled to unit length.
* Every user with at least one training item is profiled and clustered into ``n_clusters`` groups
  (scikit-learn k-means, seeded, on mini-batches for many users; ``auto``: :func:`auto_clusters`). In each cluster the ``users_per_cluster`` users nearest the
  centroid among those with at least ``min_history`` training items are its *typical users*
  (ties: lower user id first). Deterministic under ``seed``.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import List, Optional

import numpy as np
import scipy.sparse as sp

from recbole_eimf.esim.encoders import l2_normalize
from recbole_eimf.esim.sequences import TrainingSequences

logger = logging.getLogger(__name__)


@dataclass
class Profiles:
    uids: np.ndarray          # users with a training history, ascending
    vectors: np.ndarray       # [len(uids), dim], unit length


@dataclass
class TypicalSelection:
    """Clusters of users and the typical users of each."""

    user_cluster: np.ndarray              # [n_users], cluster of each user, -1: not profiled
    typical: List[np.ndarray]             # per cluster, its typical users, nearest the centroid first
    n_clusters: int
    n_profiled: int
    n_eligible: int                       # profiled users with >= min_history training items

    @property
    def typical_users(self) -> np.ndarray:
        """All typical users, cluster by cluster."""
        return np.concatenate(self.typical) if self.typical else np.zeros(0, dtype=np.int64)

    def cluster_of(self, uid: int) -> int:
        return int(self.user_cluster[uid])


def text_profiles(sequences: TrainingSequences, item_embeddings: np.ndarray) -> Profiles:
    uids = np.array([u for u, s in enumerate(sequences.sequences) if len(s)], dtype=np.int64)
    vectors = np.zeros((len(uids), item_embeddings.shape[1]), dtype=np.float32)
    for row, uid in enumerate(uids):
        vectors[row] = item_embeddings[sequences.sequences[uid]].mean(axis=0)
    return Profiles(uids, l2_normalize(vectors))


def behavior_profiles(sequences: TrainingSequences, dim: int, seed: int) -> Profiles:
    from sklearn.decomposition import TruncatedSVD

    uids = np.array([u for u, s in enumerate(sequences.sequences) if len(s)], dtype=np.int64)
    rows = np.concatenate([np.full(len(sequences.sequences[u]), r) for r, u in enumerate(uids)]) if len(uids) else []
    cols = np.concatenate([sequences.sequences[u] for u in uids]) if len(uids) else []
    matrix = sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)),
                           shape=(len(uids), sequences.n_items))
    matrix.data[:] = 1.0  # repeated items count once
    n_components = max(1, min(dim, matrix.shape[1] - 1, matrix.shape[0] - 1))
    vectors = TruncatedSVD(n_components=n_components, random_state=seed).fit_transform(matrix)
    return Profiles(uids, l2_normalize(vectors))


def auto_clusters(n_profiled: int) -> int:
    """``n_clusters: auto``: round(sqrt(n / 2)) clusters for n profiled users, the common rule of
    thumb for k-means: clusters grow with the data, and so does each cluster (sqrt(2 n) users), so
    typical users stay a sample of groups of similar users on a dataset of any size."""
    return max(1, int(round(math.sqrt(n_profiled / 2))))


# Users x clusters above which k-means runs on mini-batches: full Lloyd iterations cost that much
# per iteration and init (ml-100k 2e4, amazon-beauty 2.4e6, Amazon Books 2.2e8 with auto clusters).
FULL_KMEANS_MAX_WORK = 2e7


def _kmeans(n_profiled: int, n_clusters: int, seed: int):
    """scikit-learn's k-means, on mini-batches of 4,096 users when the full one would be slow."""
    from sklearn.cluster import KMeans, MiniBatchKMeans

    if n_profiled * n_clusters <= FULL_KMEANS_MAX_WORK:
        return KMeans(n_clusters=n_clusters, random_state=seed, n_init=4)
    logger.info(f"ESIM: k-means on mini-batches ({n_profiled} users x {n_clusters} clusters)")
    return MiniBatchKMeans(n_clusters=n_clusters, random_state=seed, n_init=3, batch_size=4096)


def select_typical_users(
    profiles: Profiles,
    lengths: np.ndarray,
    n_users: int,
    n_clusters: Optional[int],
    users_per_cluster: int,
    min_history: int,
    seed: int,
) -> TypicalSelection:
    """k-means on the profiles, then the nearest eligible users of each cluster (module doc)."""
    n_profiled = len(profiles.uids)
    user_cluster = np.full(n_users, -1, dtype=np.int64)
    if n_profiled == 0:
        return TypicalSelection(user_cluster, [], 0, 0, 0)
    if n_clusters is None:
        n_clusters = auto_clusters(n_profiled)
        logger.info(f"ESIM: n_clusters [auto] = {n_clusters} for {n_profiled} users (round(sqrt(users / 2)))")
    n_distinct = len(np.unique(profiles.vectors.round(6), axis=0))
    if n_clusters > n_distinct:
        logger.warning(
            f"ESIM: n_clusters [{n_clusters}] is more than the {n_distinct} distinct user profiles; "
            f"using {n_distinct} clusters"
        )
        n_clusters = n_distinct
    kmeans = _kmeans(n_profiled, n_clusters, seed)
    assignment = kmeans.fit_predict(profiles.vectors.astype(np.float64))
    user_cluster[profiles.uids] = assignment
    distances = np.linalg.norm(profiles.vectors - kmeans.cluster_centers_[assignment], axis=1)
    eligible = lengths[profiles.uids] >= min_history
    typical = []
    empty = 0
    for cluster in range(n_clusters):
        rows = np.flatnonzero((assignment == cluster) & eligible)
        order = np.lexsort((profiles.uids[rows], distances[rows]))  # nearest first, then lower id
        chosen = profiles.uids[rows[order[:users_per_cluster]]]
        empty += len(chosen) == 0
        typical.append(chosen.astype(np.int64))
    if empty:
        logger.warning(f"ESIM: {empty} of {n_clusters} clusters have no user with >= min_history [{min_history}] items")
    return TypicalSelection(user_cluster, typical, n_clusters, n_profiled, int(eligible.sum()))
