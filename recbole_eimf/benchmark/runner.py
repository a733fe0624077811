"""Train and test several models over several seeds under one protocol, resumably.

Every run is built the way :func:`recbole_eimf.quick_start.run_recbole_eimf` builds one (Config
-> init_seed -> logging -> :func:`recbole_eimf.quick_start.prepare_run` -> fit -> evaluate the
best checkpoint on the test split); the trainer is instrumented
(:mod:`recbole_eimf.benchmark.instrument`) for epoch times and validation curves. Each finished
run is appended to ``<output_dir>/runs.jsonl``; a rerun skips those and the reports
(:mod:`recbole_eimf.benchmark.report`) are rewritten after every run.

Config priority per model (later wins): RecBole's and the plugin's defaults (``props/overall.yaml``
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
import hashlib
import json
import logging
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import torch

import yaml

from recbole_eimf.benchmark.instrument import best_epoch, instrument_trainer
from recbole_eimf.benchmark.parallel import LOGS_DIR, make_jobs, run_job
from recbole_eimf.benchmark.report import flatten_record, write_reports
from recbole_eimf.benchmark.store import RunStore, run_key
from recbole_eimf.config import PLACEMENT_KEYS, Config, command_line_value
from recbole_eimf.data import ensure_dataset
from recbole_eimf.environment import device_name, log_environment
from recbole_eimf.process_pool import cpu_threads_per_job, run_parallel
from recbole_eimf.quick_start.quick_start import prepare_run, run_logging
from recbole_eimf.utils import changed_keys, get_model, get_trainer, props_dir

from recbole.utils import init_seed

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


def _file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


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


def _defaults_values(paths: Sequence[Path]) -> Dict[str, Any]:
    """The keys the plugin's default yaml files set, later files winning (as Config loads them)."""
    values: Dict[str, Any] = {}
    for path in paths:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        values.update({str(key): value for key, value in data.items()})
    # Through json, so that a fresh value compares equal to one read back from runs.jsonl.
    return json.loads(json.dumps(values, sort_keys=True, default=str))


def run_settings(
    dataset: str,
    overrides: Mapping[str, Any],
    files: Sequence[Path],
    tuned: Sequence[Path] = (),
    defaults: Sequence[Path] = (),
) -> Dict[str, Any]:
    """What must match for a finished run to count as done on a rerun. ``tuned``: the tuned
    defaults the model loads (``props/tuned``), which a new search may have replaced;
    ``defaults``: the plugin's own yaml it loads (protocol, model and dataset defaults), recorded
    by value (``defaults``) and, for runs recorded before that, by content (``defaults_sha256``)."""
    settings = {
        "dataset": dataset,
        "overrides": {
            key: command_line_value(value)  # "1" and 1 are the same override
            for key, value in sorted(overrides.items())
            if key not in PLACEMENT_KEYS
        },
        # Contents, not paths: the same yaml copied elsewhere is the same setting.
        "config_sha256": [_file_digest(path) for path in files],
    }
    if tuned:  # only then, so that folders from before tuned defaults still resume
        settings["tuned_sha256"] = [_file_digest(path) for path in tuned]
    if defaults:
        settings["defaults_sha256"] = [_file_digest(path) for path in defaults]
        settings["defaults"] = _defaults_values(defaults)
    return settings


def _defaults_differ(old: Mapping[str, Any], new: Mapping[str, Any], fallbacks: Mapping[str, Any]) -> Optional[str]:
    """Why the plugin defaults of ``old`` and ``new`` differ, or None when they do not."""
    if "defaults" in old:
        # A key one side lacks is the same as the model's fallback for it (what the code does
        # without the key), so a key added to a default yaml with the behaviour from before does
        # not make earlier runs stale.
        changed = changed_keys(old["defaults"], new.get("defaults") or {}, fallbacks)
        return "plugin defaults changed (" + ", ".join(changed) + ")" if changed else None
    # Recorded before defaults were kept by value: only their file contents can be compared;
    # before they were hashed at all, not even that.
    if "defaults_sha256" in old and old["defaults_sha256"] != new.get("defaults_sha256"):
        return "the plugin's default yaml (props/overall.yaml, props/dataset, model defaults) differ"
    return None


def same_settings(old: Mapping[str, Any], new: Mapping[str, Any], fallbacks: Optional[Mapping[str, Any]] = None) -> bool:
    """Whether a finished run's settings match a rerun's. ``fallbacks``: the model's values for
    keys its config may lack (``CONFIG_FALLBACKS`` of the model class)."""
    rest = ("defaults", "defaults_sha256")
    if _defaults_differ(old, new, fallbacks or {}) is not None:
        return False
    return {k: v for k, v in old.items() if k not in rest} == {k: v for k, v in new.items() if k not in rest}


