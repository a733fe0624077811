# -*- coding: utf-8 -*-
r"""
MIND
################################################

Reference:
    Chao Li, Zhiyuan Liu, Mengmeng Wu, Yuchi Xu, Pipei Huang, Huan Zhao, Guoliang Kang,
    Qiwei Chen, Wei Li and Dik Lun Lee. "Multi-Interest Network with Dynamic Routing for
    Recommendation at Tmall." in CIKM 2019.

Reference code:
    https://github.com/THUDM/ComiRec (its MIND baseline)
"""

from torch import nn

from recbole_eimf.model.abstract_recommender import MultiInterestRecommender
from recbole_eimf.model.layers import CapsuleRouting


class MIND(MultiInterestRecommender):
    r"""MIND: behaviour-to-interest routing with one shared bilinear map.

    A shared map cannot separate interests by itself, so routing logits start from a fixed
    ``N(0, routing_init_std^2)`` draw (stored with the model, so inference is deterministic).
    ``relu_layer`` adds the ReLU projection ComiRec's MIND baseline applies to the capsules
    (``tf.layers.dense(..., activation=relu)``; the paper's "two ReLU layers" after the capsules
    fold in user-profile features, which sequential data here does not have). It is **off by
    default**: with it, the capsules (norm < 1 after squash, tiny at initialisation) feed a
    Linear + ReLU whose bias learns a user-independent vector first, so epoch 0 is a popularity-like
    fit; the non-negative, unbounded interests then fit the training prefixes (training loss keeps
    falling) while validation NDCG@20 falls below epoch 0 (amazon-beauty, lr 0.001: 0.0112 at
    epoch 0, 0.0082-0.0091 after). Scoring the squashed capsules directly, as ComiRec-DR does,
    makes validation rise every epoch (0.0033 -> 0.0132 over 5 epochs, above ComiRec-DR's 0.0122).
    Evidence and ablations: docs/BENCHMARKS.md, "MIND: validation collapse and fix (CPU)".
    The label-aware attention of the paper is taken at its hard limit (hard readout by the
    target), as in ComiRec; the dynamic number of interests per user is not implemented.
    """

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.routing = CapsuleRouting(
            self.embedding_size,
            self.n_interests,
            self.max_seq_length,
            iterations=config["routing_iterations"],
            shared=True,
            init_std=config["routing_init_std"],
        )
        self.projection = (
            nn.Sequential(nn.Linear(self.embedding_size, self.embedding_size), nn.ReLU())
            if config["relu_layer"]
            else nn.Identity()
        )
        self.apply(self._init_weights)

    def multi_interest(self, item_seq, item_seq_len):
        interests = self.routing(
            self.embedding_dropout(self.item_embedding(item_seq)), item_seq != 0, record=self.routing_recorder
        )
        return self.projection(interests)
