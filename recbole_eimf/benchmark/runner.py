"""Train and test several models over several seeds under one protocol, resumably.

Every run is built and trained the way :func:`recbole_eimf.quick_start.run_recbole_eimf` does it
(Config -> ``start_run`` -> ``prepare_run``, pipeline stages included -> ``train_and_test``: fit,
then evaluate the best checkpoint on the test split); the trainer is instrumented
(:mod:`recbole_eimf.benchmark.instrument`) for epoch times and validation curves. Each finished
run is appended to ``<output_dir>/runs.jsonl`` (its test users' target ranks to
``<output_dir>/per_user/``: :mod:`recbole_eimf.benchmark.per_user`); a rerun skips those and the reports
(:mod:`recbole_eimf.benchmark.report`) are rewritten after every run.

Config priority per model (later wins): RecBole's and the plugin's defaults (``recbole_eimf/properties/overall.yaml``
applies to every model), ``config_files``, ``props/benchmark/<Model>.yaml``,
``props/benchmark/<dataset>/<Model>.yaml``, ``overrides``, and finally the harness's own ``seed``
and ``checkpoint_dir``. ``sys.argv`` is not read: the CLI turns ``--key=value`` into ``overrides``.

A name in ``models`` is a label: a model of RecBole or of the plugin, or a *variant*, whose yaml in
the benchmark folder names the model to run with a ``model:`` key (``props/benchmark/EIMF-MIND.yaml``:
``model: EIMF`` and ``backbone: MIND``), so that two configurations of one model sit side by side
in one table. ESIM's cache is shared by every run of an output folder (``<output_dir>/esim``,
unless ``esim_cache_dir`` is set) and its clustering seed is the first seed (unless ``esim_seed``
is set), so the semantic targets are built once per benchmark and every seed trains on them.
"""

from __future__ import annotations

import contextlib
import datetime
import gc
import logging
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import torch

import yaml

from recbole_eimf.benchmark.instrument import best_epoch, history_file, instrument_trainer
from recbole_eimf.benchmark.health import training_health
from recbole_eimf.benchmark.parallel import LOGS_DIR, make_jobs, run_job
from recbole_eimf.benchmark.per_user import per_user_ranks, save_per_user
from recbole_eimf.benchmark.report import flatten_record, write_reports
from recbole_eimf.benchmark.store import RunStore, run_key
from recbole_eimf.checkpoint import read_checkpoint
from recbole_eimf.config import Config
from recbole_eimf.experiments import config_fallbacks, describe_diff, fingerprint, fingerprint_diff
from recbole_eimf.data import ensure_dataset
from recbole_eimf.environment import device_name
from recbole_eimf.errors import CheckpointError, UserError
from recbole_eimf.process_pool import cpu_threads_per_job, run_parallel
from recbole_eimf.quick_start.quick_start import prepare_run, run_logging, start_run, train_and_test
from recbole_eimf.quick_start.stages import build_stage_caches, declared_stages
from recbole_eimf.utils import get_model, get_trainer, props_dir


logger = logging.getLogger(__name__)

RUNS_FILE = "runs.jsonl"
CHECKPOINTS_DIR = "checkpoints"
ESIM_DIR = "esim"

# Keys the harness sets itself for every run.
RESERVED_KEYS = {
    "model": "name the models with --models",
    "dataset": "name the dataset with --dataset",
    "seed": "name the seeds with --seeds",
    "checkpoint_dir": "each run gets its own folder under <output_dir>/checkpoints",
}


class BenchmarkSetupError(ValueError):
    """The benchmark cannot start (unknown model, bad option, conflicting earlier runs)."""


@dataclass
class BenchmarkSummary:
    """What one :func:`run_benchmark` call did."""

    output_dir: Path
    trained: List[Tuple[str, int]] = field(default_factory=list)
    skipped: List[Tuple[str, int]] = field(default_factory=list)
    failed: List[Tuple[str, int, str]] = field(default_factory=list)
    rows: List[Dict[str, Any]] = field(default_factory=list)
    files: Dict[str, Path] = field(default_factory=dict)
    markdown: str = ""


