"""Base class of the plugin's multi-interest sequential recommenders."""

from __future__ import annotations

from typing import Union

import torch
from torch import nn

from recbole.model.abstract_recommender import SequentialRecommender
from recbole.model.loss import BPRLoss

from recbole_eimf.errors import ConfigError


class MultiInterestRecommender(SequentialRecommender):
    r"""A sequential recommender that represents a user by K interest vectors.

    Subclasses implement :meth:`multi_interest`, which maps a padded item sequence to
    ``[B, K, d]`` interest vectors. Everything else is shared:

    * training: the interest with the largest inner product with the target item's embedding is
      read out (ComiRec's hard readout) and scored against every item with softmax
      cross-entropy (``loss_type: CE``) or against the sampled negative (``loss_type: BPR``);
    * inference: ``score(i) = max_k <v_k, e_i>``, which equals ComiRec's merge of per-interest
      top-N lists. Only the item sequence is read: the target never reaches inference.
    """

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.embedding_size = config["embedding_size"]
        self.n_interests = config["n_interests"]
        self.loss_type = config["loss_type"]
        self.initializer_range = config["initializer_range"]
        if not isinstance(self.n_interests, int) or self.n_interests < 1:
            raise ConfigError(f"`n_interests` must be an integer >= 1, got {self.n_interests!r}")

        self.item_embedding = nn.Embedding(self.n_items, self.embedding_size, padding_idx=0)
        if self.loss_type == "CE":
            self.loss_fct = nn.CrossEntropyLoss()
        elif self.loss_type == "BPR":
            self.loss_fct = BPRLoss()
        else:
            raise ConfigError(f"`loss_type` must be 'CE' or 'BPR', got {self.loss_type!r}")

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            module.weight.data.normal_(mean=0.0, std=self.initializer_range)
        elif isinstance(module, nn.LayerNorm):
            module.bias.data.zero_()
            module.weight.data.fill_(1.0)
        if isinstance(module, nn.Linear) and module.bias is not None:
            module.bias.data.zero_()

    def multi_interest(self, item_seq: torch.Tensor, item_seq_len: torch.Tensor) -> torch.Tensor:
        """Return the user's interest vectors, ``[B, K, d]``, from a right-padded item sequence."""
        raise NotImplementedError

    def forward(self, item_seq: torch.Tensor, item_seq_len: torch.Tensor) -> torch.Tensor:
        return self.multi_interest(item_seq, item_seq_len)

    @staticmethod
    def hard_readout(interests: torch.Tensor, target_emb: torch.Tensor) -> torch.Tensor:
        """The interest closest (inner product) to each target: ``[B, K, d], [B, d] -> [B, d]``."""
        affinity = torch.einsum("bkd,bd->bk", interests, target_emb)
        best = affinity.argmax(dim=1)
        return interests[torch.arange(interests.size(0), device=interests.device), best]

    def recommendation_loss(self, interaction, interests: torch.Tensor) -> torch.Tensor:
        """Next-item loss of ``interests`` (``[B, K, d]``) on the batch's target items."""
        pos_items = interaction[self.POS_ITEM_ID]
        pos_emb = self.item_embedding(pos_items)
        user = self.hard_readout(interests, pos_emb)
        if self.loss_type == "BPR":
            neg_emb = self.item_embedding(interaction[self.NEG_ITEM_ID])
            return self.loss_fct((user * pos_emb).sum(-1), (user * neg_emb).sum(-1))
        logits = user @ self.item_embedding.weight.t()
        return self.loss_fct(logits, pos_items)

    def calculate_loss(self, interaction) -> Union[torch.Tensor, tuple]:
        interests = self.forward(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])
        return self.recommendation_loss(interaction, interests)

    def predict(self, interaction) -> torch.Tensor:
        interests = self.forward(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])
        item_emb = self.item_embedding(interaction[self.ITEM_ID])
        return torch.einsum("bkd,bd->bk", interests, item_emb).max(dim=1).values

    def full_sort_predict(self, interaction) -> torch.Tensor:
        interests = self.forward(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])
        all_items = self.item_embedding.weight.t()
        # Running max over interests keeps memory at [B, n_items] rather than [B, K, n_items].
        scores = interests[:, 0] @ all_items
        for k in range(1, interests.size(1)):
            scores = torch.maximum(scores, interests[:, k] @ all_items)
        return scores
