"""Concept prototypes and per-user semantic targets (``n_concepts``, ``semantic_scope``).

* Concepts: k-means (seeded) over the embeddings of all interests of all typical users gives
  ``P = n_concepts`` prototypes (unit length; fewer when there are fewer distinct interests). Each
  concept is named by the most frequent interest name among its members (nearest prototype,
  cosine), a name no other concept has where one is left.
* A user's interests take distinct concepts (:func:`distinct_assignment`): two stated interests
  are two concepts of the user, not one counted twice.
* ``typical`` scope: a typical user's multi-hot label is the set of its interests' concepts, and its
  semantic interests are its own interest embeddings (up to ``J = max_interests``).
* ``cluster`` scope: in addition, every other user of a cluster inherits the cluster's targets: the
  concepts held by at least half of the cluster's typical users that have interests (at least the
  most frequent one), and for each of those concepts (most frequent first, at most ``J``) the
  cluster's interest embedding nearest that prototype. Typical users keep their own targets.
* Storage: one row per distinct target (a typical user's, or a cluster's shared one) and, per
  user, the index of its row (``-1``: none). Most users have no target of their own, so per-user
  arrays would be almost all zeros (140 MB of them on amazon-beauty, gigabytes on amazon-books).
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from typing import Dict, List, Set, Tuple

import numpy as np

from recbole_eimf.esim.encoders import l2_normalize
from recbole_eimf.esim.errors import EsimError

logger = logging.getLogger(__name__)

CLUSTER_LABEL_MIN_SHARE = 0.5


@dataclass
class Concepts:
    prototypes: np.ndarray     # [P, d_t], unit length
    assignment: np.ndarray     # concept of each interest embedding given to build_concepts


def build_concepts(interest_embeddings: np.ndarray, n_concepts: int, seed: int) -> Concepts:
    from sklearn.cluster import KMeans

    if len(interest_embeddings) == 0:
        raise EsimError("ESIM has no interest to build concepts from: every typical user failed (see the report)")
    n_distinct = len(np.unique(interest_embeddings.round(6), axis=0))
    if n_concepts > n_distinct:
        logger.warning(
            f"ESIM: n_concepts [{n_concepts}] is more than the {n_distinct} distinct interests; using {n_distinct}"
        )
        n_concepts = n_distinct
    kmeans = KMeans(n_clusters=n_concepts, random_state=seed, n_init=4)
    kmeans.fit(interest_embeddings.astype(np.float64))
    prototypes = l2_normalize(kmeans.cluster_centers_)
    assignment = np.argmax(interest_embeddings @ prototypes.T, axis=1)
    return Concepts(prototypes=prototypes, assignment=assignment)


def distinct_assignment(embeddings: np.ndarray, prototypes: np.ndarray) -> np.ndarray:
    """The concept of each of one user's interests ``[j, d_t]``: distinct concepts (while
    ``j <= P``) of the largest total cosine, so each interest keeps its nearest concept unless
    another of the user's interests is nearer to it."""
    from scipy.optimize import linear_sum_assignment

    similarity = embeddings @ prototypes.T
    if len(embeddings) > len(prototypes):
        return np.argmax(similarity, axis=1)
    rows, columns = linear_sum_assignment(-similarity)
    assignment = np.empty(len(embeddings), dtype=np.int64)
    assignment[rows] = columns
    return assignment


