"""The run path under faults: clear errors (no traceback) for what a user fixes in config, data or files."""

import re
import runpy
import sys
from pathlib import Path
from typing import Optional, Sequence
from unittest import mock

import pytest

from recbole_eimf.benchmark import runner as runner_module
from recbole_eimf.benchmark.__main__ import main as benchmark_main
from recbole_eimf.data.atomic_files import check_atomic_file
from recbole_eimf.errors import CheckpointError, DataError

from conftest import SMALL

ROOT = Path(__file__).resolve().parents[1]
SMALL_ARGS = ["--MAX_ITEM_LIST_LENGTH=10", "--embedding_size=16", "--epochs=1", "--state=WARNING"]


# --- 7: ESIM errors raised while EIMF is built end like --stage=esim's ---------------------------

NO_TYPICAL_USER = ["--dataset=ml-100k", "--text_encoder=tfidf", "--min_history=100000", *SMALL_ARGS]


def run_script(*args) -> str:
    """run_recbole_eimf.py in this process (a subprocess would double the test's time): its exit message."""
    with pytest.raises(SystemExit) as ended, mock.patch.object(sys, "argv", ["run_recbole_eimf.py", *args]):
        runpy.run_path(str(ROOT / "run_recbole_eimf.py"), run_name="__main__")
    return ended.value.code


def test_an_esim_error_while_eimf_is_built_ends_the_run_script_like_stage_esim(tmp_path):
    # Not a traceback: sys.exit("error: ...") (exit code 1, the message on stderr), as --stage=esim ends.
    trained = run_script("--model=EIMF", *NO_TYPICAL_USER)
    stage = run_script("--model=EIMF", "--stage=esim", *NO_TYPICAL_USER)
    assert trained == stage
    assert trained.startswith("error: ESIM found no typical user: no user has >= min_history [100000]")


def test_an_esim_error_stops_the_harness_before_training_with_exit_2(tmp_path, monkeypatch, capsys):
    def no_training(*args, **kwargs):
        raise AssertionError("a run was trained although ESIM failed")

    monkeypatch.setattr(runner_module, "run_one", no_training)
    code = benchmark_main([
        "--models=EIMF-ComiRecSA", "--seeds=2020", f"--output_dir={tmp_path / 'out'}", *NO_TYPICAL_USER,
    ])
    err = capsys.readouterr().err
    assert code == 2
    assert "error: ESIM found no typical user" in err and "Traceback" not in err


# --- 11: malformed atomic files are named with line and field before RecBole loads them ----------

HEADER = "user_id:token\titem_id:token\ttimestamp:float\n"


def write_dataset(folder: Path, name: str, inter: str, item: Optional[str] = None) -> Path:
    """A dataset `name` under `folder` with the given .inter (and .item) text; returns `folder`."""
    (folder / name).mkdir(parents=True, exist_ok=True)
    (folder / name / f"{name}.inter").write_bytes(inter.encode("utf-8") if isinstance(inter, str) else inter)
    if item is not None:
        (folder / name / f"{name}.item").write_text(item, encoding="utf-8")
    return folder


def interactions(per_user: Sequence[int], items: int = 60) -> str:
    """An .inter text: user u has per_user[u] interactions, items cycling, timestamps increasing."""
    lines, t = [HEADER], 0
    for user, count in enumerate(per_user):
        for k in range(count):
            t += 1
            lines.append(f"u{user}\ti{(user * 7 + k) % items}\t{t}\n")
    return "".join(lines)


def tiny_config(folder: Path, name: str = "tiny", model: str = "ComiRecSA", **extra):
    from recbole_eimf.config import Config

    settings = {**SMALL, "data_path": str(folder), "load_col": None, "epochs": 1, **extra}
    return Config(model=model, dataset=name, config_dict=settings)


GOOD = interactions([6] * 20)


@pytest.mark.parametrize("inter, message", [
    (GOOD + "u3\ti4\n", r"tiny\.inter, line 122: 2 fields where the header has 3 \(cut short: field 'timestamp'"),
    (GOOD + "u3\ti4\tyesterday\n", r"tiny\.inter, line 122, field 'timestamp': 'yesterday' is not a number"),
    (GOOD.encode() + "u3\ti4\t1\u00e9\n".encode("latin-1"), r"tiny\.inter, line 122: bytes that are not utf-8"),
    (GOOD + "u3\ti4\t5\t6\n", r"tiny\.inter, line 122: 4 fields where the header has 3 \(too many"),
    (HEADER, r"tiny\.inter: only a header line, no data rows"),
    ("", r"tiny\.inter: the file is empty"),
    ("user_id\titem_id\n" + "u1\ti1\n", r"tiny\.inter, line 1 \(header\): field 'user_id' is not name:type"),
], ids=["truncated-last-line", "non-numeric-timestamp", "latin-1-bytes", "extra-field", "header-only", "empty",
        "untyped-header"])
