"""ESIM wall time per stage, and the share of users sent to the LLM (default: amazon-beauty).

    python benchmarks/esim_stages.py --dataset=amazon-beauty \\
        --encoders=sentence-transformers,tfidf

For each text encoder: a cold run (empty cache) with the ``extractive`` backend, then a warm run
(everything cached). Prints a Markdown table; the numbers come from the manifest ESIM writes.
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

STAGES = ("sequences", "item_text", "item_embeddings", "typical_users", "prompts", "llm",
          "interest_embeddings", "concepts", "write")


def load(dataset: str, data_path: str | None):
    from recbole_eimf.config import Config
    from recbole_eimf.data import create_dataset

    config_dict = {"show_progress": False, "state": "WARNING"}
    if data_path:
        config_dict["data_path"] = data_path
    config = Config(model="ComiRecSA", dataset=dataset, config_dict=config_dict)
    start = time.perf_counter()
    data = create_dataset(config)
    train, _, _ = data.build()
    return config, train, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="amazon-beauty")
    parser.add_argument("--data_path", default="dataset/")
    parser.add_argument("--encoders", default="sentence-transformers,tfidf")
    parser.add_argument("--n_clusters", type=int, default=20)
    parser.add_argument("--users_per_cluster", type=int, default=10)
    args = parser.parse_args()
    sys.argv = sys.argv[:1]  # RecBole's Config reads --key=value from the command line

    from recbole_eimf.esim import EsimSettings, run_esim

    config, train, load_s = load(args.dataset, args.data_path)
    print(f"{args.dataset}: load + split {load_s:.1f}s, {train.user_num - 1} users, {train.item_num - 1} items, "
          f"torch threads {__import__('torch').get_num_threads()}, CPUs {os.cpu_count()}\n")
    rows = []
    for encoder in args.encoders.split(","):
        cache = Path(tempfile.mkdtemp(prefix="esim-bench-"))
        try:
            settings = EsimSettings.from_config(
                config, text_encoder=encoder, llm_backend="extractive", esim_cache_dir=str(cache),
                n_clusters=args.n_clusters, users_per_cluster=args.users_per_cluster,
            )
            cold = run_esim(settings, train)
            start = time.perf_counter()
            warm = run_esim(settings, train)
            warm_s = time.perf_counter() - start
            assert warm.from_cache
            manifest = cold.targets.manifest
            rows.append((encoder, manifest, warm_s))
        finally:
            shutil.rmtree(cache, ignore_errors=True)

    header = ["encoder", *STAGES, "total (cold)", "total (cached)", "typical users", "share of users"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for encoder, manifest, warm_s in rows:
        seconds = manifest["stage_seconds"]
        counts = manifest["counts"]
        cells = [encoder] + [f"{seconds.get(s, 0.0):.2f}" for s in STAGES] + [
            f"{manifest['total_seconds']:.1f}", f"{warm_s:.1f}", str(counts["typical_users"]),
            f"{counts['share_typical']:.2%} of {counts['users_with_training_data']:,}",
        ]
        print("| " + " | ".join(cells) + " |")
    print("\nseconds per stage, extractive backend (no LLM): `llm` is the extractive interest step")


if __name__ == "__main__":
    main()
