"""Enough data to train and evaluate on: clear errors where RecBole would go on with an empty split.

On a small dataset (users with one or two interactions) RecBole's leave-one-out split leaves the
validation or test split empty, and training then ends with an empty result table (or a crash in
a model that needs training histories); ``topk`` larger than the catalogue crashes the evaluation.
"""

from __future__ import annotations

from recbole_eimf.errors import DataError

# RecBole's message when filtering leaves no interaction, user or item.
RECBOLE_EMPTY_FEAT = "Some feat is empty"
FILTER_KEYS = ("user_inter_num_interval", "item_inter_num_interval", "val_interval", "rm_dup_inter")


def empty_after_filtering(config, dataset_name: str) -> DataError:
    """The error for RecBole's "Some feat is empty": naming the filtering keys and their values."""
    settings = ", ".join(f"{key}: {config[key]!r}" for key in FILTER_KEYS if config[key] is not None)
    return DataError(
        f"dataset [{dataset_name}] is empty after filtering (no interaction, user or item left; "
        f"{settings or 'no filter set'}): loosen the filters, or check the atomic files under {config['data_path']}"
    )


def interactions_per_user(dataset):
    """Each user's number of interactions (after filtering), from the rows RecBole built: a
    sequential dataset holds one row per next-item target, one fewer than the user's interactions."""
    rows = dataset.inter_feat[dataset.uid_field].bincount(minlength=dataset.user_num)[1:]
    length_field = getattr(dataset, "item_list_length_field", None)
    return rows + 1 if length_field in dataset.inter_feat.columns else rows


def check_splits(config, dataset, train_data, valid_data, test_data) -> None:
    """Raise :class:`DataError` when a split is empty or ``topk`` exceeds the number of items."""
    sizes = {"training": len(train_data.dataset), "validation": len(valid_data.dataset), "test": len(test_data.dataset)}
    empty = [name for name, size in sizes.items() if size == 0]
    if empty:
        counts = interactions_per_user(dataset)
        short = int((counts < 4).sum())
        raise DataError(
            f"dataset [{config['dataset']}]: the {' and '.join(empty)} split(s) are empty "
            f"({', '.join(f'{name} {size}' for name, size in sizes.items())} rows; eval_args "
            f"{config['eval_args']['split']}). {short} of {len(counts)} users have fewer than 4 interactions: "
            "leave-one-out fills training first, so a user reaches validation and test from 4 interactions on. "
            "Add data, or keep longer histories only (user_inter_num_interval: \"[4,inf)\")"
        )
    n_items = dataset.item_num - 1  # id 0 is padding
    if max(config["topk"]) > n_items:
        raise DataError(
            f"`topk` {config['topk']} asks for more items than dataset [{config['dataset']}] has ({n_items}): "
            f"lower topk (e.g. --topk=[{max(1, n_items // 2)}])"
        )
