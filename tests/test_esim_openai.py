"""The ``openai`` backend against a loopback OpenAI-compatible server: answers good and bad, HTTP
failures, timeouts, a process killed mid-stage, and the API key kept out of errors, logs and caches."""

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from recbole_eimf.errors import ConfigError
from recbole_eimf.esim import EsimSettings, LLMFatalError, run_esim
from recbole_eimf.esim.backends.openai_compat import OpenAIBackend
from recbole_eimf.esim.cache import AnswerCache
from recbole_eimf.esim.extraction import extract_interests
from support.fake_llm import VALID, fake_backend
from support.loopback import LoopbackLLMServer, Reply
from recbole_eimf.esim.prompts import Prompt, prompt_key

pytest.importorskip("openai")

ROOT = Path(__file__).resolve().parents[1]
KEY_ENV = "ESIM_TEST_API_KEY"
KEY = "sk-test-4f9a1c0e7d2b-never-to-be-seen"


@pytest.fixture
def key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)
    return KEY


def prompts(n=3):
    return [
        Prompt(uid=u, messages=(("system", "You state interests."),
                                ("user", f"<items>\n1. Movie {u} | Sci-Fi\n2. Other {u} | Drama\n</items>")),
               item_ids=(u,), n_tokens=20)
        for u in range(1, n + 1)
    ]


def backend(server, **options):
    return fake_backend(server.url, KEY_ENV, **options)


def ask(server, tmp_path, n=3, concurrency=2, **options):
    cache = AnswerCache(tmp_path / "answers.jsonl")
    llm = backend(server, **options)
    try:
        return extract_interests(prompts(n), llm, cache, max_interests=4, concurrency=concurrency)
    finally:
        llm.close()


def scripted(replies):
    """A responder that plays ``replies`` in order to chat requests (then answers valid JSON)."""
    lock, queue = threading.Lock(), list(replies)

    def respond(request):
        if not request.path.endswith("/chat/completions"):
            return None   # embeddings: the server's default
        with lock:
            return queue.pop(0) if queue else Reply(content=VALID)

    return respond


def test_valid_json_is_cached_and_a_rerun_makes_no_request(key, tmp_path):
    with LoopbackLLMServer(responder=lambda r: Reply(content=VALID)) as server:
        answers, stats = ask(server, tmp_path)
        assert len(server.requests) == 3 and stats.calls == 3 and stats.ok == 3
        assert all(a.status == "ok" and a.method == "json" for a in answers.values())
        assert answers[1].interests[0].name == "Space operas"
        assert stats.input_tokens > 0 and stats.output_tokens > 0          # usage recorded
        request = server.requests[0]
        assert request.body["temperature"] == 0.0 and request.body["model"] == "fake-model"
        assert request.headers["authorization"] == f"Bearer {KEY}"         # the key reaches the server only
        _, again = ask(server, tmp_path)
        assert len(server.requests) == 3 and again.calls == 0 and again.cache_hits == 3 and again.ok == 3


def test_json_in_prose_or_code_fences_is_recovered(key, tmp_path):
    replies = [Reply(content=f"Sure! ```json\n{VALID}\n```"), Reply(content=f"The user likes: {VALID} Thanks."),
               Reply(content="1. Space operas: epic\n2. Heists: capers")]
    with LoopbackLLMServer(responder=scripted(replies)) as server:
        answers, stats = ask(server, tmp_path, concurrency=1)
    assert stats.ok == 3 and stats.repair_calls == 0
    assert [answers[u].method for u in (1, 2, 3)] == ["fenced", "embedded", "list"]


def test_garbage_gets_one_repair_then_is_recorded_as_failed_and_never_invented(key, tmp_path):
    with LoopbackLLMServer(responder=lambda r: Reply.garbage()) as server:
        answers, stats = ask(server, tmp_path, n=2)
        assert len(server.requests) == 4                     # each prompt once, plus one repair each
        repairs = [r for r in server.requests if "could not be read" in r.user_message]
        assert len(repairs) == 2
        assert stats.failed_parse == 2 and stats.ok == 0 and stats.repair_calls == 2
        for answer in answers.values():
            assert answer.status == "failed" and answer.interests == []
            assert "unreadable answer" in answer.error and len(answer.raw_answers) == 2


def by_movie(replies):
    """A responder answering the prompt of ``Movie <u>`` with ``replies[u]`` (default: valid JSON)."""
    def respond(request):
        for uid, reply in replies.items():
            if f"Movie {uid} " in request.user_message:
                return reply
        return Reply(content=VALID)

    return respond


