"""A rough estimate of one training batch's memory, checked before training starts.

A setting such as ``MAX_ITEM_LIST_LENGTH: 1000`` can need more memory than the machine has, and
finds out mid-epoch (or swaps for hours). The estimate adds the largest float32 tensors of one
training step, from the config alone, for any sequential model:

* the parameters, with their gradients and Adam's two moments: 4 x params;
* the sequence activations, ``[B, L, H]`` per layer, about ``SEQUENCE_COPIES`` of them kept for
  the backward pass (queries, keys, values, attention output, the 4H feed-forward, norms, dropout);
* the attention scores of a transformer, ``[B, heads, L, L]`` per layer (scores, softmax, dropout);
* the training logits and their gradient: ``[B, n_items]`` for the full softmax, ``[B, N + 1]``
  with ``sampled_softmax_negatives: N``, times K interests under ``train_readout: max``.

``B`` is the batch actually formed (``train_batch_size``, or fewer training rows), ``L`` is
``MAX_ITEM_LIST_LENGTH`` (the longest training history instead under ``trim_padding: True``, which
cuts batches to their longest row), ``H`` is ``hidden_size`` or ``embedding_size``, layers and heads are
``n_layers`` and ``n_heads`` when the model has them (1 and none otherwise). It is a lower bound of
the order of magnitude, not a measurement: it warns when even that exceeds the free memory.
"""

from __future__ import annotations

import logging
from typing import Dict, Mapping, Optional

import psutil
import torch

FLOAT_BYTES = 4
SEQUENCE_COPIES = 10
ATTENTION_COPIES = 3
LOGIT_COPIES = 2  # the logits and their gradient
OPTIMIZER_COPIES = 4  # a parameter, its gradient, Adam's two moments

logger = logging.getLogger(__name__)


def _value(config: Mapping, key: str):
    return config[key] if key in config else None  # a Config or a plain dict


def _int(config: Mapping, key: str, default: int) -> int:
    value = _value(config, key)
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else default


def batch_memory(config: Mapping, n_items: int, n_params: int, batch_size: int) -> Dict[str, int]:
    """Bytes of the largest tensors of one training step (see the module's docstring), by term."""
    length = _int(config, "MAX_ITEM_LIST_LENGTH", 50)
    hidden = _int(config, "hidden_size", _int(config, "embedding_size", 64))
    layers, heads = _int(config, "n_layers", 1), _int(config, "n_heads", 0)
    negatives = _int(config, "sampled_softmax_negatives", 0)
    readout = _int(config, "n_interests", 1) if _value(config, "train_readout") == "max" else 1
    width = negatives + 1 if negatives else n_items
    terms = {
        "parameters, gradients and Adam moments": OPTIMIZER_COPIES * n_params,
        "sequence activations [B, L, H] x layers": SEQUENCE_COPIES * batch_size * length * hidden * layers,
        "attention scores [B, heads, L, L] x layers": ATTENTION_COPIES * batch_size * heads * length**2 * layers,
        "training logits [B, K, items]": LOGIT_COPIES * batch_size * readout * width,
    }
    return {name: count * FLOAT_BYTES for name, count in terms.items()}


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


def warn_if_batch_exceeds_memory(config, model: torch.nn.Module, train_data, available: Optional[int] = None) -> bool:
    """Log the estimate; warn, naming the keys to lower, when it exceeds the free memory. True if it warned."""
    batch_size = min(_int(config, "train_batch_size", 2048), max(len(train_data.dataset), 1))
    n_params = sum(p.numel() for p in model.parameters())
    terms = batch_memory(_trimmed(config, train_data.dataset), model.n_items, n_params, batch_size)
    total = sum(terms.values())
    free = available_memory(config["device"]) if available is None else available
    gib = 1024**3
    logger.info(f"memory estimate of one training batch: {total / gib:.2f} GiB ({free / gib:.1f} GiB free)")
    if total <= free:
        return False
    largest = ", ".join(f"{name} {size / gib:.1f} GiB" for name, size in sorted(terms.items(), key=lambda t: -t[1]))
    logger.warning(
        f"one training batch needs about {total / gib:.1f} GiB, more than the {free / gib:.1f} GiB free "
        f"on {config['device']} ({largest}; batch {batch_size}, MAX_ITEM_LIST_LENGTH "
        f"{config['MAX_ITEM_LIST_LENGTH']}): lower `train_batch_size` or `MAX_ITEM_LIST_LENGTH`, or set "
        "`sampled_softmax_negatives` (e.g. 4096) instead of the full softmax over every item"
    )
    return True
