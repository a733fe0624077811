"""Base class of the plugin's multi-interest sequential recommenders."""

from __future__ import annotations

import contextlib
import logging
import math
from typing import Any, Callable, ClassVar, Dict, Iterator, List, Mapping, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from recbole.model.abstract_recommender import SequentialRecommender
from recbole.model.loss import BPRLoss

from recbole_eimf.errors import ConfigError
from recbole_eimf.trim import length_groups

logger = logging.getLogger(__name__)

SAMPLING_DISTRIBUTIONS = ("uniform", "popularity")
TRAIN_READOUTS = ("target", "max")
FLOAT32_BYTES = 4
# Full-sort scoring works on blocks of items whose temporaries take at most this much, whatever
# the catalogue; each block's product ([2048, d] x [d, 10922] items) still runs at full matmul speed.
SCORE_BLOCK_BYTES = 256 * 1024**2
SCORE_BLOCK_COPIES = 3  # the running max, one interest's product, and their maximum


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# What a config without the key means (an older checkpoint's pickled config, a config built for
# another model, a yaml from before the key existed): the behaviour from before the key existed,
# so every training option is off unless asked for. The benchmark harness reads these too: a key
# added to a default yaml with this value does not make earlier runs stale.
CONFIG_FALLBACKS: Dict[str, Any] = {
    "trim_padding": True,
    "sampled_softmax_negatives": 0,
    "sampled_softmax_distribution": "uniform",
    "logq_correction": True,
    "logq_correct_positive": False,
    "hard_negative_beta": 0.0,
    "routing_reg_weight": 0.0,
    "embedding_dropout": 0.0,
    "weight_decay": 0.0,
    "train_readout": "target",
    # Every run before the key existed had a catalogue below the limit: the same training.
    "full_softmax_max_items": 50_000,
}
# The sampled softmax chosen above `full_softmax_max_items`: its [B, K, 4097] logits take 134 MB at
# batch 2,048 and K = 4, whatever the catalogue, and 4,096 shared negatives with logQ correction
# are ComiRec's own order of magnitude on Amazon Books (10 x its batch of 128 = 1,280).
AUTO_SAMPLED_NEGATIVES = 4096


def config_option(config, key: str, fallbacks: Mapping[str, Any]) -> Any:
    """``config[key]``, or ``fallbacks[key]`` where the config lacks it."""
    value = config[key]
    return fallbacks[key] if value is None else value


