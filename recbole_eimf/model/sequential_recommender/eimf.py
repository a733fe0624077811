# -*- coding: utf-8 -*-
r"""
EIMF
################################################

Reference:
    "LLM-assisted Explicit and Implicit Multi-interest Learning Framework for Sequential
    Recommendation" (v3: "LLM-based Bi-level Multi-interest Learning Framework"), arXiv 2411.09410.

This project's concrete design of the paper's abstract: docs/METHOD.md.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any, ClassVar, Dict, List, Mapping, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from recbole.model.abstract_recommender import SequentialRecommender

from recbole_eimf.errors import ConfigError
from recbole_eimf.model.abstract_recommender import MultiInterestRecommender, config_option
from recbole_eimf.utils import get_model, plugin_model_names

if TYPE_CHECKING:  # the model receives ESIM's output; it never runs ESIM
    from recbole_eimf.esim.pipeline import SemanticTargets

logger = logging.getLogger(__name__)


class EIMF(SequentialRecommender):
    r"""EIMF: a multi-interest backbone (IBIM) trained with two auxiliary semantic tasks.

    ``backbone`` names any of the plugin's multi-interest models (TransMI, ComiRecSA, ComiRecDR, MIND);
    its own config keys apply. During training only, users that carry ESIM's semantic targets
    add

    * semantic prediction ``L_sp``: a head ``g: R^d -> R^{d_t}``; concept logits
      ``z_p = max_k cos(g(v_k), c_p) / sp_temperature``; binary cross-entropy against the user's
      multi-hot concept labels;
    * modality alignment ``L_ma``: each stated interest ``s_j`` is pulled towards its closest
      projected behavioural interest (``1 - max_k cos(s_j, g(v_k))``), plus a symmetric InfoNCE
      between user-level pooled projections and pooled semantic vectors across the batch
      (``ma_temperature``; ``ma_contrast: False`` leaves it out).

    ``aux_interests: pooled`` applies both tasks to the backbone's pooled interests only
    (:meth:`MultiInterestRecommender.pooled_interests`): with TransMI's ``include_last`` the
    last-position interest, SASRec's vector, is then left to the recommendation loss alone. On
    backbones whose interests all pool (ComiRec-SA, ComiRec-DR, MIND) it is refused.

    ``aux_decay_epochs`` (0: off) lowers both weights linearly over training: epoch ``e`` (0-based)
    uses ``max(0, 1 - e / aux_decay_epochs)`` of them, so the semantics guide the first epochs
    and the backbone's own loss alone finishes training. Epochs are counted in training batches
    (``ceil(rows / train_batch_size)`` per epoch, as RecBole's loader serves them); the count is
    saved with each checkpoint, so a training resumed from one continues the decay.

    ``calculate_loss`` returns ``(L_rec, sp_weight * L_sp, ma_weight * L_ma)`` so RecBole's
    trainer logs each part, followed by the backbone's own extra parts (``routing_reg_weight *
    L_routing`` when the backbone's routing regulariser is on). ``predict`` and
    ``full_sort_predict`` are the backbone's: no text, no LLM and no semantic tensor is touched at
    inference, and the semantic targets are not part of the checkpoint.

    The targets are the output of the ``esim`` pipeline stage, which the run prepares before it
    builds the model (``PIPELINE_STAGES``; :func:`recbole_eimf.quick_start.build_model`) and hands
    in as ``semantic_targets``. Without them the model still rebuilds from a checkpoint (the
    head's width, ``semantic_dim``, is recorded in the config) and scores; it cannot train.
    The checkpoint keeps only the concepts' prototypes and names (:meth:`other_parameter`), to
    name the interests of a reloaded model (``--stage=explain``).
    """

    # Pipeline stages whose output this model trains on (their defaults load with its config).
    PIPELINE_STAGES: ClassVar[Tuple[str, ...]] = ("esim",)

    # Keys added after the first release, and the value that reproduces the behaviour from before.
    CONFIG_FALLBACKS: ClassVar[Mapping[str, Any]] = {"aux_decay_epochs": 0, "ma_contrast": True, "aux_interests": "all"}

    # Its backbone trims its own batches (MultiInterestRecommender.user_interests).
    TRIMS_PADDING = True

    @classmethod
    def stages_for(cls, config) -> Tuple[str, ...]:
        """The stages a run with ``config`` needs: none when both auxiliary weights are 0."""
        return cls.PIPELINE_STAGES if (config["sp_weight"] or config["ma_weight"]) else ()

    @classmethod
    def check_config(cls, config) -> None:
        """Refuse bad values of EIMF's own keys, naming the key. The pipeline calls it before it
        runs the model's stages, so a typo costs no ESIM run (and no LLM request)."""
        name = config["backbone"]
        choices = [m for m in plugin_model_names() if m != cls.__name__]
        if name not in choices:
            raise ConfigError(f"`backbone` [{name}] must be one of the multi-interest models: {', '.join(choices)}")
        get_model(name).check_config(config)
        for key in ("sp_weight", "ma_weight"):
            if not isinstance(config[key], (int, float)) or config[key] < 0:
                raise ConfigError(f"`{key}` must be a number >= 0, got {config[key]!r}")
        decay = config_option(config, "aux_decay_epochs", cls.CONFIG_FALLBACKS)
        if not isinstance(decay, int) or isinstance(decay, bool) or decay < 0:
            raise ConfigError(f"`aux_decay_epochs` must be an integer >= 0 (0: constant weights), got {decay!r}")
        if not isinstance(config_option(config, "ma_contrast", cls.CONFIG_FALLBACKS), bool):
            raise ConfigError(f"`ma_contrast` must be True or False, got {config['ma_contrast']!r}")
        if config_option(config, "aux_interests", cls.CONFIG_FALLBACKS) not in ("all", "pooled"):
            raise ConfigError(f"`aux_interests` must be 'all' or 'pooled', got {config['aux_interests']!r}")
        for key in ("sp_temperature", "ma_temperature"):
            if not isinstance(config[key], (int, float)) or config[key] <= 0:
                raise ConfigError(f"`{key}` must be a number > 0, got {config[key]!r}")

    def __init__(self, config, dataset, semantic_targets: Optional["SemanticTargets"] = None):
        super().__init__(config, dataset)
        self.check_config(config)
        name = config["backbone"]
        aux_interests = config_option(config, "aux_interests", self.CONFIG_FALLBACKS)

        self.config = config
        self.USER_ID = config["USER_ID_FIELD"]
        self.sp_weight = float(config["sp_weight"])
        self.ma_weight = float(config["ma_weight"])
        self.sp_temperature = float(config["sp_temperature"])
        self.ma_temperature = float(config["ma_temperature"])
        self.ma_contrast = config_option(config, "ma_contrast", self.CONFIG_FALLBACKS)
        self.aux_decay_epochs = config_option(config, "aux_decay_epochs", self.CONFIG_FALLBACKS)
        # RecBole's trainer does not tell the model its epoch: count the training batches instead.
        self.steps_per_epoch = max(1, math.ceil(len(dataset) / int(config["train_batch_size"])))
        self.training_steps = 0

        self.backbone: MultiInterestRecommender = get_model(name)(config, dataset)
        # The interests the auxiliary tasks see.
        self.aux_slice = slice(None)
        if aux_interests == "pooled":
            self.aux_slice = self.backbone.pooled_interests()
            n_all = self.backbone.n_interests
            n_pooled = len(range(n_all)[self.aux_slice])
            if n_pooled in (0, n_all):
                raise ConfigError(
                    f"`aux_interests: pooled` needs a backbone with both pooled and passed-through interests; "
                    f"{name} here has {n_pooled} pooled of {n_all} (only TransMI with "
                    f"`include_last: True` and `n_interests` >= 2 has both): use `aux_interests: all`"
                )
        self._targets = semantic_targets
        self._concepts: Optional[Dict[str, Any]] = None  # reloaded from a checkpoint (other_parameter)
        self.head: Optional[nn.Module] = None
        if self.sp_weight > 0 or self.ma_weight > 0:
            # The head must exist before the trainer builds its optimizer. Its width is the text
            # encoder's; it is recorded in the config so that a checkpoint (which pickles the
            # config) rebuilds without the targets.
            width = int(semantic_targets.concepts.size(1)) if semantic_targets is not None else None
            if config["semantic_dim"] and width is not None and int(config["semantic_dim"]) != width:
                raise ConfigError(
                    f"`semantic_dim` [{config['semantic_dim']}] does not match the text encoder's "
                    f"dimension [{width}] of ESIM's targets: leave `semantic_dim` empty"
                )
            if not config["semantic_dim"]:
                if width is None:
                    raise ConfigError(
                        "EIMF trains on ESIM's semantic targets: build it through the pipeline "
                        "(recbole_eimf.quick_start.build_model or prepare_run run the `esim` stage first), "
                        "or set `semantic_dim` to rebuild a trained model for inference"
                    )
                config["semantic_dim"] = width
            self.build_head(int(config["semantic_dim"]))
            if semantic_targets is not None:
                logger.info(
                    f"EIMF: semantic targets for {int(semantic_targets.has_target.sum())} of "
                    f"{semantic_targets.has_target.numel()} users, {semantic_targets.concepts.size(0)} concepts "
                    f"of dimension {width}"
                )

    # ------------------------------------------------------------------ inference: the backbone's
    def multi_interest(self, item_seq: torch.Tensor, item_seq_len: torch.Tensor) -> torch.Tensor:
        return self.backbone.multi_interest(item_seq, item_seq_len)

    def forward(self, item_seq: torch.Tensor, item_seq_len: torch.Tensor) -> torch.Tensor:
        return self.backbone(item_seq, item_seq_len)

    def predict(self, interaction) -> torch.Tensor:
        return self.backbone.predict(interaction)

    def full_sort_predict(self, interaction) -> torch.Tensor:
        return self.backbone.full_sort_predict(interaction)

    # ------------------------------------------------------------------ training
    def _semantic_targets(self) -> "SemanticTargets":
        if self._targets is None:
            raise ConfigError(
                "EIMF has no semantic targets to train on: it was built without the `esim` stage "
                "(build it with recbole_eimf.quick_start.build_model, which runs the stage first)"
            )
        device = self.backbone.item_embedding.weight.device
        if self._targets.concepts.device != device:
            # Handed in on the CPU; RecBole then moves the model to `device`, and the targets are
            # no buffers (they are not part of the checkpoint), so they follow here.
            self._targets = self._targets.to(device)
        return self._targets

    def other_parameter(self) -> Dict[str, Any]:
        """Saved with every checkpoint: ESIM's concept prototypes and their names, so that the
        interests of a reloaded model can be named (``--stage=explain``) with no ESIM cache, and
        the training steps taken, so that a resumed training continues ``aux_decay_epochs``."""
        if self._targets is None or not self._targets.concept_names:
            concepts = dict(self._concepts) if self._concepts else {}
        else:
            concepts = {"concept_names": self._targets.concept_names, "concept_prototypes": self._targets.concepts.cpu()}
        return {**concepts, "training_steps": self.training_steps}

    def load_other_parameter(self, para: Optional[Mapping[str, Any]]) -> None:
        para = dict(para or {})
        self.training_steps = int(para.pop("training_steps", 0))
        self._concepts = para if "concept_names" in para else None

    def named_concepts(self) -> Optional[Tuple[List[str], torch.Tensor]]:
        """``(names, prototypes [P, d_t])`` of ESIM's concepts this model trained on, or None (no
        targets loaded, or a checkpoint saved before concepts were stored with it)."""
        stored = self.other_parameter()
        if "concept_names" not in stored:
            return None
        return list(stored["concept_names"]), stored["concept_prototypes"]

    def build_head(self, semantic_dim: int) -> None:
        """Create the projection ``g: R^d -> R^{d_t}`` without drawing from the global RNG, so the
        backbone starts (and trains) exactly as it would alone."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.config["seed"])
            self.head = nn.Linear(self.backbone.embedding_size, semantic_dim)

    def aux_scale(self) -> float:
        """The share of ``sp_weight`` and ``ma_weight`` that applies at the current training epoch."""
        if self.aux_decay_epochs == 0:
            return 1.0
        epoch = self.training_steps // self.steps_per_epoch
        return max(0.0, 1.0 - epoch / self.aux_decay_epochs)

    def semantic_prediction_loss(self, projected: torch.Tensor, labels: torch.Tensor, concepts: torch.Tensor):
        """``projected`` [B, K, d_t] (normalised), ``labels`` [B, P], ``concepts`` [P, d_t] (normalised)."""
        logits = torch.einsum("bkt,pt->bkp", projected, concepts).max(dim=1).values / self.sp_temperature
        return F.binary_cross_entropy_with_logits(logits, labels)

    def modality_alignment_loss(self, projected: torch.Tensor, semantic: torch.Tensor, mask: torch.Tensor):
        """``projected`` [B, K, d_t], ``semantic`` [B, J, d_t] (both normalised), ``mask`` [B, J]."""
        maskf = mask.to(projected.dtype)
        closest = torch.einsum("bjt,bkt->bjk", semantic, projected).max(dim=2).values  # [B, J]
        match = ((1.0 - closest) * maskf).sum() / maskf.sum().clamp(min=1.0)
        if not self.ma_contrast or projected.size(0) < 2:
            return match
        user_b = F.normalize(projected.mean(dim=1), dim=-1)
        user_s = F.normalize((semantic * maskf.unsqueeze(-1)).sum(dim=1), dim=-1)
        logits = user_b @ user_s.t() / self.ma_temperature
        # Rows with the same semantic target are not negatives of each other: a batch holds
        # several prefixes of one user's sequence (and, with `semantic_scope: cluster`, several
        # users of one cluster). Contrasting them would push apart what must align.
        same = (user_s @ user_s.t()) > 1.0 - 1e-6
        same.fill_diagonal_(False)
        logits = logits.masked_fill(same, float("-inf"))
        target = torch.arange(logits.size(0), device=logits.device)
        contrast = 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target))
        return match + contrast

    def loss_names(self) -> Tuple[str, ...]:
        """The names of :meth:`calculate_loss`' parts, which the trainer logs."""
        return ("recommendation", "semantic_prediction", "modality_alignment") + self.backbone.loss_names()[1:]

    def calculate_loss(self, interaction):
        # The backbone's own training options (sampled softmax, hard negatives, routing
        # regulariser, ...) apply as they do alone; its extra loss parts follow EIMF's.
        interests, backbone_losses = self.backbone.interests_and_losses(interaction)
        rec_loss, extra = backbone_losses[0], tuple(backbone_losses[1:])
        zero = rec_loss.new_zeros(())
        scale = self.aux_scale()
        if self.training:
            self.training_steps += 1
        if (self.sp_weight == 0 and self.ma_weight == 0) or scale == 0.0:
            return (rec_loss, zero, zero) + extra

        targets = self._semantic_targets()
        index, labels, semantic, semantic_mask = targets.of_batch(interaction[self.USER_ID])
        if index.numel() == 0:  # most batches of `typical` scope: nothing to add
            return (rec_loss, zero, zero) + extra
        projected = F.normalize(self.head(interests[index][:, self.aux_slice]), dim=-1)
        sp_loss = ma_loss = zero
        if self.sp_weight > 0:
            sp_loss = scale * self.sp_weight * self.semantic_prediction_loss(
                projected, labels, F.normalize(targets.concepts, dim=-1)
            )
        if self.ma_weight > 0:
            ma_loss = scale * self.ma_weight * self.modality_alignment_loss(
                projected, F.normalize(semantic, dim=-1), semantic_mask
            )
        return (rec_loss, sp_loss, ma_loss) + extra
