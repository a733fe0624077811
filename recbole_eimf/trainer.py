"""RecBole's trainers, with a model's loss parts logged under their names.

RecBole logs a model that returns a tuple of losses as ``train_loss1``, ``train_loss2``, ...; a
model that defines ``loss_names()`` (one name per part, in order) is logged as
``recommendation: 7.31, semantic_prediction: 0.42, ...`` instead, on the console and in
tensorboard. Models without it log exactly as in RecBole.
"""

from __future__ import annotations

import functools
from typing import Optional, Sequence, Type

from recbole.utils import set_color


class NamedLossParts:
    """Mixin over a RecBole trainer (first in the bases): names the parts of a tuple loss."""

    def _loss_names(self, losses) -> Optional[Sequence[str]]:
        names = getattr(self.model, "loss_names", None)
        if not isinstance(losses, tuple) or names is None:
            return None
        names = tuple(names())
        return names if len(names) == len(losses) else None

    def _generate_train_loss_output(self, epoch_idx, s_time, e_time, losses):
        names = self._loss_names(losses)
        if names is None:
            return super()._generate_train_loss_output(epoch_idx, s_time, e_time, losses)
        digits = self.config["loss_decimal_place"] or 4
        parts = ", ".join(set_color(name, "blue") + f": {loss:.{digits}f}" for name, loss in zip(names, losses))
        head = set_color("epoch %d training", "green") % epoch_idx
        return f"{head} [{set_color('time', 'blue')}: {e_time - s_time:.2f}s, {parts}]"

    def _add_train_loss_to_tensorboard(self, epoch_idx, losses, tag="Loss/Train"):
        names = self._loss_names(losses)
        if names is None:
            return super()._add_train_loss_to_tensorboard(epoch_idx, losses, tag)
        for name, loss in zip(names, losses):
            self.tensorboard.add_scalar(f"{tag}/{name}", loss, epoch_idx)


@functools.lru_cache(maxsize=None)
def with_named_losses(trainer_class: Type) -> Type:
    """``trainer_class`` with :class:`NamedLossParts` (built once per trainer class)."""
    return type(trainer_class.__name__, (NamedLossParts, trainer_class), {"__module__": __name__})