def _settings_diff(old: Mapping[str, Any], new: Mapping[str, Any], fallbacks: Optional[Mapping[str, Any]] = None) -> str:
    parts = []
    if old.get("dataset") != new.get("dataset"):
        parts.append(f"dataset {old.get('dataset')} -> {new.get('dataset')}")
    parts += changed_keys(old.get("overrides", {}), new.get("overrides", {}))
    if old.get("config_sha256") != new.get("config_sha256"):
        parts.append("config file contents differ")
    if old.get("tuned_sha256") != new.get("tuned_sha256"):
        parts.append("tuned defaults (props/tuned) differ")
    defaults = _defaults_differ(old, new, fallbacks or {})
    if defaults is not None:
        parts.append(defaults)
    return ", ".join(parts) or "settings differ"


def model_fallbacks(model_class: str, backbone: Optional[str] = None) -> Dict[str, Any]:
    """``CONFIG_FALLBACKS`` of a model class and of the backbone it wraps (RecBole's own: none)."""
    fallbacks: Dict[str, Any] = {}
    for name in (backbone, model_class):
        if name:
            fallbacks.update(getattr(get_model(name), "CONFIG_FALLBACKS", {}))
    return fallbacks


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
        if config[key] is None or config[key] == "":
            config[key] = value
    return config


def with_esim_seed(settings: Mapping[str, Any], esim_seed: Optional[int]) -> Dict[str, Any]:
    """``settings`` with the ESIM seed its run used: for a model that runs ESIM, the recorded
    ``esim_seed``, or ``esim_seed`` (the folder's default: its first seed) where none was recorded;
    for one that does not (``esim_seed`` None), no ESIM seed at all, since it changes nothing there.
    So a seed-2022 run given ``--esim_seed=2020`` matches a rerun of seeds 2020-2022 that takes
    the default, and SASRec given ``--esim_seed`` matches SASRec without it."""
    overrides = dict(settings.get("overrides") or {})
    if esim_seed is None:
        overrides.pop("esim_seed", None)
    else:
        overrides.setdefault("esim_seed", esim_seed)
    return {**settings, "overrides": overrides}


