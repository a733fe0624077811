"""Benchmark reports: ``results.csv``, ``results.json``, ``results.md`` and two PNG charts.

``results.md`` holds the mean ± std table; when EIMF ran next to its own backbone, a table of
EIMF's relative change over that backbone, seed by seed; given a reference model (e.g.
SASRec), a table of every other model's relative change over it, both with per-user p-values
(:mod:`recbole_eimf.benchmark.significance`); and the runs flagged by the training-health check
(:mod:`recbole_eimf.benchmark.health`).

Every file is written to a temporary name and moved into place, so that a reader (or a crash)
never sees half a file. Charts use matplotlib's Agg canvas directly (no pyplot, no display).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import statistics
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from recbole_eimf.benchmark.health import health_markdown, training_health
from recbole_eimf.benchmark.significance import TESTED_METRICS, PerUser, paired_user_test, record_loader
from recbole_eimf.environment import describe_environment

# Loads a record's per-user ranks (significance.record_loader), None where it has none.
Loader = Callable[[Dict[str, Any]], Optional[PerUser]]

# (RecBole result key, column title) of the summary table; the first two are also charted.
SUMMARY_METRICS = [
    ("recall@20", "Recall@20"),
    ("ndcg@20", "NDCG@20"),
    ("recall@50", "Recall@50"),
    ("ndcg@50", "NDCG@50"),
    ("mrr@20", "MRR@20"),
]
CHART_METRICS = SUMMARY_METRICS[:2]

ROW_FIELDS = [
    "model", "model_class", "backbone", "seed", "dataset", "device", "device_name", "params", "epochs_run", "best_epoch",
    "train_sec_per_epoch", "valid_sec_per_epoch", "test_inference_sec", "total_sec",
    "valid_metric", "best_valid_score",
]


def flatten_record(record: Dict[str, Any]) -> Dict[str, Any]:
    """One results row: the run's scalars, then ``test_<metric>`` and ``valid_<metric>``."""
    row = {key: record.get(key) for key in ROW_FIELDS}
    row["environment"] = describe_environment(record.get("environment"))
    health = training_health(record)
    row["train_loss_drop"] = None if health is None else health["relative_drop"]
    row["health_flagged"] = None if health is None else health["flagged"]
    row.update({f"test_{k}": v for k, v in (record.get("test") or {}).items()})
    row.update({f"valid_{k}": v for k, v in (record.get("valid") or {}).items()})
    return row


def _describe_targets(targets: Dict[str, Any]) -> str:
    return f"{targets.get('key')} ({targets.get('llm')}, {targets.get('encoder')})"


def _atomic_write(path: Path, data: bytes) -> None:
    # A temporary name in the same folder (same file system, so os.replace is atomic); plain
    # open() so that the file gets the usual umask permissions, unlike tempfile's 0600.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _mean_std(values: Sequence[float]) -> Tuple[Optional[float], Optional[float]]:
    values = [v for v in values if v is not None and math.isfinite(v)]
    if not values:
        return None, None
    # Sample standard deviation over seeds; undefined (None) for one seed.
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def _by_model(records: Sequence[Dict[str, Any]], models: Sequence[str]) -> Dict[str, List[Dict[str, Any]]]:
    grouped: Dict[str, List[Dict[str, Any]]] = {m: [] for m in models}
    for record in records:
        grouped.setdefault(record["model"], []).append(record)
    return {m: rs for m, rs in grouped.items() if rs}


def summarize(records: Sequence[Dict[str, Any]], models: Sequence[str]) -> List[Dict[str, Any]]:
    """Per model: seeds, and (mean, std) of each summary metric and of seconds per epoch."""
    summary = []
    for model, runs in _by_model(records, models).items():
        entry: Dict[str, Any] = {"model": model, "seeds": [r["seed"] for r in runs]}
        for key, _ in SUMMARY_METRICS:
            entry[key] = _mean_std([r.get("test", {}).get(key) for r in runs])
        entry["sec_per_epoch"] = _mean_std([r.get("train_sec_per_epoch") for r in runs])
        entry["epochs_run"] = _mean_std([r.get("epochs_run") for r in runs])
        entry["params"] = runs[0].get("params")
        summary.append(entry)
    return summary


