"""Asking the backend for every typical user's interests: cache first, bounded concurrency, one repair.

For each prompt: the answer cache is looked up by the request's key; a missing answer (or a cached
one that does not parse, as older versions stored) is asked, at most ``llm_concurrency`` requests
in flight. An answer the parser cannot read is asked once more with a repair note. Only an answer
that parses is cached (the repaired one under the prompt's own key), the moment it is read; a
prompt without one (request failed for good, or both answers unreadable) is recorded in the
cache's ``failures.jsonl`` and asked again by the next run. Nothing is dropped silently: every
outcome is counted in :class:`ExtractionStats`.

Ctrl-C (``KeyboardInterrupt``) stops the stage within about ``STOP_GRACE_S``: no request is started
or retried, answers arriving meanwhile are still cached, then the interrupt goes on. While no
answer arrives, a progress line is logged every ``heartbeat`` seconds (a hung endpoint is not silent).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

from tqdm import tqdm

from recbole_eimf.esim.backends.base import LLMBackend, LLMCallError
from recbole_eimf.esim.cache import AnswerCache
from recbole_eimf.esim.parsing import Interest, ParseResult, parse_interests
from recbole_eimf.esim.prompts import Prompt, prompt_key

logger = logging.getLogger(__name__)

STOP_GRACE_S = 2.0      # after Ctrl-C, how long answers already in flight may still arrive
HEARTBEAT_S = 30.0      # a progress line this often while waiting for answers
POLL_S = 0.25


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
    cache_hits: int = 0           # readable answers found in the cache (no request)
    calls: int = 0                # requests that got an answer (first asks and repairs)
    repair_calls: int = 0         # of which repairs
    retries: int = 0              # retried requests (429, 5xx, malformed bodies, timeouts, dropped connections)
    failed_requests: int = 0      # prompts whose request failed for good (not cached: asked again next run)
    failed_parse: int = 0         # prompts whose answers stayed unreadable after the repair (idem)
    ok: int = 0
    repaired: int = 0             # ok only after the repair
    new_answers: int = 0          # readable answers received in this run (the rest came from the cache)
    input_tokens: int = 0
    output_tokens: int = 0
    seconds: float = 0.0
    last_error: Optional[str] = None   # the latest failure's reason

    def as_dict(self) -> dict:
        return asdict(self)


def cached_answer(cache: Optional[AnswerCache], key: str, max_interests: int) -> Optional[Tuple[dict, ParseResult]]:
    """``(record, parsed)`` of the cached answer under ``key`` when it parses, else None (ask again)."""
    record = cache.get(key) if cache is not None else None
    if record is None:
        return None
    parsed = parse_interests(record["answer"], max_interests)
    return (record, parsed) if parsed.ok else None


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
    heartbeat: Optional[float] = None,
) -> Tuple[Dict[int, UserAnswer], ExtractionStats]:
    """``({uid: UserAnswer}, stats)`` for all ``prompts`` (module doc; ``heartbeat`` None: ``HEARTBEAT_S``)."""
    start = time.perf_counter()
    heartbeat = HEARTBEAT_S if heartbeat is None else heartbeat
    counter = _Counter()
    counter.stats.prompts = len(prompts)
    stop = threading.Event()
    asker = _Asker(backend, cache if backend.cacheable else None, max_interests, counter, stop)
    workers = max(1, min(concurrency, backend.max_concurrency or concurrency, len(prompts) or 1))
    with tqdm(total=len(prompts), desc="ESIM interests", disable=not show_progress, ncols=100) as bar:
        try:
            results = _run_all(prompts, asker.one, workers, backend, heartbeat, bar, stop)
        except KeyboardInterrupt:
            where = asker.cache.path if asker.cache is not None else "no cache"
            logger.warning(f"ESIM: interrupted; the {counter.stats.new_answers} answers received in this run are "
                           f"kept ({where}): a rerun asks only for the rest")
            raise
    counter.stats.seconds = time.perf_counter() - start
    return results, counter.stats


class _Asker:
    """One prompt's outcome: cache, request, one repair, and the record of it (module doc)."""

    def __init__(self, backend: LLMBackend, cache: Optional[AnswerCache], max_interests: int,
                 counter: _Counter, stop: threading.Event) -> None:
        self.backend, self.cache, self.max_interests, self.counter = backend, cache, max_interests, counter
        self.stop = stop  # set on Ctrl-C or a fatal error: no repair request is started
        self.decoding = backend.decoding()

    def request(self, prompt: Prompt):
        """``(text, usage)`` of one answered request."""
        try:
            completion = self.backend.complete(prompt)
        except LLMCallError as err:
            self.counter.add(retries=err.retries)
            raise
        self.counter.add(calls=1, retries=completion.retries, input_tokens=completion.input_tokens or 0,
                         output_tokens=completion.output_tokens or 0)
        return completion.text, {"input_tokens": completion.input_tokens, "output_tokens": completion.output_tokens}

    def one(self, prompt: Prompt) -> UserAnswer:
        answer = UserAnswer(uid=prompt.uid, prompt=prompt)
        key = prompt_key(prompt.as_messages(), self.backend.model, self.decoding)
        hit = cached_answer(self.cache, key, self.max_interests)
        if hit is not None:
            record, parsed = hit
            self.counter.add(cache_hits=1)
            answer.from_cache, answer.raw_answers = True, [record["answer"]]
            return self._finish(answer, parsed, record.get("status", "ok"))
        try:
            parsed, text, usage = self._ask_with_repair(prompt, answer)
        except LLMCallError as err:
            answer.error = f"request failed: {err}"
            self.counter.add(failed_requests=1)
            return self._failed(answer, key)
        if not parsed.ok:
            answer.error = f"unreadable answer: {parsed.error}"
            self.counter.add(failed_parse=1)
            return self._failed(answer, key)
        status = "repaired" if len(answer.raw_answers) > 1 else "ok"
        if self.cache is not None:
            self.cache.put(key, self.backend.model, text, usage, status=status)
        self.counter.add(new_answers=1)
        return self._finish(answer, parsed, status)

    def _ask_with_repair(self, prompt: Prompt, answer: UserAnswer):
        """``(parsed, text that parsed or the last text, usage of both requests)``."""
        text, usage = self.request(prompt)
        answer.raw_answers.append(text)
        parsed = parse_interests(text, self.max_interests)
        if parsed.ok or self.stop.is_set():
            return parsed, text, usage
        text, repair_usage = self.request(prompt.repair())
        self.counter.add(repair_calls=1)
        answer.raw_answers.append(text)
        reparsed = parse_interests(text, self.max_interests)
        usage = {k: (usage[k] or 0) + (repair_usage[k] or 0) for k in usage}
        if not reparsed.ok:
            reparsed.error = f"{parsed.error}; after the repair request: {reparsed.error}"
        return reparsed, text, usage

    def _finish(self, answer: UserAnswer, parsed: ParseResult, status: str) -> UserAnswer:
        answer.interests, answer.method, answer.status = parsed.interests, parsed.method, status
        self.counter.add(ok=1, repaired=int(status == "repaired"))
        return answer

    def _failed(self, answer: UserAnswer, key: str) -> UserAnswer:
        answer.status = "failed"
        with self.counter.lock:
            self.counter.stats.last_error = answer.error
        if self.cache is not None:
            self.cache.put_failure(key, self.backend.model, answer.uid, answer.error, answer.raw_answers)
        return answer


