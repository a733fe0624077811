"""Validation NDCG@20 and training loss per epoch, for quick ablations of one model's config keys.

    python benchmarks/valid_curves.py --model=MIND --dataset=ml-100k --epochs=5 \
        --variants="relu_layer=True;relu_layer=False" [--key=value ...]

Each variant (``;``-separated, each a ``,``-separated list of ``key=value``; empty: the defaults)
trains from the same seed on the same data, in the same batch order, for ``--epochs`` epochs with no early stop, and the
curve is printed as a markdown table. Other ``--key=value`` options apply to every variant (e.g.
``--MAX_ITEM_LIST_LENGTH=10``). ``Pop`` is always measured as a floor.
Used for the MIND section of docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Dict, List

import recbole_eimf  # noqa: F401  (compatibility shims before RecBole loads)
from recbole.utils import init_seed

from recbole_eimf.config import Config, command_line_value
from recbole_eimf.data import create_dataset, data_preparation
from recbole_eimf.quick_start import build_model
from recbole_eimf.utils import get_trainer


def _pairs(text: str) -> Dict[str, object]:
    out = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, _, value = item.partition("=")
        out[key] = command_line_value(value)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--variants", default="", help="';'-separated variants of 'key=value,key=value'")
    args, extra = parser.parse_known_args()
    common = {"show_progress": False, "state": "WARNING", "epochs": args.epochs, "stopping_step": 10**6}
    common.update(_pairs(",".join(arg[2:] for arg in extra if arg.startswith("--"))))
    sys.argv = sys.argv[:1]  # RecBole's Config would read the options again

    config = Config(model=args.model, dataset=args.dataset, config_dict=common)
    init_seed(config["seed"], config["reproducibility"])
    train, valid, _ = data_preparation(config, create_dataset(config))
    # Every variant must see the same batches: the loader's shuffle generator advances with each
    # epoch, so it is rewound before each curve. A variant equal to a model's defaults then
    # reproduces a fresh harness run of that model with the same seed, epoch by epoch.
    shuffle_state = train.generator.get_state()

    def curve(model_name: str, overrides: Dict[str, object], epochs: int) -> List[tuple]:
        cfg = Config(model=model_name, dataset=args.dataset, config_dict={**common, **overrides})
        init_seed(cfg["seed"], cfg["reproducibility"])
        train.generator.set_state(shuffle_state)
        model = build_model(cfg, train._dataset)  # after the model's pipeline stages (EIMF: ESIM)
        trainer = get_trainer(cfg["MODEL_TYPE"], model_name)(cfg, model)
        rows = []
        for epoch in range(epochs):
            start = time.perf_counter()
            model.train()
            loss = trainer._train_epoch(train, epoch, show_progress=False)
            loss = float(sum(loss)) if isinstance(loss, tuple) else float(loss)
            result = trainer._valid_epoch(valid, show_progress=False)[1]
            rows.append((epoch, loss, result["ndcg@20"], result["recall@20"], time.perf_counter() - start))
        return rows

    pop = curve("Pop", {}, 1)[0]
    print(f"Pop: valid NDCG@20 {pop[2]:.4f}, Recall@20 {pop[3]:.4f}\n")
    variants = args.variants.split(";") if args.variants else [""]
    print("| variant | " + " | ".join(f"ep {e}" for e in range(args.epochs)) + " | train loss (last) | s/epoch |")
    print("|---|" + "---|" * (args.epochs + 2))
    for text in variants:
        rows = curve(args.model, _pairs(text), args.epochs)
        cells = " | ".join(f"{r[2]:.4f}" for r in rows)
        seconds = sum(r[4] for r in rows) / len(rows)
        print(f"| {args.model} {text or '(defaults)'} | {cells} | {rows[-1][1]:.2f} | {seconds:.1f} |", flush=True)


if __name__ == "__main__":
    main()
