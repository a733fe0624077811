"""``llm_backend: extractive``: interests taken from the item text itself, with no LLM at all.

For the items a prompt shows (the same items an LLM would see), deterministically:

1. group them by their text embeddings (Ward agglomerative clustering) into
   ``min(max_interests, ceil(n / 3))`` groups, larger and more recent groups first;
2. name each group by its most distinctive labels (categories, genres: frequent in the group,
   rare in the catalogue, TF-IDF style), or, where the items have no labels, by its most
   distinctive title words;
3. describe it with how many of the items it covers and up to three of their titles.

The answer is the JSON an LLM would give, so it flows through the same parser, encoder and concept
steps. It is the default when no endpoint is configured, and the log says that no LLM was used.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from typing import Dict, List, Sequence

import numpy as np

from recbole_eimf.esim.backends.base import Completion, LLMBackend
from recbole_eimf.esim.item_text import ItemCatalog
from recbole_eimf.esim.prompts import Prompt

ITEMS_PER_INTEREST = 3
_WORD = re.compile(r"[A-Za-z][A-Za-z'&+-]{2,}")


def _stop_words() -> set:
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return set(ENGLISH_STOP_WORDS) | {"the", "and", "for", "with", "pack", "set", "new", "one", "size"}


class ExtractiveBackend(LLMBackend):
    """Interests extracted from item text (module doc)."""

    name = "extractive"
    model = "extractive-v1"
    uses_llm = False
    cacheable = False   # instant and deterministic: nothing to save
    max_concurrency = 1

    def __init__(self, catalog: ItemCatalog, item_embeddings: np.ndarray, max_interests: int) -> None:
        self.catalog = catalog
        self.embeddings = np.asarray(item_embeddings, dtype=np.float32)
        self.max_interests = max_interests
        self.stop_words = _stop_words()
        n = max(1, catalog.n_items - 1)
        label_df: Counter = Counter()
        word_df: Counter = Counter()
        self._words: List[List[str]] = []
        for item in range(catalog.n_items):
            label_df.update({label.lower() for label in catalog.labels[item]})
            words = self._title_words(item)
            self._words.append(words)
            word_df.update(set(words))
        self._label_idf = {k: math.log((1 + n) / (1 + v)) + 1.0 for k, v in label_df.items()}
        self._word_idf = {k: math.log((1 + n) / (1 + v)) + 1.0 for k, v in word_df.items()}

    def _title_words(self, item: int) -> List[str]:
        labels = {label.lower() for label in self.catalog.labels[item]}
        title = self.catalog.title(item) if item else ""
        return [w.lower() for w in _WORD.findall(title) if w.lower() not in self.stop_words and w.lower() not in labels]

    def decoding(self) -> Dict:
        return {"max_interests": self.max_interests}

    def complete(self, prompt: Prompt) -> Completion:
        items = list(prompt.item_ids)
        groups = self._group(items)
        interests, used_names = [], set()
        for group in groups:
            name, labels = self._name(group, used_names)
            if not name:
                continue
            used_names.add(name.lower())
            # Examples: the most recent items that carry the naming labels, then the rest.
            recent = list(reversed(group))
            recent.sort(key=lambda i: -sum(x.lower() in labels for x in self.catalog.labels[i]))
            titles = [self.catalog.title(i) for i in recent][:3]
            shown = "; ".join(titles)
            description = (
                f"{len(group)} of the user's last {len(items)} items are like this, e.g. {shown}."
            )
            interests.append({"name": name, "description": description})
        return Completion(text=json.dumps({"interests": interests}, ensure_ascii=False))

    def _group(self, items: Sequence[int]) -> List[List[int]]:
        n = len(items)
        k = max(1, min(self.max_interests, math.ceil(n / ITEMS_PER_INTEREST)))
        if n <= 1 or k == 1:
            return [list(items)]
        from sklearn.cluster import AgglomerativeClustering

        vectors = self.embeddings[list(items)]
        labels = AgglomerativeClustering(n_clusters=k, linkage="ward").fit_predict(vectors)
        groups: Dict[int, List[int]] = {}
        for position, (item, label) in enumerate(zip(items, labels)):
            groups.setdefault(int(label), []).append(item)
        last_position = {label: max(p for p, lab in enumerate(labels) if lab == label) for label in groups}
        order = sorted(groups, key=lambda lab: (-len(groups[lab]), -last_position[lab]))
        return [groups[lab] for lab in order]

    def _name(self, group: List[int], used: set) -> str:
        label_scores: Counter = Counter()
        spelled: Dict[str, str] = {}
        for item in group:
            for label in self.catalog.labels[item]:
                key = label.lower()
                spelled.setdefault(key, label)
                label_scores[key] += self._label_idf.get(key, 1.0)
        word_scores: Counter = Counter()
        for item in group:
            for word in set(self._words[item]):
                word_scores[word] += self._word_idf.get(word, 1.0)
        # A label must cover at least half of the group to name it.
        half = len(group) / 2.0
        labels = [k for k, _ in sorted(label_scores.items(), key=lambda kv: (-kv[1], kv[0]))
                  if sum(k in {x.lower() for x in self.catalog.labels[i]} for i in group) >= half]
        words = [w for w, _ in sorted(word_scores.items(), key=lambda kv: (-kv[1], kv[0]))]
        naming = labels[:2]
        candidates = [spelled[k] for k in naming]
        name = " & ".join(candidates) if candidates else " ".join(w.capitalize() for w in words[:2])
        if name and name.lower() in used:  # make it distinct from the user's other interests
            extra = [w.capitalize() for w in words if w.capitalize() not in name][:1] or [
                self.catalog.title(group[-1])]
            name = f"{name}: {extra[0]}"
        if not name:
            name = self.catalog.title(group[-1])
        return name[:80], set(naming)
