"""The benchmark harness: a real (tiny) two-model run, its reports, resuming, and fail-fast checks."""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import sys
from pathlib import Path

import pytest
import torch

import recbole_eimf  # noqa: F401  (compatibility shims before RecBole loads)
from recbole_eimf.benchmark import BenchmarkSetupError, best_epoch, instrument_trainer, run_benchmark
from recbole_eimf.benchmark import runner as runner_module
from recbole_eimf.benchmark.__main__ import main
from recbole_eimf.benchmark.report import markdown_table, paired_comparisons, reference_comparisons, write_reports
from recbole_eimf.benchmark.store import RunStore
from recbole_eimf.process_pool import cpu_threads_per_job

MODELS = ["ComiRecSA", "SASRec"]
# Small enough for a few seconds per run on 2 CPU cores: short sequences, tiny embeddings, and
# only the ml-100k users with at most 40 ratings (306 users, ~7.5k training sequences).
SMALL = {
    "epochs": 1,
    "eval_step": 1,
    "MAX_ITEM_LIST_LENGTH": 10,
    "embedding_size": 16,
    "hidden_size": 16,
    "inner_size": 32,
    "user_inter_num_interval": "[5,40]",
}
OUTPUT_FILES = ["runs.jsonl", "results.csv", "results.json", "results.md", "metrics.png", "valid_curves.png"]


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    # RecBole's Config reads sys.argv, and RecBole writes ./log and ./saved relative to cwd.
    monkeypatch.setattr(sys, "argv", ["pytest"])
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _no_training(*args, **kwargs):
    raise AssertionError("a run was started although none should be")


def _assert_finite_numbers(row: dict) -> None:
    for key, value in row.items():
        if key.startswith(("test_", "valid_")) and key != "valid_metric" or key in (
            "train_sec_per_epoch", "test_inference_sec", "best_valid_score",
        ):
            assert math.isfinite(float(value)), (key, value)


def test_benchmark_smoke_writes_reports_and_resumes(workdir, monkeypatch, caplog, capsys):
    import matplotlib.image

    out = workdir / "bench"
    summary = run_benchmark("ml-100k", MODELS, seeds=[2020], output_dir=out, overrides=SMALL, reference="SASRec")

    assert summary.trained == [("ComiRecSA", 2020), ("SASRec", 2020)]
    _assert_per_user_ranks_give_recboles_numbers_and_the_p_value(out)
    assert summary.skipped == [] and summary.failed == []
    for name in OUTPUT_FILES:
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert not (out / "checkpoints").exists(), "checkpoints are deleted after testing by default"

    with open(out / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["model"], int(r["seed"])) for r in rows] == [("ComiRecSA", 2020), ("SASRec", 2020)]
    for row in rows:
        _assert_finite_numbers(row)
        assert int(row["epochs_run"]) == 1 and int(row["best_epoch"]) == 0
        assert int(row["params"]) > 0 and row["device"] == "cpu"
        for metric in ("recall@20", "ndcg@20", "recall@50", "ndcg@50", "mrr@20"):
            assert 0.0 <= float(row[f"test_{metric}"]) <= 1.0
            assert 0.0 <= float(row[f"valid_{metric}"]) <= 1.0
        assert float(row["train_sec_per_epoch"]) > 0 and float(row["test_inference_sec"]) > 0

    results = json.loads((out / "results.json").read_text())
    assert len(results) == 2
    for entry in results:
        assert len(entry["train_epoch_seconds"]) == 1
        assert [point["epoch"] for point in entry["valid_curve"]] == [0]
        assert entry["valid_curve"][0]["score"] == pytest.approx(entry["best_valid_score"])
        assert math.isfinite(entry["test_ndcg@20"])

    markdown = (out / "results.md").read_text()
    for model in MODELS:
        assert f"| {model} |" in markdown
    assert "Recall@20" in markdown and "NDCG@50" in markdown and "MRR@20" in markdown
    assert markdown.count("**") >= 10, "the best value of each of the 5 metric columns is bold"

    for png in ("metrics.png", "valid_curves.png"):
        image = matplotlib.image.imread(out / png)
        assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100

    assert len((out / "runs.jsonl").read_text().splitlines()) == 2

    # Same command again, through the CLI: everything is done, so nothing may train.
    monkeypatch.setattr(runner_module, "run_one", _no_training)
    argv = ["--dataset=ml-100k", f"--models={','.join(MODELS)}", "--seeds=2020", f"--output_dir={out}", "--reference=SASRec"]
    argv += [f"--{key}={value}" for key, value in SMALL.items()]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "trained 0, skipped 2 (done), failed 0" in printed
    log = (out / "benchmark.log").read_text()
    assert "skipping ComiRecSA seed 2020 (done)" in log and "skipping SASRec seed 2020 (done)" in log
    assert "[2/2]" in log
    assert len((out / "runs.jsonl").read_text().splitlines()) == 2
    assert (out / "results.md").read_text() == markdown

    # --report_only: a seed not yet run is left out of the reports, not trained.
    argv_report = [a for a in argv if not a.startswith("--seeds=")] + ["--seeds=2020,2021", "--report_only=True"]
    assert main(argv_report) == 0
    assert "trained 0, skipped 2 (done), failed 0" in capsys.readouterr().out
    assert "not finished, left out of the reports: ComiRecSA seed 2021, SASRec seed 2021" in (
        out / "benchmark.log"
    ).read_text()
    assert (out / "results.md").read_text() == markdown

    # --runs_from: the same table in another folder, from the first folder's records (not copied).
    table = workdir / "table"
    argv_table = [a for a in argv_report if not a.startswith("--output_dir=")]
    assert main(argv_table + [f"--output_dir={table}", f"--runs_from={out}"]) == 0
    assert "trained 0, skipped 2 (done), failed 0" in capsys.readouterr().out
    assert (table / "results.md").read_text() == markdown
    assert not (table / "runs.jsonl").exists(), "records are read from --runs_from, never copied"
    assert f"2 finished run(s) read from {out / 'runs.jsonl'}" in (table / "benchmark.log").read_text()
    with pytest.raises(SystemExit):  # training beside another folder's records is refused
        main(argv + [f"--output_dir={table}", f"--runs_from={out}"])
    assert "add --report_only=True" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # a reference that is not run fails before any folder is made
        main(argv + [f"--output_dir={workdir / 'nowhere'}", "--reference=SINE"])
    assert "--reference=SINE is not among --models" in capsys.readouterr().err
    assert not (workdir / "nowhere").exists()
    with pytest.raises(BenchmarkSetupError, match=r"runs_from: no runs.jsonl in .*nowhere"):
        run_benchmark("ml-100k", MODELS, seeds=[2020], output_dir=table, overrides=SMALL, report_only=True,
                      runs_from=[workdir / "nowhere"])

    # The API logs the same; a changed setting refuses to mix runs into the folder.
    caplog.set_level(logging.INFO, logger="recbole_eimf.benchmark")
    again = run_benchmark("ml-100k", MODELS, seeds=[2020], output_dir=out, overrides=SMALL)
    assert again.trained == [] and again.skipped == [("ComiRecSA", 2020), ("SASRec", 2020)]
    assert "[1/2] skipping ComiRecSA seed 2020 (done)" in caplog.text
    with pytest.raises(BenchmarkSetupError, match="epochs: 1 -> 2"):
        run_benchmark("ml-100k", MODELS, seeds=[2020], output_dir=out, overrides={**SMALL, "epochs": 2})


