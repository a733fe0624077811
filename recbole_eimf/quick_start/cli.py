"""The command line of ``run_recbole_eimf.py``: train and test, tune, or run ESIM alone.

Every ``--key=value`` the parser does not know is a RecBole or model config override, read by
the :class:`~recbole_eimf.config.Config` itself (as RecBole's ``run_recbole.py`` does).
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import List, Optional, Sequence

from recbole_eimf.errors import UserError

EXAMPLES = """\
examples:
  python run_recbole_eimf.py --dataset=ml-100k                         # EIMF: ESIM, then training
  python run_recbole_eimf.py --model=SASRec --dataset=amazon-beauty --epochs=20
  python run_recbole_eimf.py --model=EIMF --backbone=TransMI --n_interests=8 --learning_rate=0.002
  python run_recbole_eimf.py --model=SASRec --nproc=2                   # 2 data-parallel ranks
  python run_recbole_eimf.py --stage=esim --dataset=ml-100k --dry_run=True   # ESIM alone, or its cost
  python run_recbole_eimf.py --stage=explain --model_file=saved/EIMF-<date>.pth --users=random:10
  python run_recbole_eimf.py --model=TransMI --params_file=props/hyper/transmi.hyper \\
      --algo=random --max_evals=20 --seeds=2020,2021 --jobs=2 --tuned_dir=props/tuned   # tuning

Any other --key=value is a config override (RecBole's keys and the models' keys: see
recbole_eimf/properties/ and RecBole's docs), e.g. --epochs=50 --gpu_id=0 --data_path=dataset/.
"""


def _seed_list(text: Optional[str]) -> Optional[List[int]]:
    """``--seeds=2020,2021``: the seeds, or None."""
    if not text:
        return None
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        sys.exit(f"error: --seeds={text}: integers separated by commas, e.g. --seeds=2020,2021,2022")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="run_recbole_eimf.py",
        description="Train and test a recbole-eimf or RecBole model (or tune it, or run ESIM alone).",
        epilog=EXAMPLES,
        formatter_class=lambda prog: argparse.RawDescriptionHelpFormatter(prog, max_help_position=30),
    )
    add = parser.add_argument
    add("--model", "-m", default="EIMF", help="model name: EIMF, a backbone or any RecBole model (default: %(default)s)")
    add("--dataset", "-d", default="ml-100k", help="dataset name (default: %(default)s)")
    add("--config_files", default=None, help="yaml config files, separated by spaces")
    add("--stage", default="train", choices=["train", "esim", "explain"],
        help="train (default: ESIM first for EIMF, then training and test), esim alone, "
             "or explain: a checkpoint's interests, named, and where its recommendations come from")
    add("--dry_run", default=None, help="with --stage=esim: True reports users, prompt tokens and cost, no request")
    add("--model_file", default=None, help="with --stage=explain: the checkpoint (saved/<model>-<date>.pth)")
    add("--users", default=None, help="with --stage=explain: user tokens (196,186) or random:N")
    tuning = parser.add_argument_group("tuning (with --params_file)")
    tuning.add_argument("--params_file", default=None, help="hyper-parameter space in RecBole's format: tune")
    tuning.add_argument("--algo", default="exhaustive", help="exhaustive, random or bayes (default: %(default)s)")
    tuning.add_argument("--max_evals", type=int, default=100, help="most trials, random and bayes (default: %(default)s)")
    tuning.add_argument("--seeds", default=None, help="train each trial on these seeds, score by the mean (2020,2021)")
    tuning.add_argument("--jobs", type=int, default=1, help="trials at a time, each in its own process (default: %(default)s)")
    tuning.add_argument("--output_dir", default=None, help="folder of the trials (default: hyper/<model>-<dataset>)")
    tuning.add_argument("--tuned_dir", default=None,
                        help="also write the winner as the model's tuned defaults (props/tuned: what runs load)")
    return parser


def _esim(args: argparse.Namespace, config_file_list: Optional[List[str]]) -> None:
    from recbole_eimf.quick_start.quick_start import run_esim_stage

    dry_run = None if args.dry_run is None else args.dry_run.strip().lower() in ("1", "true", "yes")
    try:
        print(run_esim_stage(model=args.model, dataset=args.dataset, config_file_list=config_file_list, dry_run=dry_run))
    except UserError as err:
        sys.exit(f"error: {err}")
    except KeyboardInterrupt:  # answers received so far are in ESIM's cache; the log says where
        print("interrupted: a rerun asks only for the answers still missing", file=sys.stderr)
        sys.exit(130)


def _explain(args: argparse.Namespace) -> None:
    from recbole_eimf.quick_start.explain import run_explain_stage

    try:
        print(run_explain_stage(args.model_file, args.users))
    except UserError as err:
        sys.exit(f"error: {err}")


def _tune(args: argparse.Namespace, config_file_list: Optional[List[str]]) -> None:
    from recbole_eimf.progress_log import progress_logging
    from recbole_eimf.quick_start import format_results, tuning

    try:
        with progress_logging(logging.getLogger(tuning.__name__)):  # the search's own lines, between trials too
            tuned = tuning.run_hyper(
                args.model, args.dataset, args.params_file, config_file_list=config_file_list,
                algo=args.algo, max_evals=args.max_evals, output_dir=args.output_dir, tuned_dir=args.tuned_dir,
                jobs=args.jobs, seeds=_seed_list(args.seeds),
            )
    except (UserError, FileNotFoundError) as err:
        sys.exit(f"error: {err}")
    print(f"\nbest of {len(tuned['trials'])} trials: {tuned['best']['params']}")
    print(f"{format_results(tuned['best'])}\n\ntrials and best.yaml in {tuned['output_dir']}")
    if "tuned_file" in tuned:
        print(f"tuned defaults: {tuned['tuned_file']}")


def _train(args: argparse.Namespace, config_file_list: Optional[List[str]]) -> None:
    from recbole_eimf.distributed import reports_results
    from recbole_eimf.quick_start import format_results, run_recbole_eimf

    try:
        result = run_recbole_eimf(model=args.model, dataset=args.dataset, config_file_list=config_file_list)
    except UserError as err:  # ESIM's too: EIMF's stage runs as the run is prepared
        sys.exit(f"error: {err}")
    if result is None or not reports_results():  # rank 0 reports (on another machine, or under torchrun)
        return
    print(f"\n{args.model} on {args.dataset} (best validation checkpoint)\n{format_results(result)}")
    if result.get("model_file"):
        print(f"\ncheckpoint: {result['model_file']}")


def main(argv: Optional[Sequence[str]] = None) -> None:
    """Parse the known options; the rest of ``sys.argv`` is read by the Config as overrides."""
    args, _ = build_parser().parse_known_args(argv)
    config_file_list = args.config_files.strip().split(" ") if args.config_files else None
    if args.stage == "esim":
        _esim(args, config_file_list)
    elif args.stage == "explain":
        _explain(args)
    elif args.params_file:
        _tune(args, config_file_list)
    else:
        _train(args, config_file_list)
