"""The console (and file) lines of a long command's own progress: the benchmark harness's runs,
the tuner's trials.

RecBole configures the root logger for each run (its console and its own log file) and takes it
down after; the harness or tuner around those runs logs to its own logger, shown by these
handlers and not propagated to the root, so that no line is lost between runs or printed twice
within one.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Iterator, Optional


@contextlib.contextmanager
def progress_logging(logger: logging.Logger, log_file: Optional[Path] = None) -> Iterator[None]:
    """Show ``logger``'s INFO lines on the console, and in ``log_file`` if given, inside the block."""
    saved = logger.level, logger.propagate
    logger.setLevel(logging.INFO)
    logger.propagate = False
    formatter = logging.Formatter("%(asctime)s %(levelname)s  %(message)s", "%d %b %H:%M:%S")
    handlers: list = [logging.StreamHandler()]
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file, encoding="utf-8"))
    for handler in handlers:
        handler.setFormatter(formatter)
        logger.addHandler(handler)
    try:
        yield
    finally:
        for handler in handlers:
            logger.removeHandler(handler)
            handler.close()
        logger.level, logger.propagate = saved
