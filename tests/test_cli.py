"""run_recbole_eimf.py end to end, and reloading the checkpoint it writes."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from recbole_eimf.quick_start import load_data_and_model
from recbole_eimf.utils import get_trainer

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args, cwd):
    return subprocess.run(
        [sys.executable, str(ROOT / "run_recbole_eimf.py"), *args],
        capture_output=True, text=True, cwd=cwd, timeout=600,
    )


def parse_table(stdout: str) -> dict:
    """metric -> (valid, test) from the table the CLI prints."""
    rows = re.findall(r"^(\w+@\d+)\s+([\d.]+)\s+([\d.]+)$", stdout, flags=re.M)
    return {name: (float(v), float(t)) for name, v, t in rows}


def test_help_shows_defaults_examples_and_the_override_rule(tmp_path):
    proc = run_cli("--help", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "(default: EIMF)" in proc.stdout and "(default: ml-100k)" in proc.stdout
    assert "examples:" in proc.stdout and "--stage=esim" in proc.stdout
    assert "Any other --key=value is a config override" in proc.stdout


def test_cli_trains_tests_and_prints_a_table_then_the_checkpoint_reloads(tmp_path):
    proc = run_cli(
        "--model=ComiRecDR", "--dataset=ml-100k", "--epochs=1",
        "--MAX_ITEM_LIST_LENGTH=10", "--embedding_size=16", cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = parse_table(proc.stdout)
    assert set(table) == {f"{m}@{k}" for m in ("recall", "ndcg", "mrr") for k in (10, 20, 50)}
    assert all(0.0 <= t <= 1.0 for _, t in table.values())
    assert "ComiRecDR on ml-100k" in proc.stdout

    # RecBole's log and checkpoint land where RecBole puts them (relative to the working folder).
    logs = list((tmp_path / "log" / "ComiRecDR").glob("ComiRecDR-ml-100k-*.log"))
    assert len(logs) == 1 and "n_interests = 4" in logs[0].read_text()
    checkpoint = re.search(r"^checkpoint: (.+\.pth)$", proc.stdout, flags=re.M).group(1)
    assert (tmp_path / checkpoint).is_file()

    # The checkpoint pickles RecBole's Config: torch >= 2.6 would refuse it without the compat shim.
    config, model, _, _, _, test_data = load_data_and_model(str(tmp_path / checkpoint))
    assert config["embedding_size"] == 16
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    result = trainer.evaluate(test_data, load_best_model=False)
    assert result["recall@20"] == pytest.approx(table["recall@20"][1], abs=1e-4)
    assert result["ndcg@20"] == pytest.approx(table["ndcg@20"][1], abs=1e-4)


def test_cli_rejects_an_unknown_model_before_training(tmp_path):
    proc = run_cli("--model=SASRecc", "--dataset=ml-100k", cwd=tmp_path)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert "SASRecc" in proc.stderr and "ComiRecSA" in proc.stderr


def test_cli_tunes_from_a_params_file(tmp_path):
    (tmp_path / "space.hyper").write_text("learning_rate choice [0.001,0.01]\n")
    proc = run_cli(
        "--model=ComiRecSA", "--dataset=ml-100k", "--params_file=space.hyper", "--epochs=1",
        "--MAX_ITEM_LIST_LENGTH=10", "--embedding_size=16", "--state=WARNING", "--user_inter_num_interval=[5,41)",
        "--tuned_dir=tuned", cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "best of 2 trials" in proc.stdout
    best = tmp_path / "hyper" / "ComiRecSA-ml-100k" / "best.yaml"
    tuned = tmp_path / "tuned" / "ml-100k" / "ComiRecSA.yaml"
    assert f"tuned defaults: {Path('tuned') / 'ml-100k' / 'ComiRecSA.yaml'}" in proc.stdout
    assert yaml.safe_load(tuned.read_text()) == yaml.safe_load(best.read_text())
    assert (tmp_path / "tuned" / "ml-100k" / "ComiRecSA.hyper").read_text() == (tmp_path / "space.hyper").read_text()
    assert len(parse_table(proc.stdout)) == 9

    # The same search again, now two at a time: both trials come from trials.jsonl, none trains.
    trials = tmp_path / "hyper" / "ComiRecSA-ml-100k" / "trials.jsonl"
    recorded = trials.read_text()
    again = run_cli(
        "--model=ComiRecSA", "--dataset=ml-100k", "--params_file=space.hyper", "--epochs=1", "--jobs=2",
        "--MAX_ITEM_LIST_LENGTH=10", "--embedding_size=16", "--state=WARNING", "--user_inter_num_interval=[5,41)",
        "--tuned_dir=tuned", cwd=tmp_path,
    )
    assert again.returncode == 0, again.stderr[-3000:]
    assert trials.read_text() == recorded and not (trials.parent / "logs").exists()
    # No run starts, yet the search says what it did (its lines do not wait for RecBole's logging).
    assert "2 finished trial(s) of this search" in again.stderr and "best parameters" in again.stderr
    assert parse_table(again.stdout) == parse_table(proc.stdout)
    # Another budget is another search: refused in that folder, with what differs.
    other = run_cli(
        "--model=ComiRecSA", "--dataset=ml-100k", "--params_file=space.hyper", "--epochs=2",
        "--MAX_ITEM_LIST_LENGTH=10", "--embedding_size=16", "--state=WARNING", "--user_inter_num_interval=[5,41)",
        cwd=tmp_path,
    )
    assert other.returncode != 0 and "Traceback" not in other.stderr
    assert "trials.jsonl holds the runs of another experiment (epochs: 1 -> 2)" in other.stderr
    assert "--output_dir" in other.stderr


def test_default_run_is_eimf_with_esim_first(tmp_path):
    proc = run_cli(
        "--dataset=ml-100k", "--epochs=1", "--MAX_ITEM_LIST_LENGTH=10", "--embedding_size=16",
        "--text_encoder=tfidf", "--n_clusters=4", "--users_per_cluster=5", "--n_concepts=8", cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "EIMF on ml-100k" in proc.stdout and len(parse_table(proc.stdout)) == 9
    # ESIM ran before training and left its cache and the readable interests file.
    cache = tmp_path / "saved" / "esim"
    assert list(cache.rglob("interests.md")), sorted(p.name for p in cache.rglob("*"))
    log = next((tmp_path / "log" / "EIMF").glob("*.log")).read_text()
    assert "no LLM" in log or "extractive" in log
