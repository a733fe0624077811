"""Ablation of the multi-interest training options: each switched on alone, next to all off.

    OMP_NUM_THREADS=1 python benchmarks/training_options.py --dataset=ml-100k --model=TransMI \
        --epochs=5 --seed=2020 --threads=1 --output_dir=benchmark_results/training_options/ml-100k

One call of the benchmark harness (``recbole_eimf.benchmark.runner.run_benchmark``: same protocol,
early stopping on validation, the best checkpoint tested) over *variants*: for each option the
script writes ``<output_dir>/variants/<Model>-<variant>.yaml`` (``model: <Model>`` plus the
option), which the harness runs and labels by that name; the baseline is the model itself. A rerun
skips finished variants. ``props/benchmark/<Model>.yaml`` (and its ``<dataset>/`` version), where
they exist, apply to every variant. The script then reads the harness's ``results.json`` and
writes ``<output_dir>/training_options.md`` (and ``.json``): test Recall@20 and NDCG@20 of the
best-validation checkpoint, and training seconds per epoch. Any other ``--key=value`` is a config
override for every variant (e.g. ``--gpu_id=0``).

Variants (values are options of this script):

- ``baseline``: every option off (full softmax, no reweighting, no regulariser);
- ``sampled_uniform`` / ``sampled_popularity``: sampled softmax with ``--negatives`` negatives per
  batch and logQ correction, uniform or popularity sampling;
- ``hard_negatives``: REMI's interest-aware hard negatives, ``hard_negative_beta=--beta``;
- ``routing_reg``: REMI's routing regulariser, ``routing_reg_weight=--routing_reg_weight`` (the
  default 12800 is REMI's ``rlambda=100`` at its batch of 128, see MultiInterestRecommender);
- ``embedding_dropout``: ``--embedding_dropout`` on the sequence embeddings (not for TransMI,
  whose input dropout is ``hidden_dropout_prob``);
- ``weight_decay``: the optimizer's L2 penalty ``--weight_decay``.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import torch

from recbole_eimf.benchmark.runner import run_benchmark
from recbole_eimf.config import command_line_value
from recbole_eimf.utils import props_dir

logger = logging.getLogger("training_options")

VARIANTS = [
    "baseline", "sampled_uniform", "sampled_popularity", "hard_negatives", "routing_reg",
    "embedding_dropout", "weight_decay",
]


def variant_options(name: str, args: argparse.Namespace) -> Dict[str, Any]:
    """The config keys one variant switches on."""
    return {
        "baseline": {},
        "sampled_uniform": {"sampled_softmax_negatives": args.negatives},
        "sampled_popularity": {
            "sampled_softmax_negatives": args.negatives, "sampled_softmax_distribution": "popularity",
        },
        "hard_negatives": {"hard_negative_beta": args.beta},
        "routing_reg": {"routing_reg_weight": args.routing_reg_weight},
        "embedding_dropout": {"embedding_dropout": args.embedding_dropout},
        "weight_decay": {"weight_decay": args.weight_decay},
    }[name]


def parse_args(argv: Optional[Sequence[str]] = None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], allow_abbrev=False)
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--model", default="TransMI", help="one multi-interest model (TransMI)")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument("--output_dir", default=None, help="benchmark_results/training_options/<dataset>")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated, of: " + ", ".join(VARIANTS))
    parser.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: torch's default)")
    parser.add_argument("--negatives", type=int, default=256, help="sampled softmax negatives per batch (256)")
    parser.add_argument("--beta", type=float, default=1.0, help="hard_negative_beta (1.0)")
    parser.add_argument("--routing_reg_weight", type=float, default=12800.0, help="routing_reg_weight (12800)")
    parser.add_argument("--embedding_dropout", type=float, default=0.2, help="embedding_dropout (0.2)")
    parser.add_argument("--weight_decay", type=float, default=1e-4, help="weight_decay (1e-4)")
    args, extra = parser.parse_known_args(argv)
    overrides: Dict[str, Any] = {}
    for item in extra:
        if not item.startswith("--") or "=" not in item:
            parser.error(f"unrecognized argument {item!r}: config overrides are written --key=value")
        key, value = item[2:].split("=", 1)
        overrides[key] = command_line_value(value)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant(s) {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    if args.model == "TransMI" and "embedding_dropout" in variants:
        variants.remove("embedding_dropout")  # TransMI ignores it: its input dropout is hidden_dropout_prob
    return args, variants, overrides


def _fmt(value: Optional[float], spec: str) -> str:
    return "-" if value is None else format(value, spec)


def table(rows: List[Dict[str, Any]]) -> str:
    """Markdown table of the variants (test metrics of the best-validation checkpoint), with the
    change against the baseline and the best validation score (``valid_metric``)."""
    base = next((r for r in rows if r["variant"] == "baseline"), None)
    lines = [
        "| variant | options | Recall@20 | NDCG@20 | vs baseline (NDCG@20) | best valid NDCG@20 | s/epoch | epochs "
        "| best epoch |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        ndcg, recall = row.get("test_ndcg@20"), row.get("test_recall@20")
        change = "-"
        if base is not None and row is not base and ndcg is not None and base.get("test_ndcg@20"):
            change = f"{100.0 * (ndcg / base['test_ndcg@20'] - 1.0):+.1f}%"
        options = ", ".join(f"`{k}: {v}`" for k, v in row["options"].items()) or "all off"
        lines.append(
            f"| {row['variant']} | {options} | {_fmt(recall, '.4f')} | {_fmt(ndcg, '.4f')} | {change} | "
            f"{_fmt(row.get('best_valid_score'), '.4f')} | "
            f"{_fmt(row.get('train_sec_per_epoch'), '.1f')} | {row.get('epochs_run', '-')} | "
            f"{row.get('best_epoch', '-')} |"
        )
    return "\n".join(lines) + "\n"


def write_variants(model: str, dataset: str, variants: Sequence[str], args: argparse.Namespace, folder: Path):
    """One harness variant file per option (``model:`` plus the option); returns the labels."""
    folder.mkdir(parents=True, exist_ok=True)
    labels = {}
    for variant in variants:
        options = variant_options(variant, args)
        if not options:
            labels[variant] = model  # the baseline is the model itself
            continue
        label = f"{model}-{variant}"
        lines = [f"# {variant}: written by benchmarks/training_options.py", f"model: {model}"]
        lines += [f"{key}: {json.dumps(value)}" for key, value in options.items()]
        path = folder / f"{label}.yaml"
        text = "\n".join(lines) + "\n"
        if not path.is_file() or path.read_text(encoding="utf-8") != text:  # same bytes: a rerun resumes
            path.write_text(text, encoding="utf-8")
        labels[variant] = label
    # The model's own benchmark settings, which a variants folder would otherwise hide.
    own = props_dir() / "benchmark"
    shared = [p for p in (own / f"{model}.yaml", own / dataset / f"{model}.yaml") if p.is_file()]
    return labels, shared


def main(argv: Optional[Sequence[str]] = None) -> int:
    args, variants, overrides = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s  %(message)s")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    output_dir = Path(args.output_dir or Path("benchmark_results") / "training_options" / args.dataset)

    labels, shared = write_variants(args.model, args.dataset, variants, args, output_dir / "variants")
    logger.info(f"{args.model} on {args.dataset}: " + ", ".join(labels.values()))
    summary = run_benchmark(
        dataset=args.dataset,
        models=list(labels.values()),
        seeds=[args.seed],
        output_dir=output_dir,
        config_files=shared,
        overrides={**overrides, "epochs": args.epochs},
        stop_on_error=True,
        model_config_dir=output_dir / "variants",
    )
    results = json.loads(summary.files["json"].read_text(encoding="utf-8"))
    rows = []
    for variant, label in labels.items():
        row = next(r for r in results if r["model"] == label and int(r["seed"]) == args.seed)
        rows.append({"variant": variant, "options": variant_options(variant, args), **row})

    finished = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    header = (
        f"{args.model} on {args.dataset}, seed {args.seed}, at most {args.epochs} epochs, "
        f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), "
        f"{rows[0]['device_name'] if rows else platform.machine()}, table written {finished}\n\n"
    )
    markdown = header + table(rows)
    (output_dir / "training_options.md").write_text(markdown, encoding="utf-8")
    (output_dir / "training_options.json").write_text(json.dumps(rows, indent=1, default=str) + "\n", encoding="utf-8")
    sys.stdout.write("\n" + markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
