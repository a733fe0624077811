"""``llm_backend: openai``: any OpenAI-compatible chat-completions endpoint, through the ``openai`` package.

OpenAI itself, Azure's OpenAI-compatible endpoint, vLLM, Ollama, a llama.cpp server: set
``llm_base_url`` (empty: OpenAI's) and ``llm_model``. The API key is read from the environment
variable named by ``llm_api_key_env`` (default ``OPENAI_API_KEY``); the key itself is never in the
config, and it is removed from every error message ESIM keeps or logs. For a server that needs no
key, leave ``llm_api_key_env`` empty (``llm_api_key_env: ~`` in yaml, ``--llm_api_key_env=None``).

Requests: at most ``llm_concurrency`` in flight (the caller's thread pool), each waiting at most
``llm_timeout`` seconds; a 429, a 408/409, a 5xx, a timeout or a dropped connection is retried up
to ``llm_max_retries`` times, waiting ``llm_retry_backoff * 2**retry`` seconds (with jitter, at most
60), or what the server's ``Retry-After`` asks; an HTTP 200 whose body is not a chat completion
(a proxy's HTML page, cut-off JSON) is retried the same way. A 401/403 (key refused), a 404 (model
or URL unknown) or a few identical connection failures in a row (nothing listens at the URL)
stop the stage with one error naming the URL; any other refusal fails that prompt alone. After
:meth:`OpenAIBackend.interrupt` (Ctrl-C) no request is retried or started.
"""

from __future__ import annotations

import logging
import os
import random
import threading
from typing import Callable, Dict, Optional, Tuple, TypeVar

from recbole_eimf import secrets
from recbole_eimf.errors import ConfigError
from recbole_eimf.esim.backends.base import Completion, LLMBackend, LLMCallError
from recbole_eimf.esim.errors import LLMFatalError
from recbole_eimf.esim.prompts import Prompt

logger = logging.getLogger(__name__)

T = TypeVar("T")
RETRYABLE_STATUS = {408, 409, 425, 429}
MAX_WAIT_S = 60.0
NO_KEY = "no-key"
# Identical connection failures in a row (across all requests) that mean nothing listens at the URL.
CONNECT_FAILURES_TO_STOP = 3


class Redactor:
    """Removes a secret (and every other registered one) from text before it is logged, raised or stored."""

    def __init__(self, secret: Optional[str]) -> None:
        if secret and secret != NO_KEY:
            secrets.register(secret)

    def __call__(self, text: str) -> str:
        return secrets.redact(text)


class MalformedResponse(Exception):
    """An HTTP 200 whose body is not a chat completion (retried like a 5xx)."""


class ConnectWatch:
    """Counts identical connection failures in a row, over all requests of one backend; any answer
    from the server (an HTTP error included) resets it."""

    def __init__(self, limit: int = CONNECT_FAILURES_TO_STOP) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        self._reason: Optional[str] = None
        self._count = 0

    def failed(self, reason: str) -> bool:
        """Record one connection failure; True when ``limit`` identical ones came in a row."""
        with self._lock:
            self._count = self._count + 1 if reason == self._reason else 1
            self._reason = reason
            return self._count >= self.limit

    def answered(self) -> None:
        with self._lock:
            self._reason, self._count = None, 0


def safe_url(url: Optional[str]) -> str:
    """A base URL for logs: user:password@ removed; empty means OpenAI's own endpoint."""
    if not url:
        return "OpenAI's default endpoint"
    return secrets.strip_user_info(url)


def import_openai():
    try:
        import openai
    except ImportError as err:
        raise ConfigError(
            "llm_backend / text_encoder 'openai' needs the `openai` package: pip install openai"
        ) from err
    return openai


