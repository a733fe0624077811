"""Per-epoch timing, training loss and validation curves for any RecBole trainer, without copying ``fit``.

:func:`instrument_trainer` derives a subclass of whatever trainer class a model uses (RecBole's
``Trainer``, a plugin ``<Model>Trainer``, ...) that wraps ``_train_epoch`` and ``_valid_epoch``.
``fit`` itself stays the parent's, so early stopping, checkpointing and logging are RecBole's.
Each checkpoint gets the records so far beside it (``<checkpoint>.history.json``), so that a run
cut short resumes from its checkpoint with its whole history (``resume_run``).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch

# Instrumented subclasses are cached so that one trainer class yields one subclass.
_CACHE: Dict[type, type] = {}


def _as_float(value: Any) -> Any:
    """numpy / torch scalars -> float, so that records serialise to JSON."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return value


def _synchronize(device: Any) -> None:
    # CUDA kernels run asynchronously: wait for them so that wall time covers the work.
    if torch.cuda.is_available() and getattr(device, "type", str(device)).startswith("cuda"):
        torch.cuda.synchronize(device)


def batch_mean_loss(epoch_loss: Any, batches: int) -> Optional[float]:
    """An epoch's training loss per batch: RecBole's ``_train_epoch`` returns the sum over
    batches (a tuple of sums for a model returning several loss parts, added up here)."""
    if epoch_loss is None or not batches:
        return None
    total = sum(epoch_loss) if isinstance(epoch_loss, (tuple, list)) else epoch_loss
    return _as_float(total) / batches


class EpochRecorder:
    """Mixin state: seconds and mean loss per training epoch, and one record per validation."""

    train_seconds: List[float]
    train_losses: List[Optional[float]]
    valid_records: List[Dict[str, Any]]

    def _init_records(self) -> None:
        self.train_seconds = []
        self.train_losses = []
        self.valid_records = []
        self._last_epoch: Optional[int] = None


def history_file(checkpoint: str) -> Path:
    """Where the records of the epochs up to ``checkpoint`` are kept."""
    return Path(f"{checkpoint}.history.json")


def _save_history(trainer: EpochRecorder, checkpoint: str, epoch: int) -> None:
    history = {"epoch": int(epoch), "train_seconds": trainer.train_seconds,
               "train_losses": trainer.train_losses, "valid_records": trainer.valid_records}
    target = history_file(checkpoint)
    partial = target.with_name(target.name + ".partial")
    partial.write_text(json.dumps(history))
    os.replace(partial, target)  # a reader never sees half a file


def instrument_trainer(trainer_class: type) -> type:
    """Return a subclass of ``trainer_class`` that records epoch times and validation results.

    After ``fit``, the instance holds ``train_seconds`` and ``train_losses`` (one float per
    ``_train_epoch`` call: seconds, and the loss per batch, :func:`batch_mean_loss`) and
    ``valid_records`` (``{"epoch", "score", "seconds", "result"}`` per ``_valid_epoch`` call,
    ``epoch`` being the 0-based index of the training epoch it followed, as RecBole logs it).
    """
    if trainer_class in _CACHE:
        return _CACHE[trainer_class]

    def __init__(self, config, model, *args, **kwargs) -> None:
        EpochRecorder._init_records(self)
        trainer_class.__init__(self, config, model, *args, **kwargs)

    def _train_epoch(self, train_data, epoch_idx, *args, **kwargs):
        device = getattr(self, "device", None)
        _synchronize(device)
        start = time.perf_counter()
        loss = trainer_class._train_epoch(self, train_data, epoch_idx, *args, **kwargs)
        _synchronize(device)
        self.train_seconds.append(time.perf_counter() - start)
        self.train_losses.append(batch_mean_loss(loss, len(train_data)))
        self._last_epoch = epoch_idx
        return loss

    def _valid_epoch(self, valid_data, *args, **kwargs):
        start = time.perf_counter()
        valid_score, valid_result = trainer_class._valid_epoch(self, valid_data, *args, **kwargs)
        self.valid_records.append(
            {
                "epoch": self._last_epoch,
                "score": _as_float(valid_score),
                "seconds": time.perf_counter() - start,
                "result": {key: _as_float(value) for key, value in (valid_result or {}).items()},
            }
        )
        return valid_score, valid_result

    def _save_checkpoint(self, epoch, *args, **kwargs):
        path = kwargs.get("saved_model_file", self.saved_model_file)
        trainer_class._save_checkpoint(self, epoch, *args, **kwargs)
        if os.path.isfile(path):  # only rank 0 writes in distributed training
            _save_history(self, path, epoch)

    def resume_run(self, checkpoint: str) -> int:
        """Continue from ``checkpoint`` (RecBole's ``resume_checkpoint``: weights, optimizer,
        epoch, early-stopping state) with the records of its epochs; returns the next epoch."""
        history = json.loads(history_file(checkpoint).read_text())
        self.resume_checkpoint(checkpoint)
        done = self.start_epoch
        self.train_seconds = list(history["train_seconds"])[:done]
        self.train_losses = list(history["train_losses"])[:done]
        self.valid_records = [r for r in history["valid_records"] if r["epoch"] < done]
        self._last_epoch = done - 1
        # RecBole keeps the best score in the checkpoint but not its metrics: fit() returns them.
        at_checkpoint = [r for r in self.valid_records if r["epoch"] == done - 1]
        if at_checkpoint:
            self.best_valid_result = at_checkpoint[-1]["result"]
        return done

    name = f"Instrumented{trainer_class.__name__}"
    subclass = type(
        name,
        (trainer_class, EpochRecorder),
        {
            "__init__": __init__,
            "_train_epoch": _train_epoch,
            "_valid_epoch": _valid_epoch,
            "_save_checkpoint": _save_checkpoint,
            "resume_run": resume_run,
            "__module__": __name__,
            "__qualname__": name,
            "__doc__": f"{trainer_class.__name__} recording epoch times and validation results.",
        },
    )
    _CACHE[trainer_class] = subclass
    return subclass


def best_epoch(valid_records: List[Dict[str, Any]], bigger: bool = True) -> Optional[int]:
    """The epoch whose checkpoint RecBole kept: its ``early_stopping`` updates on ties too."""
    best_score, best = None, None
    for record in valid_records:
        score = record["score"]
        if best_score is None or (score >= best_score if bigger else score <= best_score):
            best_score, best = score, record["epoch"]
    return best
