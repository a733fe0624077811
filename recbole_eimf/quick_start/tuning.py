"""Config-only hyper-parameter search over any plugin or RecBole model.

Drives RecBole's own ``HyperTuning`` (hyperopt) with a params file in RecBole's format, one
parameter a line::

    learning_rate choice [0.001,0.005]
    n_interests choice [2,4,8]
    sp_weight uniform 0.0,0.5

Each trial is a full :func:`run_recbole_eimf` run (train, early-stop, test). Writes the trials
table (csv and markdown) and the best parameters as a yaml file that ``--config_files`` accepts.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Optional, Sequence

import yaml

from recbole.trainer.hyper_tuning import HyperTuning

from recbole_eimf.quick_start.quick_start import run_recbole_eimf

logger = logging.getLogger(__name__)


def _plain(value):
    """numpy scalars -> Python scalars, for yaml and csv."""
    return value.item() if hasattr(value, "item") else value


def run_hyper(
    model: str,
    dataset: str,
    params_file: str,
    config_file_list: Optional[Sequence[str]] = None,
    config_dict: Optional[dict] = None,
    algo: str = "exhaustive",
    max_evals: int = 100,
    early_stop: int = 10,
    output_dir: Optional[str] = None,
) -> dict:
    """Search the space in ``params_file`` for ``model`` on ``dataset``; return the best trial.

    ``algo`` is RecBole's: ``exhaustive`` (grid), ``random`` or ``bayes`` (TPE). Results go to
    ``output_dir`` (default ``hyper/<model>-<dataset>/``): ``trials.csv``, ``trials.md`` and
    ``best.yaml``.
    """
    if not Path(params_file).is_file():
        raise FileNotFoundError(f"params_file [{params_file}] does not exist")
    trials: list[dict] = []

    def objective(params: dict, fixed_config_file_list) -> dict:
        params = {k: _plain(v) for k, v in params.items()}
        logger.info(f"trial {len(trials) + 1}: {params}")
        result = run_recbole_eimf(
            model=model,
            dataset=dataset,
            config_file_list=fixed_config_file_list,
            config_dict={**(config_dict or {}), **params},
        )
        trials.append({"params": params, **result})
        return {"model": model, **result}

    tuner = HyperTuning(
        objective,
        params_file=params_file,
        fixed_config_file_list=list(config_file_list) if config_file_list else None,
        algo=algo,
        max_evals=max_evals,
        early_stop=early_stop,
    )
    tuner.run()

    out = Path(output_dir or Path("hyper") / f"{model}-{dataset}")
    out.mkdir(parents=True, exist_ok=True)
    bigger = trials[0]["valid_score_bigger"]
    best = (max if bigger else min)(trials, key=lambda t: t["best_valid_score"])
    write_trials(trials, out)
    with open(out / "best.yaml", "w", encoding="utf-8") as f:
        f.write(f"# best of {len(trials)} trials of {model} on {dataset} ({params_file}, algo {algo})\n")
        yaml.safe_dump(best["params"], f, sort_keys=True)
    logger.info(f"best parameters: {best['params']} -> {out / 'best.yaml'}")
    return {"best": best, "trials": trials, "output_dir": str(out)}


def write_trials(trials: list[dict], out: Path) -> None:
    """One row per trial: its parameters, best validation score and test metrics."""
    param_names = sorted({k for t in trials for k in t["params"]})
    metric_names = list(trials[0]["test_result"] or {})
    header = param_names + ["best_valid_score"] + [f"test_{m}" for m in metric_names]
    rows = [
        [t["params"].get(p) for p in param_names]
        + [round(float(t["best_valid_score"]), 6)]
        + [round(float(t["test_result"][m]), 6) for m in metric_names]
        for t in trials
    ]
    with open(out / "trials.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in rows]
    (out / "trials.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
