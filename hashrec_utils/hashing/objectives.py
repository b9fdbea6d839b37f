"""Hash objectives ``L_hash``: what a training step's codes are scored with.

An objective is an :class:`Objective` value: ``fn(model, batch: HashBatch) -> (loss, extra)``
and what its batch needs (sampled negatives per pair, or an item pool scored against every
distinct user). :data:`OBJECTIVES` is the immutable registry of the six built in (``bpr``,
``softmax``, ``recall``, ``bgch``, ``hashgnn``, ``bigear``; see :class:`~hashrec_utils.hashing.HashModel`);
a new objective is one function in an :class:`Objective`, passed to ``HashModel(objective=...)``.
"""
from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Callable, Mapping

import torch
import torch.nn.functional as F

from ..losses import bpr_loss, catalogue_softmax_distill, catalogue_softmax_loss, hashgnn_loss, pooled_listwise_loss, smooth_recall_loss

if TYPE_CHECKING:
    from .model import HashModel


@dataclass(frozen=True)
class HashBatch:
    """What an objective sees of one training step (built by :meth:`HashModel.loss`).

    ``users, pos (B,)``; ``inv (B,)``: each pair's row among the distinct users ``uniq (U,)``;
    ``h_users (U, K)``: their training codes, ``hu = h_users[inv] (B, K)``; ``h_pos (B, K)``;
    ``negs (B, T)`` / ``h_neg (B, T, K)``: the sampled negatives (objectives with
    ``negatives``, else ``None``); ``pool (M,)`` item ids (``None``: all ``n_items``) and
    ``s_rows (U, M)``: every distinct user's code scores against it (objectives with ``pool``
    or distillation, else ``None``); ``fused_distill``: the objective may compute the
    distillation itself (all-items softmax with a frozen teacher).
    """

    graph: object
    users: torch.Tensor
    pos: torch.Tensor
    step: int
    t: float
    n_items: int
    uniq: torch.Tensor
    inv: torch.Tensor
    h_users: torch.Tensor
    hu: torch.Tensor
    h_pos: torch.Tensor
    negs: torch.Tensor | None
    h_neg: torch.Tensor | None
    pool: torch.Tensor | None
    s_rows: torch.Tensor | None
    fused_distill: bool
    item_emb: torch.Tensor | None = None  # every item's encoder output (objectives that code items beyond the batch)


ObjectiveFn = Callable[["HashModel", HashBatch], "tuple[torch.Tensor, dict]"]


@dataclass(frozen=True)
class Objective:
    """A hash objective: ``fn(model, batch: HashBatch) -> (loss, extra)`` and what its batch needs.

    ``negatives(model)``: how many negatives per pair the batch samples (the first is the
    loader's; ``None``: no negatives); ``pool``: the batch scores every distinct user against an
    item pool (``model.n_negatives`` uniform items shared by the batch, ``0``: all items);
    ``default_negatives``: ``n_negatives`` when the model is not given one. ``extra`` may
    hold ``"distill"``: the distillation KL when the objective computed it (``batch.fused_distill``);
    ``fuses_distill``: it does, from the teacher's cached all-items softmax (what the memory
    estimate counts as the teacher cache). ``version``: bump when a change moves what ``fn`` computes; part of every run's identity,
    checked by the golden test.
    """

    name: str
    fn: ObjectiveFn
    negatives: Callable[["HashModel"], int] | None = None
    pool: bool = False
    default_negatives: int = 1
    version: int = 1
    fuses_distill: bool = False


def _n_negatives(model: "HashModel") -> int:
    """``model.n_negatives`` negatives per pair (bpr, bgch)."""
    return model.n_negatives


def _n_triplets(model: "HashModel") -> int:
    """``model.n_triplets`` negatives per pair (hashgnn)."""
    return model.n_triplets


def bpr_objective(model: "HashModel", b: HashBatch):
    """BPR on code scores, ``n_negatives`` uniform negatives per pair."""
    s_pos = model._score(b.hu, b.h_pos)
    return bpr_loss(s_pos, model._score(b.hu[:, None, :], b.h_neg)), {}