def _cell(mean: Optional[float], std: Optional[float], digits: int) -> str:
    if mean is None:
        return "-"
    text = f"{mean:.{digits}f}"
    return text if std is None else f"{text} ± {std:.{digits}f}"


def markdown_table(records: Sequence[Dict[str, Any]], models: Sequence[str], dataset: str) -> str:
    """The summary table: mean ± std over seeds, the best mean of each metric in bold."""
    summary = summarize(records, models)
    best = {}
    for key, _ in SUMMARY_METRICS:
        means = [e[key][0] for e in summary if e[key][0] is not None]
        best[key] = max(means) if means else None
    devices = sorted({str(r.get("device_name") or r.get("device")) for r in records if r.get("device_name") or r.get("device")})
    seeds = sorted({r["seed"] for r in records})
    lines = [
        f"# Benchmark on {dataset}",
        "",
        f"Test metrics of the best-validation checkpoint, mean ± std over seeds "
        f"({', '.join(map(str, seeds)) or '-'}); best mean per metric in bold. "
        f"sec/epoch: training time per epoch. Device: {', '.join(devices) or '-'}.",
        "",
    ]
    concurrent = max((int(r.get("concurrent_runs") or 1) for r in records), default=1)
    if concurrent > 1:
        lines += [
            f"Runs shared the device, up to {concurrent} at a time (`--jobs`): seconds compare models "
            "of this table only roughly; `benchmarks/train_speed.py` times them one at a time.",
            "",
        ]
    environments = Counter(describe_environment(r.get("environment")) for r in records)
    if len(environments) > 1:
        lines += [
            f"Runs of this table ran in {len(environments)} environments ("
            + "; ".join(f"{env}: {n} run(s)" for env, n in sorted(environments.items()))
            + "): on a CPU the same seed gives other numbers under another thread count or processor "
            "(`recbole_eimf/environment.py`).",
            "",
        ]
    for model in models:
        targets = Counter(
            _describe_targets(r["esim_targets"]) for r in records if r["model"] == model and r.get("esim_targets")
        )
        if len(targets) > 1:
            lines += [
                f"{model}'s runs trained on {len(targets)} different ESIM targets ("
                + "; ".join(f"{t}: {n} run(s)" for t, n in sorted(targets.items()))
                + "): its seeds are not one configuration.",
                "",
            ]
    lines += [
        "| Model | Seeds | " + " | ".join(title for _, title in SUMMARY_METRICS) + " | sec/epoch | Epochs | Params |",
        "| --- | ---: | " + " | ".join("---:" for _ in SUMMARY_METRICS) + " | ---: | ---: | ---: |",
    ]
    for entry in summary:
        cells = []
        for key, _ in SUMMARY_METRICS:
            mean, std = entry[key]
            text = _cell(mean, std, 4)
            # Compare at the printed precision, so that printed ties are all bold.
            if mean is not None and best[key] is not None and round(mean, 4) == round(best[key], 4):
                text = f"**{text}**"
            cells.append(text)
        params = "-" if entry["params"] is None else f"{entry['params']:,}"
        lines.append(
            f"| {entry['model']} | {len(entry['seeds'])} | " + " | ".join(cells)
            + f" | {_cell(*entry['sec_per_epoch'], 2)} | {_cell(entry['epochs_run'][0], None, 1)} | {params} |"
        )
    return "\n".join(lines) + "\n"


def _relative(new: Optional[float], base: Optional[float]) -> Optional[float]:
    if new is None or base is None or base == 0:
        return None
    return new / base - 1.0


def _paired_means(values: Sequence[Tuple[Any, Any]]) -> Tuple[Optional[float], Optional[float]]:
    """Means of the first and of the second of ``(model's, base's)`` value pairs."""
    return _mean_std([new for new, _ in values])[0], _mean_std([base for _, base in values])[0]


