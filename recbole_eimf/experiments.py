"""Resumable experiments: what a finished run computed (its fingerprint), and the append-only log
that keeps finished runs across interruptions. One design for the benchmark harness
(``runs.jsonl``: a record per model and seed) and the tuner (``trials.jsonl``: a header naming
the search, then a record per trial).

A finished run is reused only when a new one would compute the same thing: the same resolved
config (every key RecBole and the plugin resolved, by value, whichever file or flag set it),
except the keys that say where or how visibly it runs (:data:`LOCAL_KEYS`). A key one side lacks
counts as the model's fallback for it (``CONFIG_FALLBACKS``: the behaviour from before the key
existed), so a key added to a default yaml with that value keeps earlier runs.

The log is JSON lines, appended and flushed per record (:mod:`recbole_eimf.jsonl`): a crash
can at worst leave a truncated last line, which is skipped (that run is simply redone).
"""

from __future__ import annotations

import functools
import json
import logging
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Union

import yaml

from recbole_eimf.config import PLACEMENT_KEYS
from recbole_eimf.errors import ConfigError
from recbole_eimf.jsonl import append_record, read_records
from recbole_eimf.utils import changed_keys, get_model, properties_dir

logger = logging.getLogger(__name__)

# Resolved keys that name where a run happens or where its files go, or which files supplied its
# values (the values themselves are in the fingerprint), not what it computes.
LOCAL_KEYS = frozenset(PLACEMENT_KEYS | {
    "checkpoint_dir", "device", "plugin_defaults_files", "tuned_defaults_files", "tuned_defaults", "config_files",
    # the tuner's own command-line options (RecBole's Config reads every --key=value)
    "params_file", "algo", "max_evals", "output_dir", "tuned_dir", "jobs", "seeds",
})


def plain(value: Any) -> Any:
    """``value`` as it reads back from a JSON file (tuples as lists, other objects as strings)."""
    return json.loads(json.dumps(value, sort_keys=True, default=str))


@functools.lru_cache(maxsize=None)
def _stage_keys(name: str) -> frozenset:
    """The keys a pipeline stage's defaults file sets (read once per process)."""
    return frozenset(yaml.safe_load((properties_dir() / f"{name}.yaml").read_text(encoding="utf-8")) or {})


def _keys_of_other_stages(config) -> set:
    """The keys of pipeline stages the config's model does not run (ESIM's, for SASRec): a value
    given to every model of a benchmark (``--esim_seed``) changes nothing there."""
    from recbole_eimf.quick_start.stages import STAGES, declared_stages

    return set().union(*(_stage_keys(name) for name in set(STAGES) - set(declared_stages(config))))


def fingerprint(config, exclude: Iterable[str] = ()) -> Dict[str, Any]:
    """The resolved settings of a run with ``config``, minus :data:`LOCAL_KEYS`, the keys of
    stages the model does not run, and ``exclude`` (e.g. ``seed`` where the seed is part of the
    run's key instead)."""
    skip = LOCAL_KEYS | _keys_of_other_stages(config) | set(exclude)
    return plain({key: value for key, value in config.final_config_dict.items() if key not in skip})


def config_fallbacks(config) -> Dict[str, Any]:
    """``CONFIG_FALLBACKS`` of the config's model class and of the backbone it wraps, if any."""
    fallbacks: Dict[str, Any] = {}
    backbone = config["backbone"]
    if isinstance(backbone, str):
        fallbacks.update(getattr(get_model(backbone), "CONFIG_FALLBACKS", {}))
    fallbacks.update(getattr(config.model_class, "CONFIG_FALLBACKS", {}))
    return plain(fallbacks)


def fingerprint_diff(old: Mapping[str, Any], new: Mapping[str, Any], fallbacks: Optional[Mapping[str, Any]] = None) -> List[str]:
    """``key: old -> new`` for every setting that differs (none: the same run)."""
    return changed_keys(old, new, fallbacks)


def describe_diff(changed: List[str], limit: int = 6) -> str:
    """The first ``limit`` changes of :func:`fingerprint_diff`, for a message."""
    shown = changed[:limit] + ([f"and {len(changed) - limit} more"] if len(changed) > limit else [])
    return ", ".join(shown) or "the same settings"


class ExperimentLog:
    """An append-only JSON-lines log of finished runs. With a ``header`` the file belongs to one
    experiment (a search): its first line is the header, and a file with another header is
    refused, naming what differs."""

    def __init__(self, path: Union[str, Path], header: Optional[Dict[str, Any]] = None) -> None:
        self.path = Path(path)
        self.header = plain(header) if header is not None else None

    def load(self) -> List[Dict[str, Any]]:
        """The records, in the order they were written (an unreadable line is skipped)."""
        records = []
        for number, record in read_records(self.path):
            if "header" in record or "search" in record:  # "search": the tuner's header before this module
                self._check_header(record.get("header", record.get("search")))
            elif isinstance(record, dict):
                records.append(record)
            else:
                logger.warning(f"{self.path}:{number}: ignoring a line that is not a record")
        return records

    def _check_header(self, found: Dict[str, Any]) -> None:
        if self.header is None or found == self.header:
            return
        changed = []
        for key in sorted((set(found) | set(self.header)) - {"settings"}):
            old, new = found.get(key), self.header.get(key)
            if old != new:  # short values in full, long ones (a search space's text) by name
                changed.append(f"{key}: {old} -> {new}" if len(f"{old}{new}") < 80 else f"{key} differs")
        changed += fingerprint_diff(found.get("settings") or {}, self.header.get("settings") or {})
        raise ConfigError(
            f"{self.path} holds the runs of another experiment ({describe_diff(changed)}): "
            f"use another output folder (--output_dir), or delete {self.path} to start that folder over"
        )

    def append(self, record: Dict[str, Any]) -> None:
        if self.header is not None and (not self.path.is_file() or self.path.stat().st_size == 0):
            append_record(self.path, {"header": self.header})
        append_record(self.path, record)
