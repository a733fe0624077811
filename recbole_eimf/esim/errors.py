"""Errors ESIM raises besides :class:`recbole_eimf.errors.ConfigError`."""

from recbole_eimf.errors import ConfigError, UserError


class EsimError(UserError, RuntimeError):
    """ESIM cannot produce semantic targets from what it was given (the message says why)."""


class LLMFatalError(ConfigError):
    """The LLM endpoint refuses every request (bad key, unknown model, wrong URL): the stage stops.

    Answers received before the error stay in the cache; a rerun after the fix asks only for the rest.
    """