def _assert_per_user_ranks_give_recboles_numbers_and_the_p_value(out: Path) -> None:
    """Each run keeps its test users' target ranks (per_user/<label>-seed<seed>.npz); their
    per-user Recall@20 and NDCG@20 average to RecBole's own test numbers, and results.md shows the
    Wilcoxon p-value of the two models' per-user differences."""
    import numpy as np
    from scipy.stats import wilcoxon

    from recbole_eimf.benchmark.per_user import load_per_user, user_metrics

    runs = RunStore(out / "runs.jsonl").load()
    metrics = {}
    for model in MODELS:
        record = runs[(model, 2020)]
        assert record["per_user"]["file"] == f"per_user/{model}-seed2020.npz"
        path = out / record["per_user"]["file"]
        assert path.stat().st_size < 4000  # ~300 users: a few hundred bytes compressed
        _, users, ranks = load_per_user(record, out)
        assert len(users) == record["per_user"]["users"] > 250 and (np.diff(users) > 0).all()  # each user once
        metrics[model] = {**user_metrics(ranks, 20), **user_metrics(ranks, 50)}
        for key, values in metrics[model].items():  # RecBole rounds to 4 decimals
            assert values.mean() == pytest.approx(record["test"][key], abs=6e-5), (model, key)
        # One epoch: the loss curve cannot show training yet, so no health verdict.
        assert len(record["train_losses"]) == 1 and math.isfinite(record["train_losses"][0])
        assert record["health"] is None
    assert runs[("SASRec", 2020)]["per_user"]["user_fingerprint"] == runs[("ComiRecSA", 2020)]["per_user"]["user_fingerprint"]
    row = next(line for line in (out / "results.md").read_text().splitlines() if line.startswith("| ComiRecSA | SASRec |"))
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    for column, key in ((4, "recall@20"), (6, "ndcg@20")):
        expected = wilcoxon(metrics["ComiRecSA"][key] - metrics["SASRec"][key], zero_method="wilcox").pvalue
        assert cells[column] == ("<0.001" if expected < 0.001 else f"{expected:.3f}"), (key, row)


def test_unknown_model_fails_before_training(workdir, monkeypatch, capsys):
    monkeypatch.setattr(runner_module, "run_one", _no_training)
    out = workdir / "bench"
    with pytest.raises(BenchmarkSetupError, match=r"\[NoSuchModel\]"):
        run_benchmark("ml-100k", ["SASRec", "NoSuchModel"], seeds=[2020], output_dir=out, overrides=SMALL)
    assert not out.exists()

    assert main(["--dataset=ml-100k", "--models=SASRec,NoSuchModel", f"--output_dir={out}", "--epochs=1"]) == 2
    err = capsys.readouterr().err
    assert "NoSuchModel" in err and "nothing was run" in err
    assert not out.exists()


def test_reserved_and_malformed_options(workdir):
    with pytest.raises(BenchmarkSetupError, match="--seeds"):
        run_benchmark("ml-100k", ["SASRec"], seeds=[1], output_dir=workdir / "x", overrides={"seed": 3})
    with pytest.raises(BenchmarkSetupError, match="listed twice"):
        run_benchmark("ml-100k", ["SASRec", "SASRec"], seeds=[1], output_dir=workdir / "x")
    with pytest.raises(SystemExit):
        main(["--dataset=ml-100k", "--models=SASRec", "stray"])
    with pytest.raises(SystemExit):  # no abbreviations: --model is not --models
        main(["--dataset=ml-100k", "--model=SASRec"])


def _record(model: str, seed: int, ndcg: float, curve: list) -> dict:
    return {
        "model": model, "seed": seed, "dataset": "toy", "device": "cpu", "device_name": "cpu",
        "params": 1000, "epochs_run": len(curve), "best_epoch": 0, "train_sec_per_epoch": 1.5,
        "valid_metric": "NDCG@20", "best_valid_score": max(curve),
        "test": {"recall@20": 2 * ndcg, "ndcg@20": ndcg, "recall@50": 3 * ndcg, "ndcg@50": 1.5 * ndcg, "mrr@20": ndcg / 2},
        "valid": {"ndcg@20": max(curve)},
        "train_epoch_seconds": [1.5] * len(curve),
        "valid_curve": [{"epoch": i, "score": s, "seconds": 0.1, "result": {"ndcg@20": s}} for i, s in enumerate(curve)],
    }


