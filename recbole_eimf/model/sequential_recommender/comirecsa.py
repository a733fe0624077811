# -*- coding: utf-8 -*-
r"""
ComiRecSA
################################################

Reference:
    Yukuo Cen, Jianwei Zhang, Xu Zou, Chang Zhou, Hongxia Yang and Jie Tang.
    "Controllable Multi-Interest Framework for Recommendation." in KDD 2020.

Reference code:
    https://github.com/THUDM/ComiRec
"""

from typing import Any, ClassVar, Mapping

import torch
from torch import nn

from recbole_eimf.errors import ConfigError
from recbole_eimf.model.abstract_recommender import CONFIG_FALLBACKS, MultiInterestRecommender, _number
from recbole_eimf.model.layers import attentive_pooling

# ComiRec-SA's own options; without them (older configs) the model is ComiRec's.
SA_FALLBACKS = {
    "position_embedding": True,
    "sequence_layer_norm": False,
    "interest_layer_norm": False,
    "attention_dropout": 0.0,
    "interest_projection": False,
}


class ComiRecSA(MultiInterestRecommender):
    r"""ComiRec-SA: K interests by multi-head self-attentive pooling over the item sequence.

    ``H = E[seq] + P`` (item plus learnable position embeddings),
    ``A = softmax_positions((W_2 tanh(W_1 H^T))^T)`` with ``W_1`` of size ``(hidden_ratio*d) x d``
    and ``W_2`` of size ``K x (hidden_ratio*d)``, padding masked, and ``V = A H``
    (docs/METHOD.md, IBIM). Trained with hard readout by the target; scored by the max over
    interests (see :class:`MultiInterestRecommender`).

    Options (ComiRec's model when all are at their fallbacks):

    * ``position_embedding`` False: ``H = E[seq]``;
    * ``sequence_layer_norm``: LayerNorm on ``H`` (before ``embedding_dropout``), as SASRec's input;
    * ``attention_dropout`` p > 0: dropout on ``A`` during training;
    * ``interest_layer_norm``: LayerNorm on each interest ``v_k``, so every interest scores at one
      scale; without it the length of a weighted mean of embeddings follows its attention;
    * ``interest_projection``: each interest passes through a learnt ``d x d`` linear map before it
      scores items. Without it ``v_k`` is a mean of the very embeddings it scores, so every item of
      the sequence scores itself by its own squared norm.
    """

    CONFIG_FALLBACKS: ClassVar[Mapping[str, Any]] = {**CONFIG_FALLBACKS, **SA_FALLBACKS}

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        options = self._sa_options(config)
        d = self.embedding_size
        hidden = config["hidden_ratio"] * d
        self.position_embedding = nn.Embedding(self.max_seq_length, d) if options["position_embedding"] else None
        self.sequence_norm = nn.LayerNorm(d) if options["sequence_layer_norm"] else nn.Identity()
        p = float(options["attention_dropout"])
        self.attention_dropout = nn.Dropout(p) if p > 0 else nn.Identity()
        self.interest_norm = nn.LayerNorm(d) if options["interest_layer_norm"] else nn.Identity()
        self.interest_projection = nn.Linear(d, d) if options["interest_projection"] else nn.Identity()
        self.W1 = nn.Linear(d, hidden)
        self.W2 = nn.Linear(hidden, self.n_interests)
        self.apply(self._init_weights)

    def _sa_options(self, config) -> dict:
        """ComiRec-SA's own keys, checked (a bad value names its key)."""
        options = {key: self._option(config, key) for key in SA_FALLBACKS}
        for key, value in options.items():
            if key != "attention_dropout" and not isinstance(value, bool):
                raise ConfigError(f"`{key}` must be True or False, got {value!r}")
        p = options["attention_dropout"]
        if not _number(p) or not 0 <= p < 1:
            raise ConfigError(f"`attention_dropout` must be a number in [0, 1) (0: off), got {p!r}")
        return options

    def multi_interest(self, item_seq, item_seq_len):
        h = self.item_embedding(item_seq)
        if self.position_embedding is not None:
            positions = torch.arange(item_seq.size(1), device=item_seq.device)
            h = h + self.position_embedding(positions).unsqueeze(0)
        h = self.embedding_dropout(self.sequence_norm(h))
        interests, att = attentive_pooling(h, self.W2(torch.tanh(self.W1(h))), item_seq)
        self.record_routing(att)
        if not isinstance(self.attention_dropout, nn.Identity):
            interests = self.attention_dropout(att) @ h
        return self.interest_projection(self.interest_norm(interests))  # [B, K, d]