def read_api_key(key_env: Optional[str], who: str) -> str:
    """The API key from the environment variable ``key_env``; one clear error when it is not set."""
    if not key_env:
        return NO_KEY
    value = os.environ.get(key_env, "").strip()
    if not value:
        raise ConfigError(
            f"{who} reads its API key from the environment variable [{key_env}] (config key "
            f"`llm_api_key_env`), and [{key_env}] is not set. Export it (export {key_env}=...), or name "
            "another variable with --llm_api_key_env=NAME; for a server that needs no key, set "
            "--llm_api_key_env=None. Never put the key itself in a config file."
        )
    secrets.register(value)
    return value


def make_client(base_url: Optional[str], key_env: Optional[str], timeout: float, who: str):
    """``(openai.OpenAI client, Redactor)`` with the SDK's own retries off (ESIM retries itself)."""
    openai = import_openai()
    key = read_api_key(key_env, who)
    client = openai.OpenAI(api_key=key, base_url=base_url or None, timeout=timeout, max_retries=0)
    return client, Redactor(key)


def _retry_after(err) -> Optional[float]:
    response = getattr(err, "response", None)
    headers = getattr(response, "headers", None) or {}
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is not None:
            try:
                return max(0.0, float(value) * scale)
            except ValueError:
                return None
    return None


def call_with_retries(
    call: Callable[[], T],
    *,
    max_retries: int,
    backoff: float,
    redact: Redactor,
    base_url: Optional[str],
    model: str,
    key_env: Optional[str],
    stop: Optional[threading.Event] = None,
    watch: Optional[ConnectWatch] = None,
    on_problem: Optional[Callable[[str], None]] = None,
) -> Tuple[T, int]:
    """``(call(), retries)``; retries on 429/408/409/5xx/timeouts/dropped connections and malformed
    bodies, until ``stop`` is set; ``watch`` stops the stage when nothing listens (module doc)."""
    openai = import_openai()
    retries = 0
    while True:
        hint = None
        if stop is not None and stop.is_set():
            raise LLMCallError("interrupted before an answer came", retries=retries)
        try:
            result = call()
            if watch is not None:
                watch.answered()
            return result, retries
        except MalformedResponse as err:
            retryable, reason = True, f"HTTP 200 with a malformed body: {redact(_short(str(err)))}"
            if watch is not None:
                watch.answered()
        except openai.APIStatusError as err:
            if watch is not None:
                watch.answered()
            status = err.status_code
            detail = redact(_short(getattr(err, "message", "") or str(err)))
            if status in (401, 403):
                raise LLMFatalError(
                    f"The endpoint [{safe_url(base_url)}] refused the API key read from the environment "
                    f"variable [{key_env}] (HTTP {status}): check its value, or `llm_api_key_env`. "
                    f"Server said: {detail}"
                ) from None
            if status == 404:
                raise LLMFatalError(
                    f"The endpoint [{safe_url(base_url)}] answered HTTP 404 for model [{model}]: check "
                    f"`llm_model` and `llm_base_url` (an OpenAI-compatible base URL usually ends in /v1). "
                    f"Server said: {detail}"
                ) from None
            retryable = status in RETRYABLE_STATUS or status >= 500
            reason = f"HTTP {status}: {detail}"
            hint = _retry_after(err)
        except openai.APITimeoutError:
            retryable, reason = True, "no answer within llm_timeout"
        except openai.APIConnectionError as err:
            reason = f"connection failed: {redact(_short(str(err.__cause__ or err)))}"
            retryable = True
            if watch is not None and _could_not_connect(err) and watch.failed(reason):
                raise LLMFatalError(
                    f"Cannot reach the endpoint [{safe_url(base_url)}]: {reason} ({watch.limit} times in a row). "
                    "Check `llm_base_url` (host, port, and /v1 at the end for most servers) and that the server runs"
                ) from None
        except openai.OpenAIError as err:
            retryable, reason = False, redact(_short(str(err)))
        if on_problem is not None:
            on_problem(reason)
        if not retryable or retries >= max_retries:
            attempts = retries + 1
            raise LLMCallError(f"{reason} ({attempts} attempt{'s' if attempts > 1 else ''})", retries=retries)
        wait = hint if hint is not None else backoff * (2 ** retries) * (1.0 + 0.25 * random.random())
        logger.debug(f"ESIM: request failed ({reason}); retry {retries + 1}/{max_retries} in {wait:.2f}s")
        if stop is None:
            stop = threading.Event()  # never set: a plain sleep
        if stop.wait(min(wait, MAX_WAIT_S)):
            raise LLMCallError(f"interrupted while waiting to retry ({reason})", retries=retries)
        retries += 1


