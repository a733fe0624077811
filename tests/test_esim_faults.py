"""ESIM under faults (issue 30): what a rerun asks again, secrets kept out of config and files,
Ctrl-C, malformed bodies, silent failures, unreachable endpoints, two processes on one cache."""

import _thread
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from recbole_eimf.config import Config
from recbole_eimf.errors import ConfigError
from recbole_eimf.esim import EsimError, EsimSettings, LLMFatalError, dry_run, run_esim
from recbole_eimf.esim import extraction
from recbole_eimf.esim.cache import AnswerCache
from recbole_eimf.esim.extraction import extract_interests
from recbole_eimf.esim.prompts import Prompt
from support.fake_llm import VALID, fake_backend
from support.loopback import LoopbackLLMServer, Reply, closed_port_url

pytest.importorskip("openai")

ROOT = Path(__file__).resolve().parents[1]
KEY_ENV = "ESIM_FAULTS_API_KEY"
KEY = "sk-faults-8c1d2e3f4a5b-secret"


@pytest.fixture
def key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)
    return KEY


def prompts(n):
    return [Prompt(uid=u, messages=(("user", f"<items>\n1. Movie {u} | Sci-Fi\n</items>"),), item_ids=(u,),
                   n_tokens=10) for u in range(1, n + 1)]


def backend(url, **options):
    return fake_backend(url, KEY_ENV, **options)


def settings_for(config, tmp_path, url, **overrides):
    values = dict(llm_base_url=url, llm_model="fake-model", llm_api_key_env=KEY_ENV, text_encoder="tfidf",
                  n_clusters=3, users_per_cluster=2, n_concepts=4, llm_retry_backoff=0.01, llm_max_retries=0,
                  llm_concurrency=2, esim_cache_dir=str(tmp_path / "esim"))
    values.update(overrides)
    return EsimSettings.from_config(config, **values)


def files_text(folder: Path) -> str:
    return "\n".join(p.read_bytes().decode("latin-1") for p in folder.rglob("*") if p.is_file())


def test_a_rerun_asks_exactly_the_failed_prompts_and_rebuilds_the_targets(key, ml100k, tmp_path):
    config, _, train, _, _ = ml100k
    failing = set()

    def respond(request):
        failing.update([request.user_message] if len(failing) < 2 else [])  # the first two prompts fail
        return Reply.error(500) if request.user_message in failing else Reply(content=VALID)

    with LoopbackLLMServer(responder=respond) as server:
        settings = settings_for(config, tmp_path, server.url)
        first = run_esim(settings, train._dataset)
        assert first.stats.failed_requests == 2 and int(first.targets.has_target.sum()) == 4
        report = dry_run(settings, train._dataset)
        assert report.n_to_send == 2 and "asks the 2 prompts without a readable answer" in report.format()

        server.responder = lambda request: Reply(content=VALID)          # the endpoint is fixed
        n_before = len(server.chat_requests())
        second = run_esim(settings, train._dataset)
        asked = [r.user_message for r in server.chat_requests()[n_before:]]
        assert sorted(asked) == sorted(failing)                          # exactly those, once each
        assert not second.from_cache and int(second.targets.has_target.sum()) == 6
        assert second.targets.directory == first.targets.directory       # the same targets, rebuilt

        third = run_esim(settings, train._dataset)
        assert third.from_cache and len(server.chat_requests()) == n_before + 2
        assert dry_run(settings, train._dataset).n_to_send == 0


def test_targets_lacking_answers_stand_where_they_cannot_be_asked_again(key, ml100k, tmp_path, monkeypatch):
    config, _, train, _, _ = ml100k
    with LoopbackLLMServer(responder=lambda r: Reply.error(500) if r.index == 0 else Reply(content=VALID)) as server:
        first = run_esim(settings_for(config, tmp_path, server.url, llm_concurrency=1), train._dataset)
    assert first.stats.failed_requests == 1
    unreachable = settings_for(config, tmp_path, closed_port_url())     # the endpoint went away
    assert run_esim(unreachable, train._dataset).from_cache
    monkeypatch.delenv(KEY_ENV)                                          # a machine without the key
    assert run_esim(unreachable, train._dataset).from_cache


