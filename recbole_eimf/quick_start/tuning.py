"""Config-only hyper-parameter search over any plugin or RecBole model.

Drives RecBole's own ``HyperTuning`` (hyperopt) with a params file in RecBole's format, one
parameter a line::

    learning_rate choice [0.001,0.005]
    n_interests choice [2,4,8]
    sp_weight uniform 0.0,0.5

Each trial is a full :func:`run_recbole_eimf` run (train, early-stop, test). With ``jobs`` > 1
(``--jobs=N``) the ``exhaustive`` and ``random`` searches run N trials at a time, each in its own
process (one GPU is mostly idle under one small recommender): their trials do not depend on earlier
results, so hyperopt draws them all first, and every trial runs to the end (no ``early_stop``).
Searches draw from a generator seeded by the config's ``seed``, in this process as in parallel
(RecBole's own ``HyperTuning.run`` leaves hyperopt unseeded): the same search draws the same trials. Writes the trials
table (csv and markdown) and the best parameters as a yaml file that ``--config_files`` accepts.
With ``tuned_dir`` (``--tuned_dir=props/tuned``) the best parameters also become the model's tuned
defaults on the dataset, ``<tuned_dir>/<dataset>/<name>.yaml``, which :class:`~recbole_eimf.config.Config`
loads for every later run, with the search space (``<name>.hyper``) and the trials
(``<name>-trials.md``) beside them.

With ``seeds`` (``--seeds=2020,2021,2022``) a trial trains once per seed and its score is the mean
over them (one seed of a small test set is too noisy to rank close trials).

Every finished trial is appended to ``trials.jsonl`` in the output folder at once (and the tables
rewritten), so a search stopped midway (a time limit, a crash) keeps its finished trials, and the
same search started again in the same folder reuses them instead of training them again: only
trials with the same parameters under the same search (space, algorithm, and every resolved
setting but where the run happens) count; a folder holding another search's trials is refused.
"""

from __future__ import annotations

import ast
import csv
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

import numpy as np
import yaml

from recbole.trainer.hyper_tuning import HyperTuning

