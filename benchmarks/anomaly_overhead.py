"""Training-step time with torch's anomaly detection on (as RecBole's SINE import leaves it) and off.

    python benchmarks/anomaly_overhead.py --dataset=ml-100k --models=SASRec,ComiRecSA --batches=20 --rounds=3

Both settings run in one process on the same batches, alternating round by round, so the ratio
is measured under the same machine load. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

import recbole_eimf  # noqa: F401  (compat: anomaly detection off)
from recbole_eimf.config import Config
from recbole_eimf.data import create_dataset, data_preparation
from recbole_eimf.utils import get_model


def time_batches(model, optimizer, batches, anomaly: bool) -> float:
    """Seconds per training batch with anomaly detection set to ``anomaly``."""
    torch.autograd.set_detect_anomaly(anomaly)
    start = time.perf_counter()
    for batch in batches:
        optimizer.zero_grad()
        model.calculate_loss(batch).backward()
        optimizer.step()
    elapsed = time.perf_counter() - start
    torch.autograd.set_detect_anomaly(False)
    return elapsed / len(batches)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--data_path", default="dataset/")
    parser.add_argument("--models", default="SASRec,ComiRecSA")
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    sys.argv = sys.argv[:1]  # keep RecBole's Config from reading this script's flags

    rows = []
    for name in args.models.split(","):
        config = Config(model=name, dataset=args.dataset, config_dict={"data_path": args.data_path, "state": "ERROR"})
        train, _, _ = data_preparation(config, create_dataset(config))
        batches = [b.to(config["device"]) for _, b in zip(range(args.batches), train)]
        model = get_model(name)(config, train._dataset).to(config["device"]).train()
        optimizer = torch.optim.Adam(model.parameters(), lr=config["learning_rate"])
        time_batches(model, optimizer, batches[:2], anomaly=False)  # warm-up
        on, off = [], []
        for _ in range(args.rounds):
            on.append(time_batches(model, optimizer, batches, anomaly=True))
            off.append(time_batches(model, optimizer, batches, anomaly=False))
        rows.append((name, statistics.median(on), statistics.median(off)))

    print(f"| model ({args.dataset}, {torch.get_num_threads()} threads, {config['device']}) "
          "| s/batch, anomaly on | s/batch, anomaly off | on / off |")
    print("| --- | --- | --- | --- |")
    for name, on, off in rows:
        print(f"| {name} | {on:.3f} | {off:.3f} | {on / off:.2f}x |")


if __name__ == "__main__":
    main()