def softmax_objective(model: "HashModel", b: HashBatch):
    """Listwise: −log softmax of the positive among the pool (all items: fused one-logsumexp-per-user path)."""
    if b.pool is None:
        if b.fused_distill:
            # −log softmax over all items and the distillation's cross-entropy share one pass
            probs, entropy = model._teacher_probs()
            hashed, cross = catalogue_softmax_distill(b.s_rows, b.inv, b.pos, probs[b.uniq])
            return hashed, {"distill": cross - entropy[b.uniq].mean()}  # KL = cross-entropy − teacher entropy
        return catalogue_softmax_loss(b.s_rows, b.inv, b.pos), {}
    # a sampled pool shared by the batch: its log-sum-exp once per distinct user, the
    # positive's own entries (drawn into the pool by chance) taken back out
    ordered = b.pool.sort().values
    hits = torch.searchsorted(ordered, b.pos, right=True) - torch.searchsorted(ordered, b.pos)
    return pooled_listwise_loss(model._score(b.hu, b.h_pos), b.s_rows, b.inv, hits), {}


def recall_objective(model: "HashModel", b: HashBatch):
    """Luo & Wu's smooth recall loss at ``top_n`` over the pool (all items with ``n_negatives = 0``)."""
    ids = torch.arange(b.n_items, device=b.pos.device) if b.pool is None else b.pool
    s_pool = b.s_rows[b.inv].masked_fill(b.pos[:, None] == ids[None, :], float("-inf"))  # the positive leaves the pool
    return smooth_recall_loss(model._score(b.hu, b.h_pos), s_pool, top_n=model.top_n, n_items=b.n_items,
                              tau_rank=model.tau_rank, tau_recall=model.tau_recall), {}


def bgch_objective(model: "HashModel", b: HashBatch):
    """BGCH's loss as its official code sums it (``src/evals.py:16-21``: ``loss1 + loss2``, then
    ``decay · reg``): ``loss1`` BPR on the code scores (``src/model.py:128-134``, ``157``) plus
    ``loss2`` the reconstruction BCE on the *ego* (layer-0) embeddings ``e`` of the encoder's
    table (``_recons_loss``, ``src/model.py:118-126``, ``158``):
    ``mean over [σ(⟨e_u, e_i⟩) → 1; σ(⟨e_u, e_j⟩) → 0]`` with the loader's negative j.
    Encoders without an ``embedding`` table (or a frozen one) skip ``loss2``.
    """
    s_pos = model._score(b.hu, b.h_pos)
    hashed = bpr_loss(s_pos, model._score(b.hu[:, None, :], b.h_neg))
    ego = getattr(model.encoder, "embedding", None)
    if ego is None or model.freeze_encoder:
        return hashed, {}
    w, n_u = ego.weight, model.encoder.n_users
    eu, ei, ej = w[b.users], w[n_u + b.pos], w[n_u + b.negs[:, 0]]
    recon = 0.5 * (F.softplus(-(eu * ei).sum(-1)).mean() + F.softplus((eu * ej).sum(-1)).mean())
    return hashed + recon, {"recon": recon}


# BiGeaR's inference distillation, as its official code runs it (``src/parse.py:28-29``): the
# teacher's top R = 100 items a user on each layer, the r-th weighted e^{-0.1 r}
BIGEAR_TOP_R, BIGEAR_DECAY = 100, 0.1
# the users of a step the distillation term reads: the official batch (2,048 pairs, ``src/parse.py:15``);
# a larger batch's first 2,048 distinct users (its U × R × layers item codes would not fit memory)
BIGEAR_ID_USERS = 2048


