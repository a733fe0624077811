"""The run path under faults: clear errors (no traceback) for what a user fixes in config, data or files."""

import runpy
import subprocess
import sys
from unittest import mock
from pathlib import Path

import pytest

from recbole_eimf.benchmark import runner as runner_module
from recbole_eimf.benchmark.__main__ import main as benchmark_main

ROOT = Path(__file__).resolve().parents[1]
SMALL_ARGS = ["--MAX_ITEM_LIST_LENGTH=10", "--embedding_size=16", "--epochs=1", "--state=WARNING"]


def run_cli(*args, cwd):
    return subprocess.run(
        [sys.executable, str(ROOT / "run_recbole_eimf.py"), *args],
        capture_output=True, text=True, cwd=cwd, timeout=600,
    )


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