def test_unreadable_answers_are_not_cached_and_a_fixed_endpoint_answers_them_on_the_rerun(key, tmp_path):
    faults = {1: Reply.garbage(), 2: Reply.empty(), 3: Reply.null_content(), 4: Reply.html()}
    with LoopbackLLMServer(responder=by_movie(faults)) as server:
        answers, stats = ask(server, tmp_path, n=5, max_retries=1)
        assert [answers[u].status for u in range(1, 6)] == ["failed"] * 4 + ["ok"]
        assert stats.failed_parse == 3 and stats.failed_requests == 1          # the HTML page: a malformed body
        assert "malformed body" in answers[4].error and stats.retries == 1       # retried like a 5xx
        cache = AnswerCache(tmp_path / "answers.jsonl")
        assert len(cache) == 1 and all(r["answer"] for r in cache._answers.values())   # no "" stored
        assert len(cache.failures_path.read_text().splitlines()) == 4              # recorded apart
        server.responder = by_movie({})                                            # the endpoint is fixed
        n_before = len(server.chat_requests())
        again_answers, again = ask(server, tmp_path, n=5)
        asked = server.chat_requests()[n_before:]
    assert sorted(r.user_message.split("Movie ")[1][0] for r in asked) == ["1", "2", "3", "4"]  # once each
    assert again.cache_hits == 1 and again.calls == 4 and again.ok == 5 and again.new_answers == 4
    assert len(AnswerCache(tmp_path / "answers.jsonl")) == 5


def test_an_unreadable_answer_in_an_old_cache_is_asked_again(key, tmp_path):
    llm = prompts(1)[0]
    cache = AnswerCache(tmp_path / "answers.jsonl")
    cache.put(prompt_key(llm.as_messages(), "fake-model", {"temperature": 0.0, "max_tokens": 512}), "fake-model", "")
    with LoopbackLLMServer(responder=lambda r: Reply(content=VALID)) as server:
        answers, stats = ask(server, tmp_path, n=1)
        assert len(server.chat_requests()) == 1 and stats.cache_hits == 0 and answers[1].status == "ok"


def test_empty_answer_repair_then_counted_as_failed_or_repaired(key, tmp_path):
    replies = [Reply(content=""), Reply(content=""), Reply(content=""), Reply(content=VALID)]
    with LoopbackLLMServer(responder=scripted(replies)) as server:
        answers, stats = ask(server, tmp_path, n=2, concurrency=1)
    assert [answers[1].status, answers[2].status] == ["failed", "repaired"]
    assert "empty answer" in answers[1].error
    assert stats.failed_parse == 1 and stats.repaired == 1 and stats.ok == 1 and stats.repair_calls == 2


def test_429_then_success_is_retried_after_retry_after(key, tmp_path):
    replies = [Reply(status=429, headers={"Retry-After": "0.05"}), Reply(status=503)]
    with LoopbackLLMServer(responder=scripted(replies)) as server:
        answers, stats = ask(server, tmp_path, n=1)
    assert len(server.requests) == 3 and stats.retries == 2 and answers[1].status == "ok"


def test_500s_past_the_retry_budget_fail_that_prompt_and_a_rerun_asks_it_again(key, tmp_path):
    def respond(request):
        return Reply(status=500) if "Movie 1 " in request.user_message else Reply(content=VALID)

    with LoopbackLLMServer(responder=respond) as server:
        answers, stats = ask(server, tmp_path, n=2, max_retries=2)
        first = [r for r in server.chat_requests() if "Movie 1 " in r.user_message]
        assert len(first) == 3                               # 1 + 2 retries
        assert answers[1].status == "failed" and "HTTP 500" in answers[1].error and "3 attempts" in answers[1].error
        assert answers[2].status == "ok"
        assert stats.failed_requests == 1 and stats.ok == 1 and stats.retries == 2
        assert len(AnswerCache(tmp_path / "answers.jsonl")) == 1      # failures are not cached
        _, again = ask(server, tmp_path, n=2, max_retries=0)
        assert again.cache_hits == 1 and again.failed_requests == 1   # asked again, only that one
        assert len([r for r in server.chat_requests() if "Movie 1 " in r.user_message]) == 4