from recbole_eimf.config import Config
from recbole_eimf.experiments import LOCAL_KEYS, ExperimentLog, fingerprint, plain
from recbole_eimf.errors import ConfigError
from recbole_eimf.process_pool import Job, cpu_threads_per_job, run_parallel, worker_setup
from recbole_eimf.quick_start.quick_start import run_recbole_eimf
from recbole_eimf.quick_start.stages import build_stage_caches, declared_stages
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
    jobs: int = 1,
    seeds: Optional[Sequence[int]] = None,
) -> dict:
    """Search the space in ``params_file`` for ``model`` on ``dataset``; return the best trial.

    ``algo`` is RecBole's: ``exhaustive`` (grid), ``random`` or ``bayes`` (TPE). Results go to
    ``output_dir`` (default ``hyper/<model>-<dataset>/``): ``trials.csv``, ``trials.md`` and
    ``best.yaml``; with ``tuned_dir``, the tuned defaults (module doc). ``jobs`` > 1 runs that many
    trainings at a time (``exhaustive`` and ``random`` only; module doc), their logs in
    ``<output_dir>/logs/``. ``seeds`` (``--seeds=2020,2021,2022``) trains every trial once per
    seed and scores it by the mean: on a small test set one seed's noise can exceed the
    differences searched for (docs/BENCHMARKS.md section 15); default: the config's one seed.
    """
    if not Path(params_file).is_file():
        raise FileNotFoundError(f"params_file [{params_file}] does not exist")
    if jobs > 1 and algo not in PARALLEL_ALGOS:
        raise ConfigError(f"jobs={jobs}: trials run in parallel with algo {' or '.join(PARALLEL_ALGOS)} only "
                         f"({algo!r} chooses each trial from the results before it)")
    # Trials start from the model's own defaults, not from the tuned ones an earlier run of this
    # search wrote (the same search started again would otherwise differ from itself); a wrapper
    # keeps its backbone's tuned defaults, which it is tuned on top of.
    config_dict = {"tuned_defaults": "backbone", **(config_dict or {})}
    seeds = _trial_seeds(seeds, config_dict)
    # The name tuned defaults go under (EIMF-<backbone> for a wrapper), known before any trial.
    base_config = Config(model=model, dataset=dataset, config_file_list=config_file_list, config_dict=config_dict)
    if seeds and "esim" in declared_stages(base_config) and base_config["esim_seed"] is None:
        # ESIM's clustering seed follows `seed`: without this each seed of a trial would train on
        # other typical users (and pay an LLM again). One ESIM for the search, the first seed's,
        # as the benchmark harness does for its folder.
        config_dict["esim_seed"] = seeds[0]
        base_config["esim_seed"] = seeds[0]
    name = tuned_name(base_config["model"], base_config["backbone"])
    out = Path(output_dir or Path("hyper") / f"{model}-{dataset}")
    log = TrialLog(out / TRIALS_FILE, search_settings(base_config, algo, params_file, seeds))
    earlier = log.load()
    if earlier:
        logger.info(f"{len(earlier)} finished trial(s) of this search in {log.path}: reused, not trained again")
    trials: list[dict] = []

    def finished(trial: dict) -> None:
        trials.append(trial)
        log.add(trial)
        write_trials(trials, out)

    def objective(params: dict, fixed_config_file_list) -> dict:
        params = {k: _plain(v) for k, v in params.items()}
        # Random search draws a discrete space with repeats: a repeat is answered, not trained again.
        done = next((t for t in earlier + trials if t["params"] == params), None)
        if done is not None:
            if done not in trials:
                logger.info(f"trial {len(trials) + 1}: {params} (finished before: {log.path})")
                trials.append(done)
            else:
                logger.info(f"{params} drawn again: its result is reused")
            return {"model": model, **{k: done[k] for k in RESULT_KEYS}}
        logger.info(f"trial {len(trials) + 1}: {params}" + (f", seeds {list(seeds)}" if seeds else ""))
        results = {
            seed: run_recbole_eimf(
                model=model,
                dataset=dataset,
                config_file_list=fixed_config_file_list,
                config_dict={**(config_dict or {}), **params, **({"seed": seed} if seed is not None else {})},
            )
            for seed in (seeds or [None])
        }
        trial = trial_record(params, results)
        finished(trial)
        return {"model": model, **{k: trial[k] for k in RESULT_KEYS}}

    tuner = HyperTuning(
        objective,
        params_file=params_file,
        fixed_config_file_list=list(config_file_list) if config_file_list else None,
        algo=algo,
        max_evals=max_evals,
        early_stop=early_stop,
    )
    fixed = sorted(set(tuner.space) & _command_line_keys())
    if fixed:
        # RecBole's Config puts --key=value above config_dict: every trial would silently get it.
        raise ConfigError(
            f"{', '.join('--' + k for k in fixed)} on the command line would override every trial's value from "
            f"params_file [{params_file}]: drop it from the command, or from the search space"
        )
    if jobs > 1:
        planned = planned_trials(tuner, int(base_config["seed"]), space_size(params_file))
        numbered = dict(enumerate(planned, start=1))  # a trial's number: its place in the planned search
        reused = {k: t for t in earlier for k, params in numbered.items() if t["params"] == params}
        todo = {k: params for k, params in numbered.items() if k not in reused}
        shared = dict(config_dict or {})
        if declared_stages(base_config) and todo:
            if "esim" in declared_stages(base_config) and not base_config["esim_cache_dir"]:
                # Its default follows checkpoint_dir, which differs per trial: name the one cache.
                shared["esim_cache_dir"] = str(Path(base_config["checkpoint_dir"]) / "esim")
            # Once per distinct stage setting: a trial's parameters may change it (n_interests sets ESIM's max_interests).
            build_stage_caches((
                (f"trial {params}", Config(model=model, dataset=dataset, config_file_list=config_file_list,
                                           config_dict={**shared, **params}))
                for params in todo.values()
            ), logger)
        trials.extend(reused.values())
        new = _run_trials_in_parallel(
            model, dataset, config_file_list, shared, todo, jobs, out, int(base_config["seed"]), finished, seeds
        ) if todo else {}
        found = {**reused, **new}
        trials = [found[k] for k in sorted(found)]  # the planned order, whatever order they finished in
    else:
        # RecBole's HyperTuning.run, seeded by the config's seed: unseeded, hyperopt draws from OS
        # entropy, so a random (or bayes) search started again would draw other trials than those
        # it could reuse. Random search draws the trials `--jobs` plans (planned_trials), in order.
        from hyperopt import fmin

        fmin(tuner.trial, tuner.space, algo=tuner.algo, max_evals=tuner.max_evals, early_stop_fn=tuner.early_stop_fn,
             rstate=np.random.RandomState(int(base_config["seed"])))

    out.mkdir(parents=True, exist_ok=True)
    bigger = trials[0]["valid_score_bigger"]
    best = (max if bigger else min)(trials, key=lambda t: t["best_valid_score"])
    write_trials(trials, out)
    fixed = fixed_settings(base_config, config_dict, tuner.space)
    with open(out / "best.yaml", "w", encoding="utf-8") as f:
        f.write(f"# best of {len(trials)} trials of {model} on {dataset} ({params_file}, algo {algo})\n")
        f.write(_fixed_comment(fixed, seeds))
        yaml.safe_dump(best["params"], f, sort_keys=True)
    logger.info(f"best parameters: {best['params']} -> {out / 'best.yaml'}")
    result = {"best": best, "trials": trials, "output_dir": str(out)}
    if tuned_dir is not None:
        result["tuned_file"] = str(
            write_tuned_defaults(Path(tuned_dir) / dataset, name, best, out, params_file, algo, len(trials), fixed, seeds)
        )
        logger.info(f"tuned defaults of {name} on {dataset}: {result['tuned_file']}")
    return result


