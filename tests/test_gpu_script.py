"""benchmarks/gpu/run_benchmark.sh on this CPU (ALLOW_CPU=1, everything already installed, so its
offline install finds nothing to fetch): what it leaves in $OUT fits the device machine's way back
(at most 8 files, two folders down, 16 MiB each), a spent time limit still packs reports
rebuilt from the finished runs, and EIMF there trains on the ESIM targets prepared here."""

import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu" / "run_benchmark.sh"
# One epoch on the 306 ml-100k users with at most 40 ratings ("[5,41)": RecBole's interval syntax,
# which a shell argument keeps a string), short sequences, tiny embeddings.
SMALL = ["--epochs=1", "--MAX_ITEM_LIST_LENGTH=10", "--embedding_size=16", "--user_inter_num_interval=[5,41)"]


@pytest.fixture(autouse=True)
def repository_left_clean():
    """The script runs from the repository (as on the device machine), where RecBole writes ./log
    and ./log_tensorboard: what these tests add there is removed again."""
    folders = [ROOT / "log", ROOT / "log_tensorboard"]
    before = {folder: set(folder.rglob("*")) if folder.exists() else None for folder in folders}
    yield
    for folder, existed in before.items():
        if existed is None:
            shutil.rmtree(folder, ignore_errors=True)
            continue
        for path in sorted(set(folder.rglob("*")) - existed, key=lambda p: len(p.parts), reverse=True):
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)


def run_script(tmp_path: Path, *args: str, **env) -> subprocess.CompletedProcess:
    env = {
        **os.environ, "PYTHON": sys.executable, "ALLOW_CPU": "1", "DATASET": "ml-100k", "MODELS": "ComiRecSA",
        "SEEDS": "2020", "JOBS": "1", "OUT": str(tmp_path / "out"), "RESULTS_DIR": str(tmp_path / "results"), **env,
    }
    return subprocess.run(["bash", str(SCRIPT), *args, *SMALL], env=env, capture_output=True, text=True, timeout=900)


def returned(out: Path) -> list:
    """The files the device machine would bring back from ``out``."""
    files = [p for p in out.rglob("*") if p.is_file()]
    assert len(files) <= 8
    assert all(len(p.relative_to(out).parts) <= 3 and p.stat().st_size <= 16 * 2**20 for p in files)
    return sorted(str(p.relative_to(out)) for p in files)


def test_gpu_script_trains_eimf_on_carried_targets_packs_what_comes_back_and_reports_after_its_time_limit(tmp_path):
    # --prepare-esim (here): the EIMF models' targets into the folder that travels, with the text
    # encoder named; the run (there) trains EIMF on them instead of building its own. (tfidf keeps
    # the test light: without the carried targets the run would build sentence-transformers ones.)
    esim = {"MODELS": "ComiRecSA,EIMF-ComiRecSA", "ESIM_DIR": str(tmp_path / "carry"), "ESIM_TEXT_ENCODER": "tfidf"}
    proc = run_script(tmp_path, "--prepare-esim", **esim)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (prepared,) = (tmp_path / "carry" / "ml-100k" / "targets").iterdir()
    assert not (tmp_path / "carry" / "ml-100k" / "item_embeddings").exists(), "only the targets travel"
    assert sorted(p.name for p in prepared.iterdir()) == ["manifest.json", "semantic_targets.pt"]
    assert not (tmp_path / "results").exists(), "nothing trained"

    proc = run_script(tmp_path, **esim)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "EIMF reads the semantic targets prepared in" in proc.stdout
    eimf = [json.loads(line) for line in (tmp_path / "results" / "runs.jsonl").read_text().splitlines()][-1]
    assert eimf["model"] == "EIMF-ComiRecSA" and eimf["esim_targets"]["key"] == prepared.name
    assert not (tmp_path / "results" / "esim").exists()
    back = tmp_path / "out" / "ml-100k"
    assert returned(tmp_path / "out") == [
        f"ml-100k/{name}" for name in ("benchmark.log", "results.md", "results.tar.gz", "runs.jsonl")
    ]
    assert "| ComiRecSA | 1 |" in (back / "results.md").read_text()
    with tarfile.open(back / "results.tar.gz") as tar:
        names = tar.getnames()
    assert {"results/results.md", "results/runs.jsonl", "results/metrics.png"} <= set(names)
    assert not any(part in ("checkpoints", "esim") for name in names for part in name.split("/"))

    # The limit is spent before the benchmark starts (by the install): nothing trains, and the
    # reports are rebuilt from the finished runs and packed all the same.
    for path in back.iterdir():
        path.unlink()
    (tmp_path / "results" / "results.md").unlink()
    proc = run_script(tmp_path, TIME_LIMIT_S="1", **esim)
    assert proc.returncode == 124, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "stopped at the time limit" in proc.stdout
    assert "| ComiRecSA | 1 |" in (back / "results.md").read_text()
    assert returned(tmp_path / "out") == [
        f"ml-100k/{name}" for name in ("benchmark.log", "results.md", "results.tar.gz", "runs.jsonl")
    ]
