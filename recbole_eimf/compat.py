"""Make RecBole 1.2.1 run on today's numpy and torch.

``import recbole_eimf`` installs these shims and stays light: it imports numpy, not torch or
RecBole. The torch-side shims are applied when RecBole's module that needs them is first
imported (an import hook), so they hold whichever plugin module, test or user script imports
RecBole first. They touch only what RecBole 1.2.1 needs:

* numpy 2 removed ``np.float_``, ``np.complex_``, ``np.unicode_`` and ``np.bool8``; RecBole's
  ``Config.compatibility_settings`` reads the first three, and its metrics and data code use
  ``np.float``/``np.int``. The aliases are restored.
* torch >= 2.6 loads checkpoints with ``weights_only=True`` by default and refuses RecBole's,
  which pickle the whole ``Config``. RecBole's trainer module gets a ``torch`` whose ``load``
  defaults to ``weights_only=False``; checkpoints are the user's own files. Nothing outside
  ``recbole.trainer.trainer`` is affected.
* RecBole 1.2.1 calls APIs that pandas and torch have deprecated; the FutureWarnings they
  raise inside RecBole's own modules say nothing a user can act on and are silenced.
* ``recbole.model.sequential_recommender.sine`` switches on
  ``torch.autograd.set_detect_anomaly(True)`` for the whole process at import time, which
  makes every model about 1.5x slower: it is switched off again right after that import.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import types
import warnings
from typing import Callable, Dict

import numpy as np

_APPLIED = False

# alias -> numpy type it stood for before numpy 1.24 / 2.0 removed it
_NUMPY_ALIASES = {
    "float_": np.float64,
    "complex_": np.complex128,
    "unicode_": np.str_,
    "bool8": np.bool_,
    "int_": np.int_,
    "object_": np.object_,
    "float": float,
    "int": int,
    "bool": bool,
    "complex": complex,
    "object": object,
    "str": str,
    "long": int,
    "unicode": str,
}


def _patch_numpy() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # numpy warns on some removed names before raising
        for name, value in _NUMPY_ALIASES.items():
            if not hasattr(np, name):
                setattr(np, name, value)


class _TrustedTorch(types.ModuleType):
    """``torch`` as seen by RecBole's trainer: identical, except that ``load`` trusts the file."""

    def __init__(self) -> None:
        super().__init__("torch")

    def __getattr__(self, name: str):
        import torch

        return getattr(torch, name)

    @staticmethod
    def load(*args, **kwargs):
        import torch

        kwargs.setdefault("weights_only", False)
        return torch.load(*args, **kwargs)


def trusted_load(path, map_location=None):
    """Load a RecBole checkpoint (a pickled dict holding its ``Config``)."""
    import torch

    return torch.load(path, map_location=map_location, weights_only=False)


def _trust_trainer_checkpoints(module: types.ModuleType) -> None:
    module.torch = _TrustedTorch()


def _anomaly_off(_module: types.ModuleType) -> None:
    import torch

    torch.autograd.set_detect_anomaly(False)


# RecBole module -> what to do to it right after it is imported
_AFTER_IMPORT: Dict[str, Callable[[types.ModuleType], None]] = {
    "recbole.trainer.trainer": _trust_trainer_checkpoints,
    "recbole.model.sequential_recommender.sine": _anomaly_off,
}


class _PatchingLoader(importlib.abc.Loader):
    """Runs the module as its own loader would, then applies the module's shim."""

    def __init__(self, loader: importlib.abc.Loader, patch: Callable[[types.ModuleType], None]) -> None:
        self._loader, self._patch = loader, patch

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module: types.ModuleType) -> None:
        self._loader.exec_module(module)
        self._patch(module)


class _RecBoleShims(importlib.abc.MetaPathFinder):
    """Finds the RecBole modules of :data:`_AFTER_IMPORT` and wraps their loaders."""

    def find_spec(self, fullname, path, target=None):
        patch = _AFTER_IMPORT.get(fullname)
        if patch is None:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _PatchingLoader(spec.loader, patch)
        return spec


def apply() -> None:
    """Apply every shim once; later calls do nothing. Modules RecBole already imported (before
    ``recbole_eimf``) are patched at once, the others when they are imported."""
    global _APPLIED
    if _APPLIED:
        return
    _patch_numpy()
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"recbole(\.|$)")
    for name, patch in _AFTER_IMPORT.items():
        if name in sys.modules:
            patch(sys.modules[name])
    sys.meta_path.insert(0, _RecBoleShims())
    _APPLIED = True
