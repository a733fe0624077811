"""Config-only hyper-parameter search over any plugin or RecBole model.

Drives RecBole's own ``HyperTuning`` (hyperopt) with a params file in RecBole's format, one
parameter a line::

    learning_rate choice [0.001,0.005]
    n_interests choice [2,4,8]
    sp_weight uniform 0.0,0.5

Each trial is a full :func:`run_recbole_eimf` run (train, early-stop, test). Writes the trials
table (csv and markdown) and the best parameters as a yaml file that ``--config_files`` accepts.
With ``tuned_dir`` (``--tuned_dir=props/tuned``) the best parameters also become the model's tuned
defaults on the dataset, ``<tuned_dir>/<dataset>/<name>.yaml``, which :class:`~recbole_eimf.config.Config`
loads for every later run, with the search space (``<name>.hyper``) and the trials
(``<name>-trials.md``) beside them.
"""

from __future__ import annotations

import csv
import logging
import shutil
import time
from pathlib import Path
from typing import Optional, Sequence

import yaml

from recbole.trainer.hyper_tuning import HyperTuning

from recbole_eimf.config import Config
from recbole_eimf.quick_start.quick_start import run_recbole_eimf
from recbole_eimf.utils import tuned_name

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
    tuned_dir: Optional[str] = None,
) -> dict:
    """Search the space in ``params_file`` for ``model`` on ``dataset``; return the best trial.

    ``algo`` is RecBole's: ``exhaustive`` (grid), ``random`` or ``bayes`` (TPE). Results go to
    ``output_dir`` (default ``hyper/<model>-<dataset>/``): ``trials.csv``, ``trials.md`` and
    ``best.yaml``; with ``tuned_dir``, the tuned defaults (module doc).
    """
    if not Path(params_file).is_file():
        raise FileNotFoundError(f"params_file [{params_file}] does not exist")
    # The name tuned defaults go under (EIMF-<backbone> for a wrapper), known before any trial.
    base_config = Config(model=model, dataset=dataset, config_file_list=config_file_list, config_dict=config_dict)
    name = tuned_name(base_config["model"], base_config["backbone"])
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
    result = {"best": best, "trials": trials, "output_dir": str(out)}
    if tuned_dir is not None:
        result["tuned_file"] = str(
            write_tuned_defaults(Path(tuned_dir) / dataset, name, best, out, params_file, algo, len(trials))
        )
        logger.info(f"tuned defaults of {name} on {dataset}: {result['tuned_file']}")
    return result


def write_tuned_defaults(folder: Path, name: str, best: dict, trials_dir: Path, params_file: str, algo: str, n_trials: int) -> Path:
    """``<folder>/<name>.yaml`` (the best parameters, with where they came from), the search space
    ``<name>.hyper`` and the trials table ``<name>-trials.md``; replaces an earlier search's files."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{name}.yaml"
    score = float(best["best_valid_score"])
    with open(target, "w", encoding="utf-8") as f:
        f.write(
            f"# Tuned defaults of {name} on {folder.name}: the best of {n_trials} trials ({algo}) over\n"
            f"# {name}.hyper by best validation score ({score:.6f}), {time.strftime('%Y-%m-%d', time.gmtime())}.\n"
            f"# Trials: {name}-trials.md. Loaded after the model's and the dataset's yaml; anything a user sets wins.\n"
        )
        yaml.safe_dump(best["params"], f, sort_keys=True)
    shutil.copyfile(params_file, folder / f"{name}.hyper")
    shutil.copyfile(trials_dir / "trials.md", folder / f"{name}-trials.md")
    return target


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
