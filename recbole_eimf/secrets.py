"""Keeping credentials out of what the project writes.

API keys come from the environment only (the variable named by ``llm_api_key_env``): a key read
there is registered with :func:`register`, and every file ESIM writes passes through
:func:`redact`. :func:`check_config` refuses config values that would carry a secret into the
logs, manifests and run records (a key given as a config value, user info in a URL, a key given
where a variable name belongs), without echoing the value.
"""

from __future__ import annotations

import re
import threading
from typing import Any, Mapping

from recbole_eimf.errors import ConfigError

REDACTED = "[redacted]"
_SECRETS: set = set()
_LOCK = threading.Lock()
_USER_INFO = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*@")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
KEY_ENV_KEYS = ("llm_api_key_env",)


def register(secret: str) -> None:
    """Remember ``secret`` (a key read from the environment) so that :func:`redact` removes it."""
    if secret and len(secret) >= 4:  # shorter values would redact ordinary words
        with _LOCK:
            _SECRETS.add(secret)


def redact(text: str) -> str:
    """``text`` with every registered secret replaced by ``[redacted]``."""
    text = str(text)
    with _LOCK:
        secrets = sorted(_SECRETS, key=len, reverse=True)
    for secret in secrets:
        text = text.replace(secret, REDACTED)
    return text


def strip_user_info(url: str) -> str:
    """``url`` without ``user:password@``."""
    return re.sub(r"//[^/?#]*@", "//", url, count=1)


def check_config(config: Mapping[str, Any]) -> None:
    """Raise a ConfigError naming the key when a config value would carry a secret (module doc)."""
    for key, value in config.items():
        if value is None or not isinstance(key, str):
            continue
        if key.endswith("api_key"):
            raise ConfigError(
                f"`{key}` is set in the config (its value is not shown): API keys are never config values, "
                "which are logged and recorded. Put the key in an environment variable and name that variable "
                "with `llm_api_key_env` (default OPENAI_API_KEY): export OPENAI_API_KEY=..."
            )
        if key.endswith("_url") and isinstance(value, str) and _USER_INFO.match(value):
            raise ConfigError(
                f"`{key}` holds a user name or password ({strip_user_info(value)} with user:password@ before the "
                "host): credentials do not belong in a URL, which is logged and recorded. Remove them and put the "
                "API key in the environment variable named by `llm_api_key_env` (sent as a Bearer token)"
            )
        if key in KEY_ENV_KEYS and (not isinstance(value, str) or not _ENV_NAME.match(value)):
            raise ConfigError(
                f"`{key}` must be the NAME of an environment variable (letters, digits and _), not the key itself "
                "(its value is not shown): export MY_KEY=... and pass --llm_api_key_env=MY_KEY"
            )