def test_a_malformed_inter_file_is_named_with_its_line_and_field(tmp_path, inter, message):
    from recbole_eimf.data import create_dataset

    config = tiny_config(write_dataset(tmp_path / "data", "tiny", inter))
    with pytest.raises(DataError, match=message):
        create_dataset(config)


def test_real_atomic_files_pass_the_check_quoted_multi_word_fields_included():
    # amazon-beauty's .item quotes values holding the separator or quotes ("'Beauty', ""Women's""").
    folder = ROOT / "dataset" / "amazon-beauty"  # shipped with the repository
    assert check_atomic_file(folder / "amazon-beauty.item", "\t", " ", "utf-8") == 12101


# --- 9: a checkpoint refuses other data, and a damaged file is named -----------------------------

def test_a_checkpoint_refuses_data_with_other_items_and_names_a_damaged_file(tmp_path, caplog):
    import torch

    from recbole_eimf.quick_start import load_data_and_model, run_recbole_eimf

    data = write_dataset(tmp_path / "data", "tiny", interactions([6] * 20))
    settings = {**SMALL, "data_path": str(data), "load_col": None, "epochs": 1}
    model_file = run_recbole_eimf("ComiRecSA", "tiny", config_dict=settings)["model_file"]
    config, *_ = load_data_and_model(model_file)
    assert config["data_fingerprint"]["items"] == 60

    # Same counts, other items: the rows of the item table would score the wrong items.
    original = (data / "tiny" / "tiny.inter").read_text()
    (data / "tiny" / "tiny.inter").write_text(re.sub(r"\ti(\d+)", r"\tj\1", original))
    with pytest.raises(CheckpointError, match=rf"{model_file} was trained on other data than dataset \[tiny\]"):
        load_data_and_model(model_file)

    # Written before fingerprints: loads, with a warning (the data is back as it was trained).
    (data / "tiny" / "tiny.inter").write_text(original)
    checkpoint = torch.load(model_file, weights_only=False)
    del checkpoint["config"].final_config_dict["data_fingerprint"]
    old = tmp_path / "old.pth"
    torch.save(checkpoint, old)
    load_data_and_model(str(old))
    assert "records no fingerprint" in caplog.text

    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(Path(model_file).read_bytes()[:5000])
    foreign = tmp_path / "notes.pth"
    foreign.write_text("not a checkpoint")
    tensor = tmp_path / "tensor.pth"
    torch.save(torch.zeros(3), tensor)
    for path, message in ((truncated, "not a readable checkpoint"), (foreign, "not a readable checkpoint"),
                          (tensor, "not a RecBole checkpoint"), (tmp_path / "gone.pth", "no such checkpoint")):
        with pytest.raises(CheckpointError, match=f"{path}: {message}"):
            load_data_and_model(str(path))


# --- 12: small datasets give clear errors; a batch too large for memory stops before training ----

@pytest.mark.parametrize("model", ["ComiRecSA", "EIMF"])
def test_users_with_one_or_two_interactions_give_a_clear_error_not_an_empty_table(tmp_path, model):
    from recbole_eimf.quick_start import run_recbole_eimf

    data = write_dataset(tmp_path / "data", "tiny", interactions([1, 2] * 20))
    settings = {**SMALL, "data_path": str(data), "load_col": None, "epochs": 1}
    with pytest.raises(DataError, match=r"the validation and test split\(s\) are empty .* 40 of 40 users have fewer "
                                        r"than 4 interactions"):
        run_recbole_eimf(model, "tiny", config_dict=settings)