PARALLEL_ALGOS = ("exhaustive", "random")
TRIALS_FILE = "trials.jsonl"
# What a trial's record keeps of its run (run_recbole_eimf's result).
RESULT_KEYS = ("best_valid_score", "valid_score_bigger", "best_valid_result", "test_result")
def search_settings(
    config: Config, algo: str, params_file: str, seeds: Optional[Sequence[int]] = None
) -> Dict[str, Any]:
    """What must match for a trial recorded in a tuning folder to count for a search started
    again: the search space (by content), the algorithm, the base config's fingerprint (every
    resolved setting but where runs happen: :func:`recbole_eimf.experiments.fingerprint`), and
    the seeds each trial trains on, where there are several."""
    search = {"algo": algo, "space": Path(params_file).read_text(encoding="utf-8"), "settings": fingerprint(config)}
    if seeds:
        search["seeds"] = list(seeds)
    return plain(search)


class TrialLog:
    """``trials.jsonl`` of a tuning folder: a header naming the search, then one line per
    finished trial (an :class:`~recbole_eimf.experiments.ExperimentLog`)."""

    def __init__(self, path: Path, search: Dict[str, Any]) -> None:
        self.path = path
        self._log = ExperimentLog(path, header=search)

    def load(self) -> List[dict]:
        """The finished trials recorded for this search (none for a new folder); refuses a file
        that records another search."""
        trials = []
        for record in self._log.load():
            if "params" in record and all(k in record for k in RESULT_KEYS):
                trials.append(record)
            else:
                logger.warning(f"{self.path}: ignoring a record that is not a finished trial")
        return trials

    def add(self, trial: dict) -> None:
        self._log.append(trial)


def _command_line_keys() -> set:
    """The ``--key=value`` keys RecBole's Config will read from ``sys.argv``."""
    return {arg[2:].split("=", 1)[0] for arg in sys.argv[1:] if arg.startswith("--") and "=" in arg}


def _trial_seeds(seeds: Optional[Sequence[int]], config_dict: Mapping[str, Any]) -> Optional[List[int]]:
    """The seeds of every trial (None: the config's one seed, as RecBole's tuner trains)."""
    if not seeds:
        return None
    seeds = [int(seed) for seed in seeds]
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"seeds {seeds}: each seed once")
    if "seed" in _command_line_keys() | set(config_dict):
        raise ConfigError("seed is set beside seeds: every trial trains on each of seeds; drop --seed=")
    return seeds


