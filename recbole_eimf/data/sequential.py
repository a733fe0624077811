"""RecBole's SequentialDataset, augmented without the history lists no model reads.

RecBole's ``data_augmentation`` turns every interaction after a user's first into a row holding the
user's previous ``MAX_ITEM_LIST_LENGTH`` items, and builds such a ``[rows, L]`` list for *every*
interaction field: ``rating_list`` and ``timestamp_list`` too, although the fields named in
RecBole's ``unused_col`` (loaded for the filter and the time ordering, "not used in model") are
dropped only later, at the split, and their lists never. On Amazon Books that is half of the
augmented data. This class builds no list for a field in ``unused_col: {inter: [...]}`` (the field
itself stays until RecBole drops it at the split, after ordering by time), and fills the lists
with array indexing instead of RecBole's per-row Python loop: the same rows and values.

RecBole's leave-one-out split then copies the augmented rows into the training, validation and
test datasets while the full dataset keeps its own, so the run holds them twice. Here the full
dataset's rows are put in split order once and each split is a slice of them (a view): the same
splits, held once.
"""

from __future__ import annotations

from typing import List

import numpy as np
import torch

from recbole.data.dataset import SequentialDataset as RecBoleSequentialDataset
from recbole.data.interaction import Interaction

# Rows of augmented lists filled per step: bounds the [rows, L] index temporaries to a few MB.
AUGMENT_CHUNK_ROWS = 1 << 16


class SequentialDataset(RecBoleSequentialDataset):
    """RecBole's sequential dataset; see the module docstring for what differs."""

    def _unused_inter_fields(self) -> List[str]:
        unused = self.config["unused_col"] or {}
        return list(unused.get("inter", []) or [])

    def _aug_presets(self):
        super()._aug_presets()
        # RecBole declares a list for every inter field: forget the ones that will not be built.
        for field in self._unused_inter_fields():
            list_field = field + self.config["LIST_SUFFIX"]
            for table in (self.field2type, self.field2source, self.field2seqlen):
                table.pop(list_field, None)

    def _list_fields(self) -> List[str]:
        """The inter fields that get a history list: all but the user and the unused ones."""
        skip = {self.uid_field, *self._unused_inter_fields()}
        return [field for field in self.inter_feat if field not in skip]

    def data_augmentation(self):
        """RecBole's augmentation (one row per interaction after a user's first, with the previous
        at most ``MAX_ITEM_LIST_LENGTH`` items), for the fields of :meth:`_list_fields` only."""
        self._aug_presets()
        self._check_field("uid_field", "time_field")
        self.sort(by=[self.uid_field, self.time_field], ascending=True)
        uids = self.inter_feat[self.uid_field].numpy()
        rows = np.arange(len(uids))
        first = np.r_[True, uids[1:] != uids[:-1]] if len(uids) else np.zeros(0, dtype=bool)
        position = rows - np.maximum.accumulate(np.where(first, rows, 0))  # index within the user
        target = np.flatnonzero(position > 0)
        length = np.minimum(position[target], self.max_item_list_len)

        new_data = self.inter_feat[target]
        new_dict = {self.item_list_length_field: torch.tensor(length, dtype=torch.int64)}
        for field in self._list_fields():
            list_field = field + self.config["LIST_SUFFIX"]
            setattr(self, f"{field}_list_field", list_field)
            new_dict[list_field] = self._history_lists(self.inter_feat[field], target, length, list_field)
        new_data.update(Interaction(new_dict))
        self.inter_feat = new_data

    def _split_index_by_leave_one_out(self, grouped_index, leave_one_num):
        """RecBole's leave-one-out rows of each split, returned as slices of this dataset's rows,
        which are put in split order here (every row is in exactly one split)."""
        next_index = super()._split_index_by_leave_one_out(grouped_index, leave_one_num)
        order = torch.from_numpy(np.concatenate([np.asarray(rows, dtype=np.int64) for rows in next_index]))
        self.inter_feat = Interaction({field: values[order] for field, values in self.inter_feat.interaction.items()})
        bounds = np.cumsum([0] + [len(rows) for rows in next_index]).tolist()
        return [slice(start, end) for start, end in zip(bounds[:-1], bounds[1:])]

    def _history_lists(self, value: torch.Tensor, target: np.ndarray, length: np.ndarray, list_field: str) -> torch.Tensor:
        """``out[r, :length[r]] = value[target[r] - length[r] : target[r]]``, zero after, as RecBole."""
        list_len = self.field2seqlen[list_field]
        width = list_len if isinstance(list_len, int) else list_len[0]
        out = torch.zeros((len(target), width) + tuple(value.shape[1:]), dtype=value.dtype)
        offsets = np.arange(width)
        for start in range(0, len(target), AUGMENT_CHUNK_ROWS):
            part = slice(start, start + AUGMENT_CHUNK_ROWS)
            real = offsets < length[part, None]
            index = np.where(real, target[part, None] - length[part, None] + offsets, 0)
            values = value[torch.from_numpy(index)]
            padding = torch.from_numpy(~real).view(real.shape + (1,) * (values.dim() - 2))
            out[part] = values.masked_fill_(padding, 0)
        return out
