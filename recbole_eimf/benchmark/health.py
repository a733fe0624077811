"""Training health: did a run's training loss fall before its best validation epoch?

A run whose best epoch comes before its training loss has fallen compares an early stop, not a
trained model. Flagged when the loss per batch at the best epoch is less than
:data:`MIN_LOSS_DROP` below the first epoch's: well under the drop of runs that trained, well
above that of a run that stopped before learning (the measured drops: docs/BENCHMARKS.md, section
"Training health and per-user significance").
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional

MIN_LOSS_DROP = 0.05


def training_health(record: Mapping[str, Any], min_drop: float = MIN_LOSS_DROP) -> Optional[Dict[str, Any]]:
    """The first epoch's and the best epoch's training loss per batch, the relative drop between
    them and whether it is below ``min_drop`` (``flagged``); None when the record cannot tell
    (no loss curve, one epoch only, or a loss that is not positive, where a ratio means nothing)."""
    losses = record.get("train_losses") or []
    best = record.get("best_epoch")
    if best is None or len(losses) < 2 or not 0 <= int(best) < len(losses):
        return None
    first, at_best = losses[0], losses[int(best)]
    if first is None or at_best is None or first <= 0:
        return None
    drop = 1.0 - at_best / first
    return {
        "best_epoch": int(best),
        "first_loss": first,
        "best_loss": at_best,
        "relative_drop": drop,
        "min_drop": min_drop,
        "flagged": drop < min_drop,
    }


def health_markdown(records: Any) -> str:
    """``## Training health``: each flagged run with its numbers, or ``""`` when no run can be judged."""
    judged = [(r, h) for r in records for h in [training_health(r)] if h is not None]
    if not judged:
        return ""
    flagged = [(r, h) for r, h in judged if h["flagged"]]
    lines = [
        "## Training health",
        "",
        f"A run is flagged when its training loss per batch at its best validation epoch is less than "
        f"{100 * MIN_LOSS_DROP:.0f}% below its first epoch's: its best checkpoint is an early stop, "
        f"not a trained model. {len(flagged)} of {len(judged)} run(s) with a loss curve flagged.",
        "",
    ]
    for record, health in flagged:
        lines.append(
            f"- **{record['model']} seed {record['seed']}**: best epoch {health['best_epoch']} of "
            f"{len(record['train_losses'])}, loss {health['best_loss']:.4f} against {health['first_loss']:.4f} "
            f"at epoch 0 ({-100 * health['relative_drop']:+.1f}%)"
        )
    return "\n".join(lines) + "\n"
