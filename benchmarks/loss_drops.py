"""How far each recorded run's training loss had fallen by its best validation epoch.

    python benchmarks/loss_drops.py docs/benchmarks            # every RecBole log and runs.jsonl below

The evidence behind the harness's training-health threshold (recbole_eimf/benchmark/health.py):
for each run, the relative drop of the training loss from the first epoch to the best one, as
:func:`training_health` computes it. Runs recorded before the harness kept loss curves are read
from their RecBole log (``epoch N training [... train loss: X]``; the best epoch is the last one
followed by ``Saving current``).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any, Dict, Iterator, Optional

from recbole_eimf.benchmark.health import MIN_LOSS_DROP, training_health

EPOCH_LOSS = re.compile(r"epoch (\d+) training \[time: [0-9.]+s, train loss: ([0-9.]+)")


def record_from_log(path: Path) -> Optional[Dict[str, Any]]:
    """A run's loss curve and best epoch from its RecBole log (losses summed over batches: the
    ratio to the first epoch is the same per batch)."""
    losses, best, last = [], None, None
    for line in path.read_text(errors="ignore").splitlines():
        found = EPOCH_LOSS.search(line)
        if found:
            last = int(found[1])
            if last == len(losses):
                losses.append(float(found[2]))
        elif "Saving current" in line and last is not None:
            best = last
    return {"model": path.stem, "seed": "", "train_losses": losses, "best_epoch": best} if best is not None else None


def records(root: Path) -> Iterator[Dict[str, Any]]:
    for path in sorted(root.rglob("*.log")):
        record = record_from_log(path)
        if record is not None:
            yield {**record, "model": str(path.relative_to(root))}
    for path in sorted(root.rglob("runs.jsonl")):
        for line in path.read_text().splitlines():
            record = json.loads(line)
            if record.get("train_losses"):
                yield {**record, "model": f"{path.parent.relative_to(root)}: {record['model']}"}


def main(root: str) -> None:
    print(f"| run | epochs | best epoch | loss drop at best epoch | flagged (< {100 * MIN_LOSS_DROP:.0f}%) |")
    print("| --- | ---: | ---: | ---: | --- |")
    for record in records(Path(root)):
        health = training_health(record)
        if health is not None:
            print(
                f"| {record['model']} {record['seed']} | {len(record['train_losses'])} | {health['best_epoch']} | "
                f"{100 * health['relative_drop']:.1f}% | {'yes' if health['flagged'] else 'no'} |"
            )


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "docs/benchmarks")