def test_a_hang_past_the_timeout_is_retried_and_a_dropped_connection_too(key, tmp_path):
    replies = [Reply(hang=3.0), Reply(drop=True)]
    with LoopbackLLMServer(responder=scripted(replies)) as server:
        start = time.perf_counter()
        answers, stats = ask(server, tmp_path, n=1, timeout=0.5, max_retries=2)
        assert time.perf_counter() - start < 2.5
    assert answers[1].status == "ok" and stats.retries == 2
    with LoopbackLLMServer(responder=lambda r: Reply(hang=2.0)) as server:
        answers, stats = ask(server, tmp_path / "other", n=1, timeout=0.3, max_retries=0)
    assert answers[1].status == "failed" and "llm_timeout" in answers[1].error and stats.failed_requests == 1


def test_requests_run_concurrently_up_to_llm_concurrency(key, tmp_path):
    with LoopbackLLMServer(responder=lambda r: Reply(content=VALID, delay=0.3)) as server:
        start = time.perf_counter()
        _, stats = ask(server, tmp_path, n=8, concurrency=4)
        elapsed = time.perf_counter() - start
    assert stats.ok == 8 and 2 <= server.max_in_flight <= 4
    assert elapsed < 8 * 0.3


def test_a_refused_key_or_unknown_model_stops_with_one_error_that_hides_the_key(key, tmp_path):
    def echo_key(request):   # a careless server that repeats the credentials it got
        return Reply(status=401, body={"error": {"message": f"invalid key {request.headers['authorization']}"}})

    with LoopbackLLMServer(responder=echo_key) as server:
        with pytest.raises(LLMFatalError) as caught:
            ask(server, tmp_path, n=4, concurrency=2)
    message = str(caught.value)
    assert KEY_ENV in message and "401" in message and KEY not in message and "[redacted]" in message
    with LoopbackLLMServer(responder=lambda r: Reply(status=404)) as server:
        with pytest.raises(LLMFatalError, match=r"model \[fake-model\].*`llm_model`"):
            ask(server, tmp_path, n=2)


def test_missing_key_is_one_clear_config_error_naming_the_variable(monkeypatch, tmp_path):
    monkeypatch.delenv(KEY_ENV, raising=False)
    with pytest.raises(ConfigError, match=f"environment variable \\[{KEY_ENV}\\].*not set"):
        OpenAIBackend(model="m", base_url="http://127.0.0.1:9/v1", api_key_env=KEY_ENV)
    # No key variable at all: allowed, for local servers that want none.
    OpenAIBackend(model="m", base_url="http://127.0.0.1:9/v1", api_key_env=None).close()

    env = {k: v for k, v in os.environ.items() if k not in (KEY_ENV, "OPENAI_API_KEY")}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "run_recbole_eimf.py"), "--stage=esim", "--dataset=ml-100k",
         "--llm_base_url=http://127.0.0.1:9/v1", "--llm_model=m", "--text_encoder=tfidf", "--state=WARNING"],
        capture_output=True, text=True, cwd=tmp_path, timeout=300, env=env,
    )
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "[OPENAI_API_KEY]" in proc.stderr and "is not set" in proc.stderr


def _files_text(folder: Path) -> str:
    return "\n".join(p.read_text(errors="replace") for p in folder.rglob("*") if p.is_file() and p.suffix != ".pt")


def test_pipeline_with_the_openai_backend_keeps_the_key_out_of_logs_and_caches(key, ml100k, tmp_path, caplog):
    config, _, train, _, _ = ml100k
    replies = [Reply(status=500), Reply(content="garbage"), Reply(content="more garbage")]
    with LoopbackLLMServer(responder=scripted(replies)) as server:
        settings = EsimSettings.from_config(
            config, text_encoder="openai", text_encoder_model="fake-embedder", llm_base_url=server.url,
            llm_model="fake-model", llm_api_key_env=KEY_ENV, esim_cache_dir=str(tmp_path / "esim"),
            n_clusters=3, users_per_cluster=2, n_concepts=4, llm_retry_backoff=0.01, llm_concurrency=1,
        )
        with caplog.at_level(logging.DEBUG):
            result = run_esim(settings, train._dataset)
        assert server.requests and all(r.headers.get("authorization") == f"Bearer {KEY}" for r in server.requests)
    stats = result.stats
    assert stats.prompts == 6 and stats.retries == 1 and stats.failed_parse == 1 and stats.ok == 5
    targets = result.targets
    assert int(targets.has_target.sum()) == 5 and int(targets.is_typical.sum()) == 6
    assert targets.manifest["encoder"]["key"] == "openai:fake-embedder" and targets.semantic_dim == 32
    readable = (targets.directory / "interests.md").read_text()
    assert "failed" in readable and "garbage" in readable          # reported next to the raw answer
    assert KEY not in caplog.text
    assert KEY not in _files_text(tmp_path)
    assert all(KEY not in p.read_bytes().decode("latin-1") for p in tmp_path.rglob("*.pt"))


