"""A rough estimate of one training batch's and one evaluation batch's memory, checked before
training starts: a run that cannot fit stops with an error naming the key to change.

A setting such as ``MAX_ITEM_LIST_LENGTH: 1000``, or the full softmax over a 300k-item catalogue,
can need more memory than the machine has, and finds out mid-epoch (or swaps for hours). The
estimate adds the largest float32 tensors of one training step, from the config alone, for any
sequential model:

* the parameters, with their gradients and Adam's two moments: 4 x params;
* the sequence activations, ``[B, L, H]`` per layer, about ``SEQUENCE_COPIES`` of them kept for
  the backward pass (queries, keys, values, attention output, the 4H feed-forward, norms, dropout);
* the attention scores of a transformer, ``[B, heads, L, L]`` per layer (scores, softmax, dropout);
* the training logits and their gradient: ``[B, n_items]`` for the full softmax, ``[B, N + 1]``
  with ``sampled_softmax_negatives: N`` (or the count the model chose itself above
  ``full_softmax_max_items``), times K interests under ``train_readout: max``.

Full-sort evaluation holds RecBole's ``[eval_batch_size, n_items]`` scores and the as large
integer matrix its collector marks the positives in, plus the plugin's scoring blocks
(:data:`~recbole_eimf.model.abstract_recommender.SCORE_BLOCK_BYTES`).

``B`` is the batch actually formed (``train_batch_size``, or fewer training rows), ``L`` is
``MAX_ITEM_LIST_LENGTH`` (the longest training history instead under ``trim_padding: True``, which
cuts batches to their longest row), ``H`` is ``hidden_size`` or ``embedding_size``, layers and heads are
``n_layers`` and ``n_heads`` when the model has them (1 and none otherwise). It is a lower bound of
the order of magnitude, not a measurement: where even that exceeds the free memory the run cannot
fit, and :func:`check_memory` raises a :class:`~recbole_eimf.errors.ConfigError`.
"""

from __future__ import annotations

import logging
from typing import Dict, Mapping, Optional

import psutil
import torch

from recbole_eimf.errors import ConfigError
from recbole_eimf.model.abstract_recommender import SCORE_BLOCK_BYTES, SCORE_BLOCK_COPIES

FLOAT_BYTES = 4
SEQUENCE_COPIES = 10
ATTENTION_COPIES = 3
LOGIT_COPIES = 2  # the logits and their gradient
OPTIMIZER_COPIES = 4  # a parameter, its gradient, Adam's two moments
EVAL_SCORE_COPIES = 2  # RecBole's scores and its collector's positives matrix, both [B, n_items]
LOGITS = "training logits [B, K, items]"
GIB = 1024**3

logger = logging.getLogger(__name__)


def _value(config: Mapping, key: str):
    return config[key] if key in config else None  # a Config or a plain dict


def _int(config: Mapping, key: str, default: int) -> int:
    value = _value(config, key)
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else default


def batch_memory(
    config: Mapping, n_items: int, n_params: int, batch_size: int, negatives: Optional[int] = None
) -> Dict[str, int]:
    """Bytes of the largest tensors of one training step (see the module's docstring), by term;
    ``negatives`` is the sampled softmax's count where the model resolved it (else the config's)."""
    length = _int(config, "MAX_ITEM_LIST_LENGTH", 50)
    hidden = _int(config, "hidden_size", _int(config, "embedding_size", 64))
    layers, heads = _int(config, "n_layers", 1), _int(config, "n_heads", 0)
    negatives = _int(config, "sampled_softmax_negatives", 0) if negatives is None else negatives
    readout = _int(config, "n_interests", 1) if _value(config, "train_readout") == "max" else 1
    width = negatives + 1 if negatives else n_items
    terms = {
        "parameters, gradients and Adam moments": OPTIMIZER_COPIES * n_params,
        "sequence activations [B, L, H] x layers": SEQUENCE_COPIES * batch_size * length * hidden * layers,
        "attention scores [B, heads, L, L] x layers": ATTENTION_COPIES * batch_size * heads * length**2 * layers,
        LOGITS: LOGIT_COPIES * batch_size * readout * width,
    }
    return {name: count * FLOAT_BYTES for name, count in terms.items()}


