"""Train and test a recbole-eimf or RecBole model, the way RecBole's run_recbole.py does.

    python run_recbole_eimf.py --model=ComiRecSA --dataset=ml-100k --epochs=1
    python run_recbole_eimf.py --model=ComiRecSA --params_file=props/hyper/comirec.hyper   # tuning
    python run_recbole_eimf.py --model=TransMI --dataset=amazon-beauty --params_file=props/hyper/transmi.hyper \
        --algo=random --max_evals=20 --tuned_dir=props/tuned   # tuning into the tuned defaults
    # the same, 10 trials at a time on one GPU (exhaustive and random search)
    python run_recbole_eimf.py ... --params_file=props/hyper/transmi.hyper --algo=random --max_evals=20 --jobs=10
    # each trial on three seeds, scored by the mean (a small test set: one seed is noisy)
    python run_recbole_eimf.py ... --params_file=props/hyper/eimf-transmi.hyper --seeds=2020,2021,2022 --jobs=6
    python run_recbole_eimf.py --stage=esim --dataset=ml-100k [--dry_run=True]   # ESIM alone
    python run_recbole_eimf.py --model=SASRec --nproc=2   # 2 data-parallel ranks (recbole_eimf.distributed)

Every other ``--key=value`` is a RecBole config override (read by the Config itself).
"""

import argparse
import logging
import sys

from recbole_eimf.distributed import reports_results
from recbole_eimf.errors import ConfigError, DatasetNotFoundError
from recbole_eimf.quick_start import format_results, run_recbole_eimf

def _seed_list(text):
    """``--seeds=2020,2021``: the seeds, or None."""
    if not text:
        return None
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        sys.exit(f"error: --seeds={text}: integers separated by commas, e.g. --seeds=2020,2021,2022")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", "-m", type=str, default="EIMF", help="model name")
    parser.add_argument("--dataset", "-d", type=str, default="ml-100k", help="dataset name")
    parser.add_argument("--config_files", type=str, default=None, help="config files, separated by spaces")
    parser.add_argument("--params_file", type=str, default=None, help="hyper-parameter space (RecBole format): tune")
    parser.add_argument("--algo", type=str, default="exhaustive", help="tuning: exhaustive, random or bayes")
    parser.add_argument("--max_evals", type=int, default=100, help="tuning: most trials (random, bayes)")
    parser.add_argument("--tuned_dir", type=str, default=None,
                        help="tuning: also write the best parameters as the model's tuned defaults "
                             "(<tuned_dir>/<dataset>/<model>.yaml; props/tuned is what runs load)")
    parser.add_argument("--output_dir", type=str, default=None,
                        help="tuning: folder of the trials (default hyper/<model>-<dataset>); a stopped search resumes there")
    parser.add_argument("--jobs", type=int, default=1,
                        help="tuning: trials at a time, each in its own process (exhaustive and random search)")
    parser.add_argument("--seeds", type=str, default=None,
                        help="tuning: train every trial on each of these seeds (e.g. 2020,2021,2022), score by the mean")
    parser.add_argument("--stage", type=str, default="train", choices=["train", "esim"],
                        help="train (default), or esim: run ESIM preprocessing alone")
    parser.add_argument("--dry_run", type=str, default=None,
                        help="with --stage=esim: True reports users, prompt tokens and cost, making no request")
    args, _ = parser.parse_known_args()

    config_file_list = args.config_files.strip().split(" ") if args.config_files else None
    if args.stage == "esim":
        from recbole_eimf.esim import EsimError
        from recbole_eimf.esim.stage import run_esim_stage

        dry_run = None if args.dry_run is None else args.dry_run.strip().lower() in ("1", "true", "yes")
        try:
            print(run_esim_stage(model=args.model, dataset=args.dataset, config_file_list=config_file_list,
                                 dry_run=dry_run))
        except (ConfigError, DatasetNotFoundError, EsimError) as err:
            sys.exit(f"error: {err}")
        sys.exit(0)
    if args.params_file:
        from recbole_eimf.progress_log import progress_logging
        from recbole_eimf.quick_start import tuning

        try:
            with progress_logging(logging.getLogger(tuning.__name__)):  # the search's own lines, between trials too
                tuned = tuning.run_hyper(
                    args.model, args.dataset, args.params_file, config_file_list=config_file_list,
                    algo=args.algo, max_evals=args.max_evals, output_dir=args.output_dir, tuned_dir=args.tuned_dir,
                    jobs=args.jobs, seeds=_seed_list(args.seeds),
                )
        except (ConfigError, DatasetNotFoundError, FileNotFoundError) as err:
            sys.exit(f"error: {err}")
        print(f"\nbest of {len(tuned['trials'])} trials: {tuned['best']['params']}")
        print(f"{format_results(tuned['best'])}\n\ntrials and best.yaml in {tuned['output_dir']}")
        if "tuned_file" in tuned:
            print(f"tuned defaults: {tuned['tuned_file']}")
        sys.exit(0)
    try:
        result = run_recbole_eimf(model=args.model, dataset=args.dataset, config_file_list=config_file_list)
    except (ConfigError, DatasetNotFoundError) as err:
        sys.exit(f"error: {err}")
    if result is None or not reports_results():  # rank 0 reports (on another machine, or under torchrun)
        sys.exit(0)
    print(f"\n{args.model} on {args.dataset} (best validation checkpoint)\n{format_results(result)}")
    if result.get("model_file"):
        print(f"\ncheckpoint: {result['model_file']}")