def test_a_stage_killed_midway_resumes_asking_only_for_the_missing_prompts(key, ml100k, tmp_path, caplog):
    arrived, lock = threading.Event(), threading.Lock()

    def respond(request):
        with lock:
            if len(server.chat_requests()) >= 6:
                arrived.set()
        return Reply(delay=0.15)

    env = dict(os.environ, **{KEY_ENV: KEY})
    with LoopbackLLMServer(responder=respond) as server:
        args = [sys.executable, str(ROOT / "run_recbole_eimf.py"), "--stage=esim", "--dataset=ml-100k",
                f"--llm_base_url={server.url}", "--llm_model=fake-model", f"--llm_api_key_env={KEY_ENV}",
                "--text_encoder=tfidf", "--n_clusters=4", "--users_per_cluster=3", "--n_concepts=6",
                "--llm_concurrency=2", "--state=INFO"]
        first = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            assert arrived.wait(timeout=240), "the stage never reached the server"
            time.sleep(0.2)
        finally:
            first.send_signal(signal.SIGKILL)
            first.communicate(timeout=60)
        asked_first = {prompt_key(r.body["messages"], r.body["model"],
                                  {"temperature": r.body["temperature"], "max_tokens": r.body["max_tokens"]})
                       for r in server.chat_requests()}
        cache_path = tmp_path / "saved" / "esim" / "ml-100k" / "answers.jsonl"
        saved = AnswerCache(cache_path).keys()
        assert 1 <= len(saved) < 12 and saved <= asked_first
        n_before = len(server.chat_requests())

        # The rerun, in this process: same data, same settings as the command line above.
        config, _, train, _, _ = ml100k
        settings = EsimSettings.from_config(
            config, llm_base_url=server.url, llm_model="fake-model", llm_api_key_env=KEY_ENV, text_encoder="tfidf",
            n_clusters=4, users_per_cluster=3, n_concepts=6, llm_concurrency=2,
            esim_cache_dir=str(tmp_path / "saved" / "esim"),
        )
        with caplog.at_level(logging.INFO, logger="recbole_eimf.esim"):
            result = run_esim(settings, train._dataset)
        rerun = server.chat_requests()[n_before:]
    rerun_keys = [prompt_key(r.body["messages"], r.body["model"],
                             {"temperature": r.body["temperature"], "max_tokens": r.body["max_tokens"]})
                  for r in rerun]
    assert len(rerun_keys) == len(set(rerun_keys)) == 12 - len(saved)   # each missing prompt, once
    assert not set(rerun_keys) & saved                                   # no answered prompt asked again
    final = AnswerCache(cache_path)
    assert final.keys() == saved | set(rerun_keys) and final.skipped_lines == 0
    assert len(cache_path.read_text().splitlines()) == 12
    assert f"{12 - len(saved)} requests answered, {len(saved)} answers from the cache" in caplog.text
    assert result.stats.ok == 12 and int(result.targets.has_target.sum()) == 12
    assert KEY not in caplog.text and KEY not in _files_text(tmp_path)


def test_targets_rebuilt_in_a_new_cache_format_reuse_every_llm_answer(key, ml100k, tmp_path, monkeypatch):
    """A plugin version with another target format (a new cache key) rebuilds the targets from the
    saved answers: the LLM is paid once, whatever the format."""
    import recbole_eimf.esim.pipeline as pipeline

    config, _, train, _, _ = ml100k
    with LoopbackLLMServer() as server:
        settings = EsimSettings.from_config(
            config, llm_base_url=server.url, llm_model="fake-model", llm_api_key_env=KEY_ENV, text_encoder="tfidf",
            n_clusters=3, users_per_cluster=2, n_concepts=4, esim_cache_dir=str(tmp_path / "esim"),
        )
        first = run_esim(settings, train._dataset)
        n_asked = len(server.chat_requests())
        monkeypatch.setattr(pipeline, "FORMAT_VERSION", pipeline.FORMAT_VERSION + 1)
        again = run_esim(settings, train._dataset)
        assert len(server.chat_requests()) == n_asked == 6
    assert not again.from_cache and again.targets.directory != first.targets.directory
    assert again.stats.cache_hits == 6 and again.stats.calls == 0
    for name, tensor in first.targets.tensors().items():
        assert torch.equal(tensor, getattr(again.targets, name)), name
