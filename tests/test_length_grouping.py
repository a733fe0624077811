"""Length-grouped training batches (recbole_eimf/data/length_grouping.py) on ml-100k."""

import pytest
import torch

from recbole.data.dataloader import TrainDataLoader

from recbole_eimf.data.length_grouping import apply_length_grouping
from recbole_eimf.errors import ConfigError


def spread(loader) -> float:
    """Mean over batches of (longest - shortest sequence), and every row once."""
    seen, gaps = [], []
    for batch in loader:
        lengths = batch["item_length"]
        gaps.append(float(lengths.max() - lengths.min()))
        seen.append(batch["item_id"])
    return sum(gaps) / len(gaps), torch.cat(seen)


def test_length_grouping_makes_batches_of_similar_lengths(ml100k):
    config, _, shared, _, _ = ml100k
    train = TrainDataLoader(config, shared._dataset, None, shuffle=True)  # not the shared loader
    stock_gap, stock_rows = spread(train)
    setting = {"length_grouping": True, "ITEM_LIST_LENGTH_FIELD": "item_length", "single_spec": True}
    assert apply_length_grouping(train, setting).startswith("length_grouping: on")
    gap, rows = spread(train)
    _, again = spread(train)
    assert gap < stock_gap / 2, (gap, stock_gap)
    assert len(rows) == len(stock_rows) and torch.equal(rows.sort().values, stock_rows.sort().values)
    assert not torch.equal(rows, again), "a new order every epoch"
    assert apply_length_grouping(train, {"length_grouping": None}) == "length_grouping: off"
    with pytest.raises(ConfigError, match="`length_grouping`"):
        apply_length_grouping(train, {"length_grouping": "yes"})
