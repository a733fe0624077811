"""Get a dataset's atomic files onto disk before RecBole loads them.

RecBole 1.2.1 downloads a missing dataset itself, but in a single process it ends the download
in ``torch.distributed.barrier()`` and raises after a good download; offline it fails with a
bare ``URLError``. This module downloads to a temporary folder and moves it into place only
when complete (an interrupted download leaves nothing half-written behind), and offline it
raises one error that says where to put the files and where they would come from.
"""

from __future__ import annotations

import http.client
import logging
import os
import tempfile
import urllib.request
import zipfile
from pathlib import Path
from typing import Optional

import yaml
from tqdm import tqdm

import recbole
from recbole.utils.url import rename_atomic_files

from recbole_eimf.errors import DatasetNotFoundError

logger = logging.getLogger(__name__)

ATOMIC_SUFFIXES = (".inter", ".item", ".user", ".kg", ".link", ".net")
DOWNLOAD_TIMEOUT_S = 60


def recbole_dataset_url(dataset: str) -> Optional[str]:
    """The URL RecBole would download ``dataset`` from, or None if RecBole does not know it."""
    url_file = Path(recbole.__file__).parent / "properties" / "dataset" / "url.yaml"
    with open(url_file, encoding="utf-8") as f:
        return (yaml.safe_load(f) or {}).get(dataset)


def _fetch(url: str, target: Path, show_progress: bool) -> None:
    with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
        total = int(response.headers.get("Content-Length") or 0) or None
        with open(target, "wb") as out, tqdm(
            total=total, unit="B", unit_scale=True, desc=f"Download {target.name}",
            disable=not show_progress, ncols=100,
        ) as bar:
            while chunk := response.read(1 << 20):
                out.write(chunk)
                bar.update(len(chunk))


def _atomic_files(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.suffix in ATOMIC_SUFFIXES]


def download_dataset(url: str, dataset: str, dataset_path: Path, show_progress: bool = False) -> None:
    """Download the zip at ``url`` and install its atomic files as ``dataset_path/<dataset>.*``."""
    dataset_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dataset_path.parent, prefix=f".{dataset}-") as tmp:
        tmp = Path(tmp)
        archive = tmp / url.rstrip("/").rpartition("/")[2]
        logger.info(f"Downloading dataset [{dataset}] from [{url}]")
        _fetch(url, archive, show_progress)
        extracted = tmp / "extracted"
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(extracted)
        # Files sit at the top of RecBole's zips; accept one wrapping folder too.
        entries = list(extracted.iterdir())
        if not _atomic_files(extracted) and len(entries) == 1 and entries[0].is_dir():
            extracted = entries[0]
        if not _atomic_files(extracted):
            raise DatasetNotFoundError(
                f"The archive from {url} holds no atomic files ({', '.join(ATOMIC_SUFFIXES)})."
            )
        rename_atomic_files(str(extracted), archive.stem, dataset)
        os.replace(extracted, dataset_path)
    logger.info(f"Dataset [{dataset}] is ready in [{dataset_path}]")


def ensure_dataset(config) -> None:
    """Make sure ``config['data_path']`` holds the dataset, downloading it once if possible.

    ``dataset_url`` in the config overrides RecBole's URL (a mirror, or a local server).
    """
    dataset = config["dataset"]
    dataset_path = Path(config["data_path"])
    if dataset_path.is_dir():
        return
    url = config["dataset_url"] or recbole_dataset_url(dataset)
    where = (
        f"  Put its atomic files here: {dataset_path / (dataset + '.inter')} "
        f"(and {dataset}.item / {dataset}.user where the dataset has them),\n"
        f"  or point --data_path at the folder that contains {dataset}/."
    )
    if url is None:
        raise DatasetNotFoundError(
            f"Dataset [{dataset}] not found: there is no folder {dataset_path}, and RecBole has no "
            f"download URL for the name [{dataset}].\n{where}"
        )
    try:
        download_dataset(url, dataset, dataset_path, show_progress=bool(config["show_progress"]))
    except DatasetNotFoundError:
        raise
    except (OSError, http.client.HTTPException, zipfile.BadZipFile, ValueError) as err:
        # URLError and timeouts are OSErrors; a cut connection is an HTTPException.
        raise DatasetNotFoundError(
            f"Dataset [{dataset}] is not on this machine and could not be downloaded.\n{where}\n"
            f"  RecBole downloads it from: {url}\n  The download failed: {err}"
        ) from err
