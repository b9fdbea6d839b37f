"""The hash layer and the hash models: an encoder, a hash layer on top, and the loss that trains them.

Hash layer (HashGNN, Tan et al. WWW 2020): a fully connected layer and tanh map
an embedding ``e ∈ R^d`` to ``z = tanh(a)``, ``a = W e + b ∈ R^K``; the code is
``h = sign(z) ∈ {-1, +1}^K`` (:mod:`.codes`); the training codes are the estimator's
(:mod:`.estimators`), the loss's hash term an objective (:mod:`.objectives`).
Two-stage ``*_sp`` (HashGNN_sp): the hash layer learns on frozen trained embeddings
(``freeze_encoder``).
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from ..graph import Graph
from ..losses import bpr_loss, distill_loss
from .codes import pack_codes
from .estimators import Estimator, row_scales
from .objectives import OBJECTIVES, HashBatch, Objective

HASH_LAYERS = ("linear", "linear_nobias", "identity", "fixed_nobias")


class HashLayer(nn.Module):
    """``a = W e + b`` (``d → K``, ``b = 0`` at init); training codes ``estimator(a, t)``; eval codes ``sign(a)``.

    ``kind``: ``"linear"`` (HashGNN's ``W e + b``), ``"linear_nobias"`` (BGCH's ``W e``),
    ``"fixed_nobias"`` (``W e`` with ``W`` left at its random initialisation, as BGCH's official code
    runs it: its layer sits in a Python list, ``src/model.py:30-42``, outside the optimiser's
    parameters) or ``"identity"`` (``a = e``, needs ``bits == dim``: Luo & Wu and BiGeaR binarise the
    LightGCN embeddings themselves).

    ``blocks``: the encoder's output is ``blocks`` embeddings of ``dim`` side by side (one per
    propagation layer, :class:`~hashrec_utils.models.LayerConcatLightGCN`); each is coded on its own
    by the same layer into ``bits / blocks`` bits, with its own scale for a scaled estimator, and
    the codes are concatenated (BGCH's and BiGeaR's codes of every layer).
    """

    version = 1  # bump when a change moves what the layer computes (a, its init); part of every run's identity

    def __init__(self, dim: int, bits: int, estimator: Estimator, kind: str = "linear", blocks: int = 1):
        super().__init__()
        if int(bits) != bits or bits <= 0 or bits % 8:
            raise ValueError(f"bits must be a positive multiple of 8; got {bits}")
        if kind not in HASH_LAYERS:
            raise ValueError(f"hash_layer must be one of {', '.join(HASH_LAYERS)}; got {kind!r}")
        if int(blocks) != blocks or blocks < 1 or bits % blocks:
            raise ValueError(f"blocks must be a positive divisor of bits ({bits}); got {blocks}")
        self.bits, self.kind, self.blocks = int(bits), kind, int(blocks)
        per_block = self.bits // self.blocks
        if kind == "identity" and per_block != dim:
            raise ValueError(f"hash_layer='identity' codes the embeddings themselves: bits must equal dim ({dim}) "
                             f"per block ({self.blocks} blocks: {dim * self.blocks}); got {bits}")
        if kind == "identity":
            self.linear = nn.Identity()
        else:
            self.linear = nn.Linear(dim, per_block, bias=kind == "linear")
            if kind == "linear":
                # zero bias: the initial codes are sign(W e), a random-hyperplane hash of the embeddings;
                # the default uniform bias would dominate W e for small embeddings and give every node one code
                nn.init.zeros_(self.linear.bias)
            if kind == "fixed_nobias":
                self.linear.weight.requires_grad_(False)
        self.estimator = estimator

    def _rows(self, e: torch.Tensor) -> torch.Tensor:
        """``e (n, blocks · d)`` as ``(n · blocks, d)``: one row per block (a view for one block)."""
        return e if self.blocks == 1 else e.reshape(e.shape[0] * self.blocks, -1)

    def _joined(self, x: torch.Tensor, n: int) -> torch.Tensor:
        """The inverse of :meth:`_rows` on the layer's output: ``(n, bits)``."""
        return x if self.blocks == 1 else x.reshape(n, -1)

    def project(self, e: torch.Tensor) -> torch.Tensor:
        """``a = W e + b`` of every block, side by side ``(n, bits)``."""
        return self._joined(self.linear(self._rows(e)), e.shape[0])

    def forward(self, e: torch.Tensor, t: float = 0.0) -> torch.Tensor:
        return self._joined(self.estimator.forward(self.linear(self._rows(e)), t), e.shape[0])

    def block_forward(self, e: torch.Tensor, block: int, t: float = 0.0) -> torch.Tensor:
        """Training codes of one block ``(n, bits / blocks)`` of ``e (n, blocks · d)``: :meth:`forward`'s
        columns of that block, computed for it alone."""
        d = e.shape[1] // self.blocks
        return self.estimator.forward(self.linear(e[:, block * d:(block + 1) * d]), t)

    def codes(self, e: torch.Tensor) -> torch.Tensor:
        """``sign(tanh(W e + b)) = sign(W e + b)``, ±1 float."""
        return self._joined(self.estimator.codes(self.linear(self._rows(e))), e.shape[0])

    def scales(self, e: torch.Tensor) -> torch.Tensor | None:
        """``α = mean|a|`` per row ``(n,)`` — per row and block ``(n, blocks)`` with blocks — for a
        scaled estimator (BGCH, BiGeaR); else ``None``."""
        if not self.estimator.scaled:
            return None
        alpha = row_scales(self.linear(self._rows(e)))[:, 0]
        return alpha if self.blocks == 1 else alpha.reshape(e.shape[0], self.blocks)


