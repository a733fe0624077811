"""The plugin's sequential recommenders, one model per file (file name = model name, lower case)."""

from recbole_eimf.model.sequential_recommender.comirecdr import ComiRecDR
from recbole_eimf.model.sequential_recommender.comirecsa import ComiRecSA
from recbole_eimf.model.sequential_recommender.eimf import EIMF
from recbole_eimf.model.sequential_recommender.mind import MIND
from recbole_eimf.model.sequential_recommender.transmi import TransMI

__all__ = ["EIMF", "ComiRecSA", "ComiRecDR", "MIND", "TransMI"]
