"""The synthetic twin of amazon-beauty next to the real file: user lengths, item popularity, topics.

    python benchmarks/synthetic_realism.py --real=dataset --seed=0 \\
        --chart=docs/benchmarks/synthetic/amazon-beauty-histograms.png

Generates ``--like=amazon-beauty --scale=1`` into a temporary folder, prints a Markdown table of
quantiles of both distributions for the real and the synthetic file, and draws their histograms
(log-binned counts, log-log axes) side by side.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

import recbole_eimf  # noqa: F401
from recbole_eimf.data.synthetic import generate

USER, ITEM, CATEGORIES = "user_id:token", "item_id:token", "categories:token_seq"


def read(folder: Path, dataset: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    inter = pd.read_csv(folder / dataset / f"{dataset}.inter", sep="\t", usecols=[USER, ITEM])
    items = pd.read_csv(folder / dataset / f"{dataset}.item", sep="\t", usecols=[ITEM, CATEGORIES])
    return inter, items


def summary(counts: np.ndarray) -> list[str]:
    top = np.sort(counts)[::-1]
    q = np.percentile(counts, [50, 75, 90, 99, 99.9])
    return [f"{len(counts):,}", str(counts.min()), f"{counts.mean():.2f}", *(f"{v:g}" for v in q),
            str(counts.max()), f"{top[: max(1, len(top) // 100)].sum() / top.sum():.3f}"]


def topics_per_user(inter: pd.DataFrame, items: pd.DataFrame) -> float:
    """Mean number of second-level categories (Makeup, Skin Care, ...) per user with >= 10 items."""
    second = items[CATEGORIES].str.split("', '").str[1].str.strip("'")
    rows = inter.merge(items.assign(topic=second)[[ITEM, "topic"]], on=ITEM)
    per_user = rows.groupby(USER).agg(n=(ITEM, "size"), topics=("topic", "nunique"))
    return float(per_user.loc[per_user["n"] >= 10, "topics"].mean())


def draw(real: dict, synthetic: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, label in zip(axes, ("user", "item"), ("interactions per user", "interactions per item")):
        top = max(real[key].max(), synthetic[key].max())
        bins = np.unique(np.logspace(np.log10(real[key].min()), np.log10(top + 1), 30).astype(int))
        for name, data, style in (("real", real, "o-"), ("synthetic", synthetic, "s--")):
            hist, edges = np.histogram(data[key], bins=bins)
            density = hist / np.diff(edges) / len(data[key])
            ax.loglog(edges[:-1][hist > 0], density[hist > 0], style, ms=3, label=name)
        ax.set_xlabel(label)
        ax.set_ylabel("share of users (items) per unit of x")
        ax.legend()
    fig.suptitle("amazon-beauty: real file and synthetic twin (seed 0)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--real", default="dataset", help="folder holding amazon-beauty/")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--chart", default="docs/benchmarks/synthetic/amazon-beauty-histograms.png")
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        generate("amazon-beauty", 1.0, args.seed, Path(tmp))
        for name, folder in (("real", Path(args.real)), ("synthetic", Path(tmp))):
            inter, items = read(folder, "amazon-beauty")
            results[name] = {"user": inter.groupby(USER).size().to_numpy(),
                             "item": inter.groupby(ITEM).size().to_numpy(),
                             "topics": topics_per_user(inter, items),
                             "repeats": int(inter.duplicated().sum())}
    header = ["", "rows", "min", "mean", "median", "p75", "p90", "p99", "p99.9", "max", "top 1% share"]
    print("| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    for key in ("user", "item"):
        for name in ("real", "synthetic"):
            print(f"| {key}s, {name} | " + " | ".join(summary(results[name][key])) + " |")
    for name in ("real", "synthetic"):
        print(f"\n{name}: {results[name]['topics']:.2f} second-level categories per user (users with >= 10 "
              f"items); {results[name]['repeats']} repeated (user, item) rows")
    draw(results["real"], results["synthetic"], Path(args.chart))
    print(f"\nchart: {args.chart}")


if __name__ == "__main__":
    main()
