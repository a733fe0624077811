"""Train every plugin model (and SASRec) for a few epochs and print their metrics: run it on two
commits to check that a refactoring changed no number.

    python benchmarks/same_numbers.py --epochs=2 > after.json
    (cd <other checkout> && PYTHONPATH=. python <this script> --epochs=2) > before.json

Small settings (ml-100k, 10 positions, 32 dimensions, extractive ESIM with tf-idf) so that the
whole check takes minutes on a CPU; one CPU thread, so that both commits add floats in one order.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

import torch

MODELS = ("ComiRecSA", "ComiRecDR", "MIND", "TransMI", "EIMF", "SASRec")
SETTINGS = {
    "MAX_ITEM_LIST_LENGTH": 10, "embedding_size": 32, "hidden_size": 32, "show_progress": False, "state": "ERROR",
    "llm_backend": "extractive", "text_encoder": "tfidf", "n_clusters": 4, "users_per_cluster": 5, "n_concepts": 8,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--models", default=",".join(MODELS))
    args = parser.parse_args()
    sys.argv = sys.argv[:1]  # RecBole's Config reads --key=value from the command line
    torch.set_num_threads(1)
    from recbole_eimf.quick_start import run_recbole_eimf

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)
        for model in args.models.split(","):
            config = {**SETTINGS, "epochs": args.epochs, "esim_cache_dir": os.path.join(tmp, "esim")}
            result = run_recbole_eimf(model=model, dataset="ml-100k", config_dict=config)
            results[model] = {"valid": dict(result["best_valid_result"]), "test": dict(result["test_result"])}
            print(model, results[model]["test"], file=sys.stderr)
    print(json.dumps(results, indent=1, sort_keys=True))


if __name__ == "__main__":
    main()
