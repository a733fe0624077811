# -*- coding: utf-8 -*-
r"""
ComiRecDR
################################################

Reference:
    Yukuo Cen, Jianwei Zhang, Xu Zou, Chang Zhou, Hongxia Yang and Jie Tang.
    "Controllable Multi-Interest Framework for Recommendation." in KDD 2020.

Reference code:
    https://github.com/THUDM/ComiRec
"""

from recbole_eimf.model.abstract_recommender import MultiInterestRecommender
from recbole_eimf.model.layers import CapsuleRouting


class ComiRecDR(MultiInterestRecommender):
    r"""ComiRec-DR: K interest capsules by dynamic routing, one bilinear map per interest.

    Routing logits start at zero by default (``routing_init_std``), ``routing_iterations``
    rounds of routing with squash, padding masked (docs/METHOD.md, IBIM). Trained with hard
    readout by the target; scored by the max over interests.
    """

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.routing = CapsuleRouting(
            self.embedding_size,
            self.n_interests,
            self.max_seq_length,
            iterations=config["routing_iterations"],
            shared=False,
            init_std=config["routing_init_std"],
        )
        self.apply(self._init_weights)

    def multi_interest(self, item_seq, item_seq_len):
        seq_emb = self.embedding_dropout(self.item_embedding(item_seq))
        return self.routing(seq_emb, item_seq != 0, record=self.routing_recorder)
