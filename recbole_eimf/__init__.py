"""recbole-eimf: EIMF and multi-interest sequential recommenders as a RecBole plugin."""

from recbole_eimf import compat

compat.apply()

__version__ = "0.1.0"