def trial_record(params: Dict[str, Any], results: Mapping[Optional[int], Dict[str, Any]]) -> Dict[str, Any]:
    """A trial's line in ``trials.jsonl`` from its runs' results (:func:`run_recbole_eimf`), by
    seed (``None``: the config's one seed). Several seeds: scores and metrics are their means,
    and each seed's own are kept under ``seeds``."""
    runs = list(results.values())
    first = runs[0]
    if list(results) == [None]:
        return {"params": params, **{k: first[k] for k in RESULT_KEYS}, "environment": first.get("environment")}

    def mean(values) -> float:
        values = [float(v) for v in values]
        return round(sum(values) / len(values), 6)

    def mean_metrics(key: str) -> Dict[str, float]:
        return {m: mean(r[key][m] for r in runs) for m in first[key]}

    return {
        "params": params,
        "best_valid_score": mean(r["best_valid_score"] for r in runs),
        "valid_score_bigger": first["valid_score_bigger"],
        "best_valid_result": mean_metrics("best_valid_result"),
        "test_result": mean_metrics("test_result"),
        "seeds": {
            str(seed): {k: r[k] for k in ("best_valid_score", "best_valid_result", "test_result")}
            for seed, r in results.items()
        },
        "environment": first.get("environment"),
    }


def planned_trials(tuner: HyperTuning, seed: int, space_size: Optional[int] = None) -> List[Dict[str, Any]]:
    """The parameters of every trial ``tuner`` would run, drawn by its own hyperopt algorithm
    without training: exhaustive and random search choose a trial without looking at the results
    before it, so a constant loss leaves their choices unchanged.

    ``max_evals`` distinct trials, or all ``space_size`` points of a smaller discrete space:
    random search draws a choice-only space with repeats (4 draws from 8 points gave 3 distinct
    trials), so the draw goes on past ``max_evals`` until it has enough. Drawing on keeps the
    earlier draws (hyperopt seeds each draw from one RandomState in turn), so a longer plan starts
    with a shorter one's trials."""
    from hyperopt import STATUS_OK, Trials, fmin

    wanted = min(tuner.max_evals, space_size or tuner.max_evals)
    unique: List[Dict[str, Any]] = []

    def record(params: dict) -> dict:
        params = {k: _plain(v) for k, v in params.items()}
        if params not in unique:
            unique.append(params)
        return {"loss": 0.0, "status": STATUS_OK}

    def enough(*_) -> tuple:
        return len(unique) >= wanted, []

    # hyperopt 0.2.5 (RecBole's pin) draws from a RandomState. Bounded: a grid search repeats
    # nothing, and a random one covers a small space fast.
    fmin(record, tuner.space, algo=tuner.algo, max_evals=64 * tuner.max_evals, trials=Trials(),
         rstate=np.random.RandomState(seed), show_progressbar=False, early_stop_fn=enough)
    return unique[:wanted]


def space_size(params_file: str) -> Optional[int]:
    """How many points the search space in ``params_file`` has (the product of its ``choice``
    lists); ``None`` where a dimension is continuous (``uniform``, ``quniform``, ``loguniform``)."""
    size = 1
    for line in Path(params_file).read_text(encoding="utf-8").splitlines():
        parts = line.strip().split(" ")
        if len(parts) < 3:  # RecBole's own reader skips these lines too
            continue
        if parts[1] != "choice":
            return None
        size *= len(ast.literal_eval("".join(parts[2:])))
    return size


def _run_trial(job: Job) -> dict:
    """Body of one trial's process (:func:`recbole_eimf.process_pool.run_parallel`)."""
    worker_setup(job)
    result = run_recbole_eimf(
        model=job.model, dataset=job.dataset, config_file_list=list(job.config_files) or None,
        config_dict=dict(job.overrides),
    )
    return {k: result[k] for k in RESULT_KEYS + ("environment",)}


