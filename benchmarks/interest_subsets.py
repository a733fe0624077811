"""What each interest of a trained multi-interest model contributes to its ranking.

    python benchmarks/interest_subsets.py --model_file=saved/TransMI-....pth \
        --subsets="all;0;1+2+3" [--split=valid] [--threads=1]

Loads a checkpoint (a plugin backbone, or EIMF: its backbone), then scores the validation (or
test) users with ``max_k <v_k, e_i>`` over each subset of the K interests (``;``-separated, each
``all`` or ``+``-joined interest indices; for TransMI with ``include_last``, interest 0 is the
last position's hidden state, SASRec's vector) and prints RecBole's metrics per subset, plus the
share of the top-20 slots that each interest wins under the full max. Nothing is trained. Run it
from the folder the checkpoint's ``data_path`` is relative to. Used for docs/BENCHMARKS.md §10.
"""

from __future__ import annotations

import argparse
import logging
from typing import List, Optional

import torch

import recbole_eimf  # noqa: F401  (compatibility shims before RecBole loads)
from recbole_eimf.quick_start.quick_start import load_data_and_model
from recbole_eimf.utils import get_trainer

COLUMNS = ("recall@20", "ndcg@20", "recall@50", "ndcg@50", "mrr@20")


def parse_subsets(text: str) -> List[Optional[List[int]]]:
    """``"all;0;1+2+3"`` -> ``[None, [0], [1, 2, 3]]`` (None: every interest)."""
    subsets: List[Optional[List[int]]] = []
    for part in filter(None, (p.strip() for p in text.split(";"))):
        subsets.append(None if part == "all" else [int(i) for i in part.split("+")])
    return subsets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model_file", required=True)
    parser.add_argument("--subsets", default="all;0")
    parser.add_argument("--split", choices=("valid", "test"), default="valid")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    logging.getLogger().setLevel(logging.WARNING)

    config, model, _dataset, _train, valid, test = load_data_and_model(args.model_file)
    data = valid if args.split == "valid" else test
    config["show_progress"] = False
    backbone = getattr(model, "backbone", model)  # EIMF scores with its backbone
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    full = backbone.forward
    k = None
    rows = []
    for subset in parse_subsets(args.subsets):
        if subset is not None:
            backbone.forward = lambda seq, length, keep=subset: full(seq, length)[:, keep]
        result = trainer.evaluate(data, load_best_model=False, show_progress=False)
        backbone.forward = full
        label = "all" if subset is None else "+".join(map(str, subset))
        rows.append(f"| {label} | " + " | ".join(f"{float(result[c]):.4f}" for c in COLUMNS) + " |")

    # Which interest puts the items into the top 20 under the full max (first evaluation batch).
    batch = next(iter(data))[0].to(backbone.item_embedding.weight.device)
    with torch.no_grad():
        interests = full(batch[backbone.ITEM_SEQ], batch[backbone.ITEM_SEQ_LEN])
        scores = torch.einsum("bkd,nd->bkn", interests, backbone.item_embedding.weight)
        top = scores.max(dim=1).values.topk(20, dim=1).indices
        winner = scores.argmax(dim=1).gather(1, top)
        k = interests.size(1)
        shares = [float((winner == i).float().mean()) for i in range(k)]

    print(f"{config['model']} ({type(backbone).__name__}), {config['dataset']}, {args.split} split, {args.model_file}")
    print()
    print("| interests | " + " | ".join(COLUMNS) + " |")
    print("| --- |" + " ---: |" * len(COLUMNS))
    print("\n".join(rows))
    print()
    print("share of the top-20 slots won by each interest (full max, first batch of "
          f"{batch[backbone.ITEM_SEQ].size(0)} users): " + ", ".join(f"{i}: {s:.3f}" for i, s in enumerate(shares)))


if __name__ == "__main__":
    main()
