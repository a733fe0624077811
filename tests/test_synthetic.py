"""The synthetic twin of amazon-books: deterministic, shaped by the dataset's own yaml, and trainable."""

import filecmp
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recbole_eimf.config import Config
from recbole_eimf.data import create_dataset
from recbole_eimf.data.synthetic import PROFILES, generate

ROOT = Path(__file__).resolve().parents[1]
SCALE = 0.002  # 918 users, 628 items, 17,796 interactions after the filters


@pytest.fixture(scope="module")
def books(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic")
    generate("amazon-books", SCALE, seed=3, out=out / "a")
    generate("amazon-books", SCALE, seed=3, out=out / "b")
    generate("amazon-books", SCALE, seed=4, out=out / "c")
    return out


def test_same_seed_same_files_other_seed_other_files(books):
    for suffix in ("inter", "item"):
        name = f"amazon-books/amazon-books.{suffix}"
        assert filecmp.cmp(books / "a" / name, books / "b" / name, shallow=False)
    assert not filecmp.cmp(books / "a/amazon-books/amazon-books.inter", books / "c/amazon-books/amazon-books.inter",
                           shallow=False)


def test_the_amazon_books_yaml_filters_it_down_to_the_published_shape(books):
    raw = pd.read_csv(books / "a/amazon-books/amazon-books.inter", sep="\t")
    assert list(raw.columns) == ["user_id:token", "item_id:token", "rating:float", "timestamp:float"]
    # The filters have work: ratings below 4, and users below the 10-core.
    assert (raw["rating:float"] < 4).mean() > 0.1
    assert (raw.groupby("user_id:token").size() < 10).sum() > 100

    config = Config(model="SASRec", dataset="amazon-books",
                    config_dict={"data_path": str(books / "a"), "state": "WARNING"})
    dataset = create_dataset(config)
    profile = PROFILES["amazon-books"]
    expected = [round(n * SCALE) for n in (profile.n_users, profile.n_items, profile.n_inter)]
    got = [dataset.user_num - 1, dataset.item_num - 1, dataset.inter_num]
    assert np.allclose(got, expected, rtol=0.02), (got, expected)
    inter = dataset.inter_feat
    assert inter["rating"].min() >= 4
    assert np.bincount(inter["user_id"].to_numpy())[1:].min() >= 10
    assert np.bincount(inter["item_id"].to_numpy())[1:].min() >= 10
    # Every user's rows are in time order in the file, as a real log's.
    assert (raw.groupby("user_id:token")["timestamp:float"].diff().dropna() >= 0).all()
    # Item text for ESIM: a title and a category path under the dataset's root category.
    assert (dataset.item_feat["title"].to_numpy()[1:] > 0).all()
    items = pd.read_csv(books / "a/amazon-books/amazon-books.item", sep="\t")
    assert items["categories:token_seq"].str.startswith("'Books', ").all()


def test_users_read_a_few_topics(books):
    """Each user's items come from at most 4 category paths (chance would give many more)."""
    raw = pd.read_csv(books / "a/amazon-books/amazon-books.inter", sep="\t")
    items = pd.read_csv(books / "a/amazon-books/amazon-books.item", sep="\t")
    kept = raw[raw["rating:float"] >= 4].merge(items, on="item_id:token")
    length = kept.groupby("user_id:token").size()
    topics = kept.groupby("user_id:token")["categories:token_seq"].nunique()[length >= 10]
    assert topics.max() <= 4
    assert items["categories:token_seq"].nunique() > 8
    assert topics.min() == 1 and topics.mean() > 2


def test_the_command_line_generates_and_a_one_epoch_run_trains_on_it(tmp_path):
    out = tmp_path / "data"
    subprocess.run([sys.executable, "-m", "recbole_eimf.data.synthetic", "--like=amazon-books",
                    "--scale=0.001", "--seed=0", f"--out={out}"], check=True, cwd=tmp_path, timeout=120)
    proc = subprocess.run(
        [sys.executable, str(ROOT / "run_recbole_eimf.py"), "--dataset=amazon-books", f"--data_path={out}",
         "--epochs=1", "--text_encoder=tfidf", "--MAX_ITEM_LIST_LENGTH=10", "--embedding_size=32",
         "--show_progress=False", "--state=WARNING"],
        capture_output=True, text=True, cwd=tmp_path, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "ndcg@20" in proc.stdout
