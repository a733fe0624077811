"""Model and trainer lookup: the plugin's models first, then RecBole's."""

from __future__ import annotations

import importlib
import importlib.resources
import importlib.util
from pathlib import Path
from typing import Type

from recbole.utils import get_model as recbole_get_model
from recbole.utils import get_trainer as recbole_get_trainer

PLUGIN_MODEL_PACKAGES = ["recbole_eimf.model.sequential_recommender"]


def plugin_model_names() -> list[str]:
    """Names of the models this plugin defines, as they are spelled in ``model:``."""
    names = []
    for package in PLUGIN_MODEL_PACKAGES:
        module = importlib.import_module(package)
        names += list(getattr(module, "__all__", []))
    return names


def get_model(model_name: str) -> Type:
    """Return the model class named ``model_name``, searching the plugin first, then RecBole."""
    for package in PLUGIN_MODEL_PACKAGES:
        module_path = f"{package}.{model_name.lower()}"
        if importlib.util.find_spec(module_path) is not None:
            module = importlib.import_module(module_path)
            if hasattr(module, model_name):
                return getattr(module, model_name)
    try:
        return recbole_get_model(model_name)
    except ValueError:
        raise ValueError(
            f"`model` [{model_name}] is neither a recbole-eimf model "
            f"({', '.join(plugin_model_names())}) nor a RecBole model (e.g. SASRec, GRU4Rec, SINE). "
            "Model names are case-sensitive."
        ) from None


def get_trainer(model_type, model_name: str) -> Type:
    """Return the trainer class for a model: a plugin trainer named ``<model>Trainer`` or RecBole's."""
    if importlib.util.find_spec("recbole_eimf.trainer") is not None:
        module = importlib.import_module("recbole_eimf.trainer")
        if hasattr(module, model_name + "Trainer"):
            return getattr(module, model_name + "Trainer")
    return recbole_get_trainer(model_type, model_name)


def props_dir() -> Path:
    """The folder holding the plugin's experiment defaults (``props/`` of the repository)."""
    return Path(str(importlib.resources.files("recbole_eimf.props")))


def model_properties_dir() -> Path:
    """The folder holding the per-model default yaml files of the plugin's models."""
    return Path(__file__).resolve().parent / "properties" / "model"