def _run_trials_in_parallel(
    model: str, dataset: str, config_file_list, config_dict, planned: Mapping[int, dict], jobs: int, out: Path,
    seed: int, finished: Callable[[dict], None], seeds: Optional[Sequence[int]] = None,
) -> Dict[int, dict]:
    """Run the ``planned`` trials (by their number in the search) ``jobs`` trainings at a time
    (one per trial, or one per trial and seed), handing each trial to ``finished`` as its last
    training ends; the finished ones by number. A trial with a failed seed is not finished."""
    trial_seeds = list(seeds or [None])  # None: the config's one seed
    runs = [(k, s) for k in planned for s in trial_seeds]
    logger.info(f"{len(planned)} trials" + (f" x {len(seeds)} seeds" if seeds else "")
                + f", {jobs} at a time (logs in {out / 'logs'})")
    threads = cpu_threads_per_job(jobs)
    results: Dict[int, dict] = {}
    by_seed: Dict[int, Dict[Optional[int], dict]] = {k: {} for k in planned}
    errors: List[str] = []
    with tempfile.TemporaryDirectory(prefix="trials-") as checkpoints:
        work = {}
        for k, s in runs:
            name = f"trial {k}" + (f" seed {s}" if s is not None else "")
            # Each training its own checkpoint folder: RecBole names files to the second.
            folder = f"{checkpoints}/trial{k}" + (f"-seed{s}" if s is not None else "")
            overrides = {**(config_dict or {}), **planned[k], "checkpoint_dir": folder}
            if s is not None:
                overrides["seed"] = s
            work[name] = Job(
                model=model, seed=seed if s is None else s, dataset=dataset, config_files=tuple(config_file_list or ()),
                overrides=tuple(overrides.items()), checkpoint_dir=Path(folder), defaults=(),
                log_file=out / "logs" / f"{Path(folder).name}.log", threads=threads, name=name,
            )
        which = dict(zip(work, runs))

        def done(job: Job, result: Optional[dict], error: Optional[BaseException]) -> bool:
            k, s = which[job.name]
            params = planned[k]
            if error is not None:
                logger.error(f"{job.title} failed ({params}): {type(error).__name__}: {error}")
                errors.append(f"{job.title}: {type(error).__name__}: {error} (log: {job.log_file})")
                return True
            by_seed[k][s] = result
            logger.info(f"{job.title} done: {params} -> best valid {result['best_valid_score']:.4f}")
            if len(by_seed[k]) == len(trial_seeds):
                results[k] = trial_record(params, {s: by_seed[k][s] for s in trial_seeds})
                finished(results[k])
                if seeds:
                    logger.info(f"trial {k}: {params} -> mean best valid {results[k]['best_valid_score']:.4f}")
            return True

        run_parallel(list(work.values()), jobs, done, target=_run_trial)
    if not results:
        raise RuntimeError("every trial failed:\n" + "\n".join(errors))
    return results


def fixed_settings(config: Config, config_dict: Optional[Mapping[str, Any]], space: Mapping[str, Any]) -> Dict[str, Any]:
    """The settings the search held fixed for every trial (``--key=value`` and ``config_dict``,
    e.g. ``--learning_rate=0.005 --epochs=20``) but did not search: the tuned values are the best
    under them, and a reader of the tuned defaults should know."""
    named = {"model", "dataset", "backbone"}  # the tuned file's path names them
    keys = (_command_line_keys() | set(config_dict or {})) - LOCAL_KEYS - set(space) - named
    return {k: _plain(config[k]) for k in sorted(keys) if k in config}


def _fixed_comment(fixed: Mapping[str, Any], seeds: Optional[Sequence[int]] = None) -> str:
    """Comment lines on what every trial ran with besides its parameters, and over which seeds."""
    lines = ""
    if fixed:
        settings = ", ".join(f"{k}={v}" for k, v in fixed.items())
        lines += f"# Every trial ran with {settings}: not set here, pass them too to train as the search did.\n"
    if seeds:
        lines += f"# Each trial's score: the mean over seeds {', '.join(map(str, seeds))}.\n"
    return lines


def write_tuned_defaults(
    folder: Path, name: str, best: dict, trials_dir: Path, params_file: str, algo: str, n_trials: int,
    fixed: Optional[Mapping[str, Any]] = None, seeds: Optional[Sequence[int]] = None,
) -> Path:
    """``<folder>/<name>.yaml`` (the best parameters, with where they came from and the settings
    every trial ran with), the search space ``<name>.hyper`` and the trials table
    ``<name>-trials.md``; replaces an earlier search's files."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{name}.yaml"
    score = float(best["best_valid_score"])
    with open(target, "w", encoding="utf-8") as f:
        f.write(
            f"# Tuned defaults of {name} on {folder.name}: the best of {n_trials} trials ({algo}) over\n"
            f"# {name}.hyper by best validation score ({score:.6f}), {time.strftime('%Y-%m-%d', time.gmtime())}.\n"
            f"# Trials: {name}-trials.md. Loaded after the model's and the dataset's yaml; anything a user sets wins.\n"
        )
        f.write(_fixed_comment(fixed or {}, seeds))
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