@pytest.mark.parametrize("extra, message", [
    ({"topk": [10, 100]}, r"`topk` \[10, 100\] asks for more items than dataset \[tiny\] has \(60\)"),
    ({"user_inter_num_interval": "[100,inf)"}, r"dataset \[tiny\] is empty after filtering .*user_inter_num_interval"),
])
def test_too_few_items_or_users_after_filtering_name_the_key(tmp_path, extra, message):
    from recbole_eimf.quick_start import run_recbole_eimf

    data = write_dataset(tmp_path / "data", "tiny", interactions([6] * 20))
    settings = {**SMALL, "data_path": str(data), "load_col": None, "epochs": 1, **extra}
    with pytest.raises(DataError, match=message):
        run_recbole_eimf("ComiRecSA", "tiny", config_dict=settings)


def test_a_batch_that_cannot_fit_in_memory_stops_before_anything_is_allocated(ml100k, caplog):
    import psutil

    from recbole_eimf.errors import ConfigError
    from recbole_eimf.memory import batch_memory, check_memory
    from recbole_eimf.utils import get_model

    config, _, train, _, _ = ml100k
    model = get_model("ComiRecSA")(config, train._dataset)
    # A transformer padded to MAX_ITEM_LIST_LENGTH 5000: the attention scores alone are terabytes.
    huge = {**config.final_config_dict, "MAX_ITEM_LIST_LENGTH": 5000, "n_layers": 2, "n_heads": 2,
            "train_batch_size": 4096, "trim_padding": False}
    terms = batch_memory(huge, n_items=1683, n_params=100_000, batch_size=4096)
    assert terms["attention scores [B, heads, L, L] x layers"] == 3 * 4096 * 2 * 5000**2 * 2 * 4
    rss = psutil.Process().memory_info().rss
    with pytest.raises(ConfigError, match=r"one training batch needs about \d+\.\d GiB, more than .*: lower "
                                          r"`train_batch_size` or `MAX_ITEM_LIST_LENGTH`"):
        check_memory(huge, model, train)
    assert psutil.Process().memory_info().rss - rss < 50 * 1024**2  # estimated, not allocated
    # The small settings the tests train with fit; with 1 MiB free they would not.
    assert check_memory(config, model, train)["training"] > 0
    with pytest.raises(ConfigError):
        check_memory(config, model, train, available=1024**2)


def test_the_error_names_the_softmax_keys_where_the_logits_are_what_does_not_fit(ml100k):
    from recbole_eimf.config import Config
    from recbole_eimf.errors import ConfigError
    from recbole_eimf.memory import LOGITS, batch_memory, check_memory
    from recbole_eimf.model.abstract_recommender import AUTO_SAMPLED_NEGATIVES
    from recbole_eimf.utils import get_model

    train = ml100k[2]

    def model_and_config(**extra):
        settings = {**SMALL, "train_readout": "max", "train_batch_size": 4096, **extra}
        config = Config(model="ComiRecSA", dataset="ml-100k", config_dict=settings)
        return get_model("ComiRecSA")(config, train._dataset), config

    model, config = model_and_config()
    terms = batch_memory(config, n_items=model.n_items, n_params=0, batch_size=4096)
    assert terms[LOGITS] == 2 * 4096 * 4 * 1683 * 4
    # Free memory between the other terms and the logits: the logits are what does not fit.
    free = sum(terms.values()) - terms[LOGITS] // 2
    with pytest.raises(ConfigError, match=r"`sampled_softmax_negatives` \(e\.g\. 4096\) or a `full_softmax_max_items` "
                                          r"below the 1,682 items"):
        check_memory(config, model, train, available=free)
    # The sampled softmax the model chose itself is what the estimate counts.
    sampled, sampled_config = model_and_config(full_softmax_max_items=1000)
    plenty = 1024**4
    full_need = check_memory(config, model, train, available=plenty)["training"]
    sampled_need = check_memory(sampled_config, sampled, train, available=plenty)["training"]
    assert sampled_need - full_need == 2 * 4096 * 4 * (AUTO_SAMPLED_NEGATIVES + 1 - 1683) * 4


def test_a_full_sort_batch_that_cannot_fit_names_eval_batch_size(ml100k):
    from recbole_eimf.errors import ConfigError
    from recbole_eimf.memory import check_memory, evaluation_memory
    from recbole_eimf.utils import get_model

    config, _, train, _, _ = ml100k
    model = get_model("ComiRecSA")(config, train._dataset)
    needs = check_memory(config, model, train)
    assert needs["evaluation"] == evaluation_memory(config, model.n_items)
    free = (needs["training"] + needs["evaluation"]) // 2
    assert needs["training"] < free < needs["evaluation"]
    with pytest.raises(ConfigError, match=r"one full-sort evaluation batch needs .*\[2048, 1,683\].*lower `eval_batch_size`"):
        check_memory(config, model, train, available=free)


