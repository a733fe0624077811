"""--stage=explain: a checkpoint's interests named and its recommendations traced to them."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from recbole_eimf.compat import trusted_load
from recbole_eimf.errors import ConfigError
from recbole_eimf.esim.backends.extractive import GroupNamer
from recbole_eimf.esim.concepts import distinct_assignment
from recbole_eimf.esim.item_text import ItemCatalog
from recbole_eimf.quick_start.explain import Explainer, explain_users
from recbole_eimf.quick_start.explain_report import history_line

from conftest import SMALL

ROOT = Path(__file__).resolve().parents[1]
ESIM = {"llm_backend": "extractive", "text_encoder": "tfidf", "n_clusters": 4, "users_per_cluster": 5, "n_concepts": 8}
ML100K_GENRES = {"action", "adventure", "animation", "children's", "comedy", "crime", "documentary", "drama",
                 "fantasy", "film-noir", "horror", "musical", "mystery", "romance", "sci-fi", "thriller", "war",
                 "western", "unknown"}


def train_checkpoint(model, folder):
    """One epoch on ml-100k, saved without validation or test (eval_step 0: explain needs neither)."""
    from recbole.utils import init_seed

    from recbole_eimf.config import Config
    from recbole_eimf.quick_start.quick_start import prepare_run
    from recbole_eimf.utils import get_trainer

    config = Config(model=model, dataset="ml-100k", config_dict={
        **SMALL, **ESIM, "epochs": 1, "eval_step": 0, "esim_cache_dir": str(folder / "esim"),
        "checkpoint_dir": str(folder / model)})
    init_seed(config["seed"], config["reproducibility"])
    run = prepare_run(config)
    trainer = get_trainer(config["MODEL_TYPE"], model)(config, run.model)
    trainer.fit(run.train_data, None, saved=True, verbose=False)
    return trainer.saved_model_file


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """One-epoch EIMF and ComiRecSA checkpoints on ml-100k; ESIM's cache is removed after training."""
    folder = tmp_path_factory.mktemp("explain")
    argv, sys.argv = sys.argv, ["pytest"]
    try:
        files = {model: train_checkpoint(model, folder) for model in ("EIMF", "ComiRecSA")}
    finally:
        sys.argv = argv
    targets = next((folder / "esim" / "ml-100k" / "targets").iterdir())
    esim = {"manifest": json.loads((targets / "manifest.json").read_text()),
            "records": json.loads((targets / "interests.json").read_text())}
    shutil.rmtree(folder / "esim")
    return files, esim


@pytest.fixture(scope="module")
def eimf_explainer(checkpoints):
    return Explainer(checkpoints[0]["EIMF"])


def test_esim_names_concepts_and_gives_a_user_distinct_ones(checkpoints):
    _, esim = checkpoints
    names = esim["manifest"]["concept_names"]
    assert len(names) == esim["manifest"]["counts"]["concepts"] and len(set(n.lower() for n in names)) == len(names)
    for record in esim["records"]:
        assert len(set(record["concepts"])) == len(record["concepts"]) == len(record["interests"])
        for interest in record["interests"]:
            words = re.findall(r"[a-z0-9'-]+", interest["name"].lower())
            assert set(words) <= ML100K_GENRES and len(set(words)) == len(words), interest["name"]
            assert "of the user's last" not in interest["description"]


