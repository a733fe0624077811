"""Interest sources behind one interface (:class:`LLMBackend`): ``openai``, ``local``, ``extractive``.

``llm_backend: auto`` (the default) is ``openai`` when ``llm_base_url`` is set, else ``extractive``.
"""

from __future__ import annotations

from typing import Dict

import numpy as np

from recbole_eimf.esim.backends.base import Completion, LLMBackend, LLMCallError

__all__ = ["Completion", "LLMBackend", "LLMCallError", "make_backend", "backend_identity"]


def make_backend(settings, catalog=None, item_embeddings: np.ndarray = None) -> LLMBackend:
    """The backend ``settings.llm_backend`` names (``extractive`` needs the catalogue and embeddings)."""
    if settings.llm_backend == "openai":
        from recbole_eimf.esim.backends.openai_compat import OpenAIBackend

        return OpenAIBackend.from_settings(settings)
    if settings.llm_backend == "local":
        from recbole_eimf.esim.backends.local import LocalBackend

        return LocalBackend.from_settings(settings)
    from recbole_eimf.esim.backends.extractive import ExtractiveBackend

    return ExtractiveBackend(catalog, item_embeddings, settings.max_interests)


def backend_identity(settings) -> Dict:
    """What identifies the backend's answers, known without building it (no key, no model load)."""
    if settings.llm_backend == "openai":
        model = settings.llm_model
        decoding = {"temperature": settings.llm_temperature, "max_tokens": settings.llm_max_tokens}
    elif settings.llm_backend == "local":
        from recbole_eimf.esim.backends.local import resolve_model_identity

        model = resolve_model_identity(settings.llm_model)
        decoding = {"temperature": settings.llm_temperature, "max_tokens": settings.llm_max_tokens}
    else:
        from recbole_eimf.esim.backends.extractive import ExtractiveBackend

        model = ExtractiveBackend.model
        decoding = {"max_interests": settings.max_interests}
    return {"backend": settings.llm_backend, "model": model, "decoding": decoding,
            "uses_llm": settings.llm_backend != "extractive"}
