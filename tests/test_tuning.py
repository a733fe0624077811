"""Config-only hyper-parameter search with RecBole's HyperTuning."""

import csv

import pytest
import yaml

from recbole_eimf.quick_start.tuning import run_hyper

from conftest import SMALL


def test_grid_search_writes_trials_and_the_best_config(tmp_path):
    params = tmp_path / "space.hyper"
    params.write_text("n_interests choice [1,3]\n")
    out = tmp_path / "tuned"
    tuned = run_hyper(
        "ComiRecSA", "ml-100k", str(params), config_dict={**SMALL, "epochs": 1}, output_dir=str(out)
    )

    with open(out / "trials.csv") as f:
        rows = list(csv.DictReader(f))
    assert sorted(int(r["n_interests"]) for r in rows) == [1, 3]
    best_row = max(rows, key=lambda r: float(r["best_valid_score"]))
    best = yaml.safe_load((out / "best.yaml").read_text())
    assert best == {"n_interests": int(best_row["n_interests"])} == tuned["best"]["params"]
    assert float(best_row["test_ndcg@20"]) == pytest.approx(tuned["best"]["test_result"]["ndcg@20"], abs=1e-6)
    assert "| n_interests |" in (out / "trials.md").read_text()


def test_tuned_dir_writes_defaults_that_later_runs_load(tmp_path, monkeypatch):
    import recbole_eimf.config as config_module
    from recbole_eimf.config import Config

    params = tmp_path / "space.hyper"
    params.write_text("n_interests choice [1,3]\n")
    tuned_dir = tmp_path / "tuned"
    tuned = run_hyper(
        "EIMF", "ml-100k", str(params), config_dict={**SMALL, "epochs": 1, "text_encoder": "tfidf"},
        output_dir=str(tmp_path / "out"), tuned_dir=str(tuned_dir),
    )
    folder = tuned_dir / "ml-100k"
    assert tuned["tuned_file"] == str(folder / "EIMF-ComiRecSA.yaml")  # EIMF's file names its backbone
    assert yaml.safe_load((folder / "EIMF-ComiRecSA.yaml").read_text()) == tuned["best"]["params"]
    assert (folder / "EIMF-ComiRecSA.hyper").read_text() == params.read_text()
    assert "| n_interests |" in (folder / "EIMF-ComiRecSA-trials.md").read_text()

    monkeypatch.setattr(config_module, "tuned_dir", lambda: tuned_dir)
    assert Config(model="EIMF", dataset="ml-100k")["n_interests"] == tuned["best"]["params"]["n_interests"]


def test_missing_params_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.hyper"):
        run_hyper("ComiRecSA", "ml-100k", str(tmp_path / "nope.hyper"))
