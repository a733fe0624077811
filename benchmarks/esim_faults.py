"""ESIM under faults: each case against the loopback OpenAI-compatible server, then a rerun after the fix.

    python benchmarks/esim_faults.py --dataset=ml-100k --users_per_cluster=2 --n_clusters=6

For every case, on a fresh cache: run ESIM (``openai`` backend, ``tfidf`` encoder) against a server
with that fault, then rerun it against a server that answers well. Counted: readable answers the
server sent in the first run that are not in the answer cache afterwards (lost), the prompts the
rerun asks (re-asked) against those without a readable answer after the first run, and the
occurrences of the API key (or a URL password) in every file written under the case's folder.
Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

import recbole_eimf  # noqa: F401  (compat shims before RecBole)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the loopback server is test support
from support.loopback import LoopbackLLMServer, Reply, closed_port_url  # noqa: E402

KEY_ENV = "ESIM_FAULTS_BENCH_KEY"
KEY = "sk-bench-faults-5e1f0c9a7b3d"
PASSWORD = "hunter2-bench"
VALID = '{"interests": [{"name": "Space operas", "description": "Epic science fiction."}]}'


def user_prompt(request) -> str:
    """The request's user message without the repair note: a prompt and its repair are one user."""
    from recbole_eimf.esim.prompts import REPAIR_INSTRUCTION

    text = next((m.get("content", "") for m in request.body.get("messages", []) if m.get("role") == "user"), "")
    return text.replace(REPAIR_INSTRUCTION, "")


class Faulty:
    """A responder giving ``fault(request)`` to the first ``n_bad`` distinct prompts (all: None), a
    valid answer otherwise; counts the valid answers it sent."""

    def __init__(self, fault, n_bad=None) -> None:
        self.fault, self.n_bad = fault, n_bad
        self.bad, self.valid_sent, self.lock = set(), 0, threading.Lock()

    def __call__(self, request):
        prompt = user_prompt(request)
        with self.lock:
            if self.n_bad is None or prompt in self.bad or len(self.bad) < self.n_bad:
                self.bad.add(prompt)
                return self.fault(request)
            self.valid_sent += 1
        return Reply(content=VALID)