def test_report_mean_std_and_bold(tmp_path):
    records = [
        _record("A", 1, 0.10, [0.05, 0.08, 0.07]),
        _record("A", 2, 0.12, [0.06, 0.09]),
        _record("B", 1, 0.20, [0.10]),
    ]
    table = markdown_table(records, ["A", "B"], "toy")
    row_a = next(line for line in table.splitlines() if line.startswith("| A |"))
    row_b = next(line for line in table.splitlines() if line.startswith("| B |"))
    assert "0.1100 ± 0.0141" in row_a and "**" not in row_a  # mean and sample std over 2 seeds
    assert "**0.2000**" in row_b and "±" not in row_b.split("|")[3]  # one seed: no std
    assert "environments" not in table  # one (unrecorded) environment: nothing to say
    files, _ = write_reports(records, tmp_path, "toy", ["A", "B"])
    assert all(path.is_file() for path in files.values())
    # Runs made under other thread counts are named: the same seed gives other numbers there.
    env = {"torch": "2.13.0+cpu", "recbole": "1.2.1", "cpu": "Xeon", "cpu_capability": "AVX512"}
    records[0]["environment"] = {**env, "cpu_threads": 1}
    records[1]["environment"] = records[2]["environment"] = {**env, "cpu_threads": 2}
    table = markdown_table(records, ["A", "B"], "toy")
    assert ("ran in 2 environments (torch 2.13.0+cpu, recbole 1.2.1, Xeon (AVX512), 1 CPU thread(s): 1 run(s); "
            "torch 2.13.0+cpu, recbole 1.2.1, Xeon (AVX512), 2 CPU thread(s): 2 run(s))") in table
    records[0]["environment"] = records[1]["environment"]
    assert "environments" not in markdown_table(records, ["A", "B"], "toy")
    # Seeds of one label trained on other ESIM targets (e.g. `text_encoder: auto` resolved to
    # another encoder on another machine) are not one configuration: the table says so.
    records[0]["esim_targets"] = {"key": "k1", "llm": "extractive:extractive-v1", "encoder": "tfidf:256"}
    records[1]["esim_targets"] = {**records[0]["esim_targets"], "key": "k2", "encoder": "sentence-transformers:x"}
    assert ("A's runs trained on 2 different ESIM targets (k1 (extractive:extractive-v1, tfidf:256): 1 run(s); "
            "k2 (extractive:extractive-v1, sentence-transformers:x): 1 run(s))") in markdown_table(records, ["A", "B"], "toy")
    records[1]["esim_targets"] = records[0]["esim_targets"]
    assert "ESIM targets" not in markdown_table(records, ["A", "B"], "toy")


def test_report_sets_eimf_against_its_backbone_on_paired_seeds(tmp_path):
    def eimf(seed, ndcg, seconds):
        record = _record("EIMF-ComiRecSA", seed, ndcg, [ndcg])
        record.update(model_class="EIMF", backbone="ComiRecSA", train_sec_per_epoch=seconds, test_inference_sec=2.0)
        return record

    base = [_record("ComiRecSA", s, n, [n]) for s, n in ((1, 0.10), (2, 0.12))]
    for record in base:
        record.update(model_class="ComiRecSA", backbone=None, test_inference_sec=2.0)
    # Seed 3 has no backbone run: it must not enter the comparison.
    runs = base + [eimf(1, 0.11, 1.5), eimf(2, 0.15, 1.8), eimf(3, 0.50, 1.5)]
    models = ["ComiRecSA", "EIMF-ComiRecSA"]
    (entry,) = paired_comparisons(runs, models)
    assert entry["backbone"] == "ComiRecSA" and entry["seeds"] == [1, 2]
    assert entry["ndcg@20"]["relative"] == pytest.approx(0.13 / 0.11 - 1)
    assert entry["ndcg@20"]["range"] == pytest.approx((0.10, 0.25))
    assert entry["train_sec_per_epoch"] == pytest.approx(1.65 / 1.5)
    assert entry["test_inference_sec"] == pytest.approx(1.0)
    _, markdown = write_reports(runs, tmp_path, "toy", models)
    row = next(line for line in markdown.splitlines() if line.startswith("| EIMF-ComiRecSA | ComiRecSA |"))
    assert "+18.2% [+10.0%, +25.0%]" in row and "1.10x" in row and "| 2 |" in row
    # Without the backbone's own runs there is nothing to compare against: no second table.
    assert paired_comparisons(runs[2:], ["EIMF-ComiRecSA"]) == []
    assert "against its backbone" not in markdown_table(runs[2:], ["EIMF-ComiRecSA"], "toy")


