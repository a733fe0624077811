"""Peak memory and time of loading + splitting amazon-books: RecBole's SequentialDataset against the
plugin's (no history lists for ``unused_col`` fields, vectorised augmentation).

    python -m recbole_eimf.data.synthetic --like=amazon-books --scale=0.05 --out=/tmp/books-0.05
    python benchmarks/sequence_augmentation.py --data_path=/tmp/books-0.05 --repeats=2

Each measurement is a fresh process (its own peak RSS) running ``create_dataset`` and
``data_preparation`` with the project's settings; the two variants alternate, so a shared
machine's load falls on both alike. Prints one JSON line per process (peak RSS, and the RSS the
run holds after the split), then the plugin/RecBole ratios.
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import subprocess
import sys
import time

import psutil

VARIANTS = ("recbole", "plugin")


def measure(data_path: str, variant: str) -> dict:
    """Load and split once in this process; wall and CPU seconds, peak RSS, augmented columns."""
    import recbole_eimf  # noqa: F401  (compat shims before RecBole)
    from recbole.data import create_dataset as recbole_create_dataset

    from recbole_eimf.config import Config
    from recbole_eimf.data import create_dataset, data_preparation

    settings = {"data_path": data_path, "state": "WARNING", "show_progress": False}
    if variant == "recbole":
        settings["unused_col"] = None  # the yaml before the plugin's dataset
    config = Config(model="SASRec", dataset="amazon-books", config_dict=settings)
    wall, cpu = time.perf_counter(), time.process_time()
    dataset = (recbole_create_dataset if variant == "recbole" else create_dataset)(config)
    loaded = time.perf_counter() - wall
    train, _, _ = data_preparation(config, dataset)
    gc.collect()
    return {
        "variant": variant,
        "wall_s": round(time.perf_counter() - wall, 1),
        "load_wall_s": round(loaded, 1),
        "cpu_s": round(time.process_time() - cpu, 1),
        "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2, 3),
        "held_rss_gib": round(psutil.Process().memory_info().rss / 1024**3, 3),  # what the run keeps
        "train_rows": len(train.dataset.inter_feat),
        "train_columns": sorted(train.dataset.inter_feat.columns),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data_path", required=True)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--variant", choices=VARIANTS, help="(internal) measure one variant in this process")
    args = parser.parse_args()
    if args.variant:
        print(json.dumps(measure(args.data_path, args.variant)), flush=True)
        return
    records = []
    for _ in range(args.repeats):
        for variant in VARIANTS:
            out = subprocess.run([sys.executable, __file__, f"--data_path={args.data_path}", f"--variant={variant}"],
                                 check=True, capture_output=True, text=True).stdout
            records.append(json.loads(out.strip().splitlines()[-1]))
            print(json.dumps(records[-1]), flush=True)
    for key in ("peak_rss_gib", "held_rss_gib", "cpu_s", "wall_s"):
        mean = {v: sum(r[key] for r in records if r["variant"] == v) / args.repeats for v in VARIANTS}
        print(f"{key}: recbole {mean['recbole']:.2f}, plugin {mean['plugin']:.2f}, "
              f"plugin / recbole {mean['plugin'] / mean['recbole']:.2f}")


if __name__ == "__main__":
    main()
