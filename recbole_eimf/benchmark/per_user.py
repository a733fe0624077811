"""Each test user's rank of its target item, kept beside ``runs.jsonl`` for per-user significance.

Leave-one-out gives every test user one target item, so the user's Recall@K and NDCG@K both
follow from that item's 0-based rank in the full-sort scores (:func:`user_metrics`). The ranks
are computed with the trained best model after RecBole's own test evaluation
(:func:`target_ranks`), scored by the trainer's own full-sort step, and stored per run as
``per_user/<label>-seed<seed>.npz``: RecBole's user ids (sorted, as int32 steps) and the ranks,
clipped at :data:`RANK_CUTOFF` (uint8: every rank past the report's largest K reads the same),
about 6 KB for 22k users once compressed. ``user_fingerprint`` hashes the users' raw tokens, so that two runs are
paired user by user only when their ids name the same users.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Any, Dict, Optional, Tuple, Union

import numpy as np
import torch

logger = logging.getLogger(__name__)

PER_USER_DIR = "per_user"
# The largest K of the report's metrics (@20, @50): a rank at or past it counts as a miss for all.
RANK_CUTOFF = 50


@torch.no_grad()
def target_ranks(trainer: Any, test_data: Any) -> Optional[Tuple[np.ndarray, np.ndarray]]:
    """Test users' ids and the 0-based rank of each one's target among all items, scored as
    RecBole's full-sort evaluation scores them (``trainer._full_sort_batch_eval``, after
    ``trainer.evaluate`` has loaded the best model); sorted by user id. ``None`` (logged) when the
    test split is not one full-sort target per user, where a per-user metric is not one rank."""
    from recbole.data.dataloader import FullSortEvalDataLoader

    if not isinstance(test_data, FullSortEvalDataLoader):
        logger.warning("per-user metrics need a full-sort test split (eval_args mode: full): not computed")
        return None
    trainer.model.eval()
    uid_field = test_data._dataset.uid_field
    users, ranks = [], []
    for batch in test_data:
        interaction, scores, positive_u, positive_i = trainer._full_sort_batch_eval(batch)
        if positive_u.numel() != scores.shape[0] or torch.unique(positive_u).numel() != scores.shape[0]:
            logger.warning("per-user metrics need one test item per user (leave-one-out split): not computed")
            return None
        target = scores[positive_u, positive_i]
        ranks.append(torch.zeros(scores.shape[0], dtype=torch.long).index_put_(
            (positive_u.cpu(),), (scores > target[:, None]).sum(dim=1).cpu()
        ))
        users.append(interaction[uid_field].cpu())
    user_ids = torch.cat(users).numpy()
    if len(np.unique(user_ids)) != len(user_ids):
        logger.warning("per-user metrics need one test item per user, and a user has several: not computed")
        return None
    order = np.argsort(user_ids, kind="stable")
    return user_ids[order], torch.cat(ranks).numpy()[order]


def per_user_ranks(trainer: Any, test_data: Any, dataset: Any) -> Optional[Dict[str, Any]]:
    """What a run record carries until the harness stores it (:func:`save_per_user`): each test
    user's target rank under the best model (:func:`target_ranks`) and the users' fingerprint;
    None where the split has no single target per user."""
    found = target_ranks(trainer, test_data)
    if found is None:
        return None
    users, ranks = found
    return {"users": users, "ranks": ranks, "user_fingerprint": user_fingerprint(dataset, users)}


def user_metrics(ranks: np.ndarray, k: int) -> Dict[str, np.ndarray]:
    """Each user's ``recall@k`` and ``ndcg@k`` (RecBole's keys) from the target's 0-based rank:
    a hit is rank < k, and a hit at rank r scores 1 / log2(r + 2) (the ideal DCG of one item is 1)."""
    if k > RANK_CUTOFF:
        raise ValueError(f"per-user ranks are kept up to {RANK_CUTOFF}, not {k}")
    ranks = np.asarray(ranks, dtype=np.float64)
    hit = ranks < k
    return {f"recall@{k}": hit.astype(np.float64), f"ndcg@{k}": np.where(hit, 1.0 / np.log2(ranks + 2.0), 0.0)}


def user_fingerprint(dataset: Any, user_ids: np.ndarray) -> str:
    """A short hash of the users' raw tokens, in order: equal only for the same users."""
    tokens = dataset.id2token(dataset.uid_field, user_ids)
    return hashlib.sha256("\n".join(map(str, tokens)).encode("utf-8")).hexdigest()[:16]


def per_user_file(label: str, seed: int) -> str:
    """Where a run's per-user ranks go, relative to its output folder."""
    return f"{PER_USER_DIR}/{label}-seed{int(seed)}.npz"


def save_per_user(output_dir: Path, label: str, seed: int, data: Dict[str, Any]) -> Dict[str, Any]:
    """Write ``data`` (``users``, ``ranks``, ``user_fingerprint`` from :func:`run_one`) to the
    run's npz; return what its record keeps: the file (relative), user count and fingerprint."""
    relative = per_user_file(label, seed)
    path = Path(output_dir) / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
    users = np.asarray(data["users"], dtype=np.int64)
    np.savez_compressed(
        tmp,
        # Sorted ids as steps from the previous one (mostly 1s): 30x smaller compressed than the ids.
        user_steps=np.diff(users, prepend=0).astype(np.int32),
        ranks=np.minimum(np.asarray(data["ranks"]), RANK_CUTOFF).astype(np.uint8),
    )
    os.replace(tmp, path)
    return {"file": relative, "users": int(len(data["users"])), "user_fingerprint": data["user_fingerprint"]}


def load_per_user(record: Dict[str, Any], folder: Union[str, Path]) -> Optional[Tuple[str, np.ndarray, np.ndarray]]:
    """A run's ``(user_fingerprint, users, ranks)``, or None for a record without them (made before
    they were kept) or whose file is gone (logged). ``folder``: the output folder of the record."""
    info = record.get("per_user")
    if not info or not info.get("file"):
        return None
    path = Path(folder) / info["file"]
    if not path.is_file():
        logger.warning(f"{path}: per-user ranks of {record.get('model')} seed {record.get('seed')} not found")
        return None
    with np.load(path) as data:
        return str(info.get("user_fingerprint")), np.cumsum(data["user_steps"], dtype=np.int64), data["ranks"]
