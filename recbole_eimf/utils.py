"""Model and trainer lookup: the plugin's models first, then RecBole's."""

from __future__ import annotations

import importlib
import importlib.resources
import importlib.util
from pathlib import Path
from typing import Any, List, Mapping, Optional, Type

from recbole.utils import get_trainer as recbole_get_trainer

from recbole_eimf.errors import ConfigError

PLUGIN_MODEL_PACKAGES = ["recbole_eimf.model.sequential_recommender"]
RECBOLE_MODEL_PACKAGES = [
    "recbole.model.general_recommender",
    "recbole.model.context_aware_recommender",
    "recbole.model.sequential_recommender",
    "recbole.model.knowledge_aware_recommender",
    "recbole.model.exlib_recommender",
]


def plugin_model_names() -> list[str]:
    """Names of the models this plugin defines, as they are spelled in ``model:``."""
    names = []
    for package in PLUGIN_MODEL_PACKAGES:
        module = importlib.import_module(package)
        names += list(getattr(module, "__all__", []))
    return names


def _find_model_module(package: str, model_name: str):
    module_path = f"{package}.{model_name.lower()}"
    try:
        found = importlib.util.find_spec(module_path)
    except ModuleNotFoundError:
        # RecBole's exlib package imports xgboost/lightgbm, which are optional.
        return None
    return importlib.import_module(module_path) if found is not None else None


def get_model(model_name: str) -> Type:
    """Return the model class named ``model_name``, searching the plugin first, then RecBole.

    Same rule as RecBole's ``get_model``: model ``Name`` lives in module ``name.py``.
    """
    for package in PLUGIN_MODEL_PACKAGES + RECBOLE_MODEL_PACKAGES:
        module = _find_model_module(package, model_name)
        if module is not None and hasattr(module, model_name):
            return getattr(module, model_name)
    raise ConfigError(
        f"`model` [{model_name}] is neither a recbole-eimf model "
        f"({', '.join(plugin_model_names())}) nor a RecBole model (e.g. SASRec, GRU4Rec, SINE). "
        "Model names are case-sensitive."
    )


def get_trainer(model_type, model_name: str) -> Type:
    """RecBole's trainer for a model, logging the model's loss parts by name
    (:mod:`recbole_eimf.trainer`)."""
    from recbole_eimf.trainer import with_named_losses

    return with_named_losses(recbole_get_trainer(model_type, model_name))


def properties_dir() -> Path:
    """The defaults the package ships (RecBole-GNN's layout): ``overall.yaml`` (the evaluation
    protocol), ``model/<Model>.yaml``, ``dataset/<dataset>.yaml`` and one yaml per pipeline stage."""
    return Path(__file__).resolve().parent / "properties"


def props_dir() -> Path:
    """The experiment inputs (search spaces, tuned defaults, benchmark variants): ``props/``
    beside the package in a checkout (a clone or an editable install), else the copy a wheel ships."""
    package = Path(__file__).resolve().parent
    for candidate in (package.parent / "props", package / "props"):
        if (candidate / "benchmark").is_dir():
            return candidate
    return Path(str(importlib.resources.files("recbole_eimf.props")))


def tuned_dir() -> Path:
    """The folder of tuned defaults, ``props/tuned/<dataset>/<name>.yaml`` (see :mod:`recbole_eimf.config`)."""
    return props_dir() / "tuned"


def tuned_name(model: str, backbone: Optional[str] = None) -> str:
    """The file name (without ``.yaml``) of a model's tuned defaults: ``ComiRecSA``, or for a
    model that wraps a backbone ``EIMF-TransMI`` (its tuned weights depend on the backbone)."""
    return f"{model}-{backbone}" if backbone else model


def model_properties_dir() -> Path:
    """The folder holding the per-model default yaml files of the plugin's models."""
    return properties_dir() / "model"


_UNSET = "<unset>"


def changed_keys(
    old: Mapping[str, Any], new: Mapping[str, Any], fallbacks: Optional[Mapping[str, Any]] = None
) -> List[str]:
    """``key: old -> new`` for every key whose value differs between two settings, sorted by key;
    a key one side lacks has its ``fallbacks`` value there, else reads ``<unset>``."""
    fallbacks = fallbacks or {}
    changed = []
    for key in sorted(set(old) | set(new)):
        old_value = old.get(key, fallbacks.get(key, _UNSET))
        new_value = new.get(key, fallbacks.get(key, _UNSET))
        if old_value != new_value:
            changed.append(f"{key}: {old_value} -> {new_value}")
    return changed
