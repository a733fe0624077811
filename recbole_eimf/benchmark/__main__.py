"""Benchmark several models over several seeds on one dataset, under the same protocol.

    python -m recbole_eimf.benchmark --dataset=amazon-beauty \\
        --models=ComiRecSA,ComiRecDR,MIND,SASRec,GRU4Rec,SINE,BERT4Rec,SASRecF --seeds=2020,2021,2022

Every other ``--key=value`` is a RecBole config override applied to every model (e.g.
``--epochs=1 --gpu_id=0``). ``--config_files="a.yaml b.yaml"`` applies
yaml files to every model; ``props/benchmark/<Model>.yaml`` and
``props/benchmark/<dataset>/<Model>.yaml`` apply to that model only. Results go to
``--output_dir`` (default ``benchmark_results/<dataset>``); rerunning the same command skips the
finished runs. ``--jobs=N`` runs N of them at a time, each in its own process.
``--report_only=True`` trains nothing and writes the tables of the finished runs; with
``--runs_from=dir1,dir2`` they include the runs recorded in other output folders.
``--reference=SASRec`` adds a table of every other model's relative change over SASRec.
``--esim_only=True`` trains nothing: it builds ESIM's semantic targets for the listed EIMF models
(e.g. to pay an LLM once before a long benchmark, or to carry them to a machine without the text
encoder: benchmarks/gpu/README.md).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from recbole_eimf.benchmark.runner import ESIM_DIR, BenchmarkSetupError, check_inputs, run_benchmark
from recbole_eimf.config_keys import known_keys, suggestion
from recbole_eimf.errors import UserError
from recbole_eimf.progress_log import progress_logging

logger = logging.getLogger("recbole_eimf.benchmark")


def _str2bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "y", "on"):
        return True
    if lowered in ("0", "false", "no", "n", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected True or False, got {value!r}")


def _names(value: str) -> List[str]:
    return [part.strip() for part in value.replace(" ", ",").split(",") if part.strip()]


def _seeds(value: str) -> List[int]:
    try:
        return [int(part) for part in _names(value)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"seeds must be integers separated by commas, got {value!r}") from None


def build_parser() -> argparse.ArgumentParser:
    # allow_abbrev=False: `--model=X` or `--seed=1` must not silently mean --models / --seeds.
    parser = argparse.ArgumentParser(
        prog="python -m recbole_eimf.benchmark",
        description=__doc__.split("\n")[0],
        allow_abbrev=False,
        epilog="Any other --key=value is passed to RecBole's Config of every model (e.g. --epochs=1).",
    )
    parser.add_argument("--dataset", "-d", required=True, help="dataset name, e.g. amazon-beauty")
    parser.add_argument("--models", "-m", type=_names, required=True, help="comma-separated model names")
    parser.add_argument("--seeds", type=_seeds, default=[2020, 2021, 2022], help="comma-separated seeds (2020,2021,2022)")
    parser.add_argument("--output_dir", default=None, help="results folder (benchmark_results/<dataset>)")
    parser.add_argument("--config_files", default=None, help="yaml files applied to every model, space-separated")
    parser.add_argument(
        "--model_config_dir", default=None, help="folder of per-model yaml overrides (props/benchmark)"
    )
    parser.add_argument(
        "--keep_checkpoints", type=_str2bool, default=False, help="keep each run's best checkpoint (False)"
    )
    parser.add_argument(
        "--jobs", type=int, default=1,
        help="runs at a time, each in its own process sharing the device (1); e.g. 8 on one GPU",
    )
    parser.add_argument(
        "--report_only", type=_str2bool, default=False,
        help="train nothing: write the reports of the finished runs among those named (False)",
    )
    parser.add_argument(
        "--runs_from", type=_names, default=[],
        help="with --report_only: other output folders whose finished runs join the reports, comma-separated",
    )
    parser.add_argument(
        "--reference", default=None,
        help="one of --models (e.g. SASRec): results.md adds every other model's relative change over it",
    )
    parser.add_argument(
        "--esim_only", type=_str2bool, default=False,
        help="train nothing: build ESIM's semantic targets for the listed EIMF models, where their runs read them (False)",
    )
    parser.add_argument(
        "--stop_on_error", type=_str2bool, default=False,
        help="stop at the first failing run instead of going on with the next (False)",
    )
    return parser


def _misspelt_flag(parser: argparse.ArgumentParser, key: str) -> Optional[str]:
    """The harness flag that ``key``, an unknown config key, abbreviates or misspells (``out``: output_dir)."""
    if key in known_keys():
        return None
    flags = [action.dest for action in parser._actions if action.option_strings and action.dest != "help"]
    prefixed = [flag for flag in flags if flag.startswith(key)]
    return prefixed[0] if prefixed else suggestion(key, flags)


def parse_overrides(parser: argparse.ArgumentParser, extra: Sequence[str]) -> Dict[str, str]:
    """``--key=value`` arguments the harness does not know, as RecBole config overrides."""
    overrides: Dict[str, str] = {}
    for arg in extra:
        if not arg.startswith("--") or "=" not in arg or arg.startswith("--="):
            parser.error(f"unrecognized argument {arg!r}: config overrides are written --key=value")
        key, value = arg[2:].split("=", 1)
        flag = _misspelt_flag(parser, key)
        if flag:
            parser.error(f"--{key} is neither a flag of the harness nor a config key: did you mean --{flag}?")
        if key in overrides and overrides[key] != value:
            parser.error(f"--{key} given twice with different values")
        overrides[key] = value
    return overrides


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    overrides = parse_overrides(parser, extra)
    if args.runs_from and not args.report_only:
        parser.error("--runs_from reads other folders' runs for a report: add --report_only=True")
    if args.reference is not None and args.reference not in args.models:
        parser.error(f"--reference={args.reference} is not among --models")
    output_dir = Path(args.output_dir) if args.output_dir else Path("benchmark_results") / args.dataset
    config_files = args.config_files.split() if args.config_files else []
    try:
        # Unknown models and bad options fail here, before the output folder is made.
        check_inputs(args.models, args.seeds, config_files, overrides, args.dataset, args.model_config_dir)
        with progress_logging(logger, output_dir / "benchmark.log"):
            logger.info("command: python -m recbole_eimf.benchmark " + " ".join(sys.argv[1:] if argv is None else argv))
            summary = run_benchmark(
                dataset=args.dataset,
                models=args.models,
                seeds=args.seeds,
                output_dir=output_dir,
                config_files=config_files,
                overrides=overrides,
                keep_checkpoints=args.keep_checkpoints,
                stop_on_error=args.stop_on_error,
                model_config_dir=args.model_config_dir,
                jobs=args.jobs,
                report_only=args.report_only,
                runs_from=args.runs_from,
                reference=args.reference,
                esim_only=args.esim_only,
            )
    # Raised before any training (ESIM's errors: by the targets built before the runs start).
    except (BenchmarkSetupError, UserError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.esim_only:
        cache = Path(overrides.get("esim_cache_dir") or output_dir / ESIM_DIR) / args.dataset
        print(f"ESIM's semantic targets are in {cache / 'targets'}")
        return 0
    print(f"\n{summary.markdown}")
    print(f"trained {len(summary.trained)}, skipped {len(summary.skipped)} (done), failed {len(summary.failed)}")
    for name, path in summary.files.items():
        print(f"  {name:<17} {path}")
    for model, seed, message in summary.failed:
        print(f"FAILED {model} seed {seed}: {message}", file=sys.stderr)
    return 1 if summary.failed else 0


if __name__ == "__main__":
    sys.exit(main())
