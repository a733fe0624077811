"""ESIM's disk cache: LLM answers (append-only), item embeddings, and the final semantic targets.

Layout under ``<esim_cache_dir>/<dataset>/``::

    answers.jsonl                    one line per readable LLM answer, appended as soon as it is read
    failures.jsonl                   one line per prompt that got no readable answer (asked again next run)
    .lock                            held by the process asking the LLM or building targets here
    item_embeddings/<key>.npy        item text embeddings of one encoder (+ <key>.json)
    targets/<key>/                   one ESIM result: semantic_targets.pt, manifest.json,
                                     interests.md (readable), interests.json

``answers.jsonl``: each line is ``{"key", "model", "answer", "status", "usage", "created"}``; ``key``
is the sha256 of the request's messages, model and decoding settings (:func:`prompts.prompt_key`);
``status`` is ``ok``, or ``repaired`` when the answer came from the repair request. Only answers
that parse are stored: an empty answer or an HTML page is recorded in ``failures.jsonl`` and asked
again. A line is written, flushed and fsync'ed before the next answer is taken, so a run that dies
keeps every answer it received; a line cut short by a crash (or otherwise unreadable) is skipped
with a warning and that prompt is asked again. Every text written here passes through
:func:`recbole_eimf.secrets.redact`: no file holds an API key.

:func:`cache_lock` serialises processes on one cache (``flock``: the lock of a killed process
is released by the system, so a stale lock never blocks): a second process waits, then reuses
the first one's answers and targets instead of paying for them again.

Targets and embeddings are written to a temporary file and renamed into place; the manifest is
written last, so a directory with a manifest is complete.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import torch

from recbole_eimf.secrets import redact

try:
    import fcntl
except ImportError:  # Windows: no lock (one process per cache)
    fcntl = None

logger = logging.getLogger(__name__)

TARGETS_FILE = "semantic_targets.pt"
MANIFEST_FILE = "manifest.json"


class AnswerCache:
    """The append-only store of LLM answers (see module doc). Safe to use from several threads."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._answers: Dict[str, dict] = {}
        self.skipped_lines = 0
        self._load()

    def _load(self) -> None:
        if not self.path.is_file():
            return
        with open(self.path, "rb") as f:
            lines = f.read().split(b"\n")
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line.decode("utf-8"))
                key = record["key"]
                if not isinstance(key, str) or not isinstance(record.get("answer"), str):
                    raise ValueError("missing key or answer")
            except (ValueError, KeyError, TypeError, UnicodeDecodeError) as err:
                self.skipped_lines += 1
                logger.warning(
                    f"ESIM answer cache {self.path}: line {number} is unreadable ({err}); skipped, "
                    "its prompt will be asked again"
                )
                continue
            self._answers[key] = record

    def __contains__(self, key: str) -> bool:
        return key in self._answers

    def __len__(self) -> int:
        return len(self._answers)

    def get(self, key: str) -> Optional[dict]:
        return self._answers.get(key)

    def keys(self):
        return set(self._answers)

    @property
    def failures_path(self) -> Path:
        return self.path.with_name("failures.jsonl")

    def put(self, key: str, model: str, answer: str, usage: Optional[dict] = None, status: str = "ok") -> None:
        """Append one readable answer and make it durable before returning."""
        record = {
            "key": key,
            "model": model,
            "answer": redact(answer),
            "status": status,
            "usage": usage or {},
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        with self._lock:
            _append_line(self.path, record)
            self._answers[key] = record

    def put_failure(self, key: str, model: str, uid: int, error: str, raw_answers: List[str]) -> None:
        """Record a prompt that got no readable answer (not an answer: the prompt is asked again)."""
        record = {"key": key, "model": model, "uid": uid, "error": redact(error),
                  "raw_answers": [redact(raw[:2000]) for raw in raw_answers],
                  "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        with self._lock:
            _append_line(self.failures_path, record)


def _append_line(path: Path, record: dict) -> None:
    line = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "ab") as f:
        if f.tell() > 0 and not _ends_with_newline(path):
            f.write(b"\n")  # a line cut short by a crash stays a line of its own
        f.write(line)
        f.flush()
        os.fsync(f.fileno())


@contextmanager
def cache_lock(folder: Path, heartbeat: float = 30.0, poll: float = 0.2):
    """Hold ``<folder>/.lock`` inside the block, waiting for another process that holds it (module
    doc); logs every ``heartbeat`` seconds while waiting."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / ".lock"
    with open(path, "a+") as f:
        if fcntl is not None:
            _acquire(f, path, heartbeat, poll)
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\n")
        f.flush()
        try:
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(f, fcntl.LOCK_UN)


def _acquire(f, path: Path, heartbeat: float, poll: float) -> None:
    start, next_log = time.monotonic(), 0.0
    while True:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            pass
        waited = time.monotonic() - start
        if waited >= next_log:
            f.seek(0)
            holder = f.read().strip() or "?"
            logger.info(f"ESIM: another process (pid {holder}) is working on the cache {path.parent}; waiting "
                        f"to reuse its answers ({waited:.0f}s so far)")
            next_log = waited + heartbeat
        time.sleep(poll)


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1) == b"\n"


def _atomic_write(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_json(path: Path, value) -> None:
    text = json.dumps(value, indent=2, ensure_ascii=False, default=str) + "\n"
    write_text(path, text)


def write_text(path: Path, text: str) -> None:
    _atomic_write(Path(path), lambda tmp: tmp.write_text(redact(text), encoding="utf-8"))


def save_embeddings(folder: Path, key: str, embeddings: np.ndarray, meta: dict) -> None:
    folder = Path(folder)

    def write(tmp):
        with open(tmp, "wb") as f:
            np.save(f, embeddings.astype(np.float32))

    _atomic_write(folder / f"{key}.npy", write)
    write_json(folder / f"{key}.json", meta)


def load_embeddings(folder: Path, key: str, n_rows: int) -> Optional[np.ndarray]:
    path = Path(folder) / f"{key}.npy"
    if not path.is_file() or not (Path(folder) / f"{key}.json").is_file():
        return None
    try:
        embeddings = np.load(path)
    except (OSError, ValueError) as err:
        logger.warning(f"ESIM: cached embeddings {path} are unreadable ({err}); computing them again")
        return None
    return embeddings if embeddings.ndim == 2 and embeddings.shape[0] == n_rows else None


def save_targets(folder: Path, tensors: Dict[str, torch.Tensor], manifest: dict) -> None:
    """Write the target tensors, then the manifest (whose presence marks the folder complete)."""
    folder = Path(folder)
    _atomic_write(folder / TARGETS_FILE, lambda tmp: torch.save(tensors, tmp))
    write_json(folder / MANIFEST_FILE, manifest)


def load_targets(folder: Path, key: str):
    """``(tensors, manifest)`` of a complete targets folder made under ``key``, else None."""
    folder = Path(folder)
    manifest_path, tensors_path = folder / MANIFEST_FILE, folder / TARGETS_FILE
    if not manifest_path.is_file() or not tensors_path.is_file():
        return None
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        if manifest.get("key") != key:
            return None
        try:
            tensors = torch.load(tensors_path, map_location="cpu", weights_only=True)
        except TypeError:  # torch < 1.13 has no weights_only
            tensors = torch.load(tensors_path, map_location="cpu")
    except (OSError, ValueError, RuntimeError) as err:
        logger.warning(f"ESIM: cached targets in {folder} are unreadable ({err}); building them again")
        return None
    return tensors, manifest
