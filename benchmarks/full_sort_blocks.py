"""Peak memory and time of the max readout's full-sort scores, over blocks of items (the plugin's
``max_scores``) against the running max over interests on the whole catalogue (before blocks).

    python benchmarks/full_sort_blocks.py --users=512 --items=313967 --repeats=2

Random interests ``[users, K, d]`` and item embeddings ``[items, d]`` (Amazon Books' catalogue at
scale 1.0 by default); each measurement is a fresh process (its own peak RSS), the two variants
alternate. Prints one JSON line per process and the ratios.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

VARIANTS = ("whole", "blocks")


def whole_catalogue(interests, item_emb):
    """The scoring before blocks: a running max of per-interest ``[B, n_items]`` products."""
    all_items = item_emb.t()
    scores = interests[:, 0] @ all_items
    for k in range(1, interests.size(1)):
        scores = torch.maximum(scores, interests[:, k] @ all_items)
    return scores


def measure(args, variant: str) -> dict:
    from recbole_eimf.model.abstract_recommender import max_scores

    generator = torch.Generator().manual_seed(0)
    interests = torch.randn(args.users, args.interests, args.dim, generator=generator)
    item_emb = torch.randn(args.items, args.dim, generator=generator)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    start = time.perf_counter()
    scores = (whole_catalogue if variant == "whole" else max_scores)(interests, item_emb)
    return {
        "variant": variant, "seconds": round(time.perf_counter() - start, 2),
        "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2, 3),
        "rss_before_gib": round(base, 3), "scores_gib": round(scores.numel() * 4 / 1024**3, 3),
        "checksum": float(scores[:, :: max(1, args.items // 1000)].sum()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=512)
    parser.add_argument("--items", type=int, default=313_967)
    parser.add_argument("--interests", type=int, default=4)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--variant", choices=VARIANTS, help="(internal) measure one variant in this process")
    args = parser.parse_args()
    if args.variant:
        print(json.dumps(measure(args, args.variant)), flush=True)
        return
    shape = [f"--users={args.users}", f"--items={args.items}", f"--interests={args.interests}", f"--dim={args.dim}"]
    records = []
    for _ in range(args.repeats):
        for variant in VARIANTS:
            out = subprocess.run([sys.executable, __file__, *shape, f"--variant={variant}"],
                                 check=True, capture_output=True, text=True).stdout
            records.append(json.loads(out.strip().splitlines()[-1]))
            print(json.dumps(records[-1]), flush=True)
    for key in ("peak_rss_gib", "seconds"):
        mean = {v: sum(r[key] for r in records if r["variant"] == v) / args.repeats for v in VARIANTS}
        print(f"{key}: whole {mean['whole']:.3f}, blocks {mean['blocks']:.3f}, blocks / whole {mean['blocks'] / mean['whole']:.2f}")


if __name__ == "__main__":
    import torch

    import recbole_eimf  # noqa: F401  (compat shims before RecBole)

    main()