def test_report_sets_every_model_against_a_reference(tmp_path):
    """Issue 5's targets are relative to SASRec: --reference adds that table, seed-paired."""
    def run(model, seed, ndcg, seconds, **extra):
        record = _record(model, seed, ndcg, [ndcg])
        record.update(train_sec_per_epoch=seconds, test_inference_sec=2.0, **extra)
        return record

    runs = [
        run("SASRec", 1, 0.10, 2.0), run("SASRec", 2, 0.12, 2.0),
        run("TransMI", 1, 0.11, 1.0), run("TransMI", 2, 0.13, 1.0), run("TransMI", 3, 0.90, 1.0),
        run("EIMF-TransMI", 2, 0.06, 3.0, model_class="EIMF", backbone="TransMI"),
        run("GRU4Rec", 3, 0.05, 1.0),  # no seed in common with SASRec: left out
    ]
    models = ["SASRec", "TransMI", "EIMF-TransMI", "GRU4Rec"]
    by_model = {e["model"]: e for e in reference_comparisons(runs, models, "SASRec")}
    assert sorted(by_model) == ["EIMF-TransMI", "TransMI"]
    assert by_model["TransMI"]["seeds"] == [1, 2] and by_model["TransMI"]["backbone"] == "SASRec"
    assert by_model["TransMI"]["ndcg@20"]["relative"] == pytest.approx(0.12 / 0.11 - 1)
    assert by_model["TransMI"]["train_sec_per_epoch"] == pytest.approx(0.5)
    assert by_model["EIMF-TransMI"]["ndcg@20"]["relative"] == pytest.approx(0.06 / 0.12 - 1)
    _, markdown = write_reports(runs, tmp_path, "toy", models, reference="SASRec")
    assert "## Against SASRec" in markdown and "## EIMF against its backbone" in markdown
    row = next(line for line in markdown.splitlines() if line.startswith("| TransMI | SASRec |"))
    assert "| 2 |" in row and "0.50x" in row
    assert "| EIMF-TransMI | SASRec | 1 | -50.0% |" in markdown
    assert "Against" not in write_reports(runs, tmp_path, "toy", models)[1]
    with pytest.raises(BenchmarkSetupError, match="reference 'SINE' is not among the models"):
        run_benchmark("ml-100k", ["SASRec"], seeds=[2020], output_dir=tmp_path / "out", reference="SINE")

def test_run_store_survives_a_truncated_line(tmp_path):
    store = RunStore(tmp_path / "runs.jsonl")
    store.append({"model": "A", "seed": 1, "x": 1})
    with open(store.path, "a") as f:
        f.write('{"model": "B", "se')  # a crash in the middle of a write
    store.append({"model": "C", "seed": 3})
    assert sorted(store.load()) == [("A", 1), ("C", 3)]


def test_instrumented_trainer_and_best_epoch():
    class FakeTrainer:
        def __init__(self, config, model):
            self.device = "cpu"

        def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
            return 1.0

        def _valid_epoch(self, valid_data, show_progress=False):
            return 0.5, {"ndcg@20": 0.5}

    cls = instrument_trainer(FakeTrainer)
    assert issubclass(cls, FakeTrainer) and instrument_trainer(FakeTrainer) is cls
    trainer = cls(None, None)
    assert trainer._train_epoch([None] * 4, 0) == 1.0  # RecBole's sum over 4 batches
    assert trainer._valid_epoch(None) == (0.5, {"ndcg@20": 0.5})
    assert len(trainer.train_seconds) == 1 and trainer.train_losses == [0.25]  # per batch
    assert trainer.valid_records[0]["epoch"] == 0 and trainer.valid_records[0]["result"] == {"ndcg@20": 0.5}
    curve = [{"epoch": e, "score": s} for e, s in enumerate([0.1, 0.3, 0.3, 0.2])]
    assert best_epoch(curve) == 2  # RecBole's early_stopping keeps the later of equal scores
    assert best_epoch(curve, bigger=False) == 0


def test_runs_record_their_defaults_and_changed_defaults_are_not_mixed_in(workdir, monkeypatch, caplog):
    import recbole_eimf.config as config_module

    tuned = workdir / "tuned"
    (tuned / "ml-100k").mkdir(parents=True)
    tuned_file = tuned / "ml-100k" / "ComiRecSA.yaml"
    tuned_file.write_text("n_interests: 2\n")
    monkeypatch.setattr(config_module, "tuned_dir", lambda: tuned)
    out = workdir / "bench"
    run_benchmark("ml-100k", ["ComiRecSA"], seeds=[2020], output_dir=out, overrides=SMALL)
    (record,) = [json.loads(line) for line in (out / "runs.jsonl").read_text().splitlines()]
    assert record["tuned_defaults_files"] == [str(tuned_file)]
    assert record["params"] > 0

    tuned_file.write_text("n_interests: 3\n")  # a new search replaced the defaults
    with pytest.raises(BenchmarkSetupError, match=r"n_interests: 2 -> 3"):
        run_benchmark("ml-100k", ["ComiRecSA"], seeds=[2020], output_dir=out, overrides=SMALL)
    tuned_file.write_text("n_interests: 2\n")

    # A changed default of the plugin's own model yaml makes the finished run stale too.
    import shutil

    from recbole_eimf.utils import model_properties_dir

    properties = workdir / "properties"
    shutil.copytree(model_properties_dir().parent, properties)
    monkeypatch.setattr(config_module, "model_properties_dir", lambda: properties / "model")
    monkeypatch.setattr(runner_module, "run_one", _no_training)
    run_benchmark("ml-100k", ["ComiRecSA"], seeds=[2020], output_dir=out, overrides=SMALL)  # same contents
    model_yaml = properties / "model" / "MultiInterestRecommender.yaml"  # what every backbone shares
    shipped = model_yaml.read_text()
    model_yaml.write_text(shipped.replace("train_readout: 'target'", "train_readout: 'max'"))
    with pytest.raises(BenchmarkSetupError, match=r"train_readout: target -> max"):
        run_benchmark("ml-100k", ["ComiRecSA"], seeds=[2020], output_dir=out, overrides=SMALL)
    model_yaml.write_text(shipped)
    # Runs an earlier harness recorded (settings kept by file digest) are named as stale...
    legacy = json.loads(json.dumps(record))
    legacy["settings"] = {"dataset": "ml-100k", "overrides": {}, "config_sha256": []}
    (out / "runs.jsonl").write_text(json.dumps(legacy) + "\n")
    with pytest.raises(BenchmarkSetupError, match=r"ComiRecSA seed 2020: recorded by an earlier harness"):
        run_benchmark("ml-100k", ["ComiRecSA"], seeds=[2020], output_dir=out, overrides=SMALL)
    # ... but a report over them is still written, with a warning that names them.
    with caplog.at_level(logging.WARNING):
        summary = run_benchmark("ml-100k", ["ComiRecSA"], seeds=[2020], output_dir=out, overrides=SMALL, report_only=True)
    assert [row["model"] for row in summary.rows] == ["ComiRecSA"]
    assert "made with other settings" in caplog.text and "ComiRecSA seed 2020" in caplog.text