def model_config_files(
    model: str, dataset: str, config_files: Sequence[Union[str, Path]], model_config_dir: Path
) -> List[Path]:
    """The yaml files one model runs with: the shared ones, then its own benchmark overrides."""
    files = [Path(p) for p in config_files]
    for candidate in (model_config_dir / f"{model}.yaml", model_config_dir / dataset / f"{model}.yaml"):
        if candidate.is_file():
            files.append(candidate)
    return files


def model_class_name(label: str, files: Sequence[Path]) -> str:
    """The model a ``--models`` entry runs: the last ``model:`` key of its yaml files, else the label."""
    name = label
    for path in files:
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as err:
            raise BenchmarkSetupError(f"{path}: not valid yaml ({err})") from None
        if data is not None and not isinstance(data, dict):
            raise BenchmarkSetupError(f"{path}: expected config keys (a yaml mapping), got {type(data).__name__}")
        if data and data.get("model") is not None:
            name = str(data["model"])
    return name


@contextlib.contextmanager
def _argv_isolated() -> Iterator[None]:
    # RecBole's Config reads --key=value from sys.argv, at a priority above config_dict: the harness
    # passes its overrides explicitly, so the caller's argv (pytest's, the CLI's) must not leak in.
    saved = sys.argv
    sys.argv = saved[:1] or ["recbole_eimf.benchmark"]
    try:
        yield
    finally:
        sys.argv = saved