def evaluation_memory(config: Mapping, n_items: int) -> int:
    """Bytes of one full-sort evaluation batch: the ``[eval_batch_size, n_items]`` scores and
    positives RecBole holds, and the plugin's scoring blocks."""
    scores = FLOAT_BYTES * _int(config, "eval_batch_size", 2048) * n_items
    return EVAL_SCORE_COPIES * scores + min(SCORE_BLOCK_BYTES, SCORE_BLOCK_COPIES * scores)


def _trimmed(config: Mapping, dataset) -> Mapping:
    """``config``, with ``MAX_ITEM_LIST_LENGTH`` the longest training history if batches are trimmed to it."""
    field = getattr(dataset, "item_list_length_field", None)
    if _value(config, "trim_padding") is not True or field not in dataset.inter_feat.columns:
        return config
    longest = int(dataset.inter_feat[field].max()) if len(dataset.inter_feat) else 1
    length = _int(config, "MAX_ITEM_LIST_LENGTH", 50)
    values = dict(getattr(config, "final_config_dict", config))  # a Config or a plain dict
    values["MAX_ITEM_LIST_LENGTH"] = min(length, longest)
    return values


def available_memory(device) -> int:
    """Free bytes where the model trains: the GPU's free memory, else the system's available RAM."""
    device = torch.device(device)
    if device.type == "cuda" and torch.cuda.is_available():
        return torch.cuda.mem_get_info(device)[0]
    return psutil.virtual_memory().available


def resolved_negatives(model: torch.nn.Module) -> Optional[int]:
    """The sampled softmax's negatives the model (or the backbone it wraps) trains with, if it has one."""
    counts = [m.sampled_negatives for m in model.modules() if isinstance(getattr(m, "sampled_negatives", None), int)]
    return counts[0] if counts else None


def _training_advice(largest: str, n_items: int) -> str:
    if largest == LOGITS:
        return (f"set `sampled_softmax_negatives` (e.g. 4096) or a `full_softmax_max_items` below the "
                f"{n_items - 1:,} items instead of the full softmax, or lower `train_batch_size`")
    if largest.startswith("parameters"):
        return "lower `embedding_size` (the item embeddings grow with the catalogue)"
    return "lower `train_batch_size` or `MAX_ITEM_LIST_LENGTH`"


def check_memory(config, model: torch.nn.Module, train_data, available: Optional[int] = None) -> Dict[str, int]:
    """Log the estimates of one training and one evaluation batch; raise a ConfigError naming the
    key to change and the memory needed where either exceeds the free memory. Returns the bytes."""
    batch_size = min(_int(config, "train_batch_size", 2048), max(len(train_data.dataset), 1))
    n_params = sum(p.numel() for p in model.parameters())
    terms = batch_memory(_trimmed(config, train_data.dataset), model.n_items, n_params, batch_size,
                         negatives=resolved_negatives(model))
    needs = {"training": sum(terms.values()), "evaluation": evaluation_memory(config, model.n_items)}
    free = available_memory(config["device"]) if available is None else available
    logger.info(f"memory estimate of one training batch: {needs['training'] / GIB:.2f} GiB, of one full-sort "
                f"evaluation batch: {needs['evaluation'] / GIB:.2f} GiB ({free / GIB:.1f} GiB free)")
    if needs["training"] > free:
        ranked = sorted(terms.items(), key=lambda t: -t[1])
        largest = ", ".join(f"{name} {size / GIB:.1f} GiB" for name, size in ranked)
        raise ConfigError(
            f"one training batch needs about {needs['training'] / GIB:.1f} GiB, more than the {free / GIB:.1f} GiB "
            f"free on {config['device']} ({largest}; batch {batch_size}, MAX_ITEM_LIST_LENGTH "
            f"{config['MAX_ITEM_LIST_LENGTH']}): {_training_advice(ranked[0][0], model.n_items)}"
        )
    if needs["evaluation"] > free:
        # The rows whose scores and positives fit next to the largest scoring blocks.
        rows = max(1, (free - SCORE_BLOCK_BYTES) // (EVAL_SCORE_COPIES * FLOAT_BYTES * model.n_items))
        raise ConfigError(
            f"one full-sort evaluation batch needs about {needs['evaluation'] / GIB:.1f} GiB ([eval_batch_size, "
            f"n_items] = [{config['eval_batch_size']}, {model.n_items:,}] scores and positives), more than the "
            f"{free / GIB:.1f} GiB free on {config['device']}: lower `eval_batch_size` (about {rows:,} fit)"
        )
    return needs