def test_a_key_added_to_the_defaults_with_its_fallback_keeps_earlier_runs(workdir, monkeypatch):
    """A new config key whose default is what the code did before it existed (the model's
    CONFIG_FALLBACKS) is no reason to retrain; any other value of it is."""
    import shutil

    import recbole_eimf.config as config_module
    from recbole_eimf.utils import model_properties_dir

    properties = workdir / "properties"
    shutil.copytree(model_properties_dir().parent, properties)
    monkeypatch.setattr(config_module, "model_properties_dir", lambda: properties / "model")
    model_yaml = properties / "model" / "MultiInterestRecommender.yaml"  # what every backbone shares
    shipped = model_yaml.read_text()
    assert "train_readout: 'target'" in shipped
    # The yaml as it was before `train_readout` existed.
    model_yaml.write_text("".join(line for line in shipped.splitlines(True) if not line.startswith("train_readout")))
    out = workdir / "bench"
    run_benchmark("ml-100k", ["ComiRecSA"], seeds=[2020], output_dir=out, overrides=SMALL)
    (record,) = [json.loads(line) for line in (out / "runs.jsonl").read_text().splitlines()]
    assert "train_readout" not in record["settings"]
    assert record["settings"]["n_interests"] == 4 and "seed" not in record["settings"]

    model_yaml.write_text(shipped)  # the key arrives, with the behaviour from before
    monkeypatch.setattr(runner_module, "run_one", _no_training)
    summary = run_benchmark("ml-100k", ["ComiRecSA"], seeds=[2020], output_dir=out, overrides=SMALL)
    assert summary.skipped == [("ComiRecSA", 2020)] and not summary.trained
    model_yaml.write_text(shipped.replace("train_readout: 'target'", "train_readout: 'max'"))
    with pytest.raises(BenchmarkSetupError, match=r"train_readout: target -> max"):
        run_benchmark("ml-100k", ["ComiRecSA"], seeds=[2020], output_dir=out, overrides=SMALL)


def test_config_priority_shared_then_model_files_then_overrides(workdir):
    from recbole_eimf.benchmark.runner import build_config, model_config_files

    shared = workdir / "shared.yaml"
    shared.write_text("hidden_size: 8\ninner_size: 8\nn_layers: 1\n")
    model_dir = workdir / "per_model"
    (model_dir / "ml-100k").mkdir(parents=True)
    (model_dir / "SASRec.yaml").write_text("hidden_size: 24\nn_heads: 4\n")
    (model_dir / "ml-100k" / "SASRec.yaml").write_text("n_heads: 1\n")
    files = model_config_files("SASRec", "ml-100k", [shared], model_dir)
    assert files == [shared, model_dir / "SASRec.yaml", model_dir / "ml-100k" / "SASRec.yaml"]
    assert model_config_files("GRU4Rec", "ml-100k", [shared], model_dir) == [shared]

    config = build_config("SASRec", "ml-100k", 7, files, {"inner_size": "16"}, workdir / "ckpt")
    assert config["hidden_size"] == 24  # per-model file over the shared one
    assert config["n_heads"] == 1  # the dataset-specific file over the per-model one
    assert config["n_layers"] == 1  # shared file
    assert config["inner_size"] == 16  # overrides over every file, typed like RecBole's command line
    assert config["seed"] == 7 and config["checkpoint_dir"] == str(workdir / "ckpt")
    assert config["valid_metric"] == "NDCG@20"  # recbole_eimf/properties/overall.yaml applies to RecBole's models too

    with pytest.raises(BenchmarkSetupError, match="config file not found"):
        run_benchmark("ml-100k", ["SASRec"], seeds=[1], output_dir=workdir / "x", config_files=["missing.yaml"])


def test_shipped_feature_model_overrides_name_loaded_text_fields():
    """SASRecF and GRU4RecF get item fields that each dataset loads and that ESIM reads as text."""
    import yaml

    from recbole_eimf.utils import properties_dir, props_dir

    folder = props_dir() / "benchmark"
    for dataset in ("amazon-beauty", "amazon-books", "ml-100k"):
        props = yaml.safe_load((properties_dir() / "dataset" / f"{dataset}.yaml").read_text())
        for model in ("SASRecF", "GRU4RecF"):
            features = yaml.safe_load((folder / f"{model}.yaml").read_text())["selected_features"]
            specific = folder / dataset / f"{model}.yaml"
            if specific.exists():
                features = yaml.safe_load(specific.read_text())["selected_features"]
            assert features and set(features) <= set(props["load_col"]["item"]), (dataset, model)
            assert set(features) <= set(props["text_fields"]), (dataset, model)