def _compare(
    label: str, base: str, runs: Sequence[Dict[str, Any]], base_runs: Sequence[Dict[str, Any]], load: Optional[Loader] = None
) -> Optional[Dict[str, Any]]:
    """``label``'s runs against ``base``'s on the seeds both have: relative change of the mean of
    each summary metric, its range over the paired seeds, the per-user p-value of the tested ones
    (``p``: :func:`paired_user_test`, given ``load``), and the ratios of training seconds per
    epoch and of full-sort test seconds; None when they share no seed."""
    base_by_seed = {r["seed"]: r for r in base_runs}
    pairs = [(r, base_by_seed[r["seed"]]) for r in runs if r["seed"] in base_by_seed]
    if not pairs:
        return None
    entry: Dict[str, Any] = {"model": label, "backbone": base, "seeds": [r["seed"] for r, _ in pairs]}
    for key, _ in SUMMARY_METRICS:
        values = [(r.get("test", {}).get(key), b.get("test", {}).get(key)) for r, b in pairs]
        per_seed = [v for v in (_relative(new, old) for new, old in values) if v is not None]
        entry[key] = {
            "relative": _relative(*_paired_means(values)),
            "range": (min(per_seed), max(per_seed)) if per_seed else None,
        }
    entry["p"] = paired_user_test(pairs, load) if load is not None else {key: None for key in TESTED_METRICS}
    for key in ("train_sec_per_epoch", "test_inference_sec"):
        change = _relative(*_paired_means([(r.get(key), b.get(key)) for r, b in pairs]))
        entry[key] = None if change is None else 1.0 + change
    return entry


def paired_comparisons(
    records: Sequence[Dict[str, Any]], models: Sequence[str], load: Optional[Loader] = None
) -> List[Dict[str, Any]]:
    """Each EIMF label against the runs of its backbone in the same folder, on the seeds both have.

    An EIMF run names its backbone (``record["backbone"]``); when that backbone also ran under its
    own name (``--models=ComiRecSA,EIMF-ComiRecSA``), the pair is compared seed by seed
    (:func:`_compare`: issue 4's metric and cost targets).
    """
    grouped = _by_model(records, models)
    comparisons = []
    for label, runs in grouped.items():
        backbones = {r.get("backbone") for r in runs}
        if len(backbones) != 1:
            continue
        backbone = backbones.pop()
        base_runs = grouped.get(backbone) if backbone else None
        if not base_runs or label == backbone:
            continue
        base_runs = [r for r in base_runs if r.get("model_class", r["model"]) == backbone]
        entry = _compare(label, backbone, runs, base_runs, load)
        if entry is not None:
            comparisons.append(entry)
    return comparisons


def reference_comparisons(
    records: Sequence[Dict[str, Any]], models: Sequence[str], reference: str, load: Optional[Loader] = None
) -> List[Dict[str, Any]]:
    """Every other label against ``reference`` (e.g. SASRec, the baseline a new model must beat),
    on the seeds both have, as :func:`_compare` measures it."""
    grouped = _by_model(records, models)
    base_runs = grouped.get(reference)
    if not base_runs:
        return []
    entries = (_compare(label, reference, runs, base_runs, load) for label, runs in grouped.items() if label != reference)
    return [entry for entry in entries if entry is not None]


def _percent(value: Optional[float]) -> str:
    return "-" if value is None else f"{100 * value:+.1f}%"


