"""Config-only hyper-parameter search with RecBole's HyperTuning."""

import csv
import json
import sys

import pytest
import yaml

from recbole_eimf.quick_start.tuning import run_hyper

from conftest import SMALL as _SMALL

# The 306 ml-100k users with at most 40 ratings: every trial of these searches trains in seconds.
SMALL = {**_SMALL, "user_inter_num_interval": "[5,40]"}


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
    assert tuned["tuned_file"] == str(folder / "EIMF-TransMI.yaml")  # EIMF's file names its backbone
    assert yaml.safe_load((folder / "EIMF-TransMI.yaml").read_text()) == tuned["best"]["params"]
    assert (folder / "EIMF-TransMI.hyper").read_text() == params.read_text()
    # What every trial ran with but the file does not set, for whoever reads the tuned defaults.
    header = [line for line in (folder / "EIMF-TransMI.yaml").read_text().splitlines() if line.startswith("#")]
    assert any("epochs=1" in line and "text_encoder=tfidf" in line and "n_interests" not in line for line in header)
    assert "| n_interests |" in (folder / "EIMF-TransMI-trials.md").read_text()

    monkeypatch.setattr(config_module, "tuned_dir", lambda: tuned_dir)
    assert Config(model="EIMF", dataset="ml-100k")["n_interests"] == tuned["best"]["params"]["n_interests"]


def test_a_search_that_wrote_tuned_defaults_starts_again_from_the_model_defaults(tmp_path, monkeypatch):
    """Its own tuned file would change every trial's config: the same command again must reuse the
    trials, not refuse them as another search's; nor may an earlier winner leak into the trials."""
    import recbole_eimf.config as config_module

    tuned_dir = tmp_path / "tuned"
    monkeypatch.setattr(config_module, "tuned_dir", lambda: tuned_dir)  # what Config loads
    (tuned_dir / "ml-100k").mkdir(parents=True)
    (tuned_dir / "ml-100k" / "ComiRecSA.yaml").write_text("learning_rate: 0.05\nn_interests: 1\n")  # an earlier search's
    params = tmp_path / "space.hyper"
    params.write_text("n_interests choice [1,3]\n")
    out = tmp_path / "out"
    settings = {**SMALL, "epochs": 1}
    first = run_hyper("ComiRecSA", "ml-100k", str(params), config_dict=settings, output_dir=str(out),
                      tuned_dir=str(tuned_dir))
    header = json.loads((out / "trials.jsonl").read_text().splitlines()[0])
    assert header["header"]["settings"]["learning_rate"] == 0.001  # the model's own, not the old winner's
    assert "learning_rate" not in yaml.safe_load((tuned_dir / "ml-100k" / "ComiRecSA.yaml").read_text())

    again = run_hyper("ComiRecSA", "ml-100k", str(params), config_dict=settings, output_dir=str(out),
                      tuned_dir=str(tuned_dir))
    scores = lambda result: sorted((t["params"]["n_interests"], t["best_valid_score"]) for t in result["trials"])  # noqa: E731
    assert scores(again) == scores(first)
    assert sum('"params"' in line for line in (out / "trials.jsonl").read_text().splitlines()) == 2  # none retrained


def test_parallel_trials_run_the_planned_search_and_agree_with_one_by_one(tmp_path):
    """--jobs=2: every grid point once, each in its own process, the same scores as in-process;
    EIMF's ESIM cache is built once, before the trials, where every trial finds it."""
    params = tmp_path / "space.hyper"
    params.write_text("n_interests choice [1,3]\n")
    settings = {**SMALL, "epochs": 1, "learning_rate": 0.01, "text_encoder": "tfidf"}
    parallel = run_hyper("EIMF", "ml-100k", str(params), config_dict=settings,
                         output_dir=str(tmp_path / "parallel"), jobs=2)
    assert sorted(t["params"]["n_interests"] for t in parallel["trials"]) == [1, 3]
    assert sorted(p.name for p in (tmp_path / "parallel" / "logs").iterdir()) == ["trial1.log", "trial2.log"]
    # One grid point in this process: the same validation score as its parallel trial (runs seed themselves).
    one = tmp_path / "one.hyper"
    one.write_text("n_interests choice [3]\n")
    targets = tmp_path / "saved" / "esim" / "ml-100k" / "targets"
    built = sorted(json.loads((d / "manifest.json").read_text())["config"]["max_interests"] for d in targets.iterdir())
    assert built == [1, 3], "one ESIM per setting the trials use (n_interests sets max_interests)"
    alone = run_hyper("EIMF", "ml-100k", str(one), config_dict=settings, output_dir=str(tmp_path / "alone"))
    twin = next(t for t in parallel["trials"] if t["params"] == {"n_interests": 3})
    assert twin["best_valid_score"] == pytest.approx(alone["best"]["best_valid_score"], abs=1e-6)
    # Each trial records the threads it ran on (one each here: 2 trials share the CPUs).
    from recbole_eimf.process_pool import cpu_threads_per_job

    logged = [json.loads(line) for line in (tmp_path / "parallel" / "trials.jsonl").read_text().splitlines()]
    assert [t["environment"]["cpu_threads"] for t in logged if "params" in t] == [cpu_threads_per_job(2)] * 2
    best = max(parallel["trials"], key=lambda t: t["best_valid_score"])
    assert yaml.safe_load((tmp_path / "parallel" / "best.yaml").read_text()) == best["params"]


