"""ESIM, the Explicit Semantic Interest Module: LLM-stated interests of typical users, as training targets.

Offline preprocessing before EIMF trains (``docs/METHOD.md``, section ESIM). Data flows
one way: RecBole's training dataset -> ESIM (cached on disk) -> the model. ESIM imports no model.

The contract with the pipeline
------------------------------
The run layer's ``esim`` stage (:mod:`recbole_eimf.quick_start.stages`) calls one function before
it builds a model that declares the stage (EIMF), and hands the result to the model::

    from recbole_eimf.esim import load_semantic_targets
    targets = load_semantic_targets(config, dataset)   # dataset: train_data.dataset

It builds the targets (or loads them from the cache: a second run makes no LLM request) and
returns a :class:`SemanticTargets` of CPU tensors. Per-user tensors are indexed by RecBole's
internal user id (``n_users = dataset.user_num``, row 0 is RecBole's padding user); the targets
themselves are stored once per distinct target (``R`` rows: one per typical user with interests,
plus one per cluster with ``semantic_scope: cluster``), since most users have none:

==================  ======================  =====================================================
``target_row``      ``[n_users]`` long      the user's row of the three tensors below (-1: none)
``labels``          ``[R, P]`` float        multi-hot concepts of the target's stated interests
``interests``       ``[R, J, d_t]``         semantic interest embeddings (unit length; 0 if masked)
``interest_mask``   ``[R, J]`` bool         which of the J slots hold an interest
``concepts``        ``[P, d_t]`` float      concept prototypes (unit length)
``user_cluster``    ``[n_users]`` long      the user's k-means cluster (-1: no training data)
``is_typical``      ``[n_users]`` bool      the user was sent to the LLM (a typical user)
==================  ======================  =====================================================

``P = n_concepts`` (fewer if there are fewer distinct interests), ``J = max_interests`` (default:
the model's ``n_interests``), ``d_t`` = the text encoder's width (``targets.semantic_dim``).
``targets.has_target`` is ``target_row >= 0``; ``targets.of_users(users)`` gives the three target
tensors of users that have one; ``targets.of_batch(users)`` those of a batch's rows that have one,
with their positions in the batch. Invariant: every row has at least one interest and one label.
``semantic_scope: typical`` gives targets to typical users only (as in the paper);
``semantic_scope: cluster`` also gives every other user of a cluster its cluster's targets.
``targets.manifest`` says what produced them (dataset, split, template hash, LLM, encoder, keys);
``targets.to(device)`` moves the tensors.

Only training interactions are read: a user's validation and test items never reach a profile, a
prompt or a label (:mod:`recbole_eimf.esim.sequences`).

Steps (one module each): :mod:`sequences` (training sequences), :mod:`item_text` (readable item
text from ``text_fields``), :mod:`encoders` (text encoders), :mod:`profiles` (user profiles and
typical users), :mod:`tokens` and :mod:`prompts` (prompt building under a token budget),
:mod:`backends` (``openai``, ``local``, ``extractive``), :mod:`parsing`, :mod:`extraction`
(cache-first requests with bounded concurrency), :mod:`concepts`, :mod:`cache`, :mod:`report`,
:mod:`pipeline` (all of it). ``run_recbole_eimf.py --stage=esim`` is
:func:`recbole_eimf.quick_start.run_esim_stage`. A local OpenAI-compatible server for tests and
offline trials is test support: ``tests/support/loopback.py``.

Config keys: ``recbole_eimf/properties/esim.yaml`` (each with its one-line description).
"""

from recbole_eimf.esim.errors import EsimError, LLMFatalError
from recbole_eimf.esim.pipeline import EsimResult, SemanticTargets, dry_run, load_semantic_targets, run_esim
from recbole_eimf.esim.settings import EsimSettings

__all__ = [
    "load_semantic_targets",
    "SemanticTargets",
    "EsimSettings",
    "run_esim",
    "dry_run",
    "EsimResult",
    "EsimError",
    "LLMFatalError",
]
