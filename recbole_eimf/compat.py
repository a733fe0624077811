"""Make RecBole 1.2.1 run on today's numpy and torch.

Import this module before anything from RecBole (``import recbole_eimf`` does it). It is
idempotent and touches only what RecBole 1.2.1 needs:

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
  makes every model about 1.5x slower. It is imported here once and anomaly detection is
  switched off again.
"""

from __future__ import annotations

import functools
import types
import warnings

import numpy as np
import torch

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
        return getattr(torch, name)

    @staticmethod
    @functools.wraps(torch.load)
    def load(*args, **kwargs):
        kwargs.setdefault("weights_only", False)
        return torch.load(*args, **kwargs)


def trusted_load(path, map_location=None):
    """Load a RecBole checkpoint (a pickled dict holding its ``Config``)."""
    return torch.load(path, map_location=map_location, weights_only=False)


def apply() -> None:
    """Apply every shim once; later calls do nothing."""
    global _APPLIED
    if _APPLIED:
        return
    _patch_numpy()
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"recbole(\.|$)")

    import recbole.model.sequential_recommender  # noqa: F401  (imports SINE, which turns anomaly on)
    import recbole.trainer.trainer as recbole_trainer

    torch.autograd.set_detect_anomaly(False)
    recbole_trainer.torch = _TrustedTorch()
    _APPLIED = True