def test_random_search_plans_distinct_seeded_trials_and_refuses_parallel_bayes(tmp_path, monkeypatch):
    from recbole.trainer.hyper_tuning import HyperTuning

    from recbole_eimf.errors import ConfigError
    from recbole_eimf.quick_start.tuning import planned_trials, space_size

    params = tmp_path / "space.hyper"
    params.write_text("n_interests choice [1,2,3,4]\ndropout_prob choice [0.1,0.2,0.3]\n")
    tuner = HyperTuning(lambda *a: None, params_file=str(params), algo="random", max_evals=6)
    plan = planned_trials(tuner, seed=2020, space_size=space_size(str(params)))
    # max_evals distinct trials, although 6 random draws from 12 points repeat some
    assert len(plan) == 6 and all(plan.count(p) == 1 for p in plan)
    assert all(p["n_interests"] in (1, 2, 3, 4) and p["dropout_prob"] in (0.1, 0.2, 0.3) for p in plan)
    assert planned_trials(tuner, seed=2020, space_size=12) == plan  # seeded: the same trials on every machine
    longer = HyperTuning(lambda *a: None, params_file=str(params), algo="random", max_evals=9)
    assert planned_trials(longer, seed=2020, space_size=12)[:6] == plan  # more trials keep the first ones
    everything = HyperTuning(lambda *a: None, params_file=str(params), algo="random", max_evals=30)
    assert len(planned_trials(everything, seed=2020, space_size=12)) == 12  # a smaller space: all of it
    grid = HyperTuning(lambda *a: None, params_file=str(params), algo="exhaustive")
    assert len(planned_trials(grid, seed=2020, space_size=12)) == 12
    assert space_size(str(params)) == 12
    params.write_text("n_interests choice [1,2]\nlearning_rate uniform 0.001,0.01\n")
    assert space_size(str(params)) is None
    with pytest.raises(ConfigError, match="algo exhaustive or random only"):
        run_hyper("ComiRecSA", "ml-100k", str(params), algo="bayes", jobs=2)
    # A searched key fixed on the command line would win over every trial (RecBole's priority).
    monkeypatch.setattr(sys, "argv", ["run_recbole_eimf.py", "--model=ComiRecSA", "--n_interests=2", "--epochs=1"])
    with pytest.raises(ConfigError, match=r"--n_interests on the command line would override .*space.hyper"):
        run_hyper("ComiRecSA", "ml-100k", str(params), algo="random")

def test_random_search_trains_a_point_drawn_again_once(tmp_path):
    """In this process, random search answers a repeated draw from the trial it already ran; its
    draws are seeded by the config's seed, the same trials in the same order as --jobs plans."""
    from recbole.trainer.hyper_tuning import HyperTuning

    from recbole_eimf.quick_start.tuning import planned_trials

    params = tmp_path / "space.hyper"
    params.write_text("n_interests choice [1,3]\n")
    out = tmp_path / "out"
    tuned = run_hyper("ComiRecSA", "ml-100k", str(params), config_dict={**SMALL, "epochs": 1},
                      algo="random", max_evals=5, output_dir=str(out))
    assert sorted(t["params"]["n_interests"] for t in tuned["trials"]) == [1, 3]
    planner = HyperTuning(lambda *a: None, params_file=str(params), algo="random", max_evals=5)
    assert [t["params"] for t in tuned["trials"]] == planned_trials(planner, seed=2020, space_size=2)
    trained = [line for line in (out / "trials.jsonl").read_text().splitlines() if '"params"' in line]
    assert len(trained) == 2
    with open(out / "trials.csv") as f:
        assert len(list(csv.DictReader(f))) == 2


def test_missing_params_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.hyper"):
        run_hyper("ComiRecSA", "ml-100k", str(tmp_path / "nope.hyper"))


