"""Errors the plugin raises for problems a user fixes in their config or data, not in code.

Every entry point (``run_recbole_eimf.py``, the benchmark harness) prints a :class:`UserError` as
``error: <message>`` with no traceback: the message names the key, file, line or field to fix.
"""


class UserError(Exception):
    """A problem the user fixes in their config, data or files; the message says what to change."""


class ConfigError(UserError, ValueError):
    """A config key has a value the plugin cannot use; the message names the key."""


class DatasetNotFoundError(UserError, FileNotFoundError):
    """The dataset is neither on disk nor downloadable from here; the message says where to put it."""


class DataError(UserError, ValueError):
    """The dataset cannot be trained on: a malformed atomic file (the message names file, line and
    field) or too little data left after filtering and splitting (it names the split and the keys)."""


class CheckpointError(UserError, ValueError):
    """A checkpoint file cannot be read, or was trained on other data than the dataset it is loaded with."""