def test_variants_label_two_configs_of_one_model_and_share_the_esim_cache(workdir, monkeypatch):
    """A yaml with a `model:` key is a variant: its label in the tables, its model and settings in
    the run. EIMF variants of one output folder build ESIM's targets once, under <output_dir>/esim."""
    model_dir = workdir / "per_model"
    model_dir.mkdir()
    (model_dir / "EIMF-DR.yaml").write_text("model: EIMF\nbackbone: ComiRecDR\nn_interests: 2\n")
    out = workdir / "bench"
    overrides = {**SMALL, "text_encoder": "tfidf", "tfidf_dim": 16, "n_clusters": 3, "users_per_cluster": 2, "n_concepts": 4}
    summary = run_benchmark(
        "ml-100k", ["ComiRecDR", "EIMF-DR"], seeds=[2020, 2021], output_dir=out, overrides=overrides,
        model_config_dir=model_dir,
    )
    assert not summary.failed, summary.failed
    runs = RunStore(out / "runs.jsonl").load()
    plain, variant = runs[("ComiRecDR", 2020)], runs[("EIMF-DR", 2020)]
    assert plain["model_class"] == "ComiRecDR" and variant["model_class"] == "EIMF"
    # The variant's own keys reached the model: K=2 routing maps instead of ComiRecDR's default 4.
    assert variant["params"] < plain["params"]
    assert variant["backbone"] == "ComiRecDR" and plain["backbone"] is None
    table = (out / "results.md").read_text()
    assert "EIMF-DR" in table and "ComiRecDR" in table
    # The variant wraps ComiRecDR, which ran beside it: results.md compares the two seed by seed.
    assert "| EIMF-DR | ComiRecDR | 2 |" in table
    targets = list((out / "esim").glob("ml-100k/targets/*/interests.md"))
    assert len(targets) == 1  # built by the first EIMF run, reused by the second seed
    # Each EIMF run records the targets it trained on (the cache key names the resolved encoder).
    for seed in (2020, 2021):
        provenance = runs[("EIMF-DR", seed)]["esim_targets"]
        assert provenance["key"] == targets[0].parent.name and provenance["encoder"].startswith("tfidf")
        assert provenance["llm"] == "extractive:extractive-v2" and provenance["users_with_target"] > 0
    assert runs[("ComiRecDR", 2020)]["esim_targets"] is None
    assert not list((out / "checkpoints").glob("**/esim")) if (out / "checkpoints").exists() else True

    # --jobs=2: both runs of seed 2020 at once, each in its own process, give the results the
    # sequential runs gave; ESIM is built once, before they start; each run logs to its own file.
    par = workdir / "bench_parallel"
    summary = run_benchmark(
        "ml-100k", ["ComiRecDR", "EIMF-DR"], seeds=[2020], output_dir=par, overrides=overrides,
        model_config_dir=model_dir, jobs=2,
    )
    assert not summary.failed, summary.failed
    parallel_runs = RunStore(par / "runs.jsonl").load()
    for key in [("ComiRecDR", 2020), ("EIMF-DR", 2020)]:
        assert parallel_runs[key]["concurrent_runs"] == 2 and runs[key]["concurrent_runs"] == 1
        # Each record names the threads its arithmetic ran on: the job's share, or this process's.
        assert parallel_runs[key]["environment"]["cpu_threads"] == cpu_threads_per_job(2)
        assert runs[key]["environment"]["cpu_threads"] == torch.get_num_threads()
        assert runs[key]["environment"]["torch"] == torch.__version__
        for metric, value in runs[key]["test"].items():
            # Same seed, same data: equal up to the float summation order of 1 vs 2 CPU threads.
            assert parallel_runs[key]["test"][metric] == pytest.approx(value, abs=1e-3), (key, metric)
        log_text = (par / "logs" / f"{key[0]}-seed2020.log").read_text()
        assert "test result" in log_text
    assert len(list((par / "esim").glob("ml-100k/targets/*/interests.md"))) == 1
    assert "| EIMF-DR | ComiRecDR | 1 |" in (par / "results.md").read_text()

    # The ESIM seed a run used is recorded for EIMF (the folder's first seed by default) and not
    # for a model without ESIM, so that seed 2021 added later with --esim_seed=2020 is the run
    # that seeds 2020,2021 make by default, and ComiRecDR's runs ignore the key.
    assert runs[("EIMF-DR", 2021)]["settings"]["esim_seed"] == 2020
    assert "esim_seed" not in runs[("ComiRecDR", 2021)]["settings"]
    monkeypatch.setattr(runner_module, "run_one", _no_training)
    for extra in ({"esim_seed": 2020}, {"esim_seed": "2020"}):
        summary = run_benchmark(
            "ml-100k", ["ComiRecDR", "EIMF-DR"], seeds=[2021], output_dir=out, overrides={**overrides, **extra},
            model_config_dir=model_dir,
        )
        assert summary.skipped == [("ComiRecDR", 2021), ("EIMF-DR", 2021)] and not summary.trained
    # Seeds 2021 alone default to ESIM seed 2021: other semantic targets, so EIMF-DR's run is
    # stale; ComiRecDR's is not.
    with pytest.raises(BenchmarkSetupError, match=r"EIMF-DR seed 2021: esim_seed: 2020 -> 2021") as err:
        run_benchmark(
            "ml-100k", ["ComiRecDR", "EIMF-DR"], seeds=[2021], output_dir=out, overrides=overrides,
            model_config_dir=model_dir,
        )
    assert "ComiRecDR seed" not in str(err.value)


def test_variant_naming_an_unknown_model_fails_before_training(workdir, monkeypatch):
    monkeypatch.setattr(runner_module, "run_one", _no_training)
    model_dir = workdir / "per_model"
    model_dir.mkdir()
    (model_dir / "Mine.yaml").write_text("model: NoSuchModel\n")
    with pytest.raises(BenchmarkSetupError, match=r"NoSuchModel.*Mine\.yaml"):
        run_benchmark("ml-100k", ["Mine"], seeds=[1], output_dir=workdir / "x", model_config_dir=model_dir)
    (model_dir / "Mine.yaml").write_text("- not\n- a mapping\n")
    with pytest.raises(BenchmarkSetupError, match=r"Mine\.yaml: expected config keys"):
        run_benchmark("ml-100k", ["Mine"], seeds=[1], output_dir=workdir / "x", model_config_dir=model_dir)


