"""Model resolution and the order in which defaults and overrides apply."""

import sys
from pathlib import Path

import pytest

from recbole_eimf.config import Config
from recbole_eimf.errors import ConfigError
from recbole_eimf.model.sequential_recommender import MIND, ComiRecDR, ComiRecSA
from recbole_eimf.utils import get_model, plugin_model_names, properties_dir


def test_plugin_models_resolve_with_their_own_defaults():
    config = Config(model="ComiRecSA", dataset="ml-100k")
    assert config.model_class is ComiRecSA
    assert config["n_interests"] == 4 and config["hidden_ratio"] == 4
    assert Config(model="ComiRecDR", dataset="ml-100k")["routing_iterations"] == 3
    assert Config(model="MIND", dataset="ml-100k")["relu_layer"] is False  # off since the validation-collapse fix (docs/BENCHMARKS.md §6)
    assert get_model("MIND") is MIND and get_model("ComiRecDR") is ComiRecDR
    assert plugin_model_names() == ["EIMF", "ComiRecSA", "ComiRecDR", "MIND", "TransMI"]


def test_recbole_models_resolve_and_get_the_project_protocol():
    config = Config(model="SASRec", dataset="ml-100k")
    assert config["hidden_size"] == 64  # RecBole's own SASRec.yaml
    assert config["eval_args"]["split"] == {"LS": "valid_and_test"}
    assert config["eval_args"]["order"] == "TO"
    assert config["eval_args"]["mode"] == {"valid": "full", "test": "full"}
    assert config["topk"] == [10, 20, 50]
    assert config["valid_metric"] == "NDCG@20"
    assert config["MAX_ITEM_LIST_LENGTH"] == 50
    assert config["train_neg_sample_args"]["distribution"] == "none"


def test_dataset_props_load_item_text_fields():
    ml = Config(model="ComiRecSA", dataset="ml-100k")
    assert ml["load_col"]["item"] == ["item_id", "movie_title", "class"]
    beauty = Config(model="ComiRecSA", dataset="amazon-beauty", config_dict={"data_path": str(Path(__file__).resolve().parents[1] / "dataset")})
    assert beauty["load_col"]["item"] == ["item_id", "title", "categories", "brand"]
    books = Config(model="ComiRecSA", dataset="amazon-books")
    assert books["user_inter_num_interval"] == "[10,inf)"
    assert (properties_dir() / "overall.yaml").is_file()


def test_stage_defaults_load_only_for_models_that_declare_the_stage():
    # ESIM's keys belong to the models that train on its targets: SASRec's config carries none,
    # so an ESIM default changed later leaves every other model's settings as they were.
    eimf = Config(model="EIMF", dataset="ml-100k")
    assert eimf["llm_backend"] is not None and eimf["n_clusters"] is not None
    sasrec = Config(model="SASRec", dataset="ml-100k")
    assert sasrec["llm_backend"] is None and sasrec["n_clusters"] is None
    assert not any(path.endswith("esim.yaml") for path in sasrec["plugin_defaults_files"])


def test_user_file_then_dict_then_command_line_override_plugin_defaults(tmp_path, monkeypatch):
    user_yaml = tmp_path / "mine.yaml"
    user_yaml.write_text("n_interests: 7\nhidden_ratio: 2\nvalid_metric: Recall@20\n")

    config = Config(model="ComiRecSA", dataset="ml-100k", config_file_list=[str(user_yaml)])
    assert (config["n_interests"], config["hidden_ratio"], config["valid_metric"]) == (7, 2, "Recall@20")

    config = Config(
        model="ComiRecSA", dataset="ml-100k", config_file_list=[str(user_yaml)], config_dict={"n_interests": 5}
    )
    assert (config["n_interests"], config["hidden_ratio"]) == (5, 2)

    monkeypatch.setattr(sys, "argv", ["run_recbole_eimf.py", "--n_interests=9", "--epochs=1"])
    config = Config(
        model="ComiRecSA", dataset="ml-100k", config_file_list=[str(user_yaml)], config_dict={"n_interests": 5}
    )
    assert (config["n_interests"], config["epochs"]) == (9, 1)