def _fmt(value: Optional[float], spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _floats(result: Optional[Mapping[str, Any]]) -> Dict[str, float]:
    return {key: float(value) for key, value in (result or {}).items()}


def build_config(
    model_name: str,
    dataset_name: str,
    seed: int,
    config_file_list: Sequence[Path],
    overrides: Mapping[str, Any],
    checkpoint_dir: Path,
    defaults: Optional[Mapping[str, Any]] = None,
) -> Config:
    """The Config of one run: shared and per-model yaml, then overrides, then seed and checkpoint_dir.

    ``model_name`` may be a variant label (see :func:`model_class_name`). ``defaults`` are keys
    set only where no file or override has set them (the harness's shared ESIM cache and seed).
    """
    config_dict = dict(overrides)
    config_dict.update({"seed": int(seed), "checkpoint_dir": str(checkpoint_dir)})
    with _argv_isolated():
        config = Config(
            model=model_class_name(model_name, config_file_list),
            dataset=dataset_name,
            config_file_list=[str(p) for p in config_file_list],
            config_dict=config_dict,
        )
    for key, value in (defaults or {}).items():
        # Only keys the model's config has (ESIM's are EIMF's): the others would enter a
        # SASRec run's settings and tie its records to an ESIM it never ran.
        if key in config.final_config_dict and (config[key] is None or config[key] == ""):
            config[key] = value
    return config


@dataclass
class ModelSettings:
    """What the harness knows of a model before it trains: its fingerprint in this benchmark (its
    resolved config but the seed, which keys its runs instead), its config fallbacks, and the
    pipeline stages it runs."""

    fingerprint: Dict[str, Any]
    fallbacks: Dict[str, Any]
    stages: Tuple[str, ...]


def model_settings(
    model_name: str, dataset: str, seed: int, files: Sequence[Path], overrides: Mapping[str, Any],
    defaults: Mapping[str, Any],
) -> ModelSettings:
    """A model's :class:`ModelSettings`, from its Config with the benchmark's first ``seed``."""
    config = build_config(model_name, dataset, seed, files, overrides, Path("."), defaults)
    return ModelSettings(fingerprint(config, exclude=("seed",)), config_fallbacks(config), declared_stages(config))


def stale_reason(record: Mapping[str, Any], new: Mapping[str, Any], fallbacks: Mapping[str, Any]) -> Optional[str]:
    """Why a finished run does not count for a rerun with settings ``new`` (None: it counts)."""
    old = record.get("settings") or {}
    if "config_sha256" in old:
        return "recorded by an earlier harness, which kept settings by file digest: they cannot be compared by value"
    changed = fingerprint_diff(old, new, fallbacks)
    return describe_diff(changed) if changed else None


def resumable_checkpoint(folder: Path, config) -> Optional[Path]:
    """The checkpoint an interrupted run of the same settings left in ``folder``, with its epoch
    records beside it; None when there is none. Checkpoints of other settings are deleted."""
    candidates = sorted(Path(folder).glob("*.pth"), key=lambda path: path.stat().st_mtime, reverse=True)
    for path in candidates:
        reason = None
        if not history_file(str(path)).is_file():
            reason = "no epoch records beside it"
        else:
            try:
                saved = read_checkpoint(str(path))["config"]
            except CheckpointError as err:
                reason = str(err)
            else:
                changed = fingerprint_diff(fingerprint(saved), fingerprint(config), config_fallbacks(config))
                reason = f"other settings ({describe_diff(changed)})" if changed else None
        if reason is None:
            logger.info(f"resuming from {path} (an earlier run of these settings was cut short)")
            return path
        logger.warning(f"{path}: not resumed, deleted: {reason}")
        path.unlink()
        history_file(str(path)).unlink(missing_ok=True)
    return None


def run_one(
    model_name: str,
    dataset_name: str,
    seed: int,
    config_file_list: Sequence[Path],
    overrides: Mapping[str, Any],
    checkpoint_dir: Path,
    defaults: Optional[Mapping[str, Any]] = None,
) -> Dict[str, Any]:
    """Train ``model_name`` with ``seed``, test its best checkpoint, and return the run record."""
    config = build_config(model_name, dataset_name, seed, config_file_list, overrides, checkpoint_dir, defaults)
    started = time.perf_counter()
    with run_logging(config):  # RecBole's handlers: the run's own log file
        environment = start_run(config)
        run = prepare_run(config)
        model = run.model
        n_params = sum(p.numel() for p in model.parameters())
        trainer = instrument_trainer(get_trainer(config["MODEL_TYPE"], config["model"]))(config, model)
        checkpoint = resumable_checkpoint(checkpoint_dir, config)
        resumed_at = trainer.resume_run(str(checkpoint)) if checkpoint is not None else None
        try:
            result = train_and_test(config, run, trainer)
            per_user = per_user_ranks(trainer, run.test_data, run.dataset)
        finally:
            tensorboard = getattr(trainer, "tensorboard", None)
            if tensorboard is not None:
                tensorboard.close()
    best_valid_score, best_valid_result, test_result = result.best_valid_score, result.best_valid_result, result.test_result

    train_seconds = list(trainer.train_seconds)
    valid_records = list(trainer.valid_records)
    best = best_epoch(valid_records, bool(config["valid_metric_bigger"]))
    record = {
        "model": model_name,
        "model_class": str(config["model"]),
        # What a wrapper (EIMF) runs on, so that reports can set it against that backbone's own runs.
        "backbone": config["backbone"] if isinstance(config["backbone"], str) else None,
        "seed": int(seed),
        "dataset": dataset_name,
        "device": str(config["device"]),
        "device_name": device_name(config["device"]),
        "environment": environment,
        # EIMF: the ESIM targets it trained on (``text_encoder: auto`` resolves per machine).
        "esim_targets": run.provenance().get("semantic_targets"),
        "params": int(n_params),
        "tuned_defaults_files": list(config["tuned_defaults_files"] or []),
        "epochs_run": len(train_seconds),
        # A run cut short (a killed process, the end of a session) and continued from its checkpoint.
        "resumed_at_epoch": resumed_at,
        "best_epoch": best,
        "train_sec_per_epoch": sum(train_seconds) / len(train_seconds) if train_seconds else None,
        "valid_sec_per_epoch": (
            sum(r["seconds"] for r in valid_records) / len(valid_records) if valid_records else None
        ),
        "test_inference_sec": result.test_seconds,
        "total_sec": time.perf_counter() - started,
        "valid_metric": str(config["valid_metric"]),
        "best_valid_score": float(best_valid_score) if best_valid_score is not None else None,
        "test": _floats(test_result),
        "valid": _floats(best_valid_result),
        "train_epoch_seconds": train_seconds,
        "train_losses": list(trainer.train_losses),
        "health": training_health({"train_losses": trainer.train_losses, "best_epoch": best}),
        "valid_curve": valid_records,
        "checkpoint": str(trainer.saved_model_file),
        # Arrays until the harness stores them (save_per_user): the record then names the file.
        "per_user": per_user,
    }
    del trainer, model, run
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return record


def check_inputs(
    models: Sequence[str],
    seeds: Sequence[int],
    config_files: Sequence[Union[str, Path]],
    overrides: Mapping[str, Any],
    dataset: str = "",
    model_config_dir: Union[str, Path, None] = None,
) -> None:
    if not models:
        raise BenchmarkSetupError("no models given (e.g. --models=SASRec,ComiRecSA)")
    if not seeds:
        raise BenchmarkSetupError("no seeds given (e.g. --seeds=2020,2021,2022)")
    for what, values in (("model", list(models)), ("seed", [int(s) for s in seeds])):
        duplicates = sorted({str(v) for v in values if values.count(v) > 1})
        if duplicates:
            raise BenchmarkSetupError(f"{what} listed twice: {', '.join(duplicates)}")
    # Resolve every model before any training: a typo must not surface after hours of runs.
    model_config_dir = Path(model_config_dir) if model_config_dir is not None else props_dir() / "benchmark"
    errors = []
    for name in models:
        own_files = model_config_files(name, dataset, (), model_config_dir)
        model_class = model_class_name(name, own_files)
        try:
            get_model(model_class)
        except ValueError as err:
            where = f" (named by `model` in {', '.join(str(p) for p in own_files)})" if model_class != name else ""
            errors.append(f"{err}{where}")
    if errors:
        raise BenchmarkSetupError("unknown model(s), nothing was run:\n" + "\n".join(errors))
    for path in config_files:
        if not Path(path).is_file():
            raise BenchmarkSetupError(f"config file not found: {path}")
    for key in overrides:
        if key in RESERVED_KEYS:
            raise BenchmarkSetupError(f"`{key}` cannot be overridden in a benchmark: {RESERVED_KEYS[key]}")


def _records_from(folders: Sequence[Union[str, Path]], report_only: bool) -> Dict[Tuple[str, int], Dict[str, Any]]:
    """Finished runs of other benchmark folders, merged in order (a later folder wins)."""
    if folders and not report_only:
        # Training beside another folder's records would mix their ESIM caches and settings checks.
        raise BenchmarkSetupError("runs_from (--runs_from) reads other folders' runs for a report: use it with report_only")
    records: Dict[Tuple[str, int], Dict[str, Any]] = {}
    for folder in folders:
        path = Path(folder) / RUNS_FILE
        if not path.is_file():
            raise BenchmarkSetupError(f"runs_from: no {RUNS_FILE} in {folder} (give benchmark output folders)")
        found = RunStore(path).load()
        logger.info(f"report only: {len(found)} finished run(s) read from {path}")
        records.update(found)
    return records


def build_esim_only(
    dataset: str,
    models: Sequence[str],
    seed: int,
    files_per_model: Mapping[str, Sequence[Path]],
    overrides: Mapping[str, Any],
    output_dir: Path,
    esim_defaults: Mapping[str, Any],
) -> List[str]:
    """Build (or find) the ESIM targets that the listed models which run ESIM train on with
    ``seed`` (the benchmark's first seed), in the folder's ESIM cache (``esim_cache_dir`` when
    overridden); returns those models. Nothing trains. For paying an LLM before a long
    benchmark, or preparing a cache for a machine that lacks the text encoder: with the targets
    cached, a run there reads them and never loads the encoder (benchmarks/gpu/README.md)."""
    configs = {m: build_config(m, dataset, seed, files_per_model[m], overrides, output_dir, esim_defaults) for m in models}
    esim_models = [m for m, config in configs.items() if "esim" in declared_stages(config)]
    if not esim_models:
        raise BenchmarkSetupError(f"esim_only: none of {', '.join(models)} runs ESIM (EIMF and its variants do)")
    ensure_dataset(configs[esim_models[0]])
    build_stage_caches(((m, configs[m]) for m in esim_models), logger)
    return esim_models


def run_benchmark(
    dataset: str,
    models: Sequence[str],
    seeds: Sequence[int] = (2020, 2021, 2022),
    output_dir: Union[str, Path, None] = None,
    config_files: Sequence[Union[str, Path]] = (),
    overrides: Optional[Mapping[str, Any]] = None,
    keep_checkpoints: bool = False,
    stop_on_error: bool = False,
    model_config_dir: Union[str, Path, None] = None,
    jobs: int = 1,
    report_only: bool = False,
    runs_from: Sequence[Union[str, Path]] = (),
    reference: Optional[str] = None,
    esim_only: bool = False,
) -> BenchmarkSummary:
    """Run every (model, seed) pair not yet finished in ``output_dir``, then write the reports.

    ``output_dir`` defaults to ``benchmark_results/<dataset>``; it receives ``runs.jsonl``,
    ``results.csv``, ``results.json``, ``results.md``, ``metrics.png``, ``valid_curves.png`` and
    each run's test users' target ranks (``per_user/``, for the report's per-user p-values).
    ``overrides`` are RecBole config keys applied to every model (values as on RecBole's command
    line or already typed). ``model_config_dir`` (default ``props/benchmark``) holds per-model
    yaml overrides. A run that raises is logged and retried on the next call; with
    ``stop_on_error`` it ends the benchmark instead. ``jobs`` > 1 runs that many at a time, each in
    its own process (:mod:`recbole_eimf.process_pool`), after building ESIM's targets once.
    ``report_only`` trains nothing: it writes the reports of the finished runs among those asked for
    (e.g. one table over runs made by several commands in one folder), including runs made with
    other settings than the current ones, which it names in a warning. ``runs_from`` (with
    ``report_only`` only) names other benchmark folders whose finished runs join the reports, read
    and never written, so that one table spans several folders without copying their records; a
    run recorded in more than one place is taken from ``output_dir`` first, then from the last
    folder that holds it. ``reference`` (one of ``models``, e.g. SASRec) adds a table of every other
    model's relative change over it to ``results.md``. ``esim_only`` trains nothing either: it
    builds (or finds) ESIM's semantic targets for every listed model that runs ESIM, exactly as
    the runs would read them (see :func:`build_esim_only`).

    Raises ``ValueError`` before any training for an unknown model name, a reserved override,
    or (unless ``report_only``) finished runs in ``output_dir`` that were made with other settings.
    Plugin defaults are compared by value: a key added to a model's yaml with the value its code
    falls back to without it (the model's ``CONFIG_FALLBACKS``) keeps earlier runs valid.
    """
    models = [str(m).strip() for m in models]
    seeds = [int(s) for s in seeds]
    overrides = dict(overrides or {})
    config_files = [Path(p) for p in config_files]
    model_config_dir = Path(model_config_dir) if model_config_dir is not None else props_dir() / "benchmark"
    check_inputs(models, seeds, config_files, overrides, dataset, model_config_dir)
    jobs = int(jobs)
    if jobs < 1:
        raise BenchmarkSetupError(f"jobs must be 1 or more, got {jobs}")
    if reference is not None and reference not in models:
        raise BenchmarkSetupError(f"reference {reference!r} is not among the models ({', '.join(models)})")

    output_dir = Path(output_dir) if output_dir is not None else Path("benchmark_results") / dataset
    # One ESIM for the whole folder: every seed trains on the same semantic targets, built (and,
    # with an LLM, paid for) once.
    esim_defaults = {"esim_cache_dir": str(output_dir / ESIM_DIR), "esim_seed": seeds[0]}
    files_per_model = {m: model_config_files(m, dataset, config_files, model_config_dir) for m in models}
    if esim_only:
        if report_only:
            raise BenchmarkSetupError("esim_only builds ESIM's targets and report_only writes tables: choose one")
        build_esim_only(dataset, models, seeds[0], files_per_model, overrides, output_dir, esim_defaults)
        return BenchmarkSummary(output_dir=output_dir)

    settings_per_model = {
        m: model_settings(m, dataset, seeds[0], files_per_model[m], overrides, esim_defaults) for m in models
    }

    store = RunStore(output_dir / RUNS_FILE)
    records = {**_records_from(runs_from, report_only), **store.load()}
    conflicts = []
    for model in models:
        for seed in seeds:
            record = records.get(run_key(model, seed))
            known = settings_per_model[model]
            reason = stale_reason(record, known.fingerprint, known.fallbacks) if record is not None else None
            if reason is not None:
                conflicts.append(f"  {model} seed {seed}: {reason}")
    if conflicts and report_only:
        # Nothing is trained, so nothing is mixed into a run: the table is what was asked for,
        # and the log says which of its runs were made with other settings than today's.
        logger.warning(
            f"{output_dir / RUNS_FILE}: these finished runs were made with other settings than the current "
            "ones; reported as they are:\n" + "\n".join(conflicts)
        )
    elif conflicts:
        raise BenchmarkSetupError(
            f"{output_dir / RUNS_FILE} holds finished runs made with other settings:\n"
            + "\n".join(conflicts)
            + "\nUse another --output_dir, or delete those runs' lines from runs.jsonl to redo them."
        )

    # Pre-flight, before any training: every pending model's config must build, and the dataset
    # must be on disk (or be downloaded now), so that a bad yaml or a missing folder fails fast.
    pending = [m for m in models if any(run_key(m, s) not in records for s in seeds)]
    for i, model in enumerate([] if report_only else pending):
        config = build_config(model, dataset, seeds[0], files_per_model[model], overrides, output_dir)
        if i == 0:
            ensure_dataset(config)

    output_dir.mkdir(parents=True, exist_ok=True)
    summary = BenchmarkSummary(output_dir=output_dir)
    total = len(models) * len(seeds)
    logger.info(
        f"Benchmark on {dataset}: {len(models)} models x {len(seeds)} seeds = {total} runs -> {output_dir}"
    )

    def report() -> None:
        rows = [records[run_key(m, s)] for m in models for s in seeds if run_key(m, s) in records]
        summary.rows = [flatten_record(r) for r in rows]
        summary.files, summary.markdown = write_reports(rows, output_dir, dataset, models, reference)

    def checkpoint_dir(model: str, seed: int) -> Path:
        # A run's own folder: RecBole names checkpoints <model>-<time to the second>.pth, so a
        # shared folder could let two runs collide.
        return output_dir / CHECKPOINTS_DIR / f"{model}-seed{seed}"

    def position() -> str:
        """``[k/total]`` of the run that ends (or starts) next."""
        return f"[{len(summary.trained) + len(summary.failed) + len(summary.skipped) + 1}/{total}]"

    def finish(model: str, seed: int, record: Optional[Dict[str, Any]], error: Optional[BaseException]) -> bool:
        """Store one finished run (or log its failure); False ends the benchmark (stop_on_error)."""
        where = position()
        if not keep_checkpoints:
            shutil.rmtree(checkpoint_dir(model, seed), ignore_errors=True)
        if error is not None:
            # A user error's message says what to fix: its traceback would only bury it.
            logger.error(f"{where} {model} seed {seed} failed: {type(error).__name__}: {error}",
                         exc_info=None if isinstance(error, UserError) else error)
            summary.failed.append((model, seed, f"{type(error).__name__}: {error}"))
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()  # e.g. after an out-of-memory error
            return not stop_on_error
        if not keep_checkpoints:
            record["checkpoint"] = None
        if record.get("per_user") is not None:
            record["per_user"] = save_per_user(output_dir, model, seed, record["per_user"])
        record["settings"] = settings_per_model[model].fingerprint
        record["concurrent_runs"] = jobs
        record["finished_at"] = datetime.datetime.now().isoformat(timespec="seconds")
        store.append(record)
        records[run_key(model, seed)] = record
        summary.trained.append((model, seed))
        logger.info(
            f"{where} {model} seed {seed} done: {record['epochs_run']} epochs, "
            f"{_fmt(record['train_sec_per_epoch'], '.2f')} s/epoch, best valid "
            f"{record['valid_metric']} {_fmt(record['best_valid_score'], '.4f')} "
            f"(epoch {record['best_epoch']}), test {_fmt(record['test_inference_sec'], '.2f')} s"
        )
        report()  # partial results stay readable if a later run dies
        return True

    todo = []
    for index, (model, seed) in enumerate(((m, s) for m in models for s in seeds), start=1):
        if run_key(model, seed) in records:
            logger.info(f"[{index}/{total}] skipping {model} seed {seed} (done)")
            summary.skipped.append((model, seed))
        else:
            todo.append((model, seed))
    if report_only:
        if todo:
            logger.info(
                f"report only: {len(todo)} run(s) not finished, left out of the reports: "
                + ", ".join(f"{m} seed {s}" for m, s in todo)
            )
        todo = []
    for model, seed in todo:
        # Leftovers of an interrupted run go first.
        shutil.rmtree(checkpoint_dir(model, seed), ignore_errors=True)

    parallel = jobs > 1 and len(todo) > 1
    if parallel:
        # Seed-major order: a benchmark cut short still has every model on its first seed.
        todo.sort(key=lambda key: (seeds.index(key[1]), models.index(key[0])))
    # The models whose pipeline has stages (EIMF's ESIM) get them built first, before any run
    # starts: the folder's cache is built (and an LLM paid) once, not by every EIMF run that starts
    # at the same moment, and a stage's error stops the benchmark before training (exit 2), as
    # ``--stage=esim`` does (with --jobs=1 too); variants may ask for other settings.
    first_seed = {}
    for model, seed in todo:
        if settings_per_model[model].stages:
            first_seed.setdefault(model, seed)
    if first_seed:
        build_stage_caches((
            (model, build_config(model, dataset, seed, files_per_model[model], overrides, checkpoint_dir(model, seed),
                                 esim_defaults))
            for model, seed in first_seed.items()
        ), logger)
    if parallel:
        threads = cpu_threads_per_job(jobs)
        logger.info(f"{len(todo)} runs, {jobs} at a time ({threads} CPU thread(s) each; logs in {output_dir / LOGS_DIR})")
        run_parallel(
            make_jobs(todo, dataset, files_per_model, overrides, checkpoint_dir, esim_defaults, output_dir, threads),
            jobs,
            lambda job, record, error: finish(job.model, job.seed, record, error),
            target=run_job,
        )
    else:
        for model, seed in todo:
            logger.info(f"{position()} {model} seed {seed}")
            try:
                record, error = run_one(
                    model, dataset, seed, files_per_model[model], overrides, checkpoint_dir(model, seed), esim_defaults
                ), None
            except Exception as err:  # noqa: BLE001  (one failing model must not end a long benchmark)
                if stop_on_error:
                    raise
                record, error = None, err
            if not finish(model, seed, record, error):
                break
            del record, error

    checkpoints = output_dir / CHECKPOINTS_DIR
    if checkpoints.is_dir() and not any(checkpoints.iterdir()):
        checkpoints.rmdir()
    report()
    if summary.failed:
        logger.error(
            f"{len(summary.failed)} run(s) failed (rerun the same command to retry them): "
            + ", ".join(f"{m} seed {s}" for m, s, _ in summary.failed)
        )
    return summary
