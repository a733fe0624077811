"""The runs of a benchmark folder: ``runs.jsonl``, one record per finished run, keyed by model
and seed (an :class:`~recbole_eimf.experiments.ExperimentLog`)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Dict, Tuple, Union

from recbole_eimf.experiments import ExperimentLog

logger = logging.getLogger(__name__)

RunKey = Tuple[str, int]


def run_key(model: str, seed: int) -> RunKey:
    return (str(model), int(seed))


class RunStore:
    """Finished runs of one output folder, keyed by ``(model, seed)``; the last record wins."""

    def __init__(self, path: Union[str, Path]) -> None:
        self.path = Path(path)
        self._log = ExperimentLog(self.path)

    def load(self) -> Dict[RunKey, Dict[str, Any]]:
        records: Dict[RunKey, Dict[str, Any]] = {}
        for record in self._log.load():
            try:
                records[run_key(record["model"], record["seed"])] = record
            except (ValueError, KeyError, TypeError):
                logger.warning(f"{self.path}: ignoring a record without model and seed")
        return records

    def append(self, record: Dict[str, Any]) -> None:
        self._log.append(record)