def test_credentials_in_config_values_are_refused_without_echoing_them(tmp_path):
    cases = {
        "llm_base_url": "https://alice:hunter2pass@llm.example.com/v1",
        "llm_api_key": "sk-in-a-config-value-123",
        "llm_api_key_env": "sk-a-key-where-a-name-belongs",
    }
    for name, value in cases.items():
        with pytest.raises(ConfigError, match=f"`{name}`") as caught:
            Config(model="ComiRecSA", dataset="ml-100k", config_dict={name: value, "state": "WARNING"})
        assert "hunter2pass" not in str(caught.value) and value not in str(caught.value)
    assert "https://llm.example.com/v1" in str(
        pytest.raises(ConfigError, Config, model="ComiRecSA", dataset="ml-100k",
                      config_dict={"llm_base_url": cases["llm_base_url"]}).value)


def test_a_key_echoed_by_the_server_is_redacted_from_every_file_esim_writes(key, ml100k, tmp_path):
    config, _, train, _, _ = ml100k

    def echo(request):   # a careless server repeating the credentials it got, in good and bad answers
        secret = request.headers["authorization"]
        if "Movie" in request.user_message or len(echo.seen) % 2:
            return Reply(content=f"Nothing to say, {secret}")
        echo.seen.append(1)
        return Reply(content=VALID.replace("Epic science fiction.", f"Epic {secret}"))

    echo.seen = []
    with LoopbackLLMServer(responder=echo) as server:
        result = run_esim(settings_for(config, tmp_path, server.url), train._dataset)
    assert result.stats.ok >= 1 and result.stats.failed_parse >= 1
    written = files_text(tmp_path / "esim")
    assert KEY not in written and "[redacted]" in written
    assert (tmp_path / "esim" / "ml-100k" / "failures.jsonl").is_file()


def test_ctrl_c_stops_within_seconds_and_keeps_every_answer_received(key, tmp_path, monkeypatch):
    monkeypatch.setattr(extraction, "STOP_GRACE_S", 0.3)
    def respond(request):
        return Reply(content=VALID) if request.index < 2 else Reply.hanging(30.0)

    cache = AnswerCache(tmp_path / "answers.jsonl")
    with LoopbackLLMServer(responder=respond, max_hold=30.0) as server:
        llm = backend(server.url, timeout=30.0)

        def interrupt_after_two_answers():
            while len(AnswerCache(tmp_path / "answers.jsonl")) < 2 or len(server.chat_requests()) < 4:
                time.sleep(0.02)
            interrupt_after_two_answers.at = time.monotonic()
            _thread.interrupt_main()

        threading.Thread(target=interrupt_after_two_answers, daemon=True).start()
        with pytest.raises(KeyboardInterrupt):
            extract_interests(prompts(8), llm, cache, max_interests=4, concurrency=2)
        stopped = time.monotonic() - interrupt_after_two_answers.at
        n_asked = len(server.chat_requests())
        time.sleep(0.3)
        assert len(server.chat_requests()) == n_asked == 4                 # nothing started after Ctrl-C
    assert stopped < extraction.STOP_GRACE_S + 1.0
    assert len(AnswerCache(tmp_path / "answers.jsonl")) == 2               # both answers kept


def test_ctrl_c_on_the_esim_stage_exits_130_keeping_the_answers(key, tmp_path):
    arrived = threading.Event()

    def respond(request):
        if request.index >= 3:
            arrived.set()
            return Reply.hanging(60.0)
        return Reply(content=VALID)

    with LoopbackLLMServer(responder=respond, max_hold=60.0) as server:
        args = [sys.executable, str(ROOT / "run_recbole_eimf.py"), "--stage=esim", "--dataset=ml-100k",
                f"--llm_base_url={server.url}", "--llm_model=fake-model", f"--llm_api_key_env={KEY_ENV}",
                "--text_encoder=tfidf", "--n_clusters=3", "--users_per_cluster=2", "--llm_concurrency=2",
                "--llm_timeout=60", "--state=INFO"]
        proc = subprocess.Popen(args, cwd=tmp_path, env=dict(os.environ), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        try:
            assert arrived.wait(timeout=240), "the stage never reached the server"
            time.sleep(0.3)
            sent = time.monotonic()
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=30)
            took = time.monotonic() - sent
        finally:
            proc.kill()
    assert proc.returncode == 130 and took < 10.0, err[-2000:]    # a few seconds (grace 2 s, a busy machine)
    assert "Traceback" not in err and "interrupted" in err
    assert len(AnswerCache(tmp_path / "saved" / "esim" / "ml-100k" / "answers.jsonl")) == 3
    assert KEY not in err


