"""The interface every interest source implements: an LLM endpoint, a local LLM, or no LLM at all."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Dict, Optional

from recbole_eimf.esim.prompts import Prompt


@dataclass
class Completion:
    """One answer: its text, the tokens it cost (None where unknown), and the retries it took."""

    text: str
    input_tokens: Optional[int] = None
    output_tokens: Optional[int] = None
    retries: int = 0


class LLMCallError(Exception):
    """One request failed for good (retries spent, or refused for that request alone).

    The prompt is recorded as failed and not cached: a rerun asks it again.
    """

    def __init__(self, message: str, retries: int = 0) -> None:
        super().__init__(message)
        self.retries = retries


class LLMBackend(ABC):
    """Answers prompts. Implementations must be safe to call from ``max_concurrency`` threads."""

    #: backend name, as in ``llm_backend``
    name: str = ""
    #: model identity (part of every answer's cache key)
    model: str = ""
    #: whether a language model writes the answers (False: the log says that no LLM was used)
    uses_llm: bool = True
    #: whether answers go to the answer cache (worth it when they cost time or money)
    cacheable: bool = True
    #: most requests in flight at once (None: as many as ``llm_concurrency``)
    max_concurrency: Optional[int] = None

    @abstractmethod
    def decoding(self) -> Dict:
        """Decoding settings that change the answer (part of every answer's cache key)."""

    @abstractmethod
    def complete(self, prompt: Prompt) -> Completion:
        """Answer one prompt, or raise :class:`LLMCallError` (or ``LLMFatalError`` to stop the stage)."""

    #: the latest failed attempt (for progress lines while waiting), None when there was none
    last_problem: Optional[str] = None

    def interrupt(self) -> None:
        """Stop retrying and start no new request (Ctrl-C); answers in flight may still arrive."""

    def describe(self) -> str:
        """One line for the log, never holding a secret."""
        return f"{self.name} ({self.model})"

    def close(self) -> None:
        """Release what the backend holds (connections, a model in memory)."""
