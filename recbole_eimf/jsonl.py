"""Append-only JSON-lines files: the run records of a benchmark folder, the trials of a search.

A record is one line written with a single ``write`` and an ``fsync``, so a process killed at any
moment (a time limit, a crash) leaves every earlier record whole and at worst a truncated last
line, which :func:`read_records` skips and the next :func:`append_record` starts a fresh line after.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Dict, Iterator, Tuple, Union

logger = logging.getLogger(__name__)


def read_records(path: Union[str, Path]) -> Iterator[Tuple[int, Dict[str, Any]]]:
    """``(line number, record)`` for each readable line of ``path`` (none when it does not exist);
    an unreadable line (an interrupted write) is skipped with a warning."""
    path = Path(path)
    if not path.is_file():
        return
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            line = line.strip()
            if not line:
                continue
            try:
                record = json.loads(line)
            except ValueError:
                record = None
            if not isinstance(record, dict):
                logger.warning(f"{path}:{number}: ignoring an unreadable record (an interrupted write?)")
                continue
            yield number, record


def append_record(path: Union[str, Path], record: Dict[str, Any]) -> None:
    """Append ``record`` to ``path`` as one line, durably (module doc)."""
    path = Path(path)
    line = json.dumps(record, sort_keys=False, default=str) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    # A truncated last line (crash mid-write) must not swallow this record: start a new line.
    if path.is_file() and path.stat().st_size > 0:
        with open(path, "rb") as f:
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":
                line = "\n" + line
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        data = line.encode("utf-8")
        while data:  # os.write may write less than asked
            data = data[os.write(fd, data):]
        os.fsync(fd)
    finally:
        os.close(fd)
