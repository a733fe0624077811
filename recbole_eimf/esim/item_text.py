"""Readable item text from the dataset's text fields (``text_fields``).

RecBole stores a ``token`` field as one token per item and a ``token_seq`` field as the cell split
on spaces, so the text is rebuilt here:

* a ``token_seq`` cell that was a quoted list (Amazon's ``categories``: ``'Beauty', 'Hair Care'``)
  becomes its names again (``Beauty, Hair Care``);
* a ``token_seq`` field named like a list of labels (``class``, ``genre``, ``categories``, ``tags``)
  is joined with ``", "`` (ml-100k's genres: ``Animation, Children's, Comedy``);
* any other ``token_seq`` field is words, joined with spaces (ml-100k's ``movie_title``);
* ``float`` fields are written as numbers; missing values and RecBole's ``[PAD]`` are left out.

The first text field is the item's *title* (used where one short name is wanted).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from typing import Dict, List, Sequence, Tuple

import numpy as np
from recbole.utils import FeatureType

from recbole_eimf.errors import ConfigError

LABEL_LIST_FIELDS = {"class", "classes", "genre", "genres", "categories", "category", "tags", "tag", "labels"}
MAX_FIELD_CHARS = 300
_QUOTED = re.compile(r"'((?:[^'\\]|\\.)*)'|\"((?:[^\"\\]|\\.)*)\"")
_SPACES = re.compile(r"\s+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def clean_text(text: str, limit: int = MAX_FIELD_CHARS) -> str:
    """One line of plain text: control characters and runs of whitespace become single spaces."""
    text = _SPACES.sub(" ", _CONTROL.sub(" ", str(text))).strip()
    if len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    return text


def split_quoted_list(text: str) -> List[str]:
    """``'Beauty', 'Hair Care', "Men's"`` -> ``['Beauty', 'Hair Care', "Men's"]`` (empty if not such a list)."""
    stripped = text.strip().strip("[]").strip()
    if not stripped or stripped[0] not in "'\"":
        return []
    names = []
    for match in _QUOTED.finditer(stripped):
        name = (match.group(1) if match.group(1) is not None else match.group(2)).strip()
        if name:
            names.append(name)
    # Everything outside the quotes must be separators, or this was not a list after all.
    rest = _QUOTED.sub("", stripped)
    if rest.replace(",", "").strip():
        return []
    return names


@dataclass
class ItemCatalog:
    """Readable text of every item (index: internal item id; 0 is RecBole's padding item)."""

    fields: Tuple[str, ...]
    values: List[Dict[str, str]]          # per item, field -> readable text ('' when missing)
    labels: List[List[str]]               # per item, the label names of its list-like fields

    @property
    def n_items(self) -> int:
        return len(self.values)

    def title(self, item: int) -> str:
        """The item's first non-empty text field (its title where the dataset has one)."""
        for field in self.fields:
            if self.values[item][field]:
                return self.values[item][field]
        return f"item {item}"

    def text(self, item: int) -> str:
        """All the item's text fields on one line, separated by ``" | "``."""
        return " | ".join(v for v in (self.values[item][f] for f in self.fields) if v)

    def texts(self, items: Sequence[int] = None) -> List[str]:
        items = range(self.n_items) if items is None else items
        return [self.text(i) for i in items]

    def fingerprint(self) -> str:
        """sha256 of all item text: changes when the fields or the data change."""
        if getattr(self, "_fingerprint", None) is None:
            payload = json.dumps([list(self.fields), self.values], ensure_ascii=False, sort_keys=True)
            self._fingerprint = hashlib.sha256(payload.encode("utf-8")).hexdigest()
        return self._fingerprint


def build_item_catalog(dataset, text_fields: Sequence[str]) -> ItemCatalog:
    """Readable text of every item from ``text_fields`` of ``dataset.item_feat`` (see module doc)."""
    if not text_fields:
        raise ConfigError(
            f"`text_fields` is empty: ESIM needs item text, name the item fields that hold it "
            f"(e.g. --text_fields=\"['title']\"); dataset [{dataset.dataset_name}] has "
            f"{_describe_item_fields(dataset)}"
        )
    item_feat = dataset.item_feat
    for field in text_fields:
        if item_feat is None or field not in item_feat:
            raise ConfigError(
                f"`text_fields` names [{field}], which dataset [{dataset.dataset_name}] has not loaded as "
                f"an item field: it has {_describe_item_fields(dataset)}. Load it with "
                f"`load_col: {{item: [{dataset.iid_field}, {field}, ...]}}` or change `text_fields`."
            )
        if dataset.field2type[field] not in (
            FeatureType.TOKEN, FeatureType.TOKEN_SEQ, FeatureType.FLOAT, FeatureType.FLOAT_SEQ
        ):
            raise ConfigError(f"`text_fields`: field [{field}] has type {dataset.field2type[field]}, not text")

    n_items = dataset.item_num
    values: List[Dict[str, str]] = [dict.fromkeys(text_fields, "") for _ in range(n_items)]
    labels: List[List[str]] = [[] for _ in range(n_items)]
    # item_feat rows are indexed by internal item id.
    for field in text_fields:
        ftype = dataset.field2type[field]
        column = item_feat[field].numpy()
        if ftype == FeatureType.TOKEN:
            id2token = dataset.field2id_token[field]
            for item in range(1, n_items):
                values[item][field] = _token_text(id2token[column[item]])
        elif ftype == FeatureType.TOKEN_SEQ:
            id2token = dataset.field2id_token[field]
            label_field = field.lower() in LABEL_LIST_FIELDS
            for item in range(1, n_items):
                tokens = [id2token[t] for t in column[item] if t != 0]
                text, names = _token_seq_text(tokens, label_field)
                values[item][field] = text
                labels[item].extend(names)
        else:  # FLOAT / FLOAT_SEQ
            for item in range(1, n_items):
                values[item][field] = _float_text(column[item])
    for item in range(n_items):
        seen = set()
        labels[item] = [n for n in labels[item] if not (n.lower() in seen or seen.add(n.lower()))]
    return ItemCatalog(fields=tuple(text_fields), values=values, labels=labels)


def _token_text(token: str) -> str:
    return "" if token in ("", "[PAD]") else clean_text(token)


def _token_seq_text(tokens: List[str], label_field: bool) -> Tuple[str, List[str]]:
    joined = " ".join(t for t in tokens if t != "[PAD]")
    names = split_quoted_list(joined)
    if names:
        names = [clean_text(n) for n in names]
        return clean_text(", ".join(names)), names
    if label_field:
        names = [clean_text(t) for t in tokens if t not in ("", "[PAD]")]
        return clean_text(", ".join(names)), names
    return clean_text(joined), []


def _float_text(value) -> str:
    values = np.atleast_1d(value).astype(float).ravel()
    shown = [f"{v:g}" for v in values if not math.isnan(v)]
    return clean_text(" ".join(shown))


def _describe_item_fields(dataset) -> str:
    if dataset.item_feat is None:
        return "no item features at all (no .item file loaded)"
    fields = [f for f in dataset.item_feat.columns if f != dataset.iid_field]
    return "item fields " + (", ".join(fields) if fields else "(none besides the id)")