class HashModel(nn.Module):
    """An encoder with a hash layer on top; answers the training loop's ``loss`` and ``evaluate``.

    Code scores are ``s(u, i) = γ ⟨ĥ_u, ĥ_i⟩ / K`` with ``γ = exp(log_scale)``
    learnable (``scale`` at init): raw ±1 inner products reach ±K and would
    saturate every sigmoid. The loss is

        cont_weight · [BPR(⟨e_u, e_i⟩, ⟨e_u, e_j⟩) + reg · L2]          (skipped when frozen)
      + hash_weight · L_hash(s)
      + distill · KL(softmax(⟨e_u, e_·⟩ / τ_d) ‖ softmax(s(u, ·)))     (distinct users × item pool;
                 the teacher e are the detached embeddings of :meth:`embeddings`, those hierarchical search re-ranks with)

    ``objective`` (``L_hash``, a name in :data:`OBJECTIVES`, or an :class:`Objective` value: a new one is one
    function in an ``Objective``, passed as is):
      ``bpr``      BPR on code scores, ``n_negatives`` (1) uniform negatives per pair;
      ``softmax``  listwise: −log softmax of the positive among the pool of items
                   (all items if ``n_negatives = 0``: one logsumexp per distinct user
                   of the batch, so large batches cost little more than small ones;
                   else ``n_negatives`` uniform items shared by the batch);
      ``recall``   the smooth recall loss (Luo & Wu) at ``top_n`` on a pool of ``n_negatives`` (256) items;
      ``hashgnn``  HashGNN's cross-entropy link loss + λ × triplet ranking loss,
                   ``n_triplets`` per node (``lambda_rank = 0`` is ``_nr``);
      ``bgch``     BGCH's: BPR on code scores + BCE reconstruction on the ego embeddings
                   (logged as ``loss_recon``, included in ``loss_hash``);
      ``bigear``   BiGeaR's: BPR on code scores + its inference distillation of the teacher's
                   top items on every layer (``teacher_top``; logged as ``loss_id``).
    ``freeze_encoder`` (two-stage ``_sp``): only the hash layer (and γ) learn.
    ``continuous``: which embeddings :meth:`embeddings` returns and hierarchical
    search re-ranks with: the encoder's (``"encoder"``), HashGNN's
    ``z = tanh(W e + b)`` (``"hash"``), or (``"init"``, a :class:`TableEncoder`
    only) the trained embeddings the table started from, kept frozen: the
    table then serves the codes alone and the continuous model stays intact. ``candidates``: C of hierarchical search.
    ``hash_layer``: see :class:`HashLayer`. ``asymmetric``: train for asymmetric search — the
    users' side of every code score is their real-valued hash-layer output (:meth:`_user_side`),
    the items' side their codes through the estimator, as asymmetric search scores them. Schedules: :meth:`set_total_steps` once before
    training; the estimator then sees ``t = step / total_steps`` (clamped to [0, 1]; ``t = 0``
    until it is called).
    The encoder is any module with ``embeddings(graph)``, ``dim`` and ``n_users``.
    """

    # bump when a change moves the loss composition (continuous BPR + hash objective + distillation) or
    # what the model scores and evaluates with; part of every run's identity
    version = 1

    def __init__(self, encoder: nn.Module, bits: int, estimator: Estimator, *, objective: str | Objective = "bpr",
                 hash_weight: float = 1.0, cont_weight: float = 1.0, scale: float = 8.0, lambda_rank: float = 0.5,
                 margin: float = 0.2, n_triplets: int = 5, n_negatives: int | None = None, reg: float = 1e-4,
                 distill: float = 0.0, distill_tau: float = 1.0, tau_rank: float = 1.0, tau_recall: float = 1.0,
                 top_n: int = 20, freeze_encoder: bool = False, candidates: int = 100, continuous: str = "encoder",
                 hash_layer: str = "linear", asymmetric: bool = False):
        super().__init__()
        if not isinstance(objective, Objective):
            if objective not in OBJECTIVES:
                raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}; got {objective!r}")
            objective = OBJECTIVES[objective]
        if n_negatives is None:
            n_negatives = objective.default_negatives
        if n_negatives < 0 or n_triplets < 1:
            raise ValueError(f"need n_negatives >= 0 and n_triplets >= 1; got {n_negatives}, {n_triplets}")
        if top_n < 1:
            raise ValueError(f"top_n must be >= 1; got {top_n}")
        self.encoder = encoder
        self.hash = HashLayer(getattr(encoder, "dim", 64), bits, estimator, kind=hash_layer,
                              blocks=getattr(encoder, "blocks", 1))
        self.log_scale = nn.Parameter(torch.tensor(math.log(scale)))
        self.hash_objective, self.hash_weight, self.cont_weight = objective, hash_weight, cont_weight
        self.lambda_rank, self.margin, self.n_triplets, self.n_negatives = lambda_rank, margin, n_triplets, n_negatives
        self.reg, self.distill, self.distill_tau = reg, distill, distill_tau
        self.tau_rank, self.tau_recall, self.top_n = tau_rank, tau_recall, int(top_n)
        self.freeze_encoder, self.candidates = freeze_encoder, candidates
        self.asymmetric = bool(asymmetric)
        self.total_steps: int | None = None
        # BiGeaR's teacher items ``(n_users, blocks, R)`` (objective ``bigear``; set by build_hash_model's warm start)
        self.register_buffer("teacher_top", None, persistent=False)
        if continuous not in ("encoder", "hash", "init"):
            raise ValueError(f"continuous must be 'encoder', 'hash' or 'init'; got {continuous!r}")
        if continuous == "init" and not hasattr(encoder, "initial"):
            raise ValueError("continuous='init' needs an encoder started from trained embeddings (TableEncoder)")
        self.continuous = continuous
        if freeze_encoder:
            for p in self.encoder.parameters():
                p.requires_grad_(False)

    @property
    def objective(self) -> str:
        """The hash objective's name (:attr:`hash_objective`, an :class:`Objective`, is what :meth:`loss` runs)."""
        return self.hash_objective.name

    @property
    def bits(self) -> int:
        return self.hash.bits

    @property
    def watched_search(self) -> str:
        """The search mode whose validation recall picks the kept epoch: the one the model is trained for."""
        return "asymmetric" if self.asymmetric else "hamming"

    @property
    def n_users(self) -> int:
        return self.encoder.n_users

    def set_total_steps(self, total: int) -> None:
        """The run's total number of optimiser steps; every schedule is a function of ``step / total``."""
        if int(total) != total or total < 0:
            raise ValueError(f"total steps must be a non-negative integer; got {total!r}")
        self.total_steps = int(total)

    def progress(self, step: int) -> float:
        """``t = step / max(total_steps, 1)`` clamped to [0, 1]; 0 before :meth:`set_total_steps`."""
        if self.total_steps is None:
            return 0.0
        return min(max(step / max(self.total_steps, 1), 0.0), 1.0)

    def embeddings(self, graph: Graph | None) -> tuple[torch.Tensor, torch.Tensor]:
        """The continuous embeddings that hierarchical search re-ranks with: the encoder's,
        or (``continuous="hash"``, HashGNN's choice) the hash layer's ``z = tanh(W e + b)``."""
        if self.continuous == "init":
            return self.encoder.initial_embeddings()
        users, items = self.encoder.embeddings(graph)
        if self.continuous == "hash":
            return torch.tanh(self.hash.project(users)), torch.tanh(self.hash.project(items))
        return users, items

    def sign_codes(self, graph: Graph | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Evaluation codes ±1 ``(n_users, K)``, ``(n_items, K)``."""
        users, items = self.encoder.embeddings(graph)
        return self.hash.codes(users), self.hash.codes(items)

    def codes(self, graph: Graph | None) -> tuple[np.ndarray, np.ndarray]:
        """Packed evaluation codes ``np.uint8 (n_users, K/8)``, ``(n_items, K/8)``."""
        with torch.no_grad():
            users, items = self.sign_codes(graph)
        return pack_codes(users), pack_codes(items)

    packed_codes = codes

    def query_vectors(self, graph: Graph | None) -> np.ndarray:
        """The users' real-valued hash-layer outputs ``a_u = W e_u + b``, float32 ``(n_users, K)``: the
        queries of asymmetric search, ``⟨a_u, sign a_i⟩`` (their signs are the user codes)."""
        with torch.no_grad():
            users, _ = self.encoder.embeddings(graph)
            return self.hash.project(users).float().cpu().numpy()

    def code_scales(self, graph: Graph | None) -> tuple[np.ndarray, np.ndarray] | None:
        """Per-row code scales ``α = mean|a|`` (float32 ``(n_users,)``, ``(n_items,)``) of a scaled
        estimator (BGCH, BiGeaR: score ``α_u α_i ⟨b_u, b_i⟩``); ``None`` for unscaled codes."""
        if not self.hash.estimator.scaled:
            return None
        with torch.no_grad():
            users, items = self.encoder.embeddings(graph)
            return (self.hash.scales(users).float().cpu().numpy(), self.hash.scales(items).float().cpu().numpy())

    def extra_arrays(self, graph: Graph | None) -> dict:
        """Arrays to save beside the codes in ``embeddings.npz``: ``user_scales``, ``item_scales``
        for scaled codes (:meth:`code_scales`), else nothing."""
        scales = self.code_scales(graph)
        return {} if scales is None else {"user_scales": scales[0], "item_scales": scales[1]}

    def schedule_state(self, step: int) -> dict:
        return {**self.hash.estimator.state(self.progress(step)), "scale": float(self.log_scale.detach().exp())}

    def _score(self, hu: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
        """``γ ⟨h_u, h_i⟩ / K`` over the last axis (broadcast)."""
        return self.log_scale.exp() / self.bits * (hu * hi).sum(-1)

    def _score_pool(self, hu: torch.Tensor, h_pool: torch.Tensor) -> torch.Tensor:
        """``(B, M)`` code scores of ``hu (B, K)`` against every row of ``h_pool (M, K)``."""
        return (hu * (self.log_scale.exp() / self.bits)) @ h_pool.T  # scale the small side, not the (B, M) product

    def _pool(self, n_items: int, device) -> torch.Tensor | None:
        """Item ids scored against every user of the batch; ``None``: all items."""
        if self.n_negatives == 0 or self.n_negatives >= n_items:
            return None
        return torch.randint(0, n_items, (self.n_negatives,), device=device)

    def loss(self, graph: Graph | None, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, step: int = 0):
        t = self.progress(step)
        objective = self.hash_objective
        user_emb, item_emb = self.encoder.embeddings(graph)
        device = user_emb.device
        logs, total = {}, torch.zeros((), device=device)
        if not self.freeze_encoder and self.cont_weight:
            eu, ei, ej = user_emb[users], item_emb[pos], item_emb[neg]
            cont = bpr_loss((eu * ei).sum(-1), (eu * ej).sum(-1))
            ego = getattr(self.encoder, "embedding", None)
            if ego is not None and self.reg:
                n_u, w = self.encoder.n_users, ego.weight
                l2 = 0.5 * (w[users].square().sum() + w[n_u + pos].square().sum() + w[n_u + neg].square().sum()) / len(users)
                cont = cont + self.reg * l2
            total = total + self.cont_weight * cont
            logs["loss_continuous"] = float(cont.detach())
        # Codes are computed once per distinct user and item of the step (one guided-STE draw per
        # node and step), then gathered: hashing every gathered row would cost (1 + negatives) × batch.
        n_items, batch = item_emb.shape[0], len(users)
        uniq, inv = torch.unique(users, return_inverse=True)
        h_uniq = self._user_side(user_emb[uniq], t)
        hu = h_uniq[inv]
        needs_pool = objective.pool or bool(self.distill)
        pool = self._pool(n_items, device) if needs_pool else None
        negs = None
        if objective.negatives is not None:
            k = objective.negatives(self)
            negs = neg[:, None]
            if k > 1:
                negs = torch.cat([negs, torch.randint(0, n_items, (batch, k - 1), device=device)], 1)
        parts = [pos] + ([negs.reshape(-1)] if negs is not None else [])
        if needs_pool:
            parts.append(torch.arange(n_items, device=device) if pool is None else pool)
        item_ids, item_inv = torch.unique(torch.cat(parts), return_inverse=True)
        h_items = self.hash(item_emb[item_ids], t)
        s_rows = h_neg = None
        if needs_pool:
            h_pool = h_items if pool is None else h_items[item_inv[len(item_inv) - len(pool):]]
            s_rows = self._score_pool(h_uniq, h_pool)
        if negs is not None:
            h_neg = h_items[item_inv[batch : batch + negs.numel()]].view(batch, negs.shape[1], -1)
        # a frozen teacher (continuous="init") has one softmax over all items, computed once: its KL may
        # then share the objective's pass over the all-items score matrix
        fused = bool(self.distill) and self.continuous == "init" and pool is None
        ctx = HashBatch(graph=graph, users=users, pos=pos, step=step, t=t, n_items=n_items, uniq=uniq, inv=inv,
                        h_users=h_uniq, hu=hu, h_pos=h_items[item_inv[:batch]], negs=negs, h_neg=h_neg, pool=pool,
                        s_rows=s_rows, fused_distill=fused, item_emb=item_emb)
        hashed, extra = objective.fn(self, ctx)
        total = total + self.hash_weight * hashed
        logs["loss_hash"] = float(hashed.detach())
        logs.update({f"loss_{key}": float(v.detach()) for key, v in extra.items() if key != "distill"})
        if self.distill:
            # the teacher is the continuous model that hierarchical search re-ranks with (with
            # continuous="init": the frozen LightGCN embeddings the table started from)
            kd = extra.get("distill")
            if kd is None:
                t_users, t_items = self.embeddings(graph)
                teacher = t_users[uniq] @ (t_items if pool is None else t_items[pool]).T
                kd = distill_loss(s_rows, teacher, tau=self.distill_tau)
            total = total + self.distill * kd
            logs["loss_distill"] = float(kd.detach())
        return total, logs

    def _user_side(self, e: torch.Tensor, t: float) -> torch.Tensor:
        """The users' side of the code scores: their training codes, or (``asymmetric``: trained for
        asymmetric search) the real-valued ``a_u = W e_u + b`` scaled to mean magnitude 1 per row, so
        that ``⟨a_u, h_i⟩`` is on the scale of a code inner product (a positive scale per user moves no
        ranking of items)."""
        if not self.asymmetric:
            return self.hash(e, t)
        a = self.hash.project(e)
        return a / a.detach().abs().mean(-1, keepdim=True).clamp_min(1e-8)

    def _teacher_probs(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``softmax(⟨e_u, e_i⟩ / τ_d)`` over all items for every user, and each row's entropy, of
        the frozen embeddings (``continuous="init"``): computed once and kept (not checkpointed)."""
        users, items = self.encoder.initial_embeddings()
        cached = getattr(self, "_teacher_cache", None)
        if cached is None or cached[0].device != users.device:  # recomputed after the model moves
            with torch.no_grad():
                logp = torch.log_softmax(users @ items.T / self.distill_tau, dim=1)
                probs = logp.exp()
                entropy = -(probs * logp).sum(1)
            cached = self._teacher_cache = (probs, entropy)
        return cached


class TableEncoder(nn.Module):
    """User and item tables initialised from trained embeddings, with the encoder interface.

    Fine-tuning a table instead of re-propagating makes hash training cheap (no
    sparse product per step); ``embedding`` is the ``(n_users + n_items, d)`` table.
    """

    version = 1  # bump when a change moves the table or its initial embeddings; part of every run's identity

    def __init__(self, user_emb: np.ndarray, item_emb: np.ndarray):
        super().__init__()
        self.n_users, self.n_items = len(user_emb), len(item_emb)
        self.dim = user_emb.shape[1]
        self.embedding = nn.Embedding(self.n_users + self.n_items, self.dim)
        table = torch.from_numpy(np.concatenate([user_emb, item_emb]).astype(np.float32))
        self.embedding.weight.data.copy_(table)
        self.register_buffer("initial", table.clone())

    def initial_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The (frozen) embeddings the table started from: ``(users, items)``."""
        return self.initial[: self.n_users], self.initial[self.n_users :]

    def embeddings(self, graph: Graph | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        w = self.embedding.weight
        return w[: self.n_users], w[self.n_users :]