def concept_names(names: List[str], concepts: Concepts, embeddings: np.ndarray) -> List[str]:
    """A readable name per concept: the most frequent name of the interests nearest it (ties:
    the nearest one), one that no larger concept has taken where there is one. ``names[i]`` is
    the name of the interest ``embeddings[i]``, as given to :func:`build_concepts`."""
    prototypes, nearest = concepts.prototypes, concepts.assignment
    ranked: List[List[str]] = []
    for concept in range(len(prototypes)):
        members = np.flatnonzero(nearest == concept)
        closeness = embeddings[members] @ prototypes[concept]
        count = Counter(names[i].strip() for i in members)
        best = {}
        for i, c in zip(members, closeness):
            best[names[i].strip()] = max(best.get(names[i].strip(), -1.0), float(c))
        ranked.append(sorted(count, key=lambda n: (-count[n], -best[n], n)))
    taken, result = set(), [""] * len(prototypes)
    for concept in sorted(range(len(prototypes)), key=lambda c: -len(ranked[c])):
        choice = next((n for n in ranked[concept] if n.lower() not in taken), None)
        choice = choice or (ranked[concept][0] if ranked[concept] else f"concept {concept}")
        taken.add(choice.lower())
        result[concept] = choice
    return result


@dataclass
class TargetArrays:
    target_row: np.ndarray      # [n_users] int64: the user's row of the arrays below (-1: no target)
    labels: np.ndarray          # [R, P] float32 multi-hot
    interests: np.ndarray       # [R, J, d_t] float32 (zero rows where masked)
    interest_mask: np.ndarray   # [R, J] bool

    @property
    def has_target(self) -> np.ndarray:
        return self.target_row >= 0


def build_targets(
    n_users: int,
    max_interests: int,
    user_embeddings: Dict[int, np.ndarray],
    user_concepts: Dict[int, np.ndarray],
    prototypes: np.ndarray,
    user_cluster: np.ndarray,
    scope: str,
) -> TargetArrays:
    """One target row per typical user with interests (and, with ``cluster`` scope, one per
    cluster, shared by its other users), and each user's row (module doc).
    ``user_embeddings[u]``: ``[j, d_t]``; ``user_concepts[u]``: ``[j]``."""
    n_concepts, dim = prototypes.shape
    target_row = np.full(n_users, -1, dtype=np.int64)
    rows: List[Tuple[np.ndarray, Set[int]]] = []  # (interest vectors, concept labels) of each row

    def add_row(vectors: np.ndarray, label_set: Set[int]) -> int:
        rows.append((vectors[:max_interests], label_set))
        return len(rows) - 1

    for uid, vectors in user_embeddings.items():
        target_row[uid] = add_row(vectors, set(int(c) for c in user_concepts[uid]))

    if scope == "cluster":
        by_cluster: Dict[int, List[int]] = {}
        for uid in user_embeddings:
            if user_cluster[uid] >= 0:
                by_cluster.setdefault(int(user_cluster[uid]), []).append(uid)
        for cluster, members in sorted(by_cluster.items()):
            inherit = [int(u) for u in np.flatnonzero(user_cluster == cluster) if int(u) not in user_embeddings and u != 0]
            if not inherit:
                continue
            holders = Counter(c for uid in members for c in set(int(x) for x in user_concepts[uid]))
            ranked = sorted(holders, key=lambda c: (-holders[c], c))
            shared = [c for c in ranked if holders[c] >= CLUSTER_LABEL_MIN_SHARE * len(members)] or ranked[:1]
            pool = np.concatenate([user_embeddings[uid] for uid in members])
            pool_concepts = np.concatenate([user_concepts[uid] for uid in members])
            vectors = []
            for concept in shared[:max_interests]:
                candidates = np.flatnonzero(pool_concepts == concept)
                best = candidates[np.argmax(pool[candidates] @ prototypes[concept])]
                vectors.append(pool[best])
            target_row[inherit] = add_row(np.stack(vectors), set(shared))

    labels = np.zeros((len(rows), n_concepts), dtype=np.float32)
    interests = np.zeros((len(rows), max_interests, dim), dtype=np.float32)
    mask = np.zeros((len(rows), max_interests), dtype=bool)
    for row, (vectors, label_set) in enumerate(rows):
        interests[row, : len(vectors)] = vectors
        mask[row, : len(vectors)] = True
        labels[row, sorted(label_set)] = 1.0
    return TargetArrays(target_row=target_row, labels=labels, interests=interests, interest_mask=mask)