def _run_all(prompts: Sequence[Prompt], one, workers: int, backend: LLMBackend, heartbeat: float,
             bar, stop: threading.Event) -> Dict[int, UserAnswer]:
    """``one(prompt)`` for every prompt on ``workers`` daemon threads (a hung request cannot hold the
    process at exit); the first error stops the rest and is raised here, as is Ctrl-C."""
    todo: "queue.Queue[Prompt]" = queue.Queue()
    for prompt in prompts:
        todo.put(prompt)
    done: queue.Queue = queue.Queue()

    def work() -> None:
        while not stop.is_set():
            try:
                prompt = todo.get_nowait()
            except queue.Empty:
                return
            try:
                done.put((one(prompt), None))
            except BaseException as err:  # handed to the main thread
                done.put((None, err))

    threads = [threading.Thread(target=work, name=f"esim-llm-{k}", daemon=True) for k in range(workers)]
    for thread in threads:
        thread.start()
    results: Dict[int, UserAnswer] = {}
    since = next_log = time.monotonic()
    try:
        while len(results) < len(prompts):
            try:  # short waits: Ctrl-C is seen at once, on every platform
                answer, error = done.get(timeout=min(POLL_S, heartbeat))
            except queue.Empty:
                if time.monotonic() - next_log >= heartbeat:
                    next_log = time.monotonic()
                    _log_waiting(backend, len(results), len(prompts), next_log - since)
                continue
            if error is not None:
                raise error
            results[answer.uid] = answer
            since = next_log = time.monotonic()
            bar.update(1)
    except BaseException:
        stop.set()
        backend.interrupt()
        deadline = time.monotonic() + STOP_GRACE_S
        for thread in threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        raise
    return results


def _log_waiting(backend: LLMBackend, n_done: int, n_total: int, waited: float) -> None:
    problem = f"; latest problem: {backend.last_problem}" if backend.last_problem else ""
    logger.info(f"ESIM: {n_done} of {n_total} users answered; waiting {waited:.0f}s for {backend.describe()}"
                f"{problem}")
