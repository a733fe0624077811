# -*- coding: utf-8 -*-
r"""
TransMI
################################################

A transformer multi-interest backbone: SASRec's causal self-attention encoder, whose outputs feed
ComiRec-SA-style multi-head attentive pooling into K interests.

Reference:
    Wang-Cheng Kang and Julian McAuley. "Self-Attentive Sequential Recommendation." in ICDM 2018.
    Yukuo Cen et al. "Controllable Multi-Interest Framework for Recommendation." in KDD 2020.
"""

import logging

import torch
from torch import nn

from recbole.model.layers import TransformerEncoder

from recbole_eimf.errors import ConfigError
from recbole_eimf.model.abstract_recommender import MultiInterestRecommender
from recbole_eimf.model.layers import attentive_pooling

logger = logging.getLogger(__name__)


class TransMI(MultiInterestRecommender):
    r"""K interests from a causal transformer over the item sequence.

    ``H = Transformer(LayerNorm(E[seq] + P))`` with RecBole's ``TransformerEncoder`` (as SASRec).
    With ``include_last`` the first interest is ``H`` at the last real position, which is exactly
    SASRec's user vector; the other interests (all K without it) are attentive poolings of ``H``,
    ``softmax_positions((W_2 tanh(W_1 H^T))^T) H``, padding masked. Scoring by the max over
    interests therefore contains SASRec's score as one candidate.

    It trains with ``train_readout: max`` by default (every item's logit is its best interest's,
    the score inference ranks by): with ComiRec's target readout the pooled interests never meet
    the negatives (docs/BENCHMARKS.md compares the two readouts).

    The routing regulariser (``routing_reg_weight``) acts on the pooling attention, so it needs
    at least one pooled interest. ``embedding_dropout`` does not apply: ``hidden_dropout_prob``
    already drops the input embeddings.
    """

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        d = self.embedding_size
        self.include_last = config["include_last"]
        n_pooled = self.n_interests - 1 if self.include_last else self.n_interests
        if self.routing_reg_weight > 0 and n_pooled == 0:
            raise ConfigError(
                "`routing_reg_weight` > 0 needs a pooled interest: TransMI with `include_last` and "
                "`n_interests: 1` has no pooling attention to regularise"
            )
        if self.embedding_dropout_prob > 0:
            logger.warning("TransMI ignores `embedding_dropout`; its input dropout is `hidden_dropout_prob`")
        self.position_embedding = nn.Embedding(self.max_seq_length, d)
        self.trm_encoder = TransformerEncoder(
            n_layers=config["n_layers"],
            n_heads=config["n_heads"],
            hidden_size=d,
            inner_size=config["inner_size"],
            hidden_dropout_prob=config["hidden_dropout_prob"],
            attn_dropout_prob=config["attn_dropout_prob"],
            hidden_act=config["hidden_act"],
            layer_norm_eps=config["layer_norm_eps"],
        )
        self.LayerNorm = nn.LayerNorm(d, eps=config["layer_norm_eps"])
        self.dropout = nn.Dropout(config["hidden_dropout_prob"])
        self.pooling = (
            nn.Sequential(nn.Linear(d, config["hidden_ratio"] * d), nn.Tanh(), nn.Linear(config["hidden_ratio"] * d, n_pooled))
            if n_pooled > 0
            else None
        )
        self.apply(self._init_weights)

    def pooled_interests(self) -> slice:
        # With ``include_last`` interest 0 is SASRec's last-position vector, the rest pool.
        return slice(1 if self.include_last else 0, self.n_interests)

    def multi_interest(self, item_seq, item_seq_len):
        positions = torch.arange(item_seq.size(1), device=item_seq.device)
        h = self.item_embedding(item_seq) + self.position_embedding(positions).unsqueeze(0)
        h = self.dropout(self.LayerNorm(h))
        h = self.trm_encoder(h, self.get_attention_mask(item_seq), output_all_encoded_layers=True)[-1]
        interests = []
        if self.include_last:
            interests.append(self.gather_indexes(h, item_seq_len - 1).unsqueeze(1))
        if self.pooling is not None:
            pooled, att = attentive_pooling(h, self.pooling(h), item_seq)
            self.record_routing(att)  # the routing regulariser's matrix: pooled interests only
            interests.append(pooled)
        return torch.cat(interests, dim=1)
