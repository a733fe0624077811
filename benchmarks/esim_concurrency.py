"""ESIM's LLM stage against a loopback OpenAI-compatible server that answers in 200 ms.

    python benchmarks/esim_concurrency.py --dataset=ml-100k --users=200 --delay=0.2 --concurrency=1,16

Each concurrency level runs the whole ESIM pipeline (``openai`` backend, ``tfidf`` encoder) on an
empty cache. Then, on the last level's cache, a rerun (semantic targets cached) and a rerun with
the targets deleted (answers cached) both make zero requests. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import recbole_eimf  # noqa: F401  (compat shims before RecBole)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the loopback server is test support


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--data_path", default=None)
    parser.add_argument("--users", type=int, default=200, help="typical users: n_clusters x users_per_cluster")
    parser.add_argument("--users_per_cluster", type=int, default=5)
    parser.add_argument("--delay", type=float, default=0.2, help="server seconds per answer")
    parser.add_argument("--concurrency", default="1,16")
    args = parser.parse_args()
    sys.argv = sys.argv[:1]  # RecBole's Config reads --key=value from the command line

    from recbole_eimf.config import Config
    from recbole_eimf.data import create_dataset
    from recbole_eimf.esim import EsimSettings, run_esim
    from support.loopback import LoopbackLLMServer

    config_dict = {"show_progress": False, "state": "WARNING"}
    if args.data_path:
        config_dict["data_path"] = args.data_path
    config = Config(model="ComiRecSA", dataset=args.dataset, config_dict=config_dict)
    train, _, _ = create_dataset(config).build()

    os.environ.setdefault("ESIM_BENCH_KEY", "sk-loopback")
    rows = []
    root = Path(tempfile.mkdtemp(prefix="esim-concurrency-"))
    try:
        with LoopbackLLMServer(delay=args.delay) as server:
            def settings_for(concurrency: int, cache: Path):
                return EsimSettings.from_config(
                    config, llm_base_url=server.url, llm_model="loopback", llm_api_key_env="ESIM_BENCH_KEY",
                    llm_concurrency=concurrency, text_encoder="tfidf", esim_cache_dir=str(cache),
                    n_clusters=args.users // args.users_per_cluster, users_per_cluster=args.users_per_cluster,
                )

            def measure(label: str, settings):
                before = len(server.chat_requests())
                server.max_in_flight = 0
                start = time.perf_counter()
                result = run_esim(settings, train)
                total = time.perf_counter() - start
                calls = len(server.chat_requests()) - before
                llm_s = result.targets.manifest["stage_seconds"].get("llm", 0.0) if not result.from_cache else 0.0
                n_users = int(result.targets.is_typical.sum())
                rows.append((label, settings.llm_concurrency, n_users, calls, server.max_in_flight, llm_s, total))
                return result

            levels = [int(c) for c in args.concurrency.split(",")]
            for concurrency in levels:
                cache = root / f"c{concurrency}"
                measure("cold cache", settings_for(concurrency, cache))
            last = settings_for(levels[-1], root / f"c{levels[-1]}")
            result = measure("rerun: targets cached", last)
            shutil.rmtree(result.targets.directory)
            measure("rerun: answers cached", last)
    finally:
        shutil.rmtree(root, ignore_errors=True)

    print(f"{args.dataset}, loopback server answering in {args.delay * 1000:.0f} ms\n")
    print("| run | llm_concurrency | typical users | requests | most in flight | LLM stage (s) | ESIM total (s) |")
    print("|---|---|---|---|---|---|---|")
    for label, concurrency, n_users, calls, in_flight, llm_s, total in rows:
        print(f"| {label} | {concurrency} | {n_users} | {calls} | {in_flight} | {llm_s:.2f} | {total:.2f} |")
    cold = {c: llm for label, c, _, _, _, llm, _ in rows if label == "cold cache"}
    if len(cold) >= 2:
        low, high = min(cold), max(cold)
        print(f"\nLLM stage speed-up at concurrency {high} vs {low}: {cold[low] / cold[high]:.1f}x")


if __name__ == "__main__":
    main()
