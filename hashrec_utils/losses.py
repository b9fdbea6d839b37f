"""Training objectives.

BPR (Rendle et al., 2009) for continuous scores; the hashing objectives of
HashGNN (cross-entropy link loss + triplet ranking loss) and the smooth recall
loss of Luo & Wu join them in :mod:`hashrec_utils.hashing`'s training.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["bpr_loss", "hashgnn_loss", "smooth_recall_loss", "listwise_loss", "pooled_listwise_loss", "catalogue_softmax_loss",
           "catalogue_softmax_distill", "distill_loss"]


def bpr_loss(pos_scores: torch.Tensor, neg_scores: torch.Tensor) -> torch.Tensor:
    """``mean(-ln σ(s⁺ - s⁻)) = mean(softplus(s⁻ - s⁺))``; shapes ``(B,)`` or ``(B, n_neg)`` (broadcast)."""
    if pos_scores.ndim == 1 and neg_scores.ndim == 2:
        pos_scores = pos_scores[:, None]
    return F.softplus(neg_scores - pos_scores).mean()


def hashgnn_loss(s_pos: torch.Tensor, s_neg: torch.Tensor, *, lambda_rank: float = 0.5, margin: float = 0.2) -> torch.Tensor:
    """HashGNN's objective (Tan et al. 2020, Eq. 7) on code scores.

    ``s_pos``: ``(B,)`` scores of observed pairs; ``s_neg``: ``(B, T)`` scores of
    ``T`` sampled non-neighbours of the same nodes (T triplets per node).

        L_cross = −mean[ ln σ(s⁺) ] − mean[ ln(1 − σ(s⁻_1)) ]          (observed vs sampled pairs)
        L_rank  = mean over triplets of max(0, −σ(s⁺) + σ(s⁻_t) + α)
        L       = L_cross + λ · L_rank                                  (λ = 0: HashGNN_nr)
    """
    if s_neg.ndim == 1:
        s_neg = s_neg[:, None]
    cross = F.softplus(-s_pos).mean() + F.softplus(s_neg[:, 0]).mean()
    if lambda_rank == 0:
        return cross
    rank = torch.relu(-torch.sigmoid(s_pos)[:, None] + torch.sigmoid(s_neg) + margin).mean()
    return cross + lambda_rank * rank


def smooth_recall_loss(s_pos: torch.Tensor, s_pool: torch.Tensor, *, top_n: int = 20, n_items: int | None = None,
                       tau_rank: float = 1.0, tau_recall: float = 1.0) -> torch.Tensor:
    """The smooth recall loss of Luo & Wu (AAAI student abstract, paper 003), on a sampled item pool.

    Their first equation is Recall@N over the training pairs Ω, ``L = −(1/|Ω|) Σ_{(u,i)} I(r_ui ≤ N)``
    with the rank ``r_ui = 1 + Σ_{j ≠ i} I(b_uᵀd_j > b_uᵀd_i)`` over all n items (the abstract prints
    the comparison the other way round, ``b_uᵀd_i > b_uᵀd_j``, which would count the items *below*
    i and make the loss reward low ranks: read as the rank it names). Their second smooths both
    indicators with kernels K_ψ (inner) and K_φ (outer) whose form and width the abstract leaves
    open; here both are sigmoids with temperatures:

        r̂ = 1 + (n_items / M) · Σ_j σ((s_j − s⁺) / τ_rank)     (K_ψ; M pool scores, scaled to the catalogue)
        L = −mean σ((N − r̂) / τ_recall)                        (K_φ of N − r̂: 1 when r̂ ≪ N)

    With the pool = all other items (``M = n_items − 1`` finite entries, scale ≈ 1) this is the
    paper's sum over j = 1..n, j ≠ i. ``s_pos (B,)``; ``s_pool (B, M)`` scores of items other than
    the positive (``-inf`` masks an entry, e.g. the positive drawn into the pool). Without
    ``n_items`` the pool is the catalogue (scale 1).
    """
    if s_pool.ndim != 2 or s_pos.shape[0] != s_pool.shape[0]:
        raise ValueError(f"s_pos must be (B,) and s_pool (B, M); got {tuple(s_pos.shape)} and {tuple(s_pool.shape)}")
    m = s_pool.shape[1]
    above = torch.sigmoid((s_pool - s_pos[:, None]) / tau_rank).sum(dim=1)
    scale = (n_items / m) if n_items else 1.0
    rank = 1.0 + scale * above
    return -torch.sigmoid((top_n - rank) / tau_recall).mean()


def listwise_loss(s_pos: torch.Tensor, s_pool: torch.Tensor) -> torch.Tensor:
    """Softmax cross-entropy of the positive against a pool: ``mean[−s⁺ + ln(e^{s⁺} + Σ_j e^{s_j})]``.

    ``s_pos (B,)``; ``s_pool (B, M)`` scores of pool items (``-inf`` masks an
    entry, e.g. the positive itself when it is drawn into the pool).
    """
    if s_pool.ndim != 2 or s_pos.shape[0] != s_pool.shape[0]:
        raise ValueError(f"s_pos must be (B,) and s_pool (B, M); got {tuple(s_pos.shape)} and {tuple(s_pool.shape)}")
    logits = torch.cat([s_pos[:, None], s_pool], dim=1)
    return (torch.logsumexp(logits, dim=1) - s_pos).mean()


def pooled_listwise_loss(s_pos: torch.Tensor, s_rows: torch.Tensor, inv: torch.Tensor, hits: torch.Tensor) -> torch.Tensor:
    """:func:`listwise_loss` when every pair of a user shares one pool, computed per user.

    ``s_rows (U, M)``: each distinct user's scores against the pool; ``inv (B,)``: the row of
    each pair's user; ``s_pos (B,)``; ``hits (B,)``: how many times the pair's positive is in
    the pool (those entries leave its sum, as the mask does in :func:`listwise_loss`). The pool's
    log-sum-exp is taken once per user, ``ln(Σ_j e^{s_j} − hits·e^{s⁺})`` removes the positive,
    and the pair's loss is ``softplus(that − s⁺)``: a ``U × M`` cost instead of ``B × M``.
    """
    if s_rows.ndim != 2 or not (s_pos.shape == inv.shape == hits.shape) or s_pos.ndim != 1:
        raise ValueError(f"need s_rows (U, M) and s_pos, inv, hits (B,); got {tuple(s_rows.shape)}, "
                         f"{tuple(s_pos.shape)}, {tuple(inv.shape)}, {tuple(hits.shape)}")
    lse = torch.logsumexp(s_rows, dim=1)[inv]
    # the positive's share of the pool's mass; < 1 unless the pool holds nothing but the positive
    share = (hits.to(s_pos.dtype) * torch.exp(s_pos - lse)).clamp(max=1.0 - 1e-6)
    return F.softplus(lse + torch.log1p(-share) - s_pos).mean()


class _CatalogueSoftmax(torch.autograd.Function):
    """Forward and backward of :func:`catalogue_softmax_loss` in two passes over the ``(U, N)`` scores.

    Autograd through ``logsumexp(s)[inv] − s[inv, pos]`` makes five: ``s − lse``, its ``exp``, the
    product with the incoming gradient, a zero matrix for the gathered positives and the sum of the
    two gradients. Here the backward is ``exp(s − lse) · w_u`` (one ``exp``, in place), minus the
    soft targets, with ``−1/B`` added at each pair's positive. Two outputs: the hard-label loss and
    the mean cross-entropy against the soft targets (``0`` without them).
    """

    @staticmethod
    def forward(ctx, s_rows, inv, pos, soft):
        batch, rows = len(inv), s_rows.shape[0]
        counts = torch.bincount(inv, minlength=rows).to(s_rows.dtype)
        lse = torch.logsumexp(s_rows, dim=1)
        hard = (counts @ lse - s_rows[inv, pos].sum()) / batch
        if soft is None:
            cross = torch.zeros((), dtype=s_rows.dtype, device=s_rows.device)
        else:  # Σ_u [lse_u − ⟨p_u, s_u⟩] / U, rows of p summing to one
            cross = (lse.sum() - soft.reshape(-1) @ s_rows.reshape(-1)) / rows
        ctx.save_for_backward(s_rows, lse, inv, pos, counts, soft)
        return hard, cross

    @staticmethod
    def backward(ctx, g_hard, g_cross):
        s_rows, lse, inv, pos, counts, soft = ctx.saved_tensors
        batch, rows = len(inv), s_rows.shape[0]
        weight = counts * (g_hard / batch)
        if soft is not None:
            weight = weight + g_cross / rows
        out = torch.sub(s_rows, lse[:, None]).exp_().mul_(weight[:, None])
        if soft is not None:
            out.sub_(soft * (g_cross / rows))
        out.index_put_((inv, pos), (-g_hard / batch).expand(batch), accumulate=True)
        return out, None, None, None


def _check_catalogue(s_rows, inv, pos, soft=None) -> None:
    if s_rows.ndim != 2 or inv.ndim != 1 or inv.shape != pos.shape:
        raise ValueError(f"need s_rows (U, N) and inv, pos (B,); got {tuple(s_rows.shape)}, {tuple(inv.shape)}, {tuple(pos.shape)}")
    if soft is not None and soft.shape != s_rows.shape:
        raise ValueError(f"soft targets must have the shape of s_rows {tuple(s_rows.shape)}; got {tuple(soft.shape)}")


def catalogue_softmax_loss(s_rows: torch.Tensor, inv: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """:func:`listwise_loss` over the whole catalogue, each distinct user's row computed once.

    ``s_rows (U, N)``: every distinct user's scores against all ``N`` items; ``inv (B,)``: each
    pair's row; ``pos (B,)``: each pair's item. Returns ``mean_b [ln Σ_j e^{s_{u_b j}} − s_{u_b, pos_b}]``
    (the positive is one of the ``N`` items), with a hand-written backward (:class:`_CatalogueSoftmax`).
    """
    _check_catalogue(s_rows, inv, pos)
    return _CatalogueSoftmax.apply(s_rows, inv, pos, None)[0]


def catalogue_softmax_distill(s_rows: torch.Tensor, inv: torch.Tensor, pos: torch.Tensor,
                              teacher_probs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`catalogue_softmax_loss` and, sharing its log-sum-exp and backward pass, the mean
    cross-entropy ``(1/U) Σ_u −Σ_i p_ui ln softmax(s_u)_i`` against ``teacher_probs (U, N)`` (rows
    summing to one, no gradient). Minus the teacher's mean entropy it is :func:`distill_loss`'s
    KL over the catalogue. Returns ``(listwise loss, cross-entropy)``.
    """
    _check_catalogue(s_rows, inv, pos, teacher_probs)
    return _CatalogueSoftmax.apply(s_rows, inv, pos, teacher_probs.detach())


def distill_loss(student: torch.Tensor, teacher: torch.Tensor, *, tau: float = 1.0) -> torch.Tensor:
    """``mean_rows KL(softmax(teacher / τ) ‖ softmax(student))`` over the same ``(B, M)`` items.

    The teacher's scores (e.g. the continuous ``⟨e_u, e_i⟩``) are detached; the
    student (the code scores) learns to rank the pool as the teacher does.
    """
    if student.shape != teacher.shape:
        raise ValueError(f"student and teacher scores must have one shape; got {tuple(student.shape)} and {tuple(teacher.shape)}")
    p = torch.softmax(teacher.detach() / tau, dim=-1)
    log_q = torch.log_softmax(student, dim=-1)
    return (p * (torch.log(p.clamp_min(1e-30)) - log_q)).sum(-1).mean()
