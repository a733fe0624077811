"""Each user's training sequence, rebuilt from RecBole's *training* dataset alone.

ESIM reads nothing else about user behaviour: a user's validation and test items are not in the
training dataset, so they never reach a profile, a prompt or a label.

For a sequential model RecBole's training dataset holds augmented rows ``prefix -> target``
(``item_id_list``, ``item_length``, ``item_id``), with prefixes cut to ``MAX_ITEM_LIST_LENGTH``. A
user's whole training sequence is the prefix of their first row followed by the targets of all
their rows, in time order. A dataset without augmented rows (a general model's) holds plain
``(user, item)`` rows: the sequence is the user's items in time order.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import List

import numpy as np


@dataclass
class TrainingSequences:
    """Per internal user id, the item ids of the training interactions, oldest first."""

    sequences: List[np.ndarray]   # index: internal user id (0 is RecBole's padding user)
    n_items: int

    @property
    def n_users(self) -> int:
        return len(self.sequences)

    def lengths(self) -> np.ndarray:
        return np.array([len(s) for s in self.sequences], dtype=np.int64)

    def fingerprint(self) -> str:
        """sha256 of every user's sequence: changes whenever the training data changes."""
        digest = hashlib.sha256()
        digest.update(np.int64(self.n_items).tobytes())
        digest.update(self.lengths().tobytes())
        for seq in self.sequences:
            digest.update(np.ascontiguousarray(seq, dtype=np.int64).tobytes())
        return digest.hexdigest()


def training_sequences(train_dataset) -> TrainingSequences:
    """Rebuild every user's training sequence from RecBole's training dataset (see module doc)."""
    inter = train_dataset.inter_feat
    uid_field, iid_field = train_dataset.uid_field, train_dataset.iid_field
    time_field = train_dataset.time_field
    n_users = train_dataset.user_num
    uids = inter[uid_field].numpy()
    items = inter[iid_field].numpy()
    times = inter[time_field].numpy() if time_field and time_field in inter else None

    length_field = train_dataset.config["ITEM_LIST_LENGTH_FIELD"]
    list_field = iid_field + train_dataset.config["LIST_SUFFIX"]
    augmented = length_field in inter and list_field in inter

    # Group rows by user in time order; ties keep RecBole's own row order (stable sorts).
    if times is not None:
        order = np.lexsort((times, uids))
    else:
        order = np.argsort(uids, kind="stable")
    sorted_uids = uids[order]
    starts = np.flatnonzero(np.r_[True, sorted_uids[1:] != sorted_uids[:-1]]) if len(order) else np.array([], int)
    ends = np.r_[starts[1:], len(order)]

    sequences: List[np.ndarray] = [np.zeros(0, dtype=np.int64) for _ in range(n_users)]
    if augmented:
        lists = inter[list_field].numpy()
        lengths = inter[length_field].numpy()
    for start, end in zip(starts, ends):
        rows = order[start:end]
        uid = int(sorted_uids[start])
        targets = items[rows].astype(np.int64)
        if augmented:
            first = rows[0]
            prefix = lists[first, : int(lengths[first])].astype(np.int64)
            sequences[uid] = np.concatenate([prefix, targets])
        else:
            sequences[uid] = targets
    return TrainingSequences(sequences=sequences, n_items=int(train_dataset.item_num))