def _p_value(p: Optional[float]) -> str:
    if p is None:
        return "-"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def _comparison_markdown(comparisons: Sequence[Dict[str, Any]], title: str, ratio: str, base_column: str) -> str:
    """A table of :func:`_compare` entries under ``## title``, or ``""`` when there are none;
    ``ratio`` names the time ratios (e.g. ``EIMF / backbone``)."""
    if not comparisons:
        return ""
    lines = [
        f"## {title}",
        "",
        "Relative change of the mean test metric over the seeds both ran (in brackets: its range over "
        "those seeds, one seed at a time); p: two-sided Wilcoxon signed-rank test over test users, on "
        "each user's metric averaged over those seeds ('-': a run without per-user ranks); time ratios "
        f"are {ratio}: training seconds per epoch, and full-sort inference on the test split.",
        "",
        f"| Model | {base_column} | Seeds | "
        + " | ".join(t + (f" | p {t}" if k in TESTED_METRICS else "") for k, t in SUMMARY_METRICS[:4])
        + " | train s/epoch ratio | inference ratio |",
        "| --- | --- | ---: | "
        + " | ".join("---:" + (" | ---:" if k in TESTED_METRICS else "") for k, _ in SUMMARY_METRICS[:4])
        + " | ---: | ---: |",
    ]
    for entry in comparisons:
        cells = []
        for key, _ in SUMMARY_METRICS[:4]:
            part = entry[key]
            text = _percent(part["relative"])
            if part["range"] is not None and len(entry["seeds"]) > 1:
                text += f" [{_percent(part['range'][0])}, {_percent(part['range'][1])}]"
            cells.append(text)
            if key in TESTED_METRICS:
                cells.append(_p_value(entry["p"].get(key)))
        ratios = [
            "-" if entry[k] is None else f"{entry[k]:.2f}x" for k in ("train_sec_per_epoch", "test_inference_sec")
        ]
        lines.append(
            f"| {entry['model']} | {entry['backbone']} | {len(entry['seeds'])} | " + " | ".join(cells)
            + " | " + " | ".join(ratios) + " |"
        )
    return "\n".join(lines) + "\n"


def paired_markdown(records: Sequence[Dict[str, Any]], models: Sequence[str], load: Optional[Loader] = None) -> str:
    """The table of :func:`paired_comparisons`, or ``""`` when no EIMF run has its backbone beside it."""
    return _comparison_markdown(
        paired_comparisons(records, models, load), "EIMF against its backbone", "EIMF / backbone", "Backbone"
    )


def reference_markdown(
    records: Sequence[Dict[str, Any]], models: Sequence[str], reference: str, load: Optional[Loader] = None
) -> str:
    """The table of :func:`reference_comparisons`, or ``""`` when the reference has no run."""
    return _comparison_markdown(
        reference_comparisons(records, models, reference, load), f"Against {reference}", f"model / {reference}", "Reference"
    )


def _new_figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=120)
    FigureCanvasAgg(figure)
    return figure


def _save_figure(figure, path: Path) -> None:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    _atomic_write(path, buffer.getvalue())


def metrics_chart(records: Sequence[Dict[str, Any]], models: Sequence[str], path: Path) -> None:
    """Bars of test Recall@20 and NDCG@20 per model, with the std over seeds as error bars."""
    summary = summarize(records, models)
    names = [e["model"] for e in summary]
    figure = _new_figure(max(6.0, 1.1 * len(names) + 3.0), 4.2)
    axes = figure.subplots(1, len(CHART_METRICS), squeeze=False)[0]
    colors = [f"C{i % 10}" for i in range(len(names))]
    for ax, (key, title) in zip(axes, CHART_METRICS):
        means = [e[key][0] if e[key][0] is not None else 0.0 for e in summary]
        stds = [e[key][1] or 0.0 for e in summary]
        ax.bar(range(len(names)), means, yerr=stds if any(stds) else None, capsize=4, color=colors, edgecolor="black", linewidth=0.5)
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(names, rotation=30 if len(names) > 4 else 0, ha="right" if len(names) > 4 else "center")
        ax.set_title(f"Test {title}")
        ax.grid(axis="y", alpha=0.3)
        for x, (m, s) in enumerate(zip(means, stds)):
            ax.annotate(f"{m:.4f}", (x, m + s), textcoords="offset points", xytext=(0, 3), ha="center", fontsize=7)
        ax.margins(y=0.15)
    seeds = sorted({r["seed"] for r in records})
    figure.suptitle(f"mean ± std over {len(seeds)} seed(s)", fontsize=9)
    figure.tight_layout()
    _save_figure(figure, path)


