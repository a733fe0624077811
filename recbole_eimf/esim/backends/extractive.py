"""``llm_backend: extractive``: interests taken from the item text itself, with no LLM at all.

For the items a prompt shows (the same items an LLM would see), deterministically:

1. group them by their text embeddings (Ward agglomerative clustering) into
   ``min(max_interests, ceil(n / 3))`` groups, larger and more recent groups first;
2. name each group by its most distinctive labels (categories, genres: frequent in the group,
   rare in the catalogue, TF-IDF style; two labels where they share no word), or, where the
   items have no labels, by its most distinctive title words. A group whose every possible name
   is already another group's of the same user is that interest, and is not stated twice;
3. describe it by up to three of its titles.

The answer is the JSON an LLM would give, so it flows through the same parser, encoder and concept
steps. It is the default when no endpoint is configured, and the log says that no LLM was used.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from typing import Dict, List, Optional, Sequence, Set, Tuple

import numpy as np

from recbole_eimf.esim.backends.base import Completion, LLMBackend
from recbole_eimf.esim.item_text import ItemCatalog
from recbole_eimf.esim.prompts import Prompt

ITEMS_PER_INTEREST = 3
_WORD = re.compile(r"[A-Za-z][A-Za-z'&+-]{2,}")


def _stop_words() -> set:
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return set(ENGLISH_STOP_WORDS) | {"the", "and", "for", "with", "pack", "set", "new", "one", "size"}


class GroupNamer:
    """Names a group of items by its most distinctive labels (module doc, step 2).

    Shared by the extractive backend and by ``--stage=explain`` (an interest named by the text
    of its nearest items). A name is built from whole labels only, so it holds no stray title
    word; title words name a group only where its items have no label at all.
    """

    def __init__(self, catalog: ItemCatalog) -> None:
        self.catalog = catalog
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

    def ranked_labels(self, group: Sequence[int]) -> List[str]:
        """The group's labels (lower case), those covering at least half of it first, each part
        by frequency in the group times rarity in the catalogue."""
        score: Counter = Counter()
        cover: Counter = Counter()
        for item in group:
            for key in {label.lower() for label in self.catalog.labels[item]}:
                score[key] += self._label_idf.get(key, 1.0)
                cover[key] += 1
        half = len(group) / 2.0
        return sorted(score, key=lambda k: (cover[k] < half, -score[k], k))

    def candidates(self, group: Sequence[int]) -> List[Tuple[str, Set[str]]]:
        """Names for the group, best first, each with the labels it is made of."""
        spelled = {label.lower(): label for item in group for label in self.catalog.labels[item]}
        ranked = self.ranked_labels(group)
        if not ranked:  # no labels at all: the most distinctive title words
            scores: Counter = Counter()
            for item in group:
                for word in set(self._words[item]):
                    scores[word] += self._word_idf.get(word, 1.0)
            words = [w for w, _ in sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))]
            name = " ".join(w.capitalize() for w in words[:2]) or self.catalog.title(group[-1])
            return [(name, set())]
        names = []
        first = ranked[0]
        # A pair only where it repeats no word ("Makeup Brushes & Tools" + "Tools & Accessories").
        second = next((k for k in ranked[1:2] if not set(_words(k)) & set(_words(first))), None)
        if second is not None:
            names.append((f"{spelled[first]} & {spelled[second]}", {first, second}))
        names += [(spelled[k], {k}) for k in ranked]
        return names

    def name(self, group: Sequence[int], used: Set[str]) -> Tuple[Optional[str], Set[str]]:
        """The best name not in ``used`` (lower case), with its labels; ``(None, set())`` when
        every name the group could have is taken (the caller merges it into that interest)."""
        for name, labels in self.candidates(group):
            if name.lower() not in used:
                return name[:80], labels
        return None, set()


def _words(text: str) -> List[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


class ExtractiveBackend(LLMBackend):
    """Interests extracted from item text (module doc)."""

    name = "extractive"
    model = "extractive-v2"
    uses_llm = False
    cacheable = False   # instant and deterministic: nothing to save
    max_concurrency = 1

    def __init__(self, catalog: ItemCatalog, item_embeddings: np.ndarray, max_interests: int) -> None:
        self.catalog = catalog
        self.embeddings = np.asarray(item_embeddings, dtype=np.float32)
        self.max_interests = max_interests
        self.namer = GroupNamer(catalog)

    def decoding(self) -> Dict:
        return {"max_interests": self.max_interests}

    def complete(self, prompt: Prompt) -> Completion:
        interests, used_names = [], set()
        for group in self._group(list(prompt.item_ids)):
            name, labels = self.namer.name(group, used_names)
            if not name:  # every name it could have is another group's: the same interest
                continue
            used_names.add(name.lower())
            # Examples: the most recent items that carry the naming labels, then the rest.
            recent = list(reversed(group))
            recent.sort(key=lambda i: -sum(x.lower() in labels for x in self.catalog.labels[i]))
            titles = [self.catalog.title(i) for i in recent][:ITEMS_PER_INTEREST]
            interests.append({"name": name, "description": "e.g. " + "; ".join(titles)})
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
