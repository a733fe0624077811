"""Layers shared by the plugin's models."""

from __future__ import annotations

from typing import Callable, Optional, Tuple

import torch
from torch import nn

from recbole_eimf.errors import ConfigError


def squash(x: torch.Tensor, dim: int = -1, eps: float = 1e-9) -> torch.Tensor:
    """Capsule squash: keeps the direction of ``x`` and maps its norm into [0, 1)."""
    squared_norm = (x * x).sum(dim=dim, keepdim=True)
    return squared_norm / (1.0 + squared_norm) * x / torch.sqrt(squared_norm + eps)


def attentive_pooling(h: torch.Tensor, logits: torch.Tensor, item_seq: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """ComiRec-SA's multi-head attentive pooling: ``logits`` ``[B, L, K]`` (one score per position
    and interest, ``W_2 tanh(W_1 h)``) become a softmax over the real positions (padding, item 0,
    masked), and each interest is its weighted sum of ``h`` ``[B, L, d]``. Returns the interests
    ``[B, K, d]`` and the attention ``[B, K, L]`` (the routing regulariser's matrix)."""
    att = logits.transpose(1, 2).masked_fill((item_seq == 0).unsqueeze(1), -1e9)
    att = torch.softmax(att, dim=-1)
    return att @ h, att


class CapsuleRouting(nn.Module):
    r"""Behaviour-to-interest dynamic routing (MIND's B2I routing, ComiRec-DR's capsules).

    Each behaviour embedding ``e_l`` is mapped into every interest's space by a bilinear map,
    ``u_{k|l} = W_k e_l`` (``shared=False``: one map per interest, as ComiRec-DR) or
    ``u_{k|l} = S e_l`` (``shared=True``: one map for all, as MIND). Routing logits ``b_{k,l}``
    start from a fixed buffer (zeros, or ``N(0, init_std^2)`` drawn once at construction, which
    a shared map needs to tell its interests apart) and are refined for ``iterations`` rounds:
    ``c = softmax_k(b)`` with padding positions zeroed, ``v_k = squash(sum_l c_{k,l} u_{k|l})``,
    ``b += <u_{k|l}, v_k>``. As in ComiRec, only the last round passes gradients to ``u``.
    The buffer is part of the state dict, so inference is deterministic.
    """

    def __init__(
        self,
        embedding_size: int,
        n_interests: int,
        max_seq_length: int,
        iterations: int = 3,
        shared: bool = False,
        init_std: float = 0.0,
    ) -> None:
        super().__init__()
        if iterations < 1:
            raise ConfigError(f"`routing_iterations` must be >= 1, got {iterations}")
        self.n_interests = n_interests
        self.iterations = iterations
        self.shared = shared
        shape = (embedding_size, embedding_size) if shared else (n_interests, embedding_size, embedding_size)
        self.bilinear = nn.Parameter(torch.empty(shape))
        nn.init.xavier_normal_(self.bilinear)
        self.register_buffer("routing_init", torch.randn(n_interests, max_seq_length) * init_std)

    def forward(
        self,
        seq_emb: torch.Tensor,
        mask: torch.Tensor,
        record: Optional[Callable[[torch.Tensor], None]] = None,
    ) -> torch.Tensor:
        """``seq_emb`` ``[B, L, d]`` and ``mask`` ``[B, L]`` (True on real items) -> ``[B, K, d]``.

        ``record``, if given, receives the last round's coupling coefficients ``[B, K, L]`` (for a
        routing regulariser). They are then computed along a path that keeps gradients to ``u``
        (otherwise they would be constants) and are detached where they build the interests, so
        the interests and their gradients are exactly those of routing without ``record``.
        """
        batch, length, _ = seq_emb.shape
        if self.shared:
            u_hat = (seq_emb @ self.bilinear).unsqueeze(1).expand(-1, self.n_interests, -1, -1)
        else:
            u_hat = torch.einsum("bld,kde->bkle", seq_emb, self.bilinear)
        u_hat_fixed = u_hat.detach()
        u_route = u_hat_fixed if record is None else u_hat
        logits = self.routing_init[:, :length].unsqueeze(0).expand(batch, -1, -1)
        keep = mask.unsqueeze(1).to(seq_emb.dtype)  # [B, 1, L]
        for i in range(self.iterations):
            coupling = torch.softmax(logits, dim=1) * keep  # over interests; padding gets 0
            last = i == self.iterations - 1
            if last and record is not None:
                record(coupling)
                coupling = coupling.detach()
            u = u_hat if last else u_route
            interests = squash(torch.einsum("bkl,bkld->bkd", coupling, u))
            if not last:
                logits = logits + torch.einsum("bkld,bkd->bkl", u_route, interests)
        return interests
