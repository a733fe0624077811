"""Training and full-sort inference speed of several models, measured in one process.

    python benchmarks/train_speed.py --dataset=amazon-beauty \
        --models=SASRec,ComiRecSA,ComiRecDR,MIND,TransMI --batches=10 --rounds=3 --anomaly

Every model trains on the same first ``--batches`` training batches; models take turns round by
round, so a change in machine load hits all of them alike, and the table reports medians over
rounds. Seconds per epoch are estimated as seconds per batch times the number of training batches.
``--anomaly`` also times each model with ``torch.autograd.set_detect_anomaly(True)`` (what
importing RecBole's SINE leaves switched on without recbole_eimf.compat). Any other
``--key=value`` is a config override for every model (e.g. ``--text_encoder=tfidf`` for EIMF's
ESIM step). A model may carry its own overrides after ``@``, so one run compares a setting:

    python benchmarks/train_speed.py --dataset=amazon-beauty \
        --models=ComiRecSA@trim_padding=False,ComiRecSA --batches=6 --rounds=3

Models run as the plugin's run path builds them (``recbole_eimf.trim``: trimmed batches where
exact), with the run's thread count (``--threads=N``, or auto: ``recbole_eimf.threads``). Stock
RecBole against the plugin's default path, both measured in one run:

    python benchmarks/train_speed.py --dataset=amazon-beauty \
        --models=SASRec@trim_padding=False,SASRec,GRU4Rec@trim_padding=False,GRU4Rec --batches=4 --rounds=3

``--thread_counts=1,2`` times every model at each count in turn, within each round.

Prints a markdown table. ``--profile=N`` then prints, per model, the N operators that took the
most CPU time over one more pass of its training batches (``torch.profiler``): where an epoch goes.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

import recbole_eimf  # noqa: F401  (compat: anomaly detection off)
from recbole_eimf.config import Config, command_line_value
from recbole_eimf.data import create_dataset, data_preparation
from recbole_eimf.environment import describe_environment, run_environment
from recbole_eimf.quick_start import build_model
from recbole_eimf.threads import apply_threads


def train_seconds(model, optimizer, batches, anomaly: bool) -> float:
    """Seconds per training batch."""
    model.train()
    torch.autograd.set_detect_anomaly(anomaly)
    start = time.perf_counter()
    for batch in batches:
        optimizer.zero_grad()
        losses = model.calculate_loss(batch)
        (sum(losses) if isinstance(losses, tuple) else losses).backward()
        optimizer.step()
    torch.autograd.set_detect_anomaly(False)
    return (time.perf_counter() - start) / len(batches)


@torch.no_grad()
def inference_seconds(model, batches) -> float:
    """Seconds per full-sort batch (score every item for every user of the batch)."""
    model.eval()
    start = time.perf_counter()
    for interaction in batches:
        model.full_sort_predict(interaction)
    return (time.perf_counter() - start) / len(batches)


def parse_spec(spec: str):
    """``"Model@key=value@key=value"`` -> ``("Model", {key: value, ...})``."""
    name, *settings = spec.split("@")
    overrides = {}
    for item in settings:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--models: '{item}' in '{spec}' is not key=value")
        overrides[key] = command_line_value(value)
    return name, overrides


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--data_path", default="dataset/")
    parser.add_argument("--models", default="SASRec,ComiRecSA")
    parser.add_argument("--batches", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--anomaly", action="store_true", help="also time with anomaly detection on")
    parser.add_argument("--profile", type=int, default=0, help="then list each model's N costliest operators")
    parser.add_argument("--thread_counts", default="", help="e.g. 1,2: time every model at each torch thread count")
    args, extra = parser.parse_known_args()
    overrides = {}
    for item in extra:  # --key=value, values read as Python literals where they parse
        key, _, value = item.lstrip("-").partition("=")
        overrides[key] = command_line_value(value)
    sys.argv = sys.argv[:1]  # RecBole's Config must not read this script's flags

    setups = {}
    for spec in args.models.split(","):
        name, own = parse_spec(spec)
        settings = {"data_path": args.data_path, "state": "ERROR", **overrides, **own}
        config = Config(model=name, dataset=args.dataset, config_dict=settings)
        train, _, test = data_preparation(config, create_dataset(config))
        device = config["device"]
        start = time.perf_counter()  # RecBole's loader (collate, BERT4Rec's masking): not in s/batch
        batches = [b.to(device) for _, b in zip(range(args.batches), train)]
        print(f"{spec}: loading a training batch took {(time.perf_counter() - start) / len(batches):.3f} s")
        tests = [b[0].to(device) for _, b in zip(range(max(1, args.batches // 5)), test)]
        model = build_model(config, train._dataset)  # its pipeline stages, then trimmed where exact
        optimizer = torch.optim.Adam(model.parameters(), lr=config["learning_rate"])
        train_seconds(model, optimizer, batches[:1], anomaly=False)  # warm-up
        setups[spec] = (model, optimizer, batches, tests, len(train))

    print(apply_threads(config))
    counts = [int(n) for n in args.thread_counts.split(",")] if args.thread_counts else [torch.get_num_threads()]
    if len(counts) > 1:  # one row per model and thread count
        setups = {f"{name} @ {n} thread(s)": (*setup, n) for name, setup in setups.items() for n in counts}
    else:
        setups = {name: (*setup, counts[0]) for name, setup in setups.items()}
    times = {name: {"off": [], "on": [], "infer": []} for name in setups}
    for _ in range(args.rounds):
        for name, (model, optimizer, batches, tests, _, threads) in setups.items():
            torch.set_num_threads(threads)
            times[name]["off"].append(train_seconds(model, optimizer, batches, anomaly=False))
            if args.anomaly:
                times[name]["on"].append(train_seconds(model, optimizer, batches, anomaly=True))
            times[name]["infer"].append(inference_seconds(model, tests))

    first = next(iter(setups))
    base = statistics.median(times[first]["off"])
    base_infer = statistics.median(times[first]["infer"])
    header = f"| model ({args.dataset}, {config['device']}, {counts} threads) | s/batch | est. s/epoch | vs {first} | full-sort s/batch | full-sort vs {first}"
    header += " | s/batch, anomaly on | anomaly on/off |" if args.anomaly else " |"
    # Seconds belong to a machine: name it above the table (recbole_eimf/environment.py).
    print(f"environment: {describe_environment(run_environment(config['device']))}\n")
    print(header)
    print("|" + " --- |" * (8 if args.anomaly else 6))
    for name, (_, _, _, _, n_batches, _) in setups.items():
        off = statistics.median(times[name]["off"])
        infer = statistics.median(times[name]["infer"])
        row = f"| {name} | {off:.3f} | {off * n_batches:.0f} | {base / off:.2f}x faster | {infer:.3f} | {base_infer / infer:.2f}x faster"
        if args.anomaly:
            on = statistics.median(times[name]["on"])
            row += f" | {on:.3f} | {on / off:.2f}x |"
        else:
            row += " |"
        print(row)

    if not args.profile:
        return
    for name, (model, optimizer, batches, _, _, threads) in setups.items():
        torch.set_num_threads(threads)
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profiler:
            train_seconds(model, optimizer, batches, anomaly=False)
        print(f"\n{name}: the {args.profile} costliest operators over {len(batches)} training batches\n")
        print(profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.profile))


if __name__ == "__main__":
    main()