def test_a_search_started_again_reuses_its_finished_trials_and_refuses_another_search(tmp_path, monkeypatch):
    """trials.jsonl keeps every finished trial as it ends; the same search in the same folder trains
    only what is missing (here: a trial lost to a kill), another search there is refused."""
    import recbole_eimf.quick_start.tuning as tuning
    from recbole_eimf.errors import ConfigError

    params = tmp_path / "space.hyper"
    params.write_text("n_interests choice [1,3]\n")
    out = tmp_path / "out"
    first = run_hyper("ComiRecSA", "ml-100k", str(params), config_dict={**SMALL, "epochs": 1}, output_dir=str(out))
    lines = (out / "trials.jsonl").read_text().splitlines()
    assert len(lines) == 3 and "header" in json.loads(lines[0])
    assert [json.loads(line)["params"] for line in lines[1:]] == [t["params"] for t in first["trials"]]

    # Killed after its first trial: the second's record never written, the first's whole.
    (out / "trials.jsonl").write_text("\n".join(lines[:2]) + "\n")
    trained = []
    real = tuning.run_recbole_eimf

    def counting(**kwargs):
        trained.append(kwargs["config_dict"]["n_interests"])
        return real(**kwargs)

    monkeypatch.setattr(tuning, "run_recbole_eimf", counting)
    again = run_hyper("ComiRecSA", "ml-100k", str(params), config_dict={**SMALL, "epochs": 1}, output_dir=str(out))
    assert trained == [first["trials"][1]["params"]["n_interests"]]  # only the lost trial
    # RecBole's sequential search may visit the grid in another order: compare trial by trial.
    score = lambda result: {t["params"]["n_interests"]: t["best_valid_score"] for t in result["trials"]}  # noqa: E731
    assert score(again) == pytest.approx(score(first)) and len(again["trials"]) == 2
    assert again["best"]["params"] == first["best"]["params"]
    with open(out / "trials.csv") as f:
        assert len(list(csv.DictReader(f))) == 2

    # More epochs is another search: its trials would not be comparable with these.
    with pytest.raises(ConfigError, match=r"trials.jsonl holds the runs of another experiment \(epochs: 1 -> 2\)"):
        run_hyper("ComiRecSA", "ml-100k", str(params), config_dict={**SMALL, "epochs": 2}, output_dir=str(out))
    assert trained == [first["trials"][1]["params"]["n_interests"]]


def test_parallel_search_resumes_only_the_trials_it_lacks(tmp_path):
    params = tmp_path / "space.hyper"
    params.write_text("n_interests choice [1,2,3]\n")
    out = tmp_path / "out"
    settings = {**SMALL, "epochs": 1}
    full = run_hyper("ComiRecSA", "ml-100k", str(params), config_dict=settings, output_dir=str(out), jobs=3)
    lines = (out / "trials.jsonl").read_text().splitlines()
    kept = [line for line in lines if json.loads(line).get("params", {}).get("n_interests") != 2]
    (out / "trials.jsonl").write_text("\n".join(kept) + "\n" + lines[-1][:20])  # and a torn last line
    for log in (out / "logs").iterdir():
        log.unlink()
    again = run_hyper("ComiRecSA", "ml-100k", str(params), config_dict=settings, output_dir=str(out), jobs=2)
    order = [t["params"]["n_interests"] for t in full["trials"]]  # the planned order
    assert sorted(order) == [1, 2, 3]
    # Only the lost trial trained, numbered as in the planned search.
    assert [p.name for p in (out / "logs").iterdir()] == [f"trial{order.index(2) + 1}.log"]
    assert [t["params"]["n_interests"] for t in again["trials"]] == order
    assert [t["best_valid_score"] for t in again["trials"]] == pytest.approx([t["best_valid_score"] for t in full["trials"]])


