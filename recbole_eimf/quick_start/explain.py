"""``--stage=explain``: why a multi-interest model recommends what it does, from a checkpoint alone.

    python run_recbole_eimf.py --stage=explain --model_file=saved/EIMF-....pth --users=196,186
    python run_recbole_eimf.py --stage=explain --model_file=saved/ComiRecSA-....pth --users=random:10

For each user: the last items of the history, each of the K interests with its name, the top-N
items of each interest (score ``<v_k, e_i>``) and the final top-N (``max_k``, as the model ranks)
with the interest each came from. Items the user has already seen are left out, as RecBole's
full-sort evaluation does. An EIMF checkpoint names an interest by ESIM's concepts nearest it
through the trained head (``cos(g(v_k), c_p)``; the concepts and their names are stored with the
checkpoint); a model without them names it by the labels (genres, categories) of its top items.
Nothing here calls an LLM or reads ESIM's cache. A Markdown and an HTML report are written next
to the checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from recbole_eimf.errors import ConfigError
from recbole_eimf.esim.backends.extractive import GroupNamer
from recbole_eimf.esim.item_text import ItemCatalog, build_item_catalog
from recbole_eimf.quick_start.quick_start import load_data_and_model

# Two interests this close (cosine) are one: a short history gives K copies of few directions.
SAME_INTEREST_COSINE = 0.999


@dataclass
class NamedInterest:
    index: int
    names: List[Tuple[str, Optional[float]]]  # nearest concepts with their cosine, or one item-text name
    items: List[int]                          # the interest's top-N items
    same_as: Optional[int] = None             # an earlier interest with the same vector


@dataclass
class UserExplanation:
    user: str
    history: List[int]                        # last items, oldest first
    n_history: int                            # all the user's items
    interests: List[NamedInterest]
    recommendations: List[Tuple[int, int]]    # (item, index of the interest it came from)


@dataclass
class Explanation:
    model_file: str
    model: str
    dataset: str
    naming: str                               # how interests are named
    note: str                                 # why by item text, where it is
    catalog: ItemCatalog
    users: List[UserExplanation] = field(default_factory=list)

    def title(self, item: int) -> str:
        return self.catalog.title(item)


class Explainer:
    """A reloaded checkpoint with its dataset and item text, ready to explain users."""

    def __init__(self, model_file: str, top_n: int = 10, n_history: int = 10, n_names: int = 3) -> None:
        self.model_file = str(model_file)
        self.config, self.model, self.dataset, *_ = load_data_and_model(self.model_file)
        self.model.eval()
        self.top_n, self.n_history, self.n_names = top_n, n_history, n_names
        self.catalog = build_item_catalog(self.dataset, self.config["text_fields"] or [])
        self.namer = GroupNamer(self.catalog)
        self.histories = user_histories(self.dataset)
        self.concepts, self.note = self._concepts()

    def _concepts(self) -> Tuple[Optional[Tuple[List[str], torch.Tensor]], str]:
        """ESIM's named concepts and the head that maps interests to them, else why not."""
        head = getattr(self.model, "head", None)
        named = getattr(self.model, "named_concepts", None)
        concepts = named() if callable(named) and head is not None else None
        if concepts is not None:
            return concepts, ""
        if head is None:
            return None, f"{self.config['model']} has no semantic head: interests are named by the labels of their top items"
        return None, (f"{self.model_file} stores no concept names (saved before checkpoints kept ESIM's concepts): "
                      "interests are named by the labels of their top items; train again to name them by concepts")

    def resolve_users(self, spec: str) -> List[int]:
        """Internal ids of ``--users``: tokens separated by commas, or ``random:N``."""
        uid_field = self.dataset.uid_field
        if not spec:
            raise ConfigError("--users is empty: give user tokens (e.g. --users=196,186) or --users=random:10")
        if spec.startswith("random:"):
            try:
                n = int(spec.split(":", 1)[1])
            except ValueError:
                raise ConfigError(f"--users={spec}: random:N needs a number, e.g. random:10") from None
            known = np.array(sorted(self.histories))
            rng = np.random.default_rng(self.config["seed"])
            return sorted(int(u) for u in rng.choice(known, size=min(n, len(known)), replace=False))
        ids = []
        for token in (t.strip() for t in spec.split(",") if t.strip()):
            try:
                uid = int(self.dataset.token2id(uid_field, token))
            except ValueError:
                examples = ", ".join(self.dataset.field2id_token[uid_field][1:4])
                raise ConfigError(f"--users: user [{token}] is not in dataset [{self.config['dataset']}] "
                                  f"(field {uid_field}; tokens as in its .inter file, e.g. {examples})") from None
            if uid not in self.histories:
                raise ConfigError(f"--users: user [{token}] has no interaction in dataset [{self.config['dataset']}]")
            ids.append(uid)
        return ids

    @torch.no_grad()
    def explain(self, uid: int, items: Optional[Sequence[int]] = None) -> UserExplanation:
        """Explain user ``uid`` after ``items`` (oldest first; default: the user's whole history)."""
        items = [int(i) for i in (self.histories[uid] if items is None else items)]
        seen = self.histories.get(uid, np.array([], dtype=np.int64))
        interests = self.interests(items)                                      # [K, d]
        scorer = getattr(self.model, "backbone", self.model)  # EIMF scores with its backbone's items
        scores = interests @ scorer.item_embedding.weight.t()                 # [K, n_items]
        scores[:, 0] = float("-inf")
        scores[:, torch.as_tensor(np.concatenate([seen, items]), dtype=torch.long, device=scores.device)] = float("-inf")
        per_interest = scores.topk(self.top_n, dim=1).indices.tolist()
        best, source = scores.max(dim=0)
        final = best.topk(self.top_n).indices.tolist()
        return UserExplanation(
            user=str(self.dataset.id2token(self.dataset.uid_field, uid)),
            history=items[-self.n_history:],
            n_history=len(items),
            interests=self._name(interests, per_interest),
            recommendations=[(item, int(source[item])) for item in final],
        )

    @torch.no_grad()
    def interests(self, items: Sequence[int]) -> torch.Tensor:
        """The model's ``[K, d]`` interests after ``items`` (oldest first; the last
        ``MAX_ITEM_LIST_LENGTH`` are read)."""
        length = int(self.config["MAX_ITEM_LIST_LENGTH"])
        recent = list(items)[-length:]
        device = next(self.model.parameters()).device
        item_seq = torch.zeros(1, length, dtype=torch.long, device=device)
        item_seq[0, : len(recent)] = torch.as_tensor(recent, dtype=torch.long)
        interests = self.model(item_seq, torch.tensor([len(recent)], device=device))
        if interests.dim() != 3:
            raise ConfigError(f"{self.model_file}: {self.config['model']} is not a multi-interest model "
                              "(its forward gives one vector per user): explain needs K interests")
        return interests[0].detach().float()

    @torch.no_grad()
    def concept_similarity(self, interests: torch.Tensor) -> Optional[torch.Tensor]:
        """``[K, P]`` cosine of each interest, through the trained head, with each concept; None
        without named concepts."""
        if self.concepts is None:
            return None
        prototypes = F.normalize(self.concepts[1].float().to(interests.device), dim=-1)
        return F.normalize(self.model.head(interests), dim=-1) @ prototypes.t()

    @torch.no_grad()
    def _name(self, interests: torch.Tensor, top_items: List[List[int]]) -> List[NamedInterest]:
        unit = F.normalize(interests, dim=-1)
        similar = unit @ unit.t()
        named, used = [], set()
        cosine = self.concept_similarity(interests)
        for k in range(interests.size(0)):
            earlier = [j for j in range(k) if similar[k, j] > SAME_INTEREST_COSINE]
            if earlier:  # the same interest keeps its name
                labels = named[earlier[0]].names
            elif cosine is not None:
                values, index = cosine[k].topk(min(self.n_names, cosine.size(1)))
                labels = [(self.concepts[0][int(p)], float(v)) for v, p in zip(values, index)]
            else:
                name, _ = self.namer.name(top_items[k], used)
                name = name or self.namer.candidates(top_items[k])[0][0]
                used.add(name.lower())
                labels = [(name, None)]
            named.append(NamedInterest(k, labels, top_items[k], earlier[0] if earlier else None))
        return named


