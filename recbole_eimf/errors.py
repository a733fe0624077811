"""Errors the plugin raises for problems a user fixes in their config or data, not in code."""


class ConfigError(ValueError):
    """A config key has a value the plugin cannot use; the message names the key."""


class DatasetNotFoundError(FileNotFoundError):
    """The dataset is neither on disk nor downloadable from here; the message says where to put it."""
