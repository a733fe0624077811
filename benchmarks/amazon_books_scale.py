"""Wall time and peak memory of each stage of an amazon-books run, on the synthetic twin.

    python -m recbole_eimf.data.synthetic --like=amazon-books --scale=0.1 --out=/tmp/books-0.1
    python benchmarks/amazon_books_scale.py --data_path=/tmp/books-0.1 --model=SASRec --esim=True
    python benchmarks/amazon_books_scale.py --data_path=/tmp/books-0.1 --model=EIMF --backbone=TransMI

Stages, in one process: dataset load and filter, split (RecBole's data_preparation), ESIM
(clustering every user, typical users, extractive interests, targets; then ``dry_run`` for an
OpenAI model's bill), model creation (EIMF runs or reads ESIM here), ``--train_batches`` training
batches of RecBole's trainer (projected to an epoch: the batches of an epoch are alike), full-sort
validation and test over every user and item. A thread samples the process's RSS every 50 ms;
a stage's peak is the highest sample while it ran (what earlier stages hold included).
Prints one JSON line per stage.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import tempfile
import threading
import time
from contextlib import contextmanager

import psutil
import yaml

import recbole_eimf  # noqa: F401  (compat shims before RecBole)

GIB = 1024 ** 3


class PeakRss:
    """Polls this process's resident set size; ``reset`` starts a new peak. Above ``limit`` bytes
    the process ends at once (a shared machine: better a missing number than a swapping host)."""

    def __init__(self, limit: float, interval: float = 0.05):
        self.process, self.interval, self.peak, self.limit = psutil.Process(), interval, 0, limit
        self.stage = ""
        threading.Thread(target=self._poll, daemon=True).start()

    def _poll(self):
        while True:
            self.peak = max(self.peak, self.process.memory_info().rss)
            if self.peak > self.limit:
                print(json.dumps({"stage": self.stage, "stopped": f"RSS above {self.limit / GIB:.1f} GiB"}), flush=True)
                os._exit(3)
            time.sleep(self.interval)

    def reset(self):
        self.peak = self.process.memory_info().rss


@contextmanager
def stage(name: str, rss: PeakRss, records: list, **extra):
    rss.reset()
    rss.stage = name
    start, cpu_start = time.perf_counter(), sum(rss.process.cpu_times()[:2])
    info = dict(extra)
    yield info
    rss.peak = max(rss.peak, rss.process.memory_info().rss)
    # CPU seconds too: on a shared machine the wall time says as much about the neighbours.
    record = {"stage": name, "seconds": round(time.perf_counter() - start, 2),
              "cpu_seconds": round(sum(rss.process.cpu_times()[:2]) - cpu_start, 2),
              "peak_rss_gib": round(rss.peak / GIB, 3), **info}
    records.append(record)
    print(json.dumps(record), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data_path", required=True)
    parser.add_argument("--model", default="SASRec")
    parser.add_argument("--backbone", default="TransMI", help="EIMF's backbone")
    parser.add_argument("--esim", default="False", help="True: time ESIM and its dry run here")
    parser.add_argument("--text_encoder", default="tfidf")
    parser.add_argument("--train_batches", type=int, default=20)
    parser.add_argument("--esim_cache_dir", default=None)
    parser.add_argument("--max_rss_gib", type=float, default=5.8, help="stop the run above this RSS")
    parser.add_argument("--stop_after", default="", help="'load': load and filter only; 'split': and split")
    parser.add_argument("--set", nargs="*", default=[], help="more config, key=value (yaml values)")
    args = parser.parse_args()
    sys.argv = sys.argv[:1]  # RecBole's Config reads --key=value from the command line

    import torch
    from recbole.utils import init_seed
    from recbole_eimf.config import Config
    from recbole_eimf.data import create_dataset, data_preparation
    from recbole_eimf.esim import EsimSettings, dry_run, run_esim
    from recbole_eimf.memory import resolved_negatives, check_memory
    from recbole_eimf.utils import get_model, get_trainer

    cache = args.esim_cache_dir or tempfile.mkdtemp(prefix="esim-books-")
    config_dict = {"data_path": args.data_path, "show_progress": False, "state": "WARNING",
                   "text_encoder": args.text_encoder, "llm_backend": "extractive",
                   "esim_cache_dir": cache, "checkpoint_dir": tempfile.mkdtemp(prefix="saved-")}
    if args.model == "EIMF":
        config_dict["backbone"] = args.backbone
    config_dict.update({k: yaml.safe_load(v) for k, v in (item.split("=", 1) for item in args.set)})
    rss, records = PeakRss(args.max_rss_gib * GIB), []
    config = Config(model=args.model, dataset="amazon-books", config_dict=config_dict)
    init_seed(config["seed"], config["reproducibility"])
    print(json.dumps({"model": args.model, "backbone": args.backbone if args.model == "EIMF" else None,
                      "data_path": args.data_path, "torch_threads": torch.get_num_threads()}))

    with stage("load + filter", rss, records) as info:
        dataset = create_dataset(config)
        info.update(users=dataset.user_num - 1, items=dataset.item_num - 1, interactions=dataset.inter_num)
    if args.stop_after == "load":
        return
    with stage("split", rss, records) as info:
        train_data, valid_data, test_data = data_preparation(config, dataset)
        info.update(train_batches=len(train_data))
    if args.stop_after == "split":
        return
    if args.esim == "True":
        with stage("ESIM (extractive)", rss, records) as info:
            result = run_esim(EsimSettings.from_config(config), train_data.dataset)
            manifest = result.targets.manifest
            info.update(stage_seconds=manifest["stage_seconds"], counts=manifest["counts"])
        with stage("ESIM dry run (openai)", rss, records) as info:
            settings = EsimSettings.from_config(
                config, llm_backend="openai", llm_model="gpt-4o-mini",
                llm_price_per_1k_input_tokens=0.00015, llm_price_per_1k_output_tokens=0.0006,
                esim_cache_dir=tempfile.mkdtemp(prefix="esim-dry-"))
            info.update(report=dry_run(settings, train_data.dataset).format())
    with stage("model (EIMF: + ESIM)", rss, records) as info:
        init_seed(config["seed"], config["reproducibility"])
        model = get_model(config["model"])(config, train_data.dataset).to(config["device"])
        # What the run path checks before training (raises where the batch cannot fit).
        needs = check_memory(config, model, train_data)
        info.update(estimate_gib={k: round(v / GIB, 2) for k, v in needs.items()},
                    sampled_softmax_negatives=resolved_negatives(model))
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    batches = min(args.train_batches, len(train_data))
    with stage("train batches", rss, records) as info:
        trainer._train_epoch(itertools.islice(train_data, batches), 0)
        info.update(batches=batches)
    done = records[-1]
    print(json.dumps({"batches": batches, "epoch_batches": len(train_data),
                      "projected_epoch_seconds": round(done["seconds"] / batches * len(train_data), 1),
                      "projected_epoch_cpu_seconds": round(done["cpu_seconds"] / batches * len(train_data), 1)}),
          flush=True)
    for name, data in (("full-sort valid", valid_data), ("full-sort test", test_data)):
        with stage(name, rss, records) as info:
            result = trainer.evaluate(data, load_best_model=False)
            info.update(ndcg20=round(float(result["ndcg@20"]), 5))


if __name__ == "__main__":
    main()