@torch.no_grad()
def bigear_teacher_top(user_emb: torch.Tensor, item_emb: torch.Tensor, blocks: int, r: int = BIGEAR_TOP_R,
                       chunk: int = 2048) -> torch.Tensor:
    """The teacher's top-``r`` items of every user on every layer, ``(n_users, blocks, r)`` int64, best
    first: block ``l`` of the side-by-side layer embeddings scored ``⟨e_u^l, e_i^l⟩`` over all items,
    train items included (BiGeaR's ``summary``, ``src/main_pretrain.py:100-134``)."""
    d = user_emb.shape[1] // blocks
    r = min(int(r), item_emb.shape[0])
    out = torch.empty((user_emb.shape[0], blocks, r), dtype=torch.long)
    for l in range(blocks):
        items = item_emb[:, l * d:(l + 1) * d]
        for start in range(0, user_emb.shape[0], chunk):
            scores = user_emb[start:start + chunk, l * d:(l + 1) * d] @ items.T
            out[start:start + chunk, l] = scores.topk(r, dim=1).indices.cpu()
    return out


def bigear_objective(model: "HashModel", b: HashBatch):
    """BiGeaR's loss as its official code sums it (``src/evals.py:40-50``, ``src/model.py:332-375``): BPR
    on the code scores plus the mean over layers ``l`` of the inference distillation

        L_ID^l = mean_u (1/R) Σ_{r=1..R} e^{−0.1 r} · softplus(−s^l(u, i_r^l))

    where ``i_r^l`` is the teacher's r-th item for ``u`` on layer ``l`` (``model.teacher_top``, set
    from the ``warm_start`` teacher; all items, train included, as the official ``summary``) and
    ``s^l`` the student's layer-``l`` score of training codes, ``⟨ĥ_u^l, ĥ_i^l⟩`` (each layer weighted
    by ``w_l`` on both sides, so ``w_l² α_u^l α_i^l ⟨b_u^l, b_i^l⟩``; no ``γ/K``: the official raw
    score). The distillation reads the step's first :data:`BIGEAR_ID_USERS` distinct users.
    """
    hashed = bpr_loss(model._score(b.hu, b.h_pos), model._score(b.hu[:, None, :], b.h_neg))
    top = getattr(model, "teacher_top", None)
    if top is None or b.item_emb is None:
        raise ValueError("objective 'bigear' distils the teacher's top items: build the model with "
                         "hash_params warm_start=<the teacher's run folder>")
    n = min(len(b.uniq), BIGEAR_ID_USERS)
    users, hu = b.uniq[:n], b.h_users[:n]
    blocks, r = model.hash.blocks, top.shape[-1]
    width = hu.shape[1] // blocks
    weights = torch.exp(-BIGEAR_DECAY * torch.arange(1, r + 1, device=hu.device, dtype=hu.dtype))
    distil = hu.new_zeros(())
    for l in range(blocks):
        items, inv = torch.unique(top[users, l], return_inverse=True)  # the layer's teacher items, each coded once
        h_items = model.hash.block_forward(b.item_emb[items], l, b.t)
        s = (hu[:, l * width:(l + 1) * width] @ h_items.T).gather(1, inv)  # (n, R): s^l(u, i_r)
        distil = distil + (F.softplus(-s) * weights).sum(1).div(r).mean()
    distil = distil / blocks
    return hashed + distil, {"id": distil}


def hashgnn_objective(model: "HashModel", b: HashBatch):
    """HashGNN (Eq. 7): cross-entropy on links + λ × triplet ranking loss, ``n_triplets`` per pair."""
    s_pos = model._score(b.hu, b.h_pos)
    s_neg = model._score(b.hu[:, None, :], b.h_neg)
    return hashgnn_loss(s_pos, s_neg, lambda_rank=model.lambda_rank, margin=model.margin), {}


# the registry, built once and read-only: a new objective is an Objective passed to HashModel(objective=...)
OBJECTIVES: Mapping[str, Objective] = MappingProxyType({o.name: o for o in (
    Objective("bpr", bpr_objective, negatives=_n_negatives, default_negatives=1),
    Objective("softmax", softmax_objective, pool=True, default_negatives=0, fuses_distill=True),
    Objective("recall", recall_objective, pool=True, default_negatives=256),
    Objective("bgch", bgch_objective, negatives=_n_negatives, default_negatives=1),
    Objective("hashgnn", hashgnn_objective, negatives=_n_triplets, default_negatives=1),
    Objective("bigear", bigear_objective, negatives=_n_negatives, default_negatives=1),
)})
