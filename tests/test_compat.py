"""The compatibility shims that let RecBole 1.2.1 run on numpy 2 and torch >= 2.6."""

import subprocess
import sys

import numpy as np
import torch

import recbole_eimf  # noqa: F401


def test_recbole_own_config_builds_under_this_numpy():
    # RecBole's Config.compatibility_settings reads np.float_, which numpy 2 removed.
    from recbole.config import Config as RecBoleConfig

    config = RecBoleConfig(model="SASRec", dataset="ml-100k", config_dict={"train_neg_sample_args": None})
    assert config["model"] == "SASRec"
    assert np.float_ is np.float64


def test_anomaly_detection_is_off_after_recbole_models_are_imported():
    import recbole.model.sequential_recommender.sine  # noqa: F401  (switches it on at import)

    assert not torch.is_anomaly_enabled()


def test_recbole_trainer_loads_pickled_checkpoints(tmp_path):
    import recbole.trainer.trainer as trainer_module
    from recbole_eimf.config import Config

    config = Config(model="ComiRecSA", dataset="ml-100k")
    path = tmp_path / "ckpt.pth"
    torch.save({"config": config, "state_dict": {}}, path)
    # torch >= 2.6 refuses this file with weights_only=True; RecBole's trainer must not.
    loaded = trainer_module.torch.load(path, map_location="cpu")
    assert loaded["config"]["model"] == "ComiRecSA"
    assert trainer_module.torch.cuda is torch.cuda


def _printed_by(code: str) -> str:
    """What ``python -c code`` prints, in a fresh interpreter (imports start from nothing)."""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip()


def test_nothing_in_the_plugin_imports_ray():
    # RecBole's ray pin has no wheels past Python 3.11: the plugin must run without ray installed.
    assert _printed_by(
        "import sys, recbole_eimf.quick_start, recbole_eimf.quick_start.tuning, recbole_eimf.benchmark.runner, "
        "recbole_eimf.esim, recbole_eimf.model.sequential_recommender; "
        "print(sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.')))"
    ) == "[]"


def test_importing_the_plugin_loads_neither_torch_nor_recbole():
    # Every worker process and `import recbole_eimf.jsonl` pay for this import: the shims wait
    # for RecBole's own import instead of importing its model zoo and trainer up front.
    assert _printed_by(
        "import sys, recbole_eimf, recbole_eimf.jsonl; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'recbole', 'pandas', 'sklearn'}))"
    ) == "[]"


def test_shims_hold_when_recbole_was_imported_first():
    assert _printed_by(
        "import torch, recbole.model.sequential_recommender, recbole.trainer.trainer as t; "
        "assert torch.is_anomaly_enabled(); "  # what RecBole's SINE does on its own
        "import recbole_eimf; "
        "print(torch.is_anomaly_enabled(), type(t.torch).__name__)"
    ) == "False _TrustedTorch"