class MultiInterestRecommender(SequentialRecommender):
    r"""A sequential recommender that represents a user by K interest vectors.

    Subclasses implement :meth:`multi_interest`, which maps a padded item sequence to
    ``[B, K, d]`` interest vectors. Everything else is shared:

    * training: the interest with the largest inner product with the target item's embedding is
      read out (ComiRec's hard readout) and scored against every item with softmax
      cross-entropy (``loss_type: CE``) or against the sampled negative (``loss_type: BPR``);
    * inference: ``score(i) = max_k <v_k, e_i>``, which equals ComiRec's merge of per-interest
      top-N lists. Only the item sequence is read: the target never reaches inference.
    * ``train_readout: max`` (the default of TransMI; the ComiRec family and MIND default to
      ``target``, ComiRec's readout above) trains on the score that inference ranks by: every
      item's logit is ``max_k <v_k, e_i>``, in the full softmax, the sampled softmax and BPR alike.
      With the target readout only the chosen interest meets the negatives, so the other interests
      are never taught to keep their scores of wrong items low, yet at inference each of them can
      put items into the top N. The max readout costs K inner products per item instead of one.
    * ``trim_padding`` (on by default): rows are grouped by length and each group is cut to its
      longest sequence before :meth:`multi_interest` (see :meth:`user_interests`).

    Training options (config keys, all off by default; off, training is exactly as without them):

    * ``sampled_softmax_negatives`` N > 0: softmax over the target and N negatives drawn once per
      batch (shared by its rows) from ``sampled_softmax_distribution`` q (``uniform`` over the
      items, or ``popularity``: proportional to each item's count as a target in the training
      dataset the model is built with; items never seen there count 1). A negative equal to a
      row's target is masked (accidental hit). With ``logq_correction`` each negative's logit
      is corrected by ``- log(N q(j))``, the log of its expected count in the sample, so the
      loss tends to full softmax's as N grows (Bengio & Senecal 2008; Blanc & Rendle, ICML 2018;
      Yi et al., RecSys 2019, "Sampling-bias-corrected neural modeling"). With
      ``logq_correct_positive`` the target's logit is corrected the same way, as Yi et al. do in
      their in-batch softmax (and TensorFlow's ``sampled_softmax_loss``): the target was not drawn
      from q, so the loss no longer tends to full softmax but favours rare targets (a popularity
      debiasing; see Khrylchenko et al., "Correcting the LogQ Correction", RecSys 2025).
    * ``full_softmax_max_items`` M: with ``sampled_softmax_negatives: 0`` and ``loss_type: CE``, a
      catalogue of more than M items trains the sampled softmax above over 4,096 negatives
      (:data:`AUTO_SAMPLED_NEGATIVES`), with a log line saying so: the full softmax's
      ``[B, (K,) n_items]`` logits and their gradient would take most of a batch's memory and
      time (``2 x 2048 x 4 x 50,000 x 4 B`` = 3.1 GiB at M under the max readout). The default
      50,000 keeps the full softmax on ml-100k (1,682) and amazon-beauty (12,101).
    * ``hard_negative_beta`` beta > 0: REMI's interest-aware hard negatives (Xie et al., RecSys
      2023, "Rethinking Multi-Interest Learning for Candidate Matching in Recommender Systems";
      code: github.com/Tokkiu/REMI, ``src/BasicModel.py``, ``NCELoss.sampled_softmax_loss``).
      The negatives' term ``sum_j exp(s_j)`` of the softmax (sampled or full) becomes
      ``M * sum_j w_j exp(s_j)`` with ``w = softmax_j(beta * s_j)`` over the row's M negatives:
      a Monte-Carlo estimate under a sampling distribution tilted towards high-scoring items.
      As in REMI's code the weights are not detached: the gradient on ``s_j`` is proportional to
      ``(1 + beta) softmax((1 + beta) s)_j - beta softmax(beta s)_j``, so the highest-scoring
      negatives are pushed down harder than by the plain softmax and the lowest-scoring may be
      pushed up slightly. REMI reweights the uncorrected logits of a uniform sampler; here the
      (logQ-corrected, when on) logits are reweighted, which is the same for uniform sampling.
    * ``routing_reg_weight`` lambda > 0: REMI's routing regularisation
      (``REMI.calculate_atten_loss``). Each backbone reports its interest-to-position
      attention/routing matrix ``A`` ``[B, K, L]`` through :meth:`record_routing`; each row is
      normalised over the real positions, centred there, and ``C = A_c A_c^T / d``; the penalty
      is ``||diag(C)||^2`` per user (the squared per-interest variances of the routing weights),
      averaged over the batch. It is 0 when every interest spreads evenly over the user's items
      and grows as interests collapse onto single items. REMI sums over the batch (its batch is
      128): its ``rlambda`` corresponds to ``routing_reg_weight = rlambda * 128`` here, and
      REMI centres over all positions, padding included, where here only real positions count
      (same gradient, but the minimum is exactly 0). The term is returned as its own loss part,
      ``(L_rec, lambda * L_routing)``, so RecBole's trainer logs it.
    * ``embedding_dropout`` p > 0: dropout on the sequence embeddings (backbones that apply
      :attr:`embedding_dropout`; TransMI has its own ``hidden_dropout_prob``).

    ``weight_decay`` (RecBole's optimizer L2 penalty) and ``embedding_size`` are RecBole keys.
    """

    # Keys a config may lack, and what that means (module-level CONFIG_FALLBACKS).
    CONFIG_FALLBACKS: ClassVar[Mapping[str, Any]] = CONFIG_FALLBACKS
    # Exact under trimming, and trims its own batches (user_interests): recbole_eimf.trim leaves it.
    TRIMS_PADDING: ClassVar[bool] = True

    @classmethod
    def check_config(cls, config) -> None:
        """Refuse bad values of the keys every multi-interest model reads, naming the key (the
        pipeline calls it before any stage, and so does a wrapper of the model)."""
        n_interests = config["n_interests"]
        if not isinstance(n_interests, int) or isinstance(n_interests, bool) or n_interests < 1:
            raise ConfigError(f"`n_interests` must be an integer >= 1, got {n_interests!r}")

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.check_config(config)
        self.embedding_size = config["embedding_size"]
        self.n_interests = config["n_interests"]
        self.loss_type = config["loss_type"]
        self.initializer_range = config["initializer_range"]

        self.item_embedding = nn.Embedding(self.n_items, self.embedding_size, padding_idx=0)
        if self.loss_type == "CE":
            self.loss_fct = nn.CrossEntropyLoss()
        elif self.loss_type == "BPR":
            self.loss_fct = BPRLoss()
        else:
            raise ConfigError(f"`loss_type` must be 'CE' or 'BPR', got {self.loss_type!r}")

        self._read_training_options(config)
        self.trim_padding = self._option(config, "trim_padding")
        if not isinstance(self.trim_padding, bool):
            raise ConfigError(f"`trim_padding` must be True or False, got {self.trim_padding!r}")
        # Dropout with p = 0 is not applied at all (an Identity), so the default is untouched.
        p = self.embedding_dropout_prob
        self.embedding_dropout: nn.Module = nn.Dropout(p) if p > 0 else nn.Identity()
        self._routing_records: Optional[List[torch.Tensor]] = None
        if self.sampled_negatives > 0:
            # Not persistent: rebuilt from the dataset, so checkpoints keep their keys.
            self.register_buffer("sampling_log_q", self._sampling_log_q(dataset), persistent=False)

    def _softmax_negatives(self, config, negatives: int, logq_correction: bool) -> int:
        """``sampled_softmax_negatives``, or :data:`AUTO_SAMPLED_NEGATIVES` where it asks for the
        full softmax (0) over more items than ``full_softmax_max_items``: that softmax's
        ``[B, (K,) n_items]`` logits and their gradient would dominate a batch's memory and time."""
        limit = self._option(config, "full_softmax_max_items")
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            raise ConfigError(f"`full_softmax_max_items` must be an integer >= 1, got {limit!r}")
        if negatives > 0 or self.loss_type != "CE" or self.n_items - 1 <= limit:
            return negatives
        logger.info(
            f"{self.n_items - 1:,} items > `full_softmax_max_items` {limit:,}: training uses a sampled softmax "
            f"over {AUTO_SAMPLED_NEGATIVES:,} negatives {'with' if logq_correction else 'without'} logQ correction "
            f"instead of the full softmax "
            f"(set `sampled_softmax_negatives` for another count, or raise `full_softmax_max_items` for the full softmax)"
        )
        return AUTO_SAMPLED_NEGATIVES

    def _option(self, config, key: str) -> Any:
        """``config[key]``, or this class's fallback where the config lacks it."""
        return config_option(config, key, self.CONFIG_FALLBACKS)

    # ------------------------------------------------------------------ training options
    def _read_training_options(self, config) -> None:
        negatives = self._option(config, "sampled_softmax_negatives")
        if not isinstance(negatives, int) or isinstance(negatives, bool) or negatives < 0:
            raise ConfigError(
                f"`sampled_softmax_negatives` must be an integer >= 0 (0: full softmax), got {negatives!r}"
            )
        distribution = self._option(config, "sampled_softmax_distribution")
        if distribution not in SAMPLING_DISTRIBUTIONS:
            choices = ", ".join(SAMPLING_DISTRIBUTIONS)
            raise ConfigError(f"`sampled_softmax_distribution` must be one of {choices}, got {distribution!r}")
        flags = {}
        for key in ("logq_correction", "logq_correct_positive"):
            flags[key] = self._option(config, key)
            if not isinstance(flags[key], bool):
                raise ConfigError(f"`{key}` must be True or False, got {flags[key]!r}")
        numbers = {}
        for key in ("hard_negative_beta", "routing_reg_weight", "embedding_dropout", "weight_decay"):
            numbers[key] = self._option(config, key)
            if not _number(numbers[key]) or numbers[key] < 0:
                raise ConfigError(f"`{key}` must be a number >= 0 (0: off), got {numbers[key]!r}")
        if numbers["embedding_dropout"] >= 1:
            raise ConfigError(f"`embedding_dropout` must be in [0, 1), got {numbers['embedding_dropout']!r}")
        if self.loss_type != "CE":
            softmax_options = {"sampled_softmax_negatives": negatives, "hard_negative_beta": numbers["hard_negative_beta"]}
            for key, value in softmax_options.items():
                if value:
                    raise ConfigError(f"`{key}` changes the softmax: it needs `loss_type: CE`, not {self.loss_type!r}")

        negatives = self._softmax_negatives(config, negatives, flags["logq_correction"])
        readout = self._option(config, "train_readout")
        if readout not in TRAIN_READOUTS:
            raise ConfigError(f"`train_readout` must be one of {', '.join(TRAIN_READOUTS)}, got {readout!r}")

        self.train_readout: str = readout
        self.sampled_negatives: int = negatives
        self.sampling_distribution: str = distribution
        self.logq_correction: bool = flags["logq_correction"]
        self.logq_correct_positive: bool = flags["logq_correct_positive"]
        self.hard_negative_beta = float(numbers["hard_negative_beta"])
        self.routing_reg_weight = float(numbers["routing_reg_weight"])
        self.embedding_dropout_prob = float(numbers["embedding_dropout"])

    def _sampling_log_q(self, dataset) -> torch.Tensor:
        """``log q(j)`` of the negative sampler, ``[n_items]``; the padding item 0 is never drawn."""
        if self.sampling_distribution == "uniform":
            counts = torch.ones(self.n_items, dtype=torch.float64)
        else:
            counts = torch.zeros(self.n_items, dtype=torch.float64)
            for item, count in dataset.item_counter.items():
                counts[int(item)] = float(count)
            # Items never a training target would get q = 0: never drawn as negatives, and an
            # infinite correction. Counting them once keeps every item reachable.
            counts.clamp_(min=1.0)
        counts[0] = 0.0
        q = counts / counts.sum()
        return q.log().to(torch.float32)  # log 0 = -inf for the padding item only

    def sample_negatives(self, n: int, device: torch.device) -> torch.Tensor:
        """``n`` item ids drawn with replacement from the sampling distribution (never 0)."""
        if self.sampling_distribution == "uniform":
            return torch.randint(1, self.n_items, (n,), device=device)
        return torch.multinomial(self.sampling_log_q.exp(), n, replacement=True)

    # ------------------------------------------------------------------ routing hook
    @property
    def recording_routing(self) -> bool:
        """Whether the current :meth:`multi_interest` call should report its routing matrix."""
        return self._routing_records is not None

    @property
    def routing_recorder(self) -> Optional[Callable[[torch.Tensor], None]]:
        """:meth:`record_routing` while recording, else None (for layers that only do extra work
        when someone listens, such as :class:`~recbole_eimf.model.layers.CapsuleRouting`)."""
        return self.record_routing if self.recording_routing else None

    def record_routing(self, weights: torch.Tensor) -> None:
        """Backbones call this inside :meth:`multi_interest` with their interest-to-position
        weights ``[B, K', L]`` (non-negative, 0 at padding; K' may be fewer than K, e.g. TransMI's
        pooled interests). A no-op unless :meth:`interests_and_routing` is asking."""
        if self._routing_records is not None:
            self._routing_records.append(weights)

    @contextlib.contextmanager
    def _recording(self) -> Iterator[List[torch.Tensor]]:
        self._routing_records = []
        try:
            yield self._routing_records
        finally:
            self._routing_records = None

    def interests_and_routing(
        self, item_seq: torch.Tensor, item_seq_len: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """:meth:`multi_interest` and the routing matrix ``[B, K', L]`` it recorded."""
        with self._recording() as records:
            interests = self.user_interests(item_seq, item_seq_len)
        if not records:
            raise NotImplementedError(f"{type(self).__name__} does not report a routing matrix (record_routing)")
        return interests, torch.cat(records, dim=1)

    def routing_regularization(self, routing: torch.Tensor, item_seq: torch.Tensor) -> torch.Tensor:
        """REMI's routing penalty of ``routing`` ``[B, K, L]`` (see the class docstring), a scalar."""
        mask = (item_seq != 0).unsqueeze(1).to(routing.dtype)  # [B, 1, L]
        weights = routing * mask
        weights = weights / weights.sum(dim=-1, keepdim=True).clamp(min=1e-12)
        n_real = mask.sum(dim=-1, keepdim=True).clamp(min=1.0)
        centred = (weights - weights.sum(dim=-1, keepdim=True) / n_real) * mask
        variance = (centred * centred).sum(dim=-1) / self.embedding_size  # diag(C), [B, K]
        return (variance * variance).sum(dim=-1).mean()

    # ------------------------------------------------------------------ model
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

    def pooled_interests(self) -> slice:
        """Which of the K interests pool the whole sequence: all of them, unless a backbone also
        passes one position's state through as an interest (TransMI's ``include_last``)."""
        return slice(0, self.n_interests)

    def user_interests(self, item_seq: torch.Tensor, item_seq_len: torch.Tensor) -> torch.Tensor:
        """:meth:`multi_interest` of the batch, ``[B, K, d]``; with ``trim_padding`` computed on
        groups of rows of similar length, each cut to its longest sequence.

        RecBole pads every sequence to ``MAX_ITEM_LIST_LENGTH``, and most training prefixes are
        short (on amazon-beauty 17% of the positions are real items), so most of a backbone's
        work goes into padding that its masks then discard. A row's interests do not depend on
        trailing padding (padding is masked, positions count from the first item, attention is
        causal), so the groups give the same interests (up to float rounding) at a fraction of
        the cost. Groups are lengths in (2^(j-1), 2^j]: at most ``log2(L) + 1`` calls, each
        padded to at most twice its real positions. Dropout draws differ from an ungrouped call.
        """
        length = item_seq.size(1)
        if not self.trim_padding or item_seq.size(0) < 2:
            return self.multi_interest(item_seq, item_seq_len)
        groups, order = length_groups(item_seq_len, length)
        if len(groups) == 1 and groups[0][1] == length:
            return self.multi_interest(item_seq, item_seq_len)
        parts, records = [], []
        for rows, longest in groups:
            seen = len(self._routing_records) if self.recording_routing else 0
            parts.append(self.multi_interest(item_seq[rows, :longest], item_seq_len[rows]))
            if self.recording_routing:
                recorded = torch.cat(self._routing_records[seen:], dim=1)
                del self._routing_records[seen:]
                records.append(F.pad(recorded, (0, length - longest)))  # padding weighs 0
        if self.recording_routing:
            self._routing_records.append(torch.cat(records)[order])
        return torch.cat(parts)[order]

    def forward(self, item_seq: torch.Tensor, item_seq_len: torch.Tensor) -> torch.Tensor:
        return self.user_interests(item_seq, item_seq_len)

    @staticmethod
    def hard_readout(interests: torch.Tensor, target_emb: torch.Tensor) -> torch.Tensor:
        """The interest closest (inner product) to each target: ``[B, K, d], [B, d] -> [B, d]``."""
        affinity = torch.einsum("bkd,bd->bk", interests, target_emb)
        best = affinity.argmax(dim=1)
        return interests[torch.arange(interests.size(0), device=interests.device), best]

    @staticmethod
    def row_scores(user: torch.Tensor, item_emb: torch.Tensor) -> torch.Tensor:
        """Each row's score of its own item ``[B, d]`` -> ``[B]``. ``user`` is one vector per row
        ``[B, d]``, or the interests ``[B, K, d]``, scored by the best of them (max readout)."""
        if user.dim() == 2:
            return (user * item_emb).sum(-1)
        return torch.einsum("bkd,bd->bk", user, item_emb).max(dim=1).values

    @staticmethod
    def item_scores(user: torch.Tensor, item_emb: torch.Tensor) -> torch.Tensor:
        """Every row's scores of items shared by the batch ``[N, d]`` -> ``[B, N]`` (``user`` as in
        :meth:`row_scores`)."""
        if user.dim() == 2:
            return user @ item_emb.t()
        # max() backward scatters into the winners; amax() spreads over ties with extra passes
        # over [B, K, N] (1.3x slower on a CPU).
        return torch.einsum("bkd,nd->bkn", user, item_emb).max(dim=1).values

    def recommendation_loss(self, interaction, interests: torch.Tensor) -> torch.Tensor:
        """Next-item loss of ``interests`` (``[B, K, d]``) on the batch's target items."""
        pos_items = interaction[self.POS_ITEM_ID]
        pos_emb = self.item_embedding(pos_items)
        # `target` readout: the one interest closest to the target; `max`: all K, each item scored
        # by its best interest (as at inference).
        user = interests if self.train_readout == "max" else self.hard_readout(interests, pos_emb)
        if self.loss_type == "BPR":
            neg_emb = self.item_embedding(interaction[self.NEG_ITEM_ID])
            return self.loss_fct(self.row_scores(user, pos_emb), self.row_scores(user, neg_emb))
        if self.sampled_negatives > 0:
            return self.sampled_softmax_loss(user, pos_items, pos_emb)
        logits = self.item_scores(user, self.item_embedding.weight)
        if self.hard_negative_beta > 0:
            index = pos_items.unsqueeze(1)
            target = torch.zeros_like(logits, dtype=torch.bool).scatter_(1, index, True)
            pos_logit = logits.gather(1, index).squeeze(1)
            return self.softmax_loss(pos_logit, logits.masked_fill(target, float("-inf")))
        return self.loss_fct(logits, pos_items)

    def sampled_softmax_loss(self, user: torch.Tensor, pos_items: torch.Tensor, pos_emb: torch.Tensor) -> torch.Tensor:
        """Softmax over each row's target and N negatives shared by the batch (logQ-corrected);
        ``user`` as in :meth:`row_scores`."""
        n = self.sampled_negatives
        negatives = self.sample_negatives(n, user.device)
        pos_logit = self.row_scores(user, pos_emb)
        neg_logits = self.item_scores(user, self.item_embedding(negatives))  # [B, N]
        if self.logq_correction:
            log_expected = self.sampling_log_q + math.log(n)  # log(N q(j))
            neg_logits = neg_logits - log_expected[negatives]
            if self.logq_correct_positive:
                pos_logit = pos_logit - log_expected[pos_items]
        hits = negatives.unsqueeze(0) == pos_items.unsqueeze(1)
        return self.softmax_loss(pos_logit, neg_logits.masked_fill(hits, float("-inf")))

    def softmax_loss(self, pos_logit: torch.Tensor, neg_logits: torch.Tensor) -> torch.Tensor:
        """Mean of ``-log softmax`` of the target against its negatives (``-inf``: masked), with
        REMI's hard-negative reweighting when ``hard_negative_beta > 0``."""
        beta = self.hard_negative_beta
        if beta == 0:
            logits = torch.cat([pos_logit.unsqueeze(1), neg_logits], dim=1)
            return F.cross_entropy(logits, logits.new_zeros(logits.size(0), dtype=torch.long))
        valid = torch.isfinite(neg_logits)
        n_valid = valid.sum(dim=1)
        empty = n_valid == 0  # every sampled negative was the target: nothing to contrast with
        safe = neg_logits.masked_fill(empty.unsqueeze(1), 0.0)
        # log(M * sum_j w_j exp(s_j)) with w = softmax(beta * s): REMI's reweight_neg, in log space.
        neg_term = (
            n_valid.clamp(min=1).to(safe.dtype).log()
            + torch.logsumexp((1.0 + beta) * safe, dim=1)
            - torch.logsumexp(beta * safe, dim=1)
        ).masked_fill(empty, float("-inf"))
        return (torch.logaddexp(pos_logit, neg_term) - pos_logit).mean()

    def interests_and_losses(self, interaction) -> Tuple[torch.Tensor, Tuple[torch.Tensor, ...]]:
        """The batch's interests ``[B, K, d]`` and its loss parts: ``(L_rec,)``, or
        ``(L_rec, routing_reg_weight * L_routing)`` with the routing regulariser on."""
        item_seq, item_seq_len = interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN]
        if self.routing_reg_weight == 0:
            interests = self.user_interests(item_seq, item_seq_len)
            return interests, (self.recommendation_loss(interaction, interests),)
        interests, routing = self.interests_and_routing(item_seq, item_seq_len)
        reg = self.routing_reg_weight * self.routing_regularization(routing, item_seq)
        return interests, (self.recommendation_loss(interaction, interests), reg)

    def loss_names(self) -> Tuple[str, ...]:
        """The names of :meth:`interests_and_losses`' parts, which the trainer logs."""
        return ("recommendation",) + (("routing_regularization",) if self.routing_reg_weight else ())

    def calculate_loss(self, interaction) -> Union[torch.Tensor, tuple]:
        _, losses = self.interests_and_losses(interaction)
        return losses[0] if len(losses) == 1 else losses

    def predict(self, interaction) -> torch.Tensor:
        interests = self.forward(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])
        return self.row_scores(interests, self.item_embedding(interaction[self.ITEM_ID]))

    def full_sort_predict(self, interaction) -> torch.Tensor:
        interests = self.forward(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])
        return max_scores(interests, self.item_embedding.weight)