def test_shipped_eimf_variants_name_their_backbone():
    from recbole_eimf.benchmark.runner import model_class_name
    from recbole_eimf.utils import plugin_model_names, props_dir

    for backbone in [m for m in plugin_model_names() if m != "EIMF"]:
        path = props_dir() / "benchmark" / f"EIMF-{backbone}.yaml"
        assert model_class_name(path.stem, [path]) == "EIMF"
        assert yaml_load(path)["backbone"] == backbone


def yaml_load(path):
    import yaml

    return yaml.safe_load(path.read_text())


def _shipped_variants():
    from recbole_eimf.utils import props_dir

    return sorted(p for p in (props_dir() / "benchmark").glob("*.yaml") if "model" in yaml_load(p))


@pytest.mark.parametrize("path", _shipped_variants(), ids=lambda p: p.stem)
def test_every_shipped_variant_builds_its_model(path, ml100k):
    """A variant's keys must be valid together (e.g. `aux_interests: pooled` only with a backbone
    that has a passed-through interest): found here, not hours into a benchmark."""
    from conftest import SMALL as FIXTURE_SMALL  # the settings the ml100k fixture was built with

    from recbole_eimf.config import Config
    from recbole_eimf.utils import get_model

    keys = yaml_load(path)
    model = keys.pop("model")
    # semantic_dim given: EIMF builds its head without running ESIM.
    config = Config(model=model, dataset="ml-100k", config_dict={**FIXTURE_SMALL, **keys, "semantic_dim": 16})
    built = get_model(model)(config, ml100k[2]._dataset)
    backbone = getattr(built, "backbone", built)
    if "backbone" in keys:
        assert type(backbone).__name__ == keys["backbone"]
    for key, value in keys.items():
        assert config[key] == value, key


def test_the_gpu_scripts_default_models_resolve():
    """benchmarks/gpu/run_benchmark.sh runs only where a GPU is lent: check its model list here."""
    import re

    from recbole_eimf.benchmark.runner import check_inputs

    script = (Path(__file__).resolve().parents[1] / "benchmarks" / "gpu" / "run_benchmark.sh").read_text()
    models = re.search(r'^MODELS="\$\{MODELS:-([^}]+)\}"', script, re.M).group(1).split(",")
    assert "EIMF-TransMI-max-u2000" in models and "SASRec" in models
    check_inputs(models, [2020, 2021, 2022], (), {}, "amazon-beauty")