def _could_not_connect(err: Exception) -> bool:
    """Whether no connection was made at all (refused, unknown host), as opposed to one dropped
    mid-request; told by the transport's exception class (httpx or its successor), not imported."""
    cause = err.__cause__
    return cause is not None and any(kind.__name__ == "ConnectError" for kind in type(cause).__mro__)


def _completion_of(response) -> Completion:
    """The answer in a chat completion; :class:`MalformedResponse` when the body is not one
    (null or empty content is an answer: an unreadable one)."""
    choices = getattr(response, "choices", None)
    message = getattr(choices[0], "message", None) if isinstance(choices, list) and choices else None
    if message is None:
        raise MalformedResponse(f"no choices[0].message in {_short(repr(response), 120)}")
    usage = getattr(response, "usage", None)
    return Completion(
        text=message.content or "",
        input_tokens=getattr(usage, "prompt_tokens", None),
        output_tokens=getattr(usage, "completion_tokens", None),
    )


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


class OpenAIBackend(LLMBackend):
    """Chat completions from an OpenAI-compatible endpoint (module doc)."""

    name = "openai"

    def __init__(
        self,
        model: str,
        base_url: Optional[str] = None,
        api_key_env: Optional[str] = "OPENAI_API_KEY",
        temperature: float = 0.0,
        max_tokens: int = 512,
        timeout: float = 60.0,
        max_retries: int = 4,
        retry_backoff: float = 1.0,
    ) -> None:
        self.model = model
        self.base_url = base_url
        self.api_key_env = api_key_env
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.max_retries = max_retries
        self.retry_backoff = retry_backoff
        self.client, self.redact = make_client(base_url, api_key_env, timeout, "llm_backend 'openai'")
        self.stop = threading.Event()
        self.watch = ConnectWatch()
        self.last_problem: Optional[str] = None   # the latest failed attempt, for progress lines

    @classmethod
    def from_settings(cls, settings) -> "OpenAIBackend":
        return cls(
            model=settings.llm_model,
            base_url=settings.llm_base_url,
            api_key_env=settings.llm_api_key_env,
            temperature=settings.llm_temperature,
            max_tokens=settings.llm_max_tokens,
            timeout=settings.llm_timeout,
            max_retries=settings.llm_max_retries,
            retry_backoff=settings.llm_retry_backoff,
        )

    def decoding(self) -> Dict:
        return {"temperature": self.temperature, "max_tokens": self.max_tokens}

    def complete(self, prompt: Prompt) -> Completion:
        def call():
            try:
                response = self.client.chat.completions.create(
                    model=self.model,
                    messages=prompt.as_messages(),
                    temperature=self.temperature,
                    max_tokens=self.max_tokens,
                )
            except ValueError as err:   # a body that is not JSON (json and pydantic errors are ValueErrors)
                raise MalformedResponse(f"not JSON ({err})") from None
            return _completion_of(response)

        def problem(reason: str) -> None:
            self.last_problem = reason

        completion, retries = call_with_retries(
            call, max_retries=self.max_retries, backoff=self.retry_backoff, redact=self.redact,
            base_url=self.base_url, model=self.model, key_env=self.api_key_env, stop=self.stop, watch=self.watch,
            on_problem=problem,
        )
        completion.retries = retries
        return completion

    def interrupt(self) -> None:
        self.stop.set()

    def describe(self) -> str:
        return f"openai-compatible endpoint [{safe_url(self.base_url)}], model [{self.model}]"

    def close(self) -> None:
        self.client.close()
