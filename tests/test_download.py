"""Getting a dataset onto disk: a one-run download, and a clear error when that is impossible."""

import http.server
import io
import subprocess
import sys
import threading
import urllib.error
import zipfile
from pathlib import Path

import pandas as pd
import pytest

import recbole
from recbole_eimf.config import Config
from recbole_eimf.data import DatasetNotFoundError, create_dataset, ensure_dataset
from recbole_eimf.data.synthetic import generate
from recbole_eimf.quick_start import run_recbole_eimf

from conftest import SMALL

ROOT = Path(__file__).resolve().parents[1]
ML100K = Path(recbole.__file__).parent / "dataset_example" / "ml-100k"


def small_zip(n_users: int = 120) -> tuple[bytes, int]:
    """A RecBole-style zip (atomic files at the top, named after the zip) cut from ml-100k."""
    lines = (ML100K / "ml-100k.inter").read_text().splitlines()
    header, rows = lines[0], [r for r in lines[1:] if int(r.split("\t")[0]) <= n_users]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("Tiny_Movies.inter", "\n".join([header] + rows) + "\n")
        zf.writestr("Tiny_Movies.item", (ML100K / "ml-100k.item").read_text())
    return buffer.getvalue(), len(rows)


class Server:
    """A loopback HTTP server for one payload; ``truncate`` cuts the body after half."""

    def __init__(self, payload: bytes, truncate: bool = False, name: str = "Tiny_Movies.zip"):
        self.requests = 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                outer.requests += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/zip")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload[: len(payload) // 2] if truncate else payload)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/{name}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def tiny_zip():
    payload, n_rows = small_zip()
    server = Server(payload)
    yield server, n_rows
    server.close()


def tiny_config(url, data_path, **extra):
    return {
        **SMALL,
        "data_path": str(data_path),
        "dataset_url": url,
        "load_col": {"inter": ["user_id", "item_id", "rating", "timestamp"], "item": ["item_id", "movie_title", "class"]},
        **extra,
    }


def test_download_installs_the_atomic_files_and_trains_in_one_run(tiny_zip, tmp_path):
    server, n_rows = tiny_zip
    data_path = tmp_path / "data"
    result = run_recbole_eimf(
        model="ComiRecSA", dataset="tiny-movies", config_dict=tiny_config(server.url, data_path, epochs=1)
    )
    assert sorted(p.name for p in (data_path / "tiny-movies").iterdir()) == ["tiny-movies.inter", "tiny-movies.item"]
    assert server.requests == 1
    assert 0.0 <= result["test_result"]["recall@20"] <= 1.0

    # A second run finds the files and downloads nothing.
    config = Config(model="ComiRecSA", dataset="tiny-movies", config_dict=tiny_config(server.url, data_path))
    dataset = create_dataset(config)
    assert server.requests == 1
    assert dataset.inter_num == n_rows


def test_a_cut_download_leaves_nothing_behind(tmp_path):
    payload, _ = small_zip()
    server = Server(payload, truncate=True)
    try:
        config = Config(model="ComiRecSA", dataset="tiny-movies", config_dict=tiny_config(server.url, tmp_path / "data"))
        with pytest.raises(DatasetNotFoundError, match="could not be downloaded"):
            ensure_dataset(config)
    finally:
        server.close()
    assert not (tmp_path / "data" / "tiny-movies").exists()
    assert list((tmp_path / "data").iterdir()) == []  # no temporary folder either


def test_offline_amazon_books_says_where_to_put_files_and_where_they_come_from(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr("urllib.request.urlopen", offline)
    config = Config(model="ComiRecSA", dataset="amazon-books", config_dict={"data_path": str(tmp_path)})
    with pytest.raises(DatasetNotFoundError) as info:
        ensure_dataset(config)
    message = str(info.value)
    assert str(tmp_path / "amazon-books" / "amazon-books.inter") in message
    assert "https://recbole.s3-accelerate.amazonaws.com/ProcessedDatasets/Amazon_ratings/Amazon_Books.zip" in message
    assert "name resolution" in message


def test_unknown_dataset_name_without_files(tmp_path):
    config = Config(model="ComiRecSA", dataset="my-shop", config_dict={"data_path": str(tmp_path)})
    with pytest.raises(DatasetNotFoundError, match="no download URL"):
        ensure_dataset(config)


def test_cli_reports_a_missing_dataset_in_one_message(tmp_path):
    # Port 9 on loopback (discard) is closed: the download is refused at once, as offline.
    proc = subprocess.run(
        [
            sys.executable, str(ROOT / "run_recbole_eimf.py"), "--dataset=amazon-books",
            f"--data_path={tmp_path}", "--dataset_url=http://127.0.0.1:9/Amazon_Books.zip",
        ],
        capture_output=True, text=True, cwd=tmp_path, timeout=120,
    )
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert "Dataset [amazon-books] is not on this machine" in proc.stderr
    assert str(tmp_path / "amazon-books" / "amazon-books.inter") in proc.stderr


def books_zip(tmp_path) -> tuple[bytes, pd.DataFrame]:
    """A zip in the layout of RecBole's Amazon_Books.zip (Amazon_Books.inter/.item at the top),
    holding the synthetic twin at a tiny scale; and its rows, as read."""
    folder = generate("amazon-books", 0.001, seed=0, out=tmp_path / "twin")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for suffix in ("inter", "item"):
            zf.write(folder / f"amazon-books.{suffix}", f"Amazon_Books.{suffix}")
    return buffer.getvalue(), pd.read_csv(folder / "amazon-books.inter", sep="\t")


def ten_core(rows: pd.DataFrame) -> pd.DataFrame:
    """recbole_eimf/properties/dataset/amazon-books.yaml's filters, written out: ratings >= 4, first of each
    (user, item), then users and items with fewer than 10 rows dropped until none is left."""
    rows = rows.sort_values("timestamp:float", kind="stable")
    rows = rows.drop_duplicates(["user_id:token", "item_id:token"])
    rows = rows[rows["rating:float"] >= 4]
    while True:
        users = rows.groupby("user_id:token")["item_id:token"].transform("size")
        items = rows.groupby("item_id:token")["user_id:token"].transform("size")
        keep = (users >= 10) & (items >= 10)
        if keep.all():
            return rows
        rows = rows[keep]


def test_amazon_books_downloads_once_and_loads_10_core(tmp_path):
    payload, rows = books_zip(tmp_path)
    server = Server(payload, name="Amazon_Books.zip")
    try:
        config = Config(model="SASRec", dataset="amazon-books",
                        config_dict={"data_path": str(tmp_path / "data"), "dataset_url": server.url, "state": "WARNING"})
        dataset = create_dataset(config)
    finally:
        server.close()
    assert sorted(p.name for p in (tmp_path / "data" / "amazon-books").iterdir()) == [
        "amazon-books.inter", "amazon-books.item"]
    expected = ten_core(rows)
    assert len(expected) < len(rows[rows["rating:float"] >= 4])   # the 10-core removed rows
    assert dataset.inter_num == len(expected)
    assert dataset.user_num - 1 == expected["user_id:token"].nunique()
    assert dataset.item_num - 1 == expected["item_id:token"].nunique()
    assert set(dataset.field2id_token["user_id"][1:]) == set(expected["user_id:token"])