def secrets_in(folder: Path) -> int:
    found = 0
    for path in folder.rglob("*"):
        if path.is_file():
            text = path.read_bytes().decode("latin-1")
            found += text.count(KEY) + text.count(PASSWORD)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--n_clusters", type=int, default=6)
    parser.add_argument("--users_per_cluster", type=int, default=2)
    args = parser.parse_args()
    sys.argv = sys.argv[:1]  # RecBole's Config reads --key=value from the command line

    from recbole_eimf.config import Config
    from recbole_eimf.data import create_dataset
    from recbole_eimf.errors import ConfigError
    from recbole_eimf.esim import EsimSettings, run_esim
    from recbole_eimf.esim.cache import AnswerCache

    config = Config(model="ComiRecSA", dataset=args.dataset, config_dict={"show_progress": False, "state": "WARNING"})
    train, _, _ = create_dataset(config).build()
    os.environ[KEY_ENV] = KEY
    n_users = args.n_clusters * args.users_per_cluster
    root = Path(tempfile.mkdtemp(prefix="esim-faults-"))

    def settings(url, cache, **extra):
        values = dict(llm_base_url=url, llm_model="loopback", llm_api_key_env=KEY_ENV, text_encoder="tfidf",
                      n_clusters=args.n_clusters, users_per_cluster=args.users_per_cluster, llm_max_retries=2,
                      llm_retry_backoff=0.05, llm_timeout=1.0, llm_concurrency=4, esim_cache_dir=str(cache))
        values.update(extra)
        return EsimSettings.from_config(config, **values)

    def answers_in(cache: Path) -> int:
        path = cache / args.dataset / "answers.jsonl"
        return len(AnswerCache(path)) if path.is_file() else 0

    def outcome(run) -> str:
        start = time.perf_counter()
        try:
            stats = run().stats
            text = f"{stats.ok} ok, {stats.failed_requests + stats.failed_parse} without an answer"
        except KeyboardInterrupt:
            text = "stopped by Ctrl-C"
        except Exception as err:  # what a user would see
            text = f"{type(err).__name__}: {str(err)[:240]}"
        return f"{text} ({time.perf_counter() - start:.1f}s)"

    def case(name, responder, n_bad=None, url=None, before=None, **extra):
        cache = root / name.replace(" ", "-")
        faulty = Faulty(responder, n_bad)
        with LoopbackLLMServer(responder=faulty, max_hold=30.0) as server:
            if before is not None:
                before(server)
            what = outcome(lambda: run_esim(settings(url or server.url, cache, **extra), train))
        lost = faulty.valid_sent - answers_in(cache)
        missing = n_users - answers_in(cache)
        with LoopbackLLMServer(responder=lambda r: Reply(content=VALID)) as fixed:
            run_esim(settings(fixed.url, cache), train)
            reasked = len(fixed.chat_requests())
        rows.append((name, what, lost, f"{reasked} of {missing}", secrets_in(cache)))

    def echo_key(request):
        return Reply(content=f"no idea, {request.headers.get('authorization')}")

    def interrupt_soon(server):
        def fire():
            while len(server.chat_requests()) < 6:
                time.sleep(0.02)
            os.kill(os.getpid(), signal.SIGINT)
        threading.Thread(target=fire, daemon=True).start()

    rows = []
    try:
        case("garbage answers", lambda r: Reply.garbage(), n_bad=3)
        case("empty answers", lambda r: Reply.empty(), n_bad=3)
        case("null content", lambda r: Reply.null_content(), n_bad=3)
        case("HTML page with HTTP 200", lambda r: Reply.html(), n_bad=3)
        case("cut-off JSON body, HTTP 200", lambda r: Reply(body='{"choices": [{"mess'), n_bad=3)
        case("HTTP 500 past the retries", lambda r: Reply.error(500), n_bad=3)
        case("HTTP 429 with Retry-After", lambda r: Reply.error(429, **{"Retry-After": "0.1"}), n_bad=0)
        case("hung endpoint (past llm_timeout)", lambda r: Reply.hanging(5.0), n_bad=3)
        case("every request fails (503)", lambda r: Reply.error(503))
        case("connection refused (closed port)", lambda r: Reply(content=VALID), url=closed_port_url())
        case("server echoes the key in answers", echo_key, n_bad=3)
        case("Ctrl-C after 6 requests (2 hanging)", lambda r: Reply.hanging(20.0), n_bad=2, before=interrupt_soon,
             llm_timeout=30.0)
        # Two ESIM runs on one cache at once (two harness jobs): each prompt is paid once.
        cache = root / "two-runs"
        with LoopbackLLMServer(responder=lambda r: Reply(content=VALID, delay=0.1)) as server:
            runs = [threading.Thread(target=run_esim, args=(settings(server.url, cache), train)) for _ in range(2)]
            for run in runs:
                run.start()
            for run in runs:
                run.join()
            paid = len(server.chat_requests())
        with LoopbackLLMServer(responder=lambda r: Reply(content=VALID)) as fixed:
            run_esim(settings(fixed.url, cache), train)
            reasked = len(fixed.chat_requests())
        rows.append(("two runs on one cache at once", f"{paid} requests for {n_users} prompts (the second run waits, "
                     "then reuses)", paid - answers_in(cache), f"{reasked} of {n_users - answers_in(cache)}",
                     secrets_in(cache)))
        # A password in the URL: refused before anything is written.
        try:
            Config(model="ComiRecSA", dataset=args.dataset,
                   config_dict={"llm_base_url": f"http://user:{PASSWORD}@127.0.0.1:9/v1", "state": "WARNING"})
            what = "accepted"
        except ConfigError as err:
            what = f"ConfigError: {str(err)[:150]}"
        rows.append(("user:password in llm_base_url", what, "-", "-", what.count(PASSWORD)))  # refused: no file
    finally:
        shutil.rmtree(root, ignore_errors=True)

    print(f"{args.dataset}: {n_users} typical users, llm_max_retries 2, llm_timeout 1 s (30 s for Ctrl-C)\n")
    print("| case | what happens (first run) | answers lost | prompts re-asked by the rerun (of those without an answer) "
          "| secrets in written files |")
    print("|---|---|---|---|---|")
    for name, what, lost, reasked, found in rows:
        print(f"| {name} | {what.replace('|', '/')} | {lost} | {reasked} | {found} |")


if __name__ == "__main__":
    main()