def test_a_malformed_200_body_is_retried_like_a_5xx(key, tmp_path):
    queue = [Reply(body='{"choices": [cut'), Reply(body={"unexpected": True}), Reply.html()]
    with LoopbackLLMServer(responder=lambda r: queue.pop(0) if queue else Reply(content=VALID)) as server:
        answers, stats = extract_interests(prompts(1), backend(server.url, max_retries=3),
                                           AnswerCache(tmp_path / "a.jsonl"), max_interests=4)
    assert answers[1].status == "ok" and stats.retries == 3 and stats.calls == 1


def test_when_every_request_fails_the_report_is_written_and_the_error_names_status_and_url(key, ml100k,
                                                                                          tmp_path):
    config, _, train, _, _ = ml100k
    with LoopbackLLMServer(responder=lambda r: Reply.error(503)) as server:
        with pytest.raises(EsimError) as caught:
            run_esim(settings_for(config, tmp_path, server.url), train._dataset)
    message = str(caught.value)
    assert "HTTP 503" in message and server.url in message and "Report:" in message
    report = Path(message.split("Report: ")[1].split(". ")[0])
    assert report.is_file() and report.read_text().count("request failed: HTTP 503") == 6


def test_a_hung_endpoint_logs_progress_while_waiting(key, tmp_path, caplog, monkeypatch):
    with LoopbackLLMServer(responder=lambda r: Reply.hanging(5.0)) as server:
        with caplog.at_level(logging.INFO, logger="recbole_eimf.esim"):
            answers, _ = extract_interests(prompts(1), backend(server.url, timeout=0.5, max_retries=1),
                                           None, max_interests=4, heartbeat=0.2)
    assert answers[1].status == "failed"
    waiting = [r.getMessage() for r in caplog.records if "waiting" in r.getMessage()]
    assert len(waiting) >= 3 and "0 of 1 users answered" in waiting[0]
    assert any("latest problem: no answer within llm_timeout" in line for line in waiting)


def test_an_unreachable_endpoint_fails_fast_naming_url_and_error(key, tmp_path):
    url = closed_port_url()
    start = time.perf_counter()
    with pytest.raises(LLMFatalError) as caught:
        extract_interests(prompts(6), backend(url, max_retries=4, retry_backoff=0.05),
                          AnswerCache(tmp_path / "a.jsonl"), max_interests=4, concurrency=2)
    message = str(caught.value)
    assert url in message and "refused" in message.lower() and "3 times in a row" in message
    assert time.perf_counter() - start < 5.0


def test_two_runs_on_one_cache_pay_each_prompt_once(key, ml100k, tmp_path):
    config, _, train, _, _ = ml100k
    with LoopbackLLMServer(responder=lambda r: Reply(content=VALID, delay=0.2)) as server:
        settings = settings_for(config, tmp_path, server.url, llm_concurrency=1)
        results = []
        runs = [threading.Thread(target=lambda: results.append(run_esim(settings, train._dataset)))
                for _ in range(2)]
        for run in runs:
            run.start()
        for run in runs:
            run.join(timeout=120)
        assert len(results) == 2 and len(server.chat_requests()) == 6
    assert sorted(r.from_cache for r in results) == [False, True]


def test_the_lock_of_a_killed_process_does_not_block(tmp_path):
    from recbole_eimf.esim.cache import cache_lock

    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, sys, time; f = open(sys.argv[1], 'a'); fcntl.flock(f, fcntl.LOCK_EX); "
         "print('locked', flush=True); time.sleep(60)", str(tmp_path / ".lock")],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        got = threading.Event()

        def take():
            with cache_lock(tmp_path, poll=0.02):
                got.set()

        waiter = threading.Thread(target=take, daemon=True)
        waiter.start()
        assert not got.wait(0.5)                    # held by a live process: wait
        holder.send_signal(signal.SIGKILL)
        assert got.wait(5.0)                        # its death releases the lock
    finally:
        holder.kill()
        holder.wait()
