"""Training-step time on the CPU: eager, ``torch.compile`` (inductor), bf16 autocast.

    OMP_NUM_THREADS=1 python benchmarks/fused_step.py --models=SASRec,TransMI,EIMF --dataset=ml-100k \
        --steps=10 --rounds=3

For each model: one model per mode, all from the same seed and weights, trained with Adam on the
same full-size training batches of ml-100k (the first ``--steps`` of the training loader, so every
step has one shape: compile does not recompile). The modes take turns, ``--rounds`` times, each
timing ``--steps`` steps; the first round of a compiled mode is reported apart (it compiles). The
median seconds per step of the later rounds are printed, with the speed-up over eager. EIMF runs
on extractive ESIM targets (no LLM, tf-idf text), built in a scratch folder. Any other
``--key=value`` is a config override for every model.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import time
from typing import Callable, Dict

import torch

from recbole.utils import init_seed

MODES = ("eager", "compile", "bf16")
ESIM_FAST = {"llm_backend": "extractive", "text_encoder": "tfidf", "n_clusters": 4, "users_per_cluster": 5,
             "n_concepts": 8}


def build(model_name: str, dataset: str, steps: int, esim_dir: str):
    """Config, model and the first training batches (full-size only) of ``model_name``."""
    from recbole_eimf.config import Config
    from recbole_eimf.data import create_dataset, data_preparation
    from recbole_eimf.utils import get_model

    config = Config(model=model_name, dataset=dataset,
                    config_dict={**ESIM_FAST, "esim_cache_dir": esim_dir, "show_progress": False})
    init_seed(config["seed"], config["reproducibility"])
    train, _, _ = data_preparation(config, create_dataset(config))
    size = config["train_batch_size"]
    batches = [batch for _, batch in zip(range(steps), train) if len(batch) == size]
    init_seed(config["seed"], config["reproducibility"])
    state = get_model(model_name)(config, train._dataset).state_dict()
    return config, train._dataset, state, batches


def make_step(model: torch.nn.Module, mode: str) -> Callable:
    """One optimiser step of ``model`` in ``mode``."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = torch.compile(model.calculate_loss) if "compile" in mode else model.calculate_loss
    amp = torch.autocast("cpu", dtype=torch.bfloat16) if "bf16" in mode else contextlib.nullcontext()

    def step(batch) -> float:
        optimizer.zero_grad()
        with amp:
            losses = loss_fn(batch)
        loss = sum(losses) if isinstance(losses, tuple) else losses
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    return step


def time_model(model_name: str, dataset: str, steps: int, rounds: int, esim_dir: str) -> Dict:
    from recbole_eimf.utils import get_model

    config, train_dataset, state, batches = build(model_name, dataset, steps, esim_dir)
    models, runners, seconds = {}, {}, {mode: [] for mode in MODES}
    for mode in MODES:
        models[mode] = get_model(model_name)(config, train_dataset)
        models[mode].load_state_dict(state)
        models[mode].train()
        runners[mode] = make_step(models[mode], mode)
    losses = {}
    for _ in range(rounds):
        for mode in MODES:
            start = time.perf_counter()
            losses[mode] = [runners[mode](batch) for batch in batches]
            seconds[mode].append((time.perf_counter() - start) / len(batches))
    return {"seconds": seconds, "losses": losses, "steps": len(batches), "batch": config["train_batch_size"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="SASRec,TransMI,EIMF")
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    args, extra = parser.parse_known_args()
    sys.argv = [sys.argv[0], *extra]  # RecBole's Config reads the overrides from the command line
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s)")
    print("| model | mode | first round (s/step, compiles) | later rounds (s/step, median) | vs eager | last loss |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    with tempfile.TemporaryDirectory(prefix="fused_step_") as esim_dir:
        for name in args.models.split(","):
            result = time_model(name, args.dataset, args.steps, args.rounds, esim_dir)
            later = {mode: statistics.median(s[1:] or s) for mode, s in result["seconds"].items()}
            for mode in MODES:
                print(f"| {name} | {mode} | {result['seconds'][mode][0]:.3f} | {later[mode]:.3f} | "
                      f"{later['eager'] / later[mode]:.2f}x | {result['losses'][mode][-1]:.4f} |", flush=True)


if __name__ == "__main__":
    main()
