"""Why ComiRec-SA peaks early on few training prefixes per item: per-epoch diagnostics.

    OMP_NUM_THREADS=1 python benchmarks/comirecsa_diagnosis.py --seed=2020 --epochs=30 \
        [--set interest_layer_norm=False interest_projection=False ...]

(``--set`` with both keys False: ComiRec's own model; without ``--set``: ComiRecSA.yaml's defaults.)

Trains ComiRec-SA on the ml-100k slice of docs/BENCHMARKS.md section 31 (users with 5-40
ratings, sequences of 20) with RecBole's trainer and, after every epoch, ranks all items for the
validation users (full sort, as RecBole's evaluation) and prints: the training loss per batch,
validation NDCG@20, the share of each user's top 20 that are items of their own input sequence
(never the answer on ml-100k, which has no repeated ratings), the mean squared norm of the item
embeddings, the ratio of the longest to the shortest of a user's interests (mean over users;
1.0 when every interest scores at one scale), and the overlap of the top 20 with an item-to-item
co-occurrence ranking (counts of "j in the prefix, then i" over the training rows). Before training it prints that co-occurrence
ranking's own validation NDCG@20 (with and without the sequence's items), for scale.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch

import recbole_eimf  # noqa: F401  (compat shims before RecBole)
from recbole.utils import init_seed

from recbole_eimf.config import Config
from recbole_eimf.data import create_dataset, data_preparation
from recbole_eimf.utils import get_model, get_trainer

SLICE = {
    "MAX_ITEM_LIST_LENGTH": 20,
    "user_inter_num_interval": "[5,40]",
    "show_progress": False,
    "state": "WARNING",
}


def parse_value(text: str):
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"True": True, "False": False}.get(text, text)


def cooccurrence(train, n_items: int) -> torch.Tensor:
    """``C[j, i]``: training rows whose prefix holds ``j`` and whose target is ``i``."""
    data = train.dataset.inter_feat
    seqs, targets = data["item_id_list"], data["item_id"]
    counts = torch.zeros(n_items, n_items)
    for seq, target in zip(seqs, targets):
        items = seq[seq > 0].unique()
        counts[items, target] += 1
    return counts


def rank_metrics(scores: torch.Tensor, seq: torch.Tensor, target: torch.Tensor, knn_top=None):
    """NDCG@20 of each row, share of its top 20 inside its own sequence, overlap with ``knn_top``."""
    scores = scores.clone()
    scores[:, 0] = -np.inf
    top = scores.topk(20, dim=1).indices
    hit = top == target.unsqueeze(1)
    ndcg = (hit.float() / torch.log2(torch.arange(2, 22).float())).sum(1)
    in_seq = (top.unsqueeze(2) == seq.unsqueeze(1)).any(2).float().mean(1)
    overlap = None
    if knn_top is not None:
        overlap = (top.unsqueeze(2) == knn_top.unsqueeze(1)).any(2).float().mean(1)
    return ndcg, in_seq, overlap, top


def validation_rows(valid):
    seqs, lens, targets = [], [], []
    for interaction, _, _, positive_i in valid:
        seqs.append(interaction["item_id_list"])
        lens.append(interaction["item_length"])
        targets.append(positive_i)
    return torch.cat(seqs), torch.cat(lens), torch.cat(targets)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--set", nargs="*", default=[], help="key=value config overrides")
    args = parser.parse_args(argv)
    options = dict(SLICE, seed=args.seed, epochs=args.epochs)
    options.update({k: parse_value(v) for k, v in (s.split("=", 1) for s in args.set)})
    sys.argv = sys.argv[:1]
    config = Config(model="ComiRecSA", dataset="ml-100k", config_dict=options)
    init_seed(config["seed"], config["reproducibility"])
    dataset = create_dataset(config)
    train, valid, _ = data_preparation(config, dataset)
    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    model = get_model(config["model"])(config, train.dataset)
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)

    seq, seq_len, target = validation_rows(valid)
    counts = cooccurrence(train, dataset.item_num)
    knn = torch.zeros(len(seq), dataset.item_num)
    for row in range(len(seq)):
        items = seq[row][seq[row] > 0]
        knn[row] = counts[items].sum(0)
    knn_ndcg, knn_in_seq, _, knn_top = rank_metrics(knn, seq, target)
    masked = knn.scatter(1, seq, -np.inf)
    knn_masked_ndcg = rank_metrics(masked, seq, target)[0]
    print(f"co-occurrence ranking: valid NDCG@20 {knn_ndcg.mean():.4f} (top-20 in sequence {knn_in_seq.mean():.2f}); "
          f"sequence items removed: {knn_masked_ndcg.mean():.4f}")
    print("epoch  loss/batch  NDCG@20  NDCG@20(seq removed)  top20-in-seq  |e|^2  norm-ratio  overlap-cooc")
    for epoch in range(args.epochs):
        model.train()
        loss = trainer._train_epoch(train, epoch, show_progress=False)
        loss = sum(loss) if isinstance(loss, tuple) else loss
        model.eval()
        with torch.no_grad():
            interests = model.user_interests(seq, seq_len)
            scores = torch.einsum("bkd,nd->bkn", interests, model.item_embedding.weight).max(1).values
        ndcg, in_seq, overlap, _ = rank_metrics(scores, seq, target, knn_top)
        ndcg_masked = rank_metrics(scores.scatter(1, seq, -np.inf), seq, target)[0]
        norm = model.item_embedding.weight[1:].pow(2).sum(1).mean()
        lengths = interests.norm(dim=-1)
        ratio = (lengths.max(1).values / lengths.min(1).values).mean()
        print(f"{epoch:5d}  {loss / len(train):10.4f}  {ndcg.mean():7.4f}  {ndcg_masked.mean():20.4f}  "
              f"{in_seq.mean():12.2f}  {norm:.4f}  {ratio:10.2f}  {overlap.mean():12.2f}")


if __name__ == "__main__":
    main()
