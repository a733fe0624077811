"""Do the names ``--stage=explain`` gives an EIMF checkpoint's interests mean something?

    python benchmarks/explain_concepts.py --model_file=saved/EIMF-....pth [--top=1,3] [--shuffles=20]

For each typical user of ESIM (the users whose interests the LLM, or the extractive backend,
stated; their concepts are the labels EIMF trained on), the interests of the checkpoint after the
user's training items are named by their nearest concepts through the trained head, as explain
does (the top ``t`` concepts of each interest). Reported: the share of the user's stated concepts
that are among the named ones (recall), against the same with the users shuffled (user u's named
concepts against another user's stated ones; mean of ``--shuffles`` permutations), and the share a
random pick of as many concepts would get. Reads ESIM's cache (the stated concepts); run it
where the checkpoint was trained (the cache path in its config is relative to that folder).
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

import recbole_eimf  # noqa: F401  (compat shims before RecBole)


def recall(named: list, stated: list) -> float:
    return float(np.mean([len(n & s) / len(s) for n, s in zip(named, stated)]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model_file", required=True)
    parser.add_argument("--top", default="1,3", help="concepts named per interest")
    parser.add_argument("--shuffles", type=int, default=20)
    args = parser.parse_args()
    sys.argv = sys.argv[:1]

    from recbole_eimf.esim import load_semantic_targets
    from recbole_eimf.esim.sequences import training_sequences
    from recbole_eimf.quick_start.explain import Explainer

    explainer = Explainer(args.model_file)
    if explainer.concepts is None:
        sys.exit(f"error: {explainer.note}")
    train = explainer.model.dataset  # the training dataset the model was built with
    targets = load_semantic_targets(explainer.config, train)
    sequences = training_sequences(train).sequences
    users = [int(u) for u in np.flatnonzero(targets.is_typical.numpy() & targets.has_target.numpy())]
    stated = [set(np.flatnonzero(targets.labels[targets.target_row[u]].numpy()).tolist()) for u in users]
    similarity = [explainer.concept_similarity(explainer.interests(sequences[u].tolist())) for u in users]
    n_concepts = targets.n_concepts
    rng = np.random.default_rng(explainer.config["seed"])
    print(f"{explainer.config['model']} on {explainer.config['dataset']}: {len(users)} typical users, "
          f"{n_concepts} concepts, {np.mean([len(s) for s in stated]):.2f} stated concepts per user, "
          f"K = {similarity[0].size(0)} interests\n")
    print("| concepts named per interest | named per user | recall of stated concepts | shuffled users | "
          "random concepts |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    for top in (int(t) for t in args.top.split(",")):
        named = [set(s.topk(min(top, n_concepts), dim=1).indices.flatten().tolist()) for s in similarity]
        shuffled = np.mean([recall(named, [stated[i] for i in rng.permutation(len(users))])
                            for _ in range(args.shuffles)])
        chance = np.mean([len(n) / n_concepts for n in named])
        print(f"| {top} | {np.mean([len(n) for n in named]):.2f} | {recall(named, stated):.3f} | "
              f"{shuffled:.3f} | {chance:.3f} |")


if __name__ == "__main__":
    main()
