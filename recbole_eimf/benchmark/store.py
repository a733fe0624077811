"""The per-run record of a benchmark folder: ``runs.jsonl``, one JSON object per finished run.

Append-only (:mod:`recbole_eimf.jsonl`): a crash can at worst leave a truncated last line, which
:meth:`RunStore.load` skips (the run is then simply redone).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Dict, Tuple, Union

from recbole_eimf.jsonl import append_record, read_records

logger = logging.getLogger(__name__)

RunKey = Tuple[str, int]


def run_key(model: str, seed: int) -> RunKey:
    return (str(model), int(seed))


class RunStore:
    """Finished runs of one output folder, keyed by ``(model, seed)``; the last record wins."""

    def __init__(self, path: Union[str, Path]) -> None:
        self.path = Path(path)

    def load(self) -> Dict[RunKey, Dict[str, Any]]:
        records: Dict[RunKey, Dict[str, Any]] = {}
        for number, record in read_records(self.path):
            try:
                key = run_key(record["model"], record["seed"])
            except (ValueError, KeyError, TypeError):
                logger.warning(f"{self.path}:{number}: ignoring an unreadable record (an interrupted write?)")
                continue
            # Not stored: where files the record names (its per-user ranks) are found, when
            # a report reads it from another folder (--runs_from).
            record["source_dir"] = str(self.path.parent)
            records[key] = record
        return records

    def append(self, record: Dict[str, Any]) -> None:
        append_record(self.path, record)
