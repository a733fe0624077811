"""Training rows per second: ``--nproc=N`` data-parallel ranks against one process at one thread.

    python benchmarks/ddp_speed.py --model=SASRec --dataset=ml-100k --epochs=2 --repeats=2 --nproc=2

Each repeat runs ``run_recbole_eimf.py`` twice, alternating (one process with
``OMP_NUM_THREADS=1``, then ``--nproc=N``, whose ranks take one thread each), in a scratch folder,
and reads the training time of every epoch from the log (rank 0's for the ranks): rows per second
is the training rows of an epoch (the same for both: the ranks split them) over that time. Epoch 0
is reported apart (it warms up). Any other ``--key=value`` goes to every run (e.g.
``--MAX_ITEM_LIST_LENGTH=50``). Prints a markdown table and the ratio of the medians.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import List, Sequence

ROOT = Path(__file__).resolve().parents[1]
EPOCH_TIME = re.compile(r"epoch (\d+) training \[time: ([\d.]+)s")


def epoch_seconds(model: str, dataset: str, epochs: int, nproc: int, extra: Sequence[str]) -> List[float]:
    """Training seconds of each epoch of one run (eval_step past the last epoch: no validation)."""
    with tempfile.TemporaryDirectory(prefix="ddp_speed_") as folder:
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
        command = [sys.executable, str(ROOT / "run_recbole_eimf.py"), f"--model={model}", f"--dataset={dataset}",
                   f"--epochs={epochs}", f"--eval_step={epochs}", f"--nproc={nproc}", *extra]
        proc = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            sys.exit(f"{' '.join(command)} failed:\n{proc.stderr[-3000:]}")
        for log in Path(folder, "log", model).glob("*.log"):
            times = {int(e): float(s) for e, s in EPOCH_TIME.findall(log.read_text())}
            if times:
                return [times[e] for e in sorted(times)]
    sys.exit(f"{' '.join(command)}: no epoch training time in its logs")


def train_rows(model: str, dataset: str, extra: Sequence[str]) -> int:
    """Rows of the training split, as the runs build it."""
    sys.argv = [sys.argv[0], *extra]
    from recbole_eimf.config import Config
    from recbole_eimf.data import create_dataset

    config = Config(model=model, dataset=dataset)
    return len(create_dataset(config).build()[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="SASRec")
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--nproc", type=int, default=2)
    args, extra = parser.parse_known_args()

    rows = train_rows(args.model, args.dataset, extra)
    runs = {1: [], args.nproc: []}
    for repeat in range(args.repeats):
        for nproc in runs:
            seconds = epoch_seconds(args.model, args.dataset, args.epochs, nproc, extra)
            runs[nproc].append(seconds)
            print(f"repeat {repeat} nproc={nproc}: epoch seconds {seconds}", flush=True)

    print(f"\n{args.model} on {args.dataset}: {rows} training rows per epoch\n")
    print("| run | epoch 0 (s) | later epochs (s, median) | rows/s (later epochs) |")
    print("| --- | ---: | ---: | ---: |")
    speed = {}
    for nproc, all_seconds in runs.items():
        later = [s for seconds in all_seconds for s in seconds[1:]] or [seconds[0] for seconds in all_seconds]
        speed[nproc] = rows / statistics.median(later)
        first = ", ".join(f"{seconds[0]:.1f}" for seconds in all_seconds)
        label = "1 process, 1 thread" if nproc == 1 else f"--nproc={nproc} (1 thread per rank)"
        print(f"| {label} | {first} | {statistics.median(later):.1f} | {speed[nproc]:.0f} |")
    print(f"\nratio (--nproc={args.nproc} / 1 process): {speed[args.nproc] / speed[1]:.2f}x")


if __name__ == "__main__":
    main()
