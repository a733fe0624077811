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

import torch
from torch import nn

from recbole_eimf.model.abstract_recommender import MultiInterestRecommender
from recbole_eimf.model.layers import attentive_pooling


class ComiRecSA(MultiInterestRecommender):
    r"""ComiRec-SA: K interests by multi-head self-attentive pooling over the item sequence.

    ``H = E[seq] + P`` (item plus learnable position embeddings),
    ``A = softmax_positions((W_2 tanh(W_1 H^T))^T)`` with ``W_1`` of size ``(hidden_ratio*d) x d``
    and ``W_2`` of size ``K x (hidden_ratio*d)``, padding masked, and ``V = A H``
    (docs/METHOD.md, IBIM). Trained with hard readout by the target; scored by the max over
    interests (see :class:`MultiInterestRecommender`).
    """

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        hidden = config["hidden_ratio"] * self.embedding_size
        self.position_embedding = nn.Embedding(self.max_seq_length, self.embedding_size)
        self.W1 = nn.Linear(self.embedding_size, hidden)
        self.W2 = nn.Linear(hidden, self.n_interests)
        self.apply(self._init_weights)

    def multi_interest(self, item_seq, item_seq_len):
        positions = torch.arange(item_seq.size(1), device=item_seq.device)
        h = self.item_embedding(item_seq) + self.position_embedding(positions).unsqueeze(0)
        h = self.embedding_dropout(h)
        interests, att = attentive_pooling(h, self.W2(torch.tanh(self.W1(h))), item_seq)
        self.record_routing(att)
        return interests  # [B, K, d]
