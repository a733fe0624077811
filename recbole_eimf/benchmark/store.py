"""The per-run record of a benchmark folder: ``runs.jsonl``, one JSON object per finished run.

Append-only: a finished (model, seed) run is one line written with a single ``write`` and an
``fsync``. A crash can at worst leave a truncated last line, which :meth:`RunStore.load` skips
(the run is then simply redone) and the next append starts on a fresh line.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Dict, Tuple, Union

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
        if not self.path.is_file():
            return records
        with open(self.path, encoding="utf-8") as f:
            for number, line in enumerate(f, start=1):
                line = line.strip()
                if not line:
                    continue
                try:
                    record = json.loads(line)
                    key = run_key(record["model"], record["seed"])
                except (ValueError, KeyError, TypeError):
                    logger.warning(f"{self.path}:{number}: ignoring an unreadable record (an interrupted write?)")
                    continue
                records[key] = record
        return records

    def append(self, record: Dict[str, Any]) -> None:
        line = json.dumps(record, sort_keys=False, default=str) + "\n"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # A truncated last line (crash mid-write) must not swallow this record: start a new line.
        if self.path.is_file() and self.path.stat().st_size > 0:
            with open(self.path, "rb") as f:
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":
                    line = "\n" + line
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            data = line.encode("utf-8")
            while data:  # os.write may write less than asked
                data = data[os.write(fd, data):]
            os.fsync(fd)
        finally:
            os.close(fd)
