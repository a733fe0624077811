"""The plugin's SequentialDataset: RecBole's augmented rows, without the lists of unused fields."""

import pytest
import torch
from recbole.data.dataset import SequentialDataset as RecBoleSequentialDataset

from recbole_eimf.config import Config
from recbole_eimf.data import create_dataset
from recbole_eimf.data.sequential import SequentialDataset

from conftest import SMALL


def splits(dataset):
    return [part.inter_feat for part in dataset.build()]


@pytest.fixture(scope="module")
def recbole_splits():
    config = Config(model="ComiRecSA", dataset="ml-100k", config_dict=dict(SMALL))
    return splits(RecBoleSequentialDataset(config))


def test_the_same_rows_and_lists_as_recboles_augmentation(recbole_splits, monkeypatch):
    import recbole_eimf.data.sequential as sequential

    # A chunk smaller than the dataset, so rows are filled over several steps.
    monkeypatch.setattr(sequential, "AUGMENT_CHUNK_ROWS", 10_000)
    config = Config(model="ComiRecSA", dataset="ml-100k", config_dict=dict(SMALL))
    dataset = create_dataset(config)
    ours = splits(dataset)
    for mine, theirs in zip(ours, recbole_splits):
        assert sorted(mine.columns) == sorted(theirs.columns)
        assert "rating_list" in mine.columns and "timestamp_list" in mine.columns
        for field in theirs.columns:
            assert torch.equal(mine[field], theirs[field]), field
        # RecBole copies each split; here they are views of the full dataset's rows, held once.
        shared = dataset.inter_feat["item_id_list"].untyped_storage().data_ptr()
        assert mine["item_id_list"].untyped_storage().data_ptr() == shared
    assert sum(len(part) for part in ours) == len(dataset.inter_feat)


def test_fields_in_unused_col_get_no_history_list(recbole_splits):
    settings = {**SMALL, "unused_col": {"inter": ["rating", "timestamp"]}}
    dataset = create_dataset(Config(model="ComiRecSA", dataset="ml-100k", config_dict=settings))
    assert isinstance(dataset, SequentialDataset)
    ours = splits(dataset)
    for mine, theirs in zip(ours, recbole_splits):
        # RecBole drops the fields at the split, but would have kept their [rows, L] lists.
        assert sorted(mine.columns) == ["item_id", "item_id_list", "item_length", "user_id"]
        for field in mine.columns:
            assert torch.equal(mine[field], theirs[field]), field
    assert "rating_list" not in dataset.field2type and "timestamp_list" not in dataset.field2seqlen


def test_the_amazon_books_yaml_builds_no_rating_or_time_lists(tmp_path):
    from recbole_eimf.data.synthetic import generate

    generate("amazon-books", 0.001, seed=0, out=tmp_path)
    config = Config(model="SASRec", dataset="amazon-books",
                    config_dict={**SMALL, "data_path": str(tmp_path)})
    train = create_dataset(config).build()[0].inter_feat
    assert "item_id_list" in train.columns
    assert not {"rating_list", "timestamp_list", "rating"} & set(train.columns)

