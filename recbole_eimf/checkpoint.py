"""Checkpoints that know which data they were trained on.

A model's rows are indexed by RecBole's internal user and item ids, which come from the token maps
(``field2id_token``) of the data it was trained on. Loaded onto other data with the same number of
items, a checkpoint scores the wrong items without any error. So every run records a fingerprint
of the user and item token maps in its config (pickled with the checkpoint), and
:func:`check_fingerprint` refuses a dataset whose maps differ.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any, Dict, Mapping

from recbole_eimf.compat import trusted_load
from recbole_eimf.errors import CheckpointError

FINGERPRINT_KEY = "data_fingerprint"


def data_fingerprint(dataset) -> Dict[str, Any]:
    """Counts and a SHA-256 of the user and item id tokens of ``dataset``, in internal-id order."""
    digest = hashlib.sha256()
    counts = {}
    for what, field in (("users", dataset.uid_field), ("items", dataset.iid_field)):
        tokens = dataset.field2id_token[field]
        counts[what] = len(tokens) - 1  # id 0 is RecBole's padding
        digest.update(f"{field}\x1f".encode("utf-8"))
        digest.update("\x1e".join(map(str, tokens)).encode("utf-8"))
    return {**counts, "sha256": digest.hexdigest()}


def stamp_fingerprint(config, dataset) -> None:
    """Record ``dataset``'s fingerprint in ``config``, which every checkpoint stores."""
    config[FINGERPRINT_KEY] = data_fingerprint(dataset)


def read_checkpoint(path: str) -> Mapping[str, Any]:
    """The contents of a RecBole checkpoint, or :class:`CheckpointError` naming the file."""
    try:
        checkpoint = trusted_load(path, map_location="cpu")
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such checkpoint file") from None
    except Exception as err:  # noqa: BLE001  (torch and pickle raise many types for a bad file)
        raise CheckpointError(
            f"{path}: not a readable checkpoint, truncated or not written by torch.save "
            f"({type(err).__name__}: {err})"
        ) from None
    if not isinstance(checkpoint, Mapping) or not {"config", "state_dict"} <= set(checkpoint):
        raise CheckpointError(f"{path}: not a RecBole checkpoint (no config and state_dict in it)")
    return checkpoint


def check_fingerprint(config, dataset, path: str) -> None:
    """Refuse ``dataset`` if its user and item tokens differ from those the checkpoint at ``path``
    (whose config is ``config``) was trained on; a checkpoint from before fingerprints loads with a warning."""
    saved = config[FINGERPRINT_KEY]
    if saved is None:
        logging.getLogger(__name__).warning(
            f"{path} records no fingerprint of its data (written by an older version): "
            f"it cannot be checked against dataset [{config['dataset']}]"
        )
        return
    found = data_fingerprint(dataset)
    if found["sha256"] != saved["sha256"]:
        raise CheckpointError(
            f"{path} was trained on other data than dataset [{config['dataset']}] in {config['data_path']}: "
            f"its users and items ({saved['users']} users, {saved['items']} items) are not the dataset's "
            f"({found['users']} users, {found['items']} items, or other ids). Load it with the data it was "
            "trained on, or train again on this data"
        )