def test_explain_command_on_an_eimf_checkpoint_names_interests_by_concepts(checkpoints, tmp_path):
    files, esim = checkpoints
    run = subprocess.run(
        [sys.executable, str(ROOT / "run_recbole_eimf.py"), "--stage=explain", f"--model_file={files['EIMF']}",
         "--users=196,186"], capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    out = run.stdout
    assert "interests named by: ESIM's concepts" in out and "note:" not in out
    assert out.count("\nuser ") == 2 and "user 196:" in out and "user 186:" in out
    concepts = set(esim["manifest"]["concept_names"])
    labels = re.findall(r"^interest \d: (.*)$", out, flags=re.M)
    assert len(labels) == 2 * 4
    for label in labels:
        named = re.findall(r"(.+?) \((-?\d\.\d\d)\)(?:, |$| \[)", label)
        assert len(named) == 3 and all(name in concepts for name, _ in named), label
    assert len(re.findall(r"<- interest [1-4]$", out, flags=re.M)) == 2 * 10
    stem = Path(files["EIMF"]).with_suffix("")
    html = Path(f"{stem}-explain.html").read_text()
    markdown = Path(f"{stem}-explain.md").read_text()
    assert html.count("<h2>User") == 2 and "src=" not in html and "href=" not in html  # self-contained
    assert markdown.count("## User") == 2 and markdown.count("### Interest") == 8


def test_backbone_checkpoint_names_interests_by_the_labels_of_their_items(checkpoints):
    files, _ = checkpoints
    explanation = explain_users(files["ComiRecSA"], "random:3")
    assert "labels" in explanation.naming and "no semantic head" in explanation.note
    assert len(explanation.users) == 3
    for user in explanation.users:
        names = [i.names[0][0] for i in user.interests if i.same_as is None]
        assert len(set(names)) == len(names)
        for interest in user.interests:
            words = re.findall(r"[a-z0-9'-]+", interest.names[0][0].lower())
            assert words and set(words) <= ML100K_GENRES, interest.names
        assert len(user.recommendations) == 10 and not {i for i, _ in user.recommendations} & set(user.history)


def test_user_with_fewer_items_than_interests(eimf_explainer):
    explainer = eimf_explainer
    uid = explainer.resolve_users("196")[0]
    history = explainer.histories[uid]
    one = explainer.explain(uid, items=history[-1:])
    assert len(one.interests) == 4 and one.history == [int(history[-1])]
    assert [i.same_as for i in one.interests] == [None, 0, 0, 0]   # one item: one direction
    assert all(i.names == one.interests[0].names for i in one.interests)
    assert "fewer items than the 4 interests" in history_line(one)
    two = explainer.explain(uid, items=history[-2:])
    assert len(two.interests) == 4 and len(two.recommendations) == 10
    recommended = {item for item, _ in two.recommendations}
    assert not recommended & set(history.tolist())   # what the user has seen is never recommended


def test_unknown_user_token_is_a_clear_error(eimf_explainer):
    with pytest.raises(ConfigError, match=r"user \[no-such-user\] is not in dataset \[ml-100k\]"):
        eimf_explainer.resolve_users("196,no-such-user")


def test_checkpoint_saved_before_concepts_were_stored_names_by_item_labels(checkpoints, tmp_path):
    files, _ = checkpoints
    checkpoint = trusted_load(files["EIMF"], map_location="cpu")
    assert checkpoint["other_parameter"]["concept_names"]
    checkpoint["other_parameter"] = {}   # what EIMF saved before this change (RecBole's default)
    old = tmp_path / "old-EIMF.pth"
    torch.save(checkpoint, old)
    explanation = explain_users(str(old), "196")
    assert "stores no concept names" in explanation.note and "labels" in explanation.naming
    assert all(i.names[0][1] is None for i in explanation.users[0].interests)


def test_group_names_repeat_no_word_and_stay_distinct():
    labels = [["Beauty", "Makeup Brushes & Tools", "Tools & Accessories"]] * 3 + [["Beauty", "Skin Care", "Face"]]
    catalog = ItemCatalog(fields=("title",), values=[{"title": f"item {i}"} for i in range(5)],
                          labels=[[]] + labels)
    namer = GroupNamer(catalog)
    names = [name for name, _ in namer.candidates([1, 2, 3])]
    assert names[0] == "Makeup Brushes & Tools" or "Tools & Tools" not in names[0]
    assert all(len(set(re.findall(r"\w+", n.lower()))) == len(re.findall(r"\w+", n.lower())) for n in names)
    first, _ = namer.name([1, 2, 3], set())
    second, _ = namer.name([1, 2, 3], {first.lower()})
    assert second != first and second in names
    assert namer.name([1, 2, 3], {n.lower() for n in names}) == (None, set())


def test_distinct_assignment_keeps_nearest_concepts_unless_shared():
    prototypes = torch.eye(3).numpy()
    interests = torch.tensor([[1.0, 0.1, 0.0], [0.9, 0.5, 0.0], [0.0, 0.0, 1.0]]).numpy()
    assert distinct_assignment(interests, prototypes).tolist() == [0, 1, 2]
    assert distinct_assignment(interests[[0, 2]], prototypes).tolist() == [0, 2]
