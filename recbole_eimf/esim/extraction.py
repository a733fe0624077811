"""Asking the backend for every typical user's interests: cache first, bounded concurrency, one repair.

For each prompt: the answer cache is looked up by the request's key; a missing answer is asked
(at most ``llm_concurrency`` requests in flight) and appended to the cache the moment it arrives.
An answer the parser cannot read is asked once more with a repair note (that answer is cached
too). A prompt whose request fails for good (retries spent) is recorded as failed and not cached,
so a rerun asks it again; a prompt whose answers stay unreadable is recorded as failed with the
raw answer. Nothing is dropped silently: every outcome is counted in :class:`ExtractionStats`.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

from tqdm import tqdm

from recbole_eimf.esim.backends.base import LLMBackend, LLMCallError
from recbole_eimf.esim.cache import AnswerCache
from recbole_eimf.esim.parsing import Interest, ParseResult, parse_interests
from recbole_eimf.esim.prompts import Prompt, prompt_key

logger = logging.getLogger(__name__)


@dataclass
class UserAnswer:
    """The outcome for one typical user."""

    uid: int
    prompt: Prompt
    interests: List[Interest] = field(default_factory=list)
    status: str = "failed"           # ok, repaired, failed
    method: Optional[str] = None     # how the answer was read: json, fenced, embedded, list
    error: Optional[str] = None      # why it failed (request error or unreadable answer)
    raw_answers: List[str] = field(default_factory=list)
    from_cache: bool = False

    @property
    def ok(self) -> bool:
        return bool(self.interests)


@dataclass
class ExtractionStats:
    prompts: int = 0
    cache_hits: int = 0           # answers found in the cache (no request)
    calls: int = 0                # requests that got an answer (first asks and repairs)
    repair_calls: int = 0         # of which repairs
    retries: int = 0              # retried requests (429, 5xx, timeouts, dropped connections)
    failed_requests: int = 0      # prompts whose request failed for good (not cached: asked again next run)
    failed_parse: int = 0         # prompts whose answers stayed unreadable after the repair
    ok: int = 0
    repaired: int = 0             # ok only after the repair
    input_tokens: int = 0
    output_tokens: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return asdict(self)


class _Counter:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.stats = ExtractionStats()

    def add(self, **values) -> None:
        with self.lock:
            for name, value in values.items():
                setattr(self.stats, name, getattr(self.stats, name) + value)


def extract_interests(
    prompts: Sequence[Prompt],
    backend: LLMBackend,
    cache: Optional[AnswerCache],
    max_interests: int,
    concurrency: int = 1,
    show_progress: bool = False,
) -> Tuple[Dict[int, UserAnswer], ExtractionStats]:
    """``({uid: UserAnswer}, stats)`` for all ``prompts`` (module doc)."""
    start = time.perf_counter()
    counter = _Counter()
    counter.stats.prompts = len(prompts)
    if not backend.cacheable:
        cache = None
    decoding = backend.decoding()

    def ask(prompt: Prompt):
        """``(answer text, from_cache)`` for one request, caching a new answer at once."""
        key = prompt_key(prompt.as_messages(), backend.model, decoding)
        if cache is not None:
            record = cache.get(key)
            if record is not None:
                counter.add(cache_hits=1)
                return record["answer"], True
        try:
            completion = backend.complete(prompt)
        except LLMCallError as err:
            counter.add(retries=err.retries)
            raise
        usage = {"input_tokens": completion.input_tokens, "output_tokens": completion.output_tokens}
        if cache is not None:
            cache.put(key, backend.model, completion.text, usage)
        counter.add(calls=1, retries=completion.retries, input_tokens=completion.input_tokens or 0,
                    output_tokens=completion.output_tokens or 0)
        return completion.text, False

    def one(prompt: Prompt) -> UserAnswer:
        answer = UserAnswer(uid=prompt.uid, prompt=prompt)
        try:
            text, answer.from_cache = ask(prompt)
            answer.raw_answers.append(text)
            parsed: ParseResult = parse_interests(text, max_interests)
            if not parsed.ok:
                repair = prompt.repair()
                text, repair_cached = ask(repair)
                if not repair_cached:
                    counter.add(repair_calls=1)
                answer.raw_answers.append(text)
                reparsed = parse_interests(text, max_interests)
                if reparsed.ok:
                    answer.status = "repaired"
                    parsed = reparsed
                else:
                    parsed.error = f"{parsed.error}; after the repair request: {reparsed.error}"
        except LLMCallError as err:
            answer.status, answer.error = "failed", f"request failed: {err}"
            counter.add(failed_requests=1)
            return answer
        if parsed.ok:
            answer.interests, answer.method = parsed.interests, parsed.method
            answer.status = "repaired" if answer.status == "repaired" else "ok"
            counter.add(ok=1, repaired=int(answer.status == "repaired"))
        else:
            answer.status, answer.error = "failed", f"unreadable answer: {parsed.error}"
            counter.add(failed_parse=1)
        return answer

    results: Dict[int, UserAnswer] = {}
    workers = max(1, min(concurrency, backend.max_concurrency or concurrency, len(prompts) or 1))
    bar = tqdm(total=len(prompts), desc="ESIM interests", disable=not show_progress, ncols=100)
    try:
        if workers == 1:
            for prompt in prompts:
                results[prompt.uid] = one(prompt)
                bar.update(1)
        else:
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="esim-llm") as pool:
                pending = {pool.submit(one, p) for p in prompts}
                try:
                    while pending:
                        done, pending = wait(pending, return_when=FIRST_EXCEPTION)
                        for future in done:
                            answer = future.result()  # re-raises a fatal error (bad key, unknown model)
                            results[answer.uid] = answer
                            bar.update(1)
                except BaseException:
                    for future in pending:
                        future.cancel()
                    raise
    finally:
        bar.close()
    counter.stats.seconds = time.perf_counter() - start
    return results, counter.stats