def test_every_run_checks_its_batch_against_the_free_memory_before_training(tmp_path, monkeypatch):
    from recbole_eimf import memory
    from recbole_eimf.errors import ConfigError
    from recbole_eimf.quick_start.quick_start import prepare_run

    monkeypatch.setattr(memory, "available_memory", lambda device: 1024**2)
    config = tiny_config(write_dataset(tmp_path / "data", "tiny", interactions([6] * 20)), model="TransMI")
    with pytest.raises(ConfigError, match="more than the 0.0 GiB free on cpu"):
        prepare_run(config)


# --- 10: unknown config keys warn with the closest known key; strict_config refuses them ---------

def test_a_misspelt_key_warns_with_the_closest_known_key_wherever_it_is_given(tmp_path, monkeypatch, caplog):
    from recbole_eimf import config_keys
    from recbole_eimf.config import Config
    from recbole_eimf.errors import ConfigError

    monkeypatch.setattr(config_keys, "_warned", set())
    settings = tmp_path / "mine.yaml"
    settings.write_text("learning_rat: 0.01\nepochs: 1\n")
    monkeypatch.setattr(sys, "argv", ["run_recbole_eimf.py", "--n_interest=8", "--params_file=x.hyper"])
    with caplog.at_level("WARNING", logger="recbole_eimf.config_keys"):
        config = Config(model="ComiRecSA", dataset="ml-100k", config_file_list=[str(settings)],
                        config_dict={"MAX_ITEM_LIST_LENGHT": 10, "embedding_size": 16})
    assert config["n_interests"] == 4  # what RecBole does with the typo: nothing
    text = caplog.text
    assert "unknown config key `n_interest` (in the command line): did you mean `n_interests`?" in text
    assert f"unknown config key `learning_rat` (in {settings}): did you mean `learning_rate`?" in text
    assert "unknown config key `MAX_ITEM_LIST_LENGHT` (in config_dict): did you mean `MAX_ITEM_LIST_LENGTH`?" in text
    # The run script's own flags, RecBole's keys and the plugin's are all known.
    assert "params_file" not in text and "embedding_size" not in text and "epochs`" not in text

    monkeypatch.setattr(sys, "argv", ["run_recbole_eimf.py", "--n_interest=8", "--strict_config=True"])
    with pytest.raises(ConfigError, match=r"unknown config key `n_interest` .*did you mean `n_interests`\?"):
        Config(model="ComiRecSA", dataset="ml-100k")


def test_every_shipped_yaml_and_benchmark_variant_loads_without_an_unknown_key_warning(monkeypatch, caplog):
    import yaml

    from recbole_eimf import config_keys
    from recbole_eimf.benchmark.runner import build_config
    from recbole_eimf.utils import model_properties_dir, props_dir

    monkeypatch.setattr(config_keys, "_warned", set())
    shipped = [*props_dir().rglob("*.yaml"), *model_properties_dir().parent.rglob("*.yaml")]
    assert len(shipped) > 40
    with caplog.at_level("WARNING", logger="recbole_eimf.config_keys"):
        for path in shipped:
            keys = yaml.safe_load(path.read_text()) or {}
            assert not [key for key in keys if key not in config_keys.known_keys()], path
        # The variants as the harness builds them (its own config_dict keys included).
        for path in sorted((props_dir() / "benchmark").glob("*.yaml")):
            build_config(path.stem, "ml-100k", 2020, [path], {"epochs": "1"}, Path("ckpt"), {"esim_seed": 2020})
    assert "unknown config key" not in caplog.text


def test_the_harness_refuses_a_misspelt_flag_of_its_own(tmp_path, capsys):
    for typo, flag in (("--out", "--output_dir"), ("--keep_checkpoint", "--keep_checkpoints")):
        with pytest.raises(SystemExit) as ended:
            benchmark_main(["--dataset=ml-100k", "--models=SASRec", "--report_only=True", f"{typo}={tmp_path}"])
        assert ended.value.code == 2
        assert f"{typo} is neither a flag of the harness nor a config key: did you mean {flag}?" in capsys.readouterr().err
    assert not (tmp_path / "runs.jsonl").exists()