def _state(pid: int) -> str:
    """A process's state letter from /proc ("" once it is gone; "Z" for an unreaped zombie)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return ""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_worker_exits_soon_after_its_parent_is_killed(tmp_path):
    """`--jobs` workers must not train on, unseen, after the benchmark is killed (even SIGKILL)."""
    import signal
    import subprocess
    import time

    ready = tmp_path / "ready"
    worker = (
        "import pathlib, sys, time\n"
        "from recbole_eimf.process_pool import exit_with_parent\n"
        "exit_with_parent(int(sys.argv[1]), interval=0.1)\n"
        f"pathlib.Path({str(ready)!r}).touch()\n"
        "time.sleep(120)\n"
    )
    parent = (
        "import os, subprocess, sys, time\n"
        f"child = subprocess.Popen([sys.executable, '-c', {worker!r}, str(os.getpid())])\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(120)\n"
    )
    root = Path(__file__).resolve().parents[1]  # this checkout's package, not another installed one
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen([sys.executable, "-c", parent], stdout=subprocess.PIPE, text=True, env=env)
    child = int(proc.stdout.readline())
    deadline = time.monotonic() + 60
    while not ready.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    try:
        assert ready.exists() and _state(child) not in ("", "Z"), "the worker should be up while its parent lives"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        deadline = time.monotonic() + 10
        while _state(child) not in ("", "Z") and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _state(child) in ("", "Z"), "the orphaned worker is still running"
    finally:
        proc.kill()
        if _state(child) not in ("", "Z"):
            os.kill(child, signal.SIGKILL)


def test_a_killed_run_fails_alone_and_the_others_finish(tmp_path):
    """A `--jobs` run whose process dies (out-of-memory killer) is reported as failed; the runs
    beside and after it still finish and report (before, the dead process hung the benchmark)."""
    from parallel_targets import die_fail_or_answer

    from recbole_eimf.process_pool import Job, WorkerDied, run_parallel

    jobs = [
        Job(model="M", seed=seed, dataset="d", config_files=(), overrides=(), checkpoint_dir=tmp_path,
            defaults=(), log_file=tmp_path / f"M-seed{seed}.log", threads=1)
        for seed in (1, 2, 3, 4)
    ]
    done = {}
    run_parallel(jobs, 2, lambda job, record, error: done.setdefault(job.seed, (record, error)) is not None,
                 target=die_fail_or_answer)
    assert sorted(done) == [1, 2, 3, 4]
    record, error = done[1]
    assert record is None and isinstance(error, WorkerDied) and "SIGKILL" in str(error) and "M seed 1" in str(error)
    record, error = done[2]
    assert record is None and isinstance(error, ValueError) and "failed on purpose" in str(error)
    for seed in (3, 4):
        record, error = done[seed]
        assert error is None and record["seed"] == seed and record["pid"] != os.getpid()
    assert done[3][0]["pid"] != done[4][0]["pid"]  # a fresh process per run


def test_config_fallbacks_name_shipped_keys_and_merge_the_backbones():
    """Every fallback a model declares is a key of its shipped yaml (a typo would silently never
    apply), and a wrapper's fallbacks include its backbone's."""
    import yaml

    from recbole_eimf.config import Config
    from recbole_eimf.experiments import config_fallbacks
    from recbole_eimf.utils import model_properties_dir

    def fallbacks(model, **keys):
        return config_fallbacks(Config(model=model, dataset="ml-100k", config_dict=keys))

    shared = yaml.safe_load((model_properties_dir() / "MultiInterestRecommender.yaml").read_text())
    for model in ("ComiRecSA", "ComiRecDR", "MIND", "TransMI"):
        shipped = {**shared, **yaml.safe_load((model_properties_dir() / f"{model}.yaml").read_text())}
        own = fallbacks(model)
        assert own, model
        ignored = {"embedding_dropout"} if model == "TransMI" else set()  # it warns and uses hidden_dropout_prob
        assert set(own) - ignored <= set(shipped), (model, set(own) - set(shipped))
    eimf = fallbacks("EIMF", backbone="MIND")
    assert eimf["ma_contrast"] is True and eimf["train_readout"] == "target"
    eimf_keys = set(yaml.safe_load((model_properties_dir() / "EIMF.yaml").read_text()))
    assert {"ma_contrast", "aux_decay_epochs", "aux_interests"} <= eimf_keys
    assert fallbacks("SASRec") == {}


def test_esim_only_builds_the_targets_that_runs_then_read_without_their_text_encoder(workdir, monkeypatch, capsys):
    """--esim_only=True builds ESIM's targets for the EIMF models among --models and trains
    nothing; a benchmark given that cache reads them and never loads the text encoder: how a CUDA
    machine without sentence-transformers trains on the all-MiniLM targets prepared here
    (benchmarks/gpu/run_benchmark.sh --prepare)."""
    real_run_one = runner_module.run_one
    monkeypatch.setattr(runner_module, "run_one", _no_training)
    cache = workdir / "carried"
    small = [f"--{key}={value}" for key, value in SMALL.items() if key != "epochs"]
    common = ["--dataset=ml-100k", "--seeds=2020", f"--esim_cache_dir={cache}", "--text_encoder=sentence-transformers",
              *small]
    assert main(["--models=SASRec,EIMF-ComiRecSA", "--esim_only=True", f"--output_dir={workdir / 'here'}", *common]) == 0
    (folder,) = (cache / "ml-100k" / "targets").iterdir()
    assert str(cache / "ml-100k" / "targets") in capsys.readouterr().out
    assert not (workdir / "here" / "runs.jsonl").exists()

    # There: no sentence-transformers to import; the run finds its targets in the carried cache.
    monkeypatch.setattr(runner_module, "run_one", real_run_one)
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)
    assert main(["--models=EIMF-ComiRecSA", "--epochs=1", f"--output_dir={workdir / 'there'}", *common]) == 0
    (record,) = RunStore(workdir / "there" / "runs.jsonl").load().values()
    assert record["esim_targets"]["key"] == folder.name
    assert record["esim_targets"]["encoder"] == "sentence-transformers:all-MiniLM-L6-v2"
    assert not (workdir / "there" / "esim").exists()
    # Targets it lacks (other settings): the encoder is needed, and the error names it before any training.
    assert main(["--models=EIMF-ComiRecSA", "--epochs=1", "--n_concepts=7", "--jobs=2",
                 f"--output_dir={workdir / 'other'}", *common, "--seeds=2020,2021"]) == 2
    err = capsys.readouterr().err
    assert "sentence-transformers is not installed, and ESIM's cache holds no targets" in err
    assert str(cache / "ml-100k" / "targets") in err

    assert main(["--models=SASRec", "--esim_only=True", "--dataset=ml-100k"]) == 2
    assert "none of SASRec runs ESIM" in capsys.readouterr().err



def test_a_run_cut_short_resumes_from_its_checkpoint_with_its_history(workdir, monkeypatch, caplog):
    """A harness run killed mid-training (the end of a session) continues from its last
    checkpoint on the next call, keeping the records of the epochs already trained."""
    from recbole.trainer import Trainer

    from recbole_eimf.benchmark.instrument import history_file

    stock_epoch = Trainer._train_epoch

    def killed_at_epoch_3(self, train_data, epoch_idx, *args, **kwargs):
        if epoch_idx == 3:
            raise KeyboardInterrupt
        return stock_epoch(self, train_data, epoch_idx, *args, **kwargs)

    settings = {**SMALL, "epochs": 5, "learning_rate": 0.01}
    folder = workdir / "checkpoints" / "GRU4Rec-seed1"
    monkeypatch.setattr(Trainer, "_train_epoch", killed_at_epoch_3)
    with pytest.raises(KeyboardInterrupt):
        runner_module.run_one("GRU4Rec", "ml-100k", 1, [], settings, folder)
    (checkpoint,) = folder.glob("*.pth")
    before = json.loads(history_file(str(checkpoint)).read_text())
    assert before["epoch"] >= 1 and len(before["train_losses"]) == before["epoch"] + 1

    monkeypatch.setattr(Trainer, "_train_epoch", stock_epoch)
    with caplog.at_level(logging.INFO):
        record = runner_module.run_one("GRU4Rec", "ml-100k", 1, [], settings, folder)
    assert f"resuming from {checkpoint}" in caplog.text
    assert record["resumed_at_epoch"] == before["epoch"] + 1
    assert record["epochs_run"] == 5 and len(record["valid_curve"]) == 5
    assert record["train_losses"][: before["epoch"] + 1] == before["train_losses"]  # the history is kept
    assert record["train_losses"][-1] < record["train_losses"][0] and record["valid"]

    # A checkpoint of other settings is not resumed: it is deleted, and the run starts over.
    caplog.clear()
    with caplog.at_level(logging.INFO):
        other = runner_module.run_one("GRU4Rec", "ml-100k", 1, [], {**settings, "epochs": 2}, folder)
    assert "not resumed, deleted: other settings (epochs: 5 -> 2)" in caplog.text
    assert other["resumed_at_epoch"] is None and other["epochs_run"] == 2
