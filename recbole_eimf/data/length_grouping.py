"""Training batches of similar sequence lengths (the ``length_grouping`` key, off by default).

Trimmed batches (``recbole_eimf.trim``) cost what their rows' lengths cost; a batch of rows of
similar lengths wastes the least on padding. It changes which rows share a batch, so training is
not the stock one: off unless asked for.
"""

from __future__ import annotations

from typing import Iterator, List

import torch

from recbole_eimf.errors import ConfigError

# Rows are shuffled, then sorted by length within windows of this many batches: batches are of
# similar lengths, while each epoch still sees them in a new, random order.
WINDOW_BATCHES = 50


class LengthGroupedBatches:
    """A batch sampler: every epoch a new shuffle, sorted by length within windows of
    ``WINDOW_BATCHES`` batches, cut into batches that are then shuffled."""

    def __init__(self, lengths: torch.Tensor, batch_size: int, generator: torch.Generator) -> None:
        self.lengths = lengths
        self.batch_size = batch_size
        self.generator = generator

    def __len__(self) -> int:
        return -(-len(self.lengths) // self.batch_size)

    def __iter__(self) -> Iterator[List[int]]:
        order = torch.randperm(len(self.lengths), generator=self.generator)
        window = self.batch_size * WINDOW_BATCHES
        batches = []
        for chunk in order.split(window):
            chunk = chunk[self.lengths[chunk].argsort(stable=True)]
            batches.extend(chunk.split(self.batch_size))
        for i in torch.randperm(len(batches), generator=self.generator).tolist():
            yield batches[i].tolist()


def apply_length_grouping(train_data, config) -> str:
    """Give ``train_data`` (RecBole's training loader) length-grouped batches if
    ``config["length_grouping"]`` asks for them; returns the line the run logs."""
    setting = config["length_grouping"]
    if setting not in (None, True, False):
        raise ConfigError(f"`length_grouping` must be True or False, got {setting!r}")
    if not setting:
        return "length_grouping: off"
    field = config["ITEM_LIST_LENGTH_FIELD"]
    dataset = train_data._dataset
    if field not in dataset.inter_feat:
        raise ConfigError(f"length_grouping: True needs a sequential model's training data (no `{field}` field)")
    if not config["single_spec"]:
        raise ConfigError("length_grouping: True does not work with distributed training yet: set it to False")
    sampler = LengthGroupedBatches(dataset.inter_feat[field], train_data.step, train_data.generator)
    # torch's DataLoader refuses a new batch sampler after construction; RecBole builds it inside.
    object.__setattr__(train_data, "batch_sampler", sampler)
    return f"length_grouping: on (batches of similar lengths, sorted within {WINDOW_BATCHES} batches)"
