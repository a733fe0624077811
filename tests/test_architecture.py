"""The data flow is one way: dataset -> pipeline stages (ESIM) -> model -> trainer -> results."""

import re
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "recbole_eimf"


def _imported_after(statement: str) -> set:
    code = f"import sys; {statement}; print(' '.join(sorted(m for m in sys.modules if m.startswith('recbole_eimf'))))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return set(out.stdout.split())


def test_models_do_not_import_esim_and_esim_does_not_import_the_run_layer():
    # A model receives ESIM's targets from the pipeline; it never runs ESIM. ESIM is a stage the
    # run layer calls; it knows nothing of runs, tuning or benchmarks.
    after_models = _imported_after("import recbole_eimf.model.sequential_recommender")
    assert not any(m.startswith("recbole_eimf.esim") for m in after_models), after_models
    after_esim = _imported_after("import recbole_eimf.esim, recbole_eimf.esim.pipeline")
    upward = {m for m in after_esim if m.startswith(("recbole_eimf.quick_start", "recbole_eimf.benchmark"))}
    assert not upward, upward


def test_generic_code_tests_no_model_by_name():
    # What a model needs is declared on its class (PIPELINE_STAGES, stages_for, check_config,
    # CONFIG_FALLBACKS, loss_names), so the run layer, harness and tuner work for any model.
    names = "EIMF|SASRec|GRU4Rec|BERT4Rec|ComiRecSA|ComiRecDR|MIND|TransMI"
    compared = re.compile(rf"""[=!]=\s*["']({names})["']|["']({names})["']\s*(==|!=|in\\b)""")
    generic = [p for p in PACKAGE.rglob("*.py") if "sequential_recommender" not in p.parts]
    found = [f"{p.relative_to(PACKAGE)}:{n}" for p in generic
             for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if compared.search(line)]
    assert not found, found