def test_every_search_space_the_docs_name_is_in_the_repository():
    """A clean clone holds every ``props/hyper/*.hyper`` that a command in the docs, the GPU
    script or the CLI names (one was once left out by a .gitignore rule), and each is a finite
    space of keys the model configs know."""
    import re
    from pathlib import Path

    from recbole_eimf.quick_start.tuning import space_size

    root = Path(__file__).resolve().parents[1]
    sources = [root / "README.md", root / "run_recbole_eimf.py", root / "recbole_eimf/quick_start/cli.py", *root.glob("docs/*.md"),
               *root.glob("benchmarks/**/*.md"), *root.glob("benchmarks/**/*.sh"), *root.glob("props/**/*.md")]
    named = {m for f in sources for m in re.findall(r"props/hyper/[\w.-]+\.hyper", f.read_text(encoding="utf-8"))}
    assert "props/hyper/eimf-transmi.hyper" in named
    missing = sorted(p for p in named if not (root / p).is_file())
    assert not missing, f"named in the docs but not in the repository: {missing}"
    model_keys = set()
    for yaml_file in (root / "recbole_eimf" / "properties").rglob("*.yaml"):
        model_keys |= set(yaml.safe_load(yaml_file.read_text(encoding="utf-8")) or {})
    for space in sorted((root / "props" / "hyper").glob("*.hyper")):
        assert space_size(str(space)), space
        keys = {line.split()[0] for line in space.read_text(encoding="utf-8").splitlines() if line.strip()}
        assert keys <= model_keys | {"learning_rate", "weight_decay"}, (space, keys - model_keys)


def test_trials_on_several_seeds_are_scored_by_their_mean_and_resume_by_seed_list(tmp_path):
    """--seeds: every trial trains once per seed (a run each, all four at once here) and is scored
    by the mean; in this process or in parallel, each seed's run is the same. EIMF's seeds all
    train on one ESIM, the first seed's (built before the runs start), as in the benchmark harness."""
    from recbole_eimf.errors import ConfigError

    params = tmp_path / "space.hyper"
    params.write_text("n_interests choice [1,3]\n")
    settings = {**SMALL, "epochs": 1, "learning_rate": 0.01, "text_encoder": "tfidf"}
    out = tmp_path / "seeds"
    tuned = run_hyper("EIMF", "ml-100k", str(params), config_dict=settings, output_dir=str(out),
                      jobs=4, seeds=[2021, 2022])
    targets = tmp_path / "saved" / "esim" / "ml-100k" / "targets"
    built = sorted((m["config"]["max_interests"], m["config"]["seed"]) for m in (
        json.loads((d / "manifest.json").read_text()) for d in targets.iterdir()))
    assert built == [(1, 2021), (3, 2021)], "one ESIM per trial setting, on the first seed, for every seed"
    assert sorted(p.name for p in (out / "logs").iterdir()) == [
        "trial1-seed2021.log", "trial1-seed2022.log", "trial2-seed2021.log", "trial2-seed2022.log"]
    for trial in tuned["trials"]:
        per_seed = trial["seeds"]
        assert sorted(per_seed) == ["2021", "2022"]
        scores = [per_seed[s]["best_valid_score"] for s in ("2021", "2022")]
        assert trial["best_valid_score"] == pytest.approx(sum(scores) / 2, abs=1e-6)
        assert scores[0] != scores[1], "each run trains on its own seed"
        recall = [per_seed[s]["test_result"]["recall@20"] for s in ("2021", "2022")]
        assert trial["test_result"]["recall@20"] == pytest.approx(sum(recall) / 2, abs=1e-6)
    # In this process too (jobs=1): the same runs, seed by seed, for the same trial.
    point = tmp_path / "point.hyper"
    point.write_text("n_interests choice [3]\n")
    alone = run_hyper("EIMF", "ml-100k", str(point), config_dict=settings, output_dir=str(tmp_path / "alone"),
                      seeds=[2021, 2022])
    twin = next(t for t in tuned["trials"] if t["params"] == {"n_interests": 3})
    for seed in ("2021", "2022"):
        assert alone["best"]["seeds"][seed]["best_valid_score"] == pytest.approx(
            twin["seeds"][seed]["best_valid_score"], abs=1e-6)
    assert "# Each trial's score: the mean over seeds 2021, 2022." in (tmp_path / "alone" / "best.yaml").read_text()

    # Started again with the same seeds: nothing trains. Other seeds: another search, refused.
    recorded = (out / "trials.jsonl").read_text()
    again = run_hyper("EIMF", "ml-100k", str(params), config_dict=settings, output_dir=str(out),
                      jobs=4, seeds=[2021, 2022])
    assert (out / "trials.jsonl").read_text() == recorded
    assert [t["best_valid_score"] for t in again["trials"]] == [t["best_valid_score"] for t in tuned["trials"]]
    with pytest.raises(ConfigError, match=r"another experiment \(seeds: \[2021, 2022\] -> \[2021, 2020\]"):
        run_hyper("EIMF", "ml-100k", str(params), config_dict=settings, output_dir=str(out), seeds=[2021, 2020])
    with pytest.raises(ConfigError, match="seed is set beside seeds"):
        run_hyper("EIMF", "ml-100k", str(params), config_dict={**settings, "seed": 7}, seeds=[2021, 2022])