def user_histories(dataset) -> Dict[int, np.ndarray]:
    """Every user's items in time order (the dataset's order where it has no time field)."""
    users = dataset.inter_feat[dataset.uid_field].numpy()
    items = dataset.inter_feat[dataset.iid_field].numpy()
    order = np.arange(len(users))
    if dataset.time_field and dataset.time_field in dataset.inter_feat:
        order = np.argsort(dataset.inter_feat[dataset.time_field].numpy(), kind="stable")
    users, items = users[order], items[order]
    by_user = np.argsort(users, kind="stable")
    starts = np.flatnonzero(np.r_[True, np.diff(users[by_user]) != 0])
    groups = np.split(items[by_user], starts[1:])
    return {int(users[by_user][s]): g for s, g in zip(starts, groups)}


def explain_users(model_file: str, users: str, top_n: int = 10) -> Explanation:
    """Explain ``users`` (``--users``) with the checkpoint ``model_file``."""
    if not model_file or not Path(model_file).is_file():
        raise ConfigError(f"--model_file [{model_file}] is not a file: give a checkpoint saved by training (saved/*.pth)")
    explainer = Explainer(model_file, top_n=top_n)
    explanation = Explanation(
        model_file=str(model_file), model=explainer.config["model"], dataset=explainer.config["dataset"],
        naming="ESIM's concepts nearest each interest (cosine through the trained head)"
        if explainer.concepts is not None else "the labels of the interest's top items",
        note=explainer.note, catalog=explainer.catalog,
    )
    explanation.users = [explainer.explain(uid) for uid in explainer.resolve_users(users)]
    return explanation


def run_explain_stage(model_file: str, users: str) -> str:
    """``--stage=explain``: the explanation as text; writes the Markdown and HTML reports beside
    the checkpoint and names them at the end."""
    from recbole_eimf.quick_start.explain_report import explanation_html, explanation_markdown, explanation_text

    explanation = explain_users(model_file, users or "random:10")
    stem = Path(model_file).with_suffix("")
    markdown, html = Path(f"{stem}-explain.md"), Path(f"{stem}-explain.html")
    markdown.write_text(explanation_markdown(explanation), encoding="utf-8")
    html.write_text(explanation_html(explanation), encoding="utf-8")
    return f"{explanation_text(explanation)}\nreports: {markdown}, {html}"