def test_model_can_come_from_the_command_line(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["run_recbole_eimf.py", "--model=MIND", "--dataset=ml-100k"])
    config = Config()
    assert config.model_class is MIND and config["dataset"] == "ml-100k"


def test_unknown_model_names_itself_and_the_choices():
    with pytest.raises(ValueError) as info:
        Config(model="ComiRecXY", dataset="ml-100k")
    message = str(info.value)
    assert "ComiRecXY" in message and "ComiRecSA" in message and "MIND" in message


def test_tuned_defaults_load_per_model_and_dataset_and_yield_to_the_user(tmp_path, monkeypatch):
    import recbole_eimf.config as config_module

    monkeypatch.setattr(config_module, "tuned_dir", lambda: tmp_path)
    (tmp_path / "ml-100k").mkdir()
    (tmp_path / "ml-100k" / "ComiRecSA.yaml").write_text("n_interests: 7\nlearning_rate: 0.003\n")
    (tmp_path / "ml-100k" / "EIMF-ComiRecSA.yaml").write_text("sp_weight: 0.9\n")
    (tmp_path / "ml-100k" / "SASRec.yaml").write_text("hidden_dropout_prob: 0.2\n")

    config = Config(model="ComiRecSA", dataset="ml-100k")
    assert (config["n_interests"], config["learning_rate"]) == (7, 0.003)  # over the model's own yaml (4)
    assert config["tuned_defaults_files"] == [str(tmp_path / "ml-100k" / "ComiRecSA.yaml")]
    assert Config(model="SASRec", dataset="ml-100k")["hidden_dropout_prob"] == 0.2  # RecBole's models too

    # a wrapper: its backbone's tuned file, then its own for that backbone
    on_sa = {"backbone": "ComiRecSA"}
    eimf = Config(model="EIMF", dataset="ml-100k", config_dict=on_sa)
    assert (eimf["n_interests"], eimf["sp_weight"]) == (7, 0.9)
    # tuned_defaults: 'backbone' keeps the backbone's only (a search for EIMF's own), False neither
    wrapped = Config(model="EIMF", dataset="ml-100k", config_dict={**on_sa, "tuned_defaults": "backbone"})
    assert (wrapped["n_interests"], wrapped["sp_weight"]) == (7, 0.5)
    assert wrapped["tuned_defaults_files"] == [str(tmp_path / "ml-100k" / "ComiRecSA.yaml")]
    bare = Config(model="EIMF", dataset="ml-100k", config_dict={**on_sa, "tuned_defaults": False})
    assert (bare["n_interests"], bare["sp_weight"]) == (4, 0.5) and bare["tuned_defaults_files"] == []
    with pytest.raises(ConfigError, match="`tuned_defaults` must be True, False or 'backbone', not 'yes'"):
        Config(model="EIMF", dataset="ml-100k", config_dict={"tuned_defaults": "yes"})
    # another backbone: neither file applies
    other = Config(model="EIMF", dataset="ml-100k", config_dict={"backbone": "MIND"})
    assert (other["n_interests"], other["sp_weight"]) == (4, 0.5) and other["tuned_defaults_files"] == []
    # the plugin's own yaml it loaded, in load order (the benchmark hashes them)
    from recbole_eimf.utils import model_properties_dir

    assert [Path(p) for p in other["plugin_defaults_files"]] == [
        properties_dir() / "overall.yaml",
        properties_dir() / "esim.yaml",
        model_properties_dir() / "MultiInterestRecommender.yaml",
        model_properties_dir() / "MIND.yaml",
        model_properties_dir() / "EIMF.yaml",
        properties_dir() / "dataset" / "ml-100k.yaml",
    ]

    assert Config(model="ComiRecSA", dataset="ml-100k", config_dict={"n_interests": 5})["n_interests"] == 5
    user_yaml = tmp_path / "mine.yaml"
    user_yaml.write_text("learning_rate: 0.01\n")
    assert Config(model="ComiRecSA", dataset="ml-100k", config_file_list=[str(user_yaml)])["learning_rate"] == 0.01
    (tmp_path / "amazon-beauty").mkdir()
    (tmp_path / "amazon-beauty" / "ComiRecSA.yaml").write_text("n_interests: 2\n")
    assert Config(model="ComiRecSA", dataset="ml-100k")["n_interests"] == 7  # only the run's dataset