def _model_settings(
    model_name: str, dataset: str, files: Sequence[Path], overrides: Mapping[str, Any], esim_seed: int
) -> Tuple[Dict[str, Any], Dict[str, Any], Optional[int]]:
    """A model's run settings, with the default and tuned yaml its Config loads; its config
    fallbacks (:func:`model_fallbacks`); and the folder's default ESIM seed (``esim_seed``) if the
    model runs ESIM, else None (see :func:`with_esim_seed`). Nothing is trained."""
    config = build_config(model_name, dataset, 0, files, overrides, Path("."))
    settings = run_settings(
        dataset,
        overrides,
        files,
        tuned=[Path(path) for path in config["tuned_defaults_files"] or []],
        defaults=[Path(path) for path in config["plugin_defaults_files"] or []],
    )
    backbone = config["backbone"] if isinstance(config["backbone"], str) else None
    default_esim_seed = esim_seed if config["model"] == "EIMF" else None
    return with_esim_seed(settings, default_esim_seed), model_fallbacks(config["model"], backbone), default_esim_seed


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
    init_seed(config["seed"], config["reproducibility"])
    with run_logging(config) as run_logger:  # RecBole's handlers: the run's own log file
        run_logger.info(config)
        dataset, train_data, valid_data, test_data, model = prepare_run(config)
        environment = log_environment(run_logger, config["device"])  # after prepare_run chose the threads
        n_params = sum(p.numel() for p in model.parameters())

        trainer_class = instrument_trainer(get_trainer(config["MODEL_TYPE"], config["model"]))
        trainer = trainer_class(config, model)
        try:
            best_valid_score, best_valid_result = trainer.fit(
                train_data, valid_data, saved=True, show_progress=config["show_progress"]
            )
            device = config["device"]
            if torch.cuda.is_available() and str(device).startswith("cuda"):
                torch.cuda.synchronize(device)
            # Full-sort inference on the test split, loading the best checkpoint included (small
            # next to ranking every item for every test user).
            test_start = time.perf_counter()
            test_result = trainer.evaluate(test_data, load_best_model=True, show_progress=config["show_progress"])
            if torch.cuda.is_available() and str(device).startswith("cuda"):
                torch.cuda.synchronize(device)
            test_seconds = time.perf_counter() - test_start
            run_logger.info(f"best valid: {_floats(best_valid_result)}")
            run_logger.info(f"test result: {_floats(test_result)}")
        finally:
            tensorboard = getattr(trainer, "tensorboard", None)
            if tensorboard is not None:
                tensorboard.close()

    train_seconds = list(trainer.train_seconds)
    valid_records = list(trainer.valid_records)
    record = {
        "model": model_name,
        "model_class": str(config["model"]),
        # What an EIMF run wraps, so that reports can set it against that backbone's own runs.
        "backbone": str(config["backbone"]) if config["model"] == "EIMF" else None,
        "seed": int(seed),
        "dataset": dataset_name,
        "device": str(config["device"]),
        "device_name": device_name(config["device"]),
        "environment": environment,
        # EIMF: the ESIM targets it trained on (``text_encoder: auto`` resolves per machine).
        "esim_targets": model.semantic_provenance() if hasattr(model, "semantic_provenance") else None,
        "params": int(n_params),
        "tuned_defaults_files": list(config["tuned_defaults_files"] or []),
        "epochs_run": len(train_seconds),
        "best_epoch": best_epoch(valid_records, bool(config["valid_metric_bigger"])),
        "train_sec_per_epoch": sum(train_seconds) / len(train_seconds) if train_seconds else None,
        "valid_sec_per_epoch": (
            sum(r["seconds"] for r in valid_records) / len(valid_records) if valid_records else None
        ),
        "test_inference_sec": test_seconds,
        "total_sec": time.perf_counter() - started,
        "valid_metric": str(config["valid_metric"]),
        "best_valid_score": float(best_valid_score) if best_valid_score is not None else None,
        "test": _floats(test_result),
        "valid": _floats(best_valid_result),
        "train_epoch_seconds": train_seconds,
        "valid_curve": valid_records,
        "checkpoint": str(trainer.saved_model_file),
    }
    del trainer, model, train_data, valid_data, test_data, dataset
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
    esim_models = [m for m, config in configs.items() if config["model"] == "EIMF"]
    if not esim_models:
        raise BenchmarkSetupError(f"esim_only: none of {', '.join(models)} runs ESIM (EIMF and its variants do)")
    ensure_dataset(configs[esim_models[0]])
    from recbole_eimf.esim.stage import build_esim_caches

    build_esim_caches(((m, configs[m]) for m in esim_models), logger)
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
    ``results.csv``, ``results.json``, ``results.md``, ``metrics.png`` and ``valid_curves.png``.
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
        m: _model_settings(m, dataset, files_per_model[m], overrides, esim_defaults["esim_seed"]) for m in models
    }

    store = RunStore(output_dir / RUNS_FILE)
    records = {**_records_from(runs_from, report_only), **store.load()}
    conflicts = []
    for model in models:
        for seed in seeds:
            record = records.get(run_key(model, seed))
            new, fallbacks, esim_seed = settings_per_model[model]
            old = with_esim_seed((record or {}).get("settings") or {}, esim_seed)
            if record is not None and not same_settings(old, new, fallbacks):
                conflicts.append(f"  {model} seed {seed}: {_settings_diff(old, new, fallbacks)}")
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
            logger.error(f"{where} {model} seed {seed} failed: {type(error).__name__}: {error}", exc_info=error)
            summary.failed.append((model, seed, f"{type(error).__name__}: {error}"))
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()  # e.g. after an out-of-memory error
            return not stop_on_error
        if not keep_checkpoints:
            record["checkpoint"] = None
        record["settings"] = settings_per_model[model][0]
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

    if jobs > 1 and len(todo) > 1:
        # Seed-major order: a benchmark cut short still has every model on its first seed.
        todo.sort(key=lambda key: (seeds.index(key[1]), models.index(key[0])))
        # The models whose settings carry an ESIM seed are those that run ESIM (_model_settings).
        esim_models = {m for m, (_, _, esim_seed) in settings_per_model.items() if esim_seed is not None}
        # Before parallel runs start, so that the folder's cache is built (and an LLM paid) once,
        # not by every EIMF run that starts at the same moment; variants may ask for other settings.
        from recbole_eimf.esim.stage import build_esim_caches

        first_seed = {}
        for model, seed in todo:
            if model in esim_models:
                first_seed.setdefault(model, seed)
        build_esim_caches((
            (model, build_config(model, dataset, seed, files_per_model[model], overrides, checkpoint_dir(model, seed),
                                 esim_defaults))
            for model, seed in first_seed.items()
        ), logger)
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
