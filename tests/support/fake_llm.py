"""What the ESIM tests against the loopback server share: a valid answer and the backend that asks it."""

from recbole_eimf.esim.backends.openai_compat import OpenAIBackend

VALID = '{"interests": [{"name": "Space operas", "description": "Epic science fiction."}]}'


def fake_backend(url: str, key_env: str, **options) -> OpenAIBackend:
    """An OpenAI-compatible backend for ``url`` with short timeouts and retries (``options`` win)."""
    values = dict(model="fake-model", base_url=url, api_key_env=key_env, timeout=5.0, max_retries=2,
                  retry_backoff=0.01)
    values.update(options)
    return OpenAIBackend(**values)