def score_block_items(batch_size: int) -> int:
    """Items per block of :func:`max_scores`: its ``SCORE_BLOCK_COPIES`` float32 ``[B, block]``
    temporaries fit ``SCORE_BLOCK_BYTES``."""
    return max(1, SCORE_BLOCK_BYTES // (SCORE_BLOCK_COPIES * FLOAT32_BYTES * max(batch_size, 1)))


def max_scores(interests: torch.Tensor, item_emb: torch.Tensor) -> torch.Tensor:
    """``scores[b, i] = max_k <interests[b, k], item_emb[i]>`` (``[B, K, d], [N, d] -> [B, N]``),
    computed over blocks of items so that no ``[B, K, N]`` or second ``[B, N]`` tensor exists:
    past the scores RecBole ranks, memory is bounded by :data:`SCORE_BLOCK_BYTES`."""
    batch, n_interests = interests.shape[:2]
    scores = interests.new_empty(batch, item_emb.size(0))
    block = score_block_items(batch)
    for start in range(0, item_emb.size(0), block):
        items = item_emb[start:start + block].t()
        # Running max over interests: one [B, block] product at a time, as before blocks existed.
        best = interests[:, 0] @ items
        for k in range(1, n_interests):
            best = torch.maximum(best, interests[:, k] @ items)
        scores[:, start:start + block] = best
    return scores
