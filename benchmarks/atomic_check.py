"""What checking the atomic files adds to loading a dataset (recbole_eimf.data.atomic_files).

    python benchmarks/atomic_check.py --dataset=amazon-beauty --repeats=3

Alternates, in one process, RecBole's own dataset creation (pandas reads every atomic file) and the
plugin's check of the same files; prints the median seconds of each and their ratio.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import recbole_eimf  # noqa: F401  (compat shims before RecBole)
from recbole.data import create_dataset as recbole_create_dataset

from recbole_eimf.config import Config
from recbole_eimf.data.atomic_files import check_atomic_files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="amazon-beauty")
    parser.add_argument("--data_path", default=None)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    sys.argv = sys.argv[:1]  # RecBole's Config reads --key=value from the command line
    settings = {"state": "WARNING", "show_progress": False}
    if args.data_path:
        settings["data_path"] = args.data_path
    config = Config(model="SASRec", dataset=args.dataset, config_dict=settings)
    load, check = [], []
    for _ in range(args.repeats):
        started = time.perf_counter()
        check_atomic_files(config)
        check.append(time.perf_counter() - started)
        started = time.perf_counter()
        recbole_create_dataset(config)
        load.append(time.perf_counter() - started)
    load_s, check_s = statistics.median(load), statistics.median(check)
    print(f"| dataset | RecBole create_dataset (s) | atomic-file check (s) | check / load |")
    print(f"|---|---|---|---|")
    print(f"| {args.dataset} | {load_s:.2f} | {check_s:.2f} | {check_s / load_s:.1%} |")


if __name__ == "__main__":
    main()