def valid_curves_chart(records: Sequence[Dict[str, Any]], models: Sequence[str], path: Path) -> None:
    """Validation metric (``valid_metric``) per epoch per model, averaged over seeds."""
    figure = _new_figure(7.5, 4.5)
    ax = figure.subplots()
    metric_names = set()
    all_epochs: List[int] = []
    for i, (model, runs) in enumerate(_by_model(records, models).items()):
        per_epoch: Dict[int, List[float]] = {}
        for run in runs:
            metric_names.add(run.get("valid_metric") or "valid score")
            for point in run.get("valid_curve") or []:
                if point.get("epoch") is not None and point.get("score") is not None:
                    per_epoch.setdefault(int(point["epoch"]), []).append(float(point["score"]))
        if not per_epoch:
            continue
        # Early stopping ends seeds at different epochs: each point averages the seeds that got there.
        epochs = sorted(per_epoch)
        all_epochs += epochs
        ax.plot(
            epochs, [statistics.fmean(per_epoch[e]) for e in epochs], marker="o", markersize=3,
            label=f"{model} ({len(runs)} seed{'s' if len(runs) > 1 else ''})", color=f"C{i % 10}",
        )
    from matplotlib.ticker import MaxNLocator

    if all_epochs and max(all_epochs) - min(all_epochs) < 10:
        # Few epochs: tick each one (a locator would fall back to fractional ticks).
        ax.set_xticks(sorted(set(all_epochs)))
        ax.set_xlim(min(all_epochs) - 0.5, max(all_epochs) + 0.5)
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch (0-based, as RecBole logs it)")
    ax.set_ylabel(f"validation {' / '.join(sorted(metric_names)) or 'score'}")
    ax.set_title("Validation curves (mean over seeds)")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    figure.tight_layout()
    _save_figure(figure, path)


def write_reports(
    records: Sequence[Dict[str, Any]],
    output_dir: Path,
    dataset: str,
    models: Sequence[str],
    reference: Optional[str] = None,
) -> Tuple[Dict[str, Path], str]:
    """Write every report file for ``records`` into ``output_dir``; return the paths and the table.
    ``reference``: a label whose runs every other model's are compared with (:func:`reference_markdown`)."""
    output_dir = Path(output_dir)
    rows = [flatten_record(r) for r in records]
    fields: List[str] = []
    for row in rows:
        fields += [key for key in row if key not in fields]
    files = {
        "csv": output_dir / "results.csv",
        "json": output_dir / "results.json",
        "md": output_dir / "results.md",
        "metrics_png": output_dir / "metrics.png",
        "valid_curves_png": output_dir / "valid_curves.png",
    }

    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=fields or ROW_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    _atomic_write(files["csv"], text.getvalue().encode("utf-8"))

    # The JSON rows are the CSV rows plus the per-epoch lists.
    json_rows = [
        {**row, "train_epoch_seconds": r.get("train_epoch_seconds"), "train_losses": r.get("train_losses"),
         "valid_curve": r.get("valid_curve")}
        for row, r in zip(rows, records)
    ]
    _atomic_write(files["json"], (json.dumps(json_rows, indent=1, default=str) + "\n").encode("utf-8"))

    markdown = markdown_table(records, models, dataset)
    load = record_loader(output_dir)
    paired = paired_markdown(records, models, load)
    if paired:
        markdown += "\n" + paired
    against = reference_markdown(records, models, reference, load) if reference else ""
    if against:
        markdown += "\n" + against
    health = health_markdown(records)
    if health:
        markdown += "\n" + health
    _atomic_write(files["md"], markdown.encode("utf-8"))

    metrics_chart(records, models, files["metrics_png"])
    valid_curves_chart(records, models, files["valid_curves_png"])
    return files, markdown
