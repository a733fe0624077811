"""Padding trimmed off the batches of RecBole's sequential models (the ``trim_padding`` key).

RecBole pads every item sequence to ``MAX_ITEM_LIST_LENGTH``; most training prefixes are short
(on amazon-beauty 17% of the positions are real items) and nearly every batch of 2048 rows holds
one full-length row, so cutting a batch to its longest sequence saves nothing. Instead the rows of
a batch are grouped by length and the model's ``forward`` runs on each group cut to its longest
sequence. For a model whose ``forward`` treats rows independently and ignores trailing padding
(masked, causal or recurrent), the outputs are the stock ones up to float rounding. Which RecBole
models are exact is data: ``properties/trim_padding.yaml``, decided by tests/test_trim_padding.py.

In training, every ``nn.Dropout`` of the model draws its mask at the padded shape (the mask the
stock model draws) and each group takes its rows and positions of it: a trimmed training run
follows the same random stream as the stock one, so it reaches the same weights. Those draws are
most of a trimmed CPU step (docs/BENCHMARKS.md section 27); ``trim_dropout: group`` draws each
group's masks at its own shape instead: every real position still gets an independent mask of
the same rate, so training is the stock one in distribution, not draw for draw.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
import yaml
from torch import nn

from recbole_eimf.errors import ConfigError

logger = logging.getLogger(__name__)

TABLE_FILE = Path(__file__).parent / "properties" / "trim_padding.yaml"
LAYOUTS = ("pooled", "positions")  # forward() returns [B, d] / [B, L, d]
DROPOUT_MASKS = ("padded", "group")  # the trim_dropout key


def exact_models(path: Path = TABLE_FILE) -> Dict[str, str]:
    """``{model class name: forward's output layout}`` of the RecBole models exact under trimming."""
    table = yaml.safe_load(path.read_text()) or {}
    for name, layout in table.items():
        if layout not in LAYOUTS:
            raise ConfigError(f"{path}: model {name}: layout must be one of {LAYOUTS}, got {layout!r}")
    return table


def length_groups(lengths: torch.Tensor, length: int) -> Tuple[List[Tuple[torch.Tensor, int]], torch.Tensor]:
    """Rows grouped by length, lengths in (2^(j-1), 2^j]: ``([(rows, longest), ...], order)``.

    At most ``log2(L) + 1`` groups, each padded to at most twice its real positions;
    ``torch.cat(parts)[order]`` puts per-group results back in the batch's row order.
    """
    lengths = lengths.clamp(1, length)
    group = torch.ceil(torch.log2(lengths.to(torch.float32))).long()
    by_group = group.argsort(stable=True)  # the batch's rows, group after group
    _, counts = torch.unique(group, sorted=True, return_counts=True)
    groups = [(rows, int(lengths[rows].max())) for rows in by_group.split(counts.tolist())]
    return groups, by_group.argsort()


def sequence_lengths(item_seq: torch.Tensor) -> torch.Tensor:
    """Each right-padded row's length: its last non-zero position + 1 (a BERT4Rec mask included)."""
    positions = torch.arange(1, item_seq.size(1) + 1, device=item_seq.device)
    return ((item_seq != 0) * positions).amax(dim=1)


class _DropoutMasks:
    """Dropout masks drawn at the padded shape, shared by the groups of one ``forward``.

    ``layout[k]`` says, per dimension of the k-th dropout call's input, whether it is the batch
    (``"B"``), the sequence (``"L"``) or fixed (``None``); it is found once by a probe.
    """

    def __init__(self) -> None:
        self.mode: Optional[str] = None  # None (stock), "probe" or "groups"
        self.shapes: List[Tuple[int, ...]] = []
        self.layout: Optional[List[List[Optional[str]]]] = None
        self.masks: List[torch.Tensor] = []
        self.calls = 0
        self.rows: Optional[torch.Tensor] = None
        self.longest = 0
        self.batch, self.length = 0, 0

    def dropout(self, module: nn.Dropout, x: torch.Tensor) -> torch.Tensor:
        if self.mode is None or not module.training or module.p == 0:
            return F.dropout(x, module.p, module.training, module.inplace)
        if self.mode == "probe":
            self.shapes.append(tuple(x.shape))
            return x
        k = self.calls
        self.calls += 1
        if k == len(self.masks):  # the first group draws the stock model's mask
            dims = self.layout[k]
            full = [self.batch if d == "B" else self.length if d == "L" else n for d, n in zip(dims, x.shape)]
            self.masks.append(torch.empty(full, dtype=x.dtype, device=x.device).bernoulli_(1 - module.p).div_(1 - module.p))
        mask = self.masks[k]
        for dim, kind in enumerate(self.layout[k]):
            if kind == "L":
                mask = mask.narrow(dim, 0, self.longest)  # a view: only the group's part is copied
        return x * mask.index_select(0, self.rows)

    @contextlib.contextmanager
    def active(self, mode: str):
        self.mode, self.shapes, self.masks, self.calls = mode, [], [], 0
        try:
            yield
        finally:
            self.mode, self.masks = None, []


def _cut(value: Any, rows: torch.Tensor, longest: int, batch: int, length: int) -> Any:
    """One ``forward`` argument for a group: its rows, and its first ``longest`` positions."""
    if not isinstance(value, torch.Tensor) or value.dim() == 0 or value.size(0) != batch:
        return value
    value = value.index_select(0, rows)
    return value[:, :longest] if value.dim() >= 2 and value.size(1) == length else value


def _classify(a: Tuple[int, ...], b: Tuple[int, ...], rows: Tuple[int, int], lengths: Tuple[int, int]) -> List[Optional[str]]:
    """Each dimension of a dropout input seen at (rows[0], lengths[0]) and (rows[1], lengths[1])."""
    if len(a) != len(b):
        raise ValueError(f"a dropout input changed rank with the sequence length: {a} vs {b}")
    kinds: List[Optional[str]] = []
    for dim, (x, y) in enumerate(zip(a, b)):
        if x == y:
            kinds.append(None)
        elif dim == 0 and (x, y) == rows:
            kinds.append("B")
        elif (x, y) == lengths:
            kinds.append("L")
        else:
            raise ValueError(f"cannot tell the batch and sequence dimensions of a dropout input: {a} vs {b}")
    return kinds


class GroupedForward:
    """A model's ``forward`` run on groups of similar-length rows, each cut to its longest sequence.

    Arguments of ``batch`` rows are split by row; those with ``length`` columns are also cut. The
    first 2-D integer argument is the item sequence whose lengths decide the groups.
    """

    def __init__(self, model: nn.Module, layout: str, padded_masks: bool = True) -> None:
        self.original = model.forward
        self.model = model
        self.positions = layout == "positions"
        self.masks = _DropoutMasks()
        self.padded_masks = padded_masks
        for module in model.modules() if padded_masks else ():
            if isinstance(module, nn.Dropout):
                module.forward = (lambda m: (lambda x: self.masks.dropout(m, x)))(module)

    def __call__(self, *args: Any) -> Any:
        seq = next((a for a in args if isinstance(a, torch.Tensor) and a.dim() == 2 and not a.is_floating_point()), None)
        if seq is None or seq.size(0) < 2:
            return self.original(*args)
        batch, length = seq.shape
        lengths = sequence_lengths(seq)
        groups, order = length_groups(lengths, length)
        if len(groups) == 1 and groups[0][1] == length:
            return self.original(*args)
        share_masks = self.model.training and self.padded_masks  # the groups take parts of one padded mask
        if share_masks and self.masks.layout is None:
            self._probe(args, lengths, batch, length)
        masks = self.masks
        masks.batch, masks.length = batch, length
        parts = []
        with masks.active("groups") if share_masks else contextlib.nullcontext():
            for rows, longest in groups:
                masks.rows, masks.longest, masks.calls = rows, longest, 0
                part = self.original(*[_cut(a, rows, longest, batch, length) for a in args])
                parts.append(F.pad(part, (0, 0, 0, length - longest)) if self.positions else part)
        return torch.cat(parts)[order]

    def _probe(self, args: Sequence[Any], lengths: torch.Tensor, batch: int, length: int) -> None:
        """Which dimensions of each dropout input are the batch and the sequence: two small calls
        (n rows at length m, n - 1 rows at m + 1) under the same random state, without gradients."""
        n = min(3, batch)
        rows = lengths.argsort()[:n]
        m = int(lengths[rows].max())
        seen = []
        for count, longest in ((n, m), (n - 1, m + 1)):
            with torch.no_grad(), torch.random.fork_rng(devices=[]), self.masks.active("probe"):
                self.original(*[_cut(a, rows[:count], longest, batch, length) for a in args])
                seen.append(self.masks.shapes)
        if len(seen[0]) != len(seen[1]):
            raise ValueError("the number of dropout calls changed with the sequence length")
        self.masks.layout = [_classify(a, b, (n, n - 1), (m, m + 1)) for a, b in zip(*seen)]


def trims_itself(model: nn.Module) -> bool:
    """The plugin's models trim inside (their own ``trim_padding`` key): ``TRIMS_PADDING``."""
    return bool(getattr(type(model), "TRIMS_PADDING", False))


def apply_trim_padding(model: nn.Module, config) -> str:
    """Run ``model`` on trimmed batches where that is exact, as ``config["trim_padding"]`` asks.

    ``True``: trim (an error for a model not exact under trimming); ``False``: stock behaviour;
    unset: trim the exact models. Returns the line the run logs.
    """
    setting = config["trim_padding"]
    if setting not in (None, True, False):
        raise ConfigError(f"`trim_padding` must be True or False (or unset: on where exact), got {setting!r}")
    name = type(model).__name__
    if trims_itself(model):
        return f"trim_padding: {'off' if setting is False else 'on'} ({name} trims its own batches)"
    from recbole.model.abstract_recommender import SequentialRecommender

    if not isinstance(model, SequentialRecommender):
        return f"trim_padding: off ({name} has no item sequences)"
    if setting is False:
        return "trim_padding: off (trim_padding: False)"
    layout = exact_models().get(name)
    if layout is None:
        if setting is True:
            raise ConfigError(
                f"trim_padding: True, but {name} does not give the same outputs on trimmed batches "
                f"(not listed in {TABLE_FILE}): remove the trim_padding key or set it to False"
            )
        return f"trim_padding: off: {name} is not exact under trimming"
    masks = config["trim_dropout"] or "padded"
    if masks not in DROPOUT_MASKS:
        raise ConfigError(f"`trim_dropout` must be one of {DROPOUT_MASKS}, got {masks!r}")
    model.forward = GroupedForward(model, layout, padded_masks=masks == "padded")
    return f"trim_padding: on (exact for {name}; dropout masks drawn per {masks if masks == 'group' else 'padded batch'})"
