"""Training objectives.

BPR (Rendle et al., 2009) for continuous scores; the hashing objectives of
HashGNN (cross-entropy link loss + triplet ranking loss) and the smooth recall
loss of Luo & Wu join them in :mod:`hashrec_utils.hashing`'s training.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["bpr_loss"]


def bpr_loss(pos_scores: torch.Tensor, neg_scores: torch.Tensor) -> torch.Tensor:
    """``mean(-ln σ(s⁺ - s⁻)) = mean(softplus(s⁻ - s⁺))``; shapes ``(B,)`` or ``(B, n_neg)`` (broadcast)."""
    if pos_scores.ndim == 1 and neg_scores.ndim == 2:
        pos_scores = pos_scores[:, None]
    return F.softplus(neg_scores - pos_scores).mean()
