"""Learning to hash: a hash layer, its gradient estimators, and the hash models.

Hash layer (HashGNN, Tan et al. WWW 2020): a fully connected layer and tanh map
an embedding ``e ∈ R^d`` to ``z = tanh(a)``, ``a = W e + b ∈ R^K``; the code is
``h = sign(z) ∈ {-1, +1}^K`` with ``sign(0) = +1``. For ±1 codes
``ham(h_u, h_i) = (K - ⟨h_u, h_i⟩) / 2``: ranking by Hamming distance is
ranking by the code inner product. Codes leave the model packed with
``np.packbits`` (bit 1 for +1; ``K/8`` bytes per row, MSB first: Faiss's
binary layout).

``sign`` has zero gradient almost everywhere; an *estimator* decides what the
training forward pass returns and what its backward pass uses. Evaluation
always uses plain ``sign(a)`` codes (``Estimator.codes``). Estimators
(``make_estimator(name, **params)``), each a function of the pre-activation ``a``:

``ste``         forward sign(z), backward identity through the sign (HashGNN's Hash_ste), then tanh'.
``guided_ste``  ĥ = Q ⊙ z + (1 − Q) ⊙ sign_ste(z), Q ~ Bernoulli(p) i.i.d. per element (Q = 1 picks
                the continuous z, HashGNN §4.2); p = ``p0`` (1) at the start, multiplied by
                ``decay`` (0.95) every ``every`` (250) iterations.
``hashnet``     tanh(β a), β = ``beta0`` (1 + ``gamma`` t)^½ grows with the iteration t (HashNet).
``gumbel``      2σ((a + g)/τ) − 1, logistic noise g = ln u − ln(1 − u) (the two-class Gumbel
                softmax), τ = max(``tau_min``, ``tau0`` · ``decay``^⌊t/``every``⌋).
``signswish``   forward sign(a), backward d/da of 2σ(βa)(1 + βa(1 − σ(βa))) − 1 (Luo & Wu).
``bgch``        forward ``mean_k |z_k| · sign(z)`` per row (BGCH / BiGeaR's scaled codes; the scale
                keeps its exact gradient); backward of the sign by BiGeaR's Dirac-delta estimate,
                the derivative of the ``n_terms``-term Fourier series of the square wave of
                period 2H: (4/H) Σ_{i=1..n} cos((2i − 1)πz/H), n = 4, H = 2.

No training: :func:`lsh_codes` (random hyperplanes, Charikar 2002) and the
post-hoc ``pack_codes(embeddings)``. Two-stage ``*_sp`` (HashGNN_sp): the
hash layer learns on frozen trained embeddings (``freeze_encoder``).
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .graph import Graph
from .losses import bpr_loss, catalogue_softmax_distill, catalogue_softmax_loss, distill_loss, hashgnn_loss, pooled_listwise_loss, smooth_recall_loss

__all__ = [
    "sign",
    "pack_codes",
    "unpack_codes",
    "ESTIMATORS",
    "OBJECTIVES",
    "Estimator",
    "make_estimator",
    "HashLayer",
    "HashModel",
    "TableEncoder",
    "build_hash_model",
    "split_method",
    "lsh_codes",
]

# ---- codes ------------------------------------------------------------------------------


def sign(x: torch.Tensor) -> torch.Tensor:
    """±1 with ``sign(0) = +1`` (``torch.sign`` gives 0 there), so codes agree on every kernel."""
    return torch.where(x >= 0, 1.0, -1.0).to(x.dtype)


def pack_codes(codes) -> np.ndarray:
    """±1 (or real: the sign is taken, 0 → +1) ``(n, K)`` → ``np.uint8 (n, K/8)``; +1 → bit 1, MSB first."""
    arr = codes.detach().cpu().numpy() if isinstance(codes, torch.Tensor) else np.asarray(codes)
    if arr.ndim != 2:
        raise ValueError(f"codes must be 2-D (n, bits); got shape {arr.shape}")
    if arr.shape[1] % 8:
        raise ValueError(f"bits must be a multiple of 8; got {arr.shape[1]}")
    return np.packbits(arr >= 0, axis=1)


def unpack_codes(packed: np.ndarray, bits: int | None = None) -> np.ndarray:
    """``np.uint8 (n, K/8)`` → ±1 float32 ``(n, K)`` (``bits`` defaults to all ``8 · K/8``)."""
    packed = np.asarray(packed)
    if packed.dtype != np.uint8 or packed.ndim != 2:
        raise TypeError(f"packed codes must be a 2-D uint8 array; got {packed.dtype} with shape {packed.shape}")
    bits = packed.shape[1] * 8 if bits is None else int(bits)
    if not 0 < bits <= packed.shape[1] * 8:
        raise ValueError(f"bits must be in 1..{packed.shape[1] * 8} for {packed.shape[1]} bytes a row; got {bits}")
    return np.unpackbits(packed, axis=1, count=bits).astype(np.float32) * 2.0 - 1.0


# ---- sign functions with a custom backward ------------------------------------------------


class SignSTE(torch.autograd.Function):
    """Forward ``sign(x)``; backward identity (the straight-through estimator)."""

    @staticmethod
    def forward(ctx, x):  # type: ignore[override]
        return sign(x)

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        return g


def signswish_grad(x: torch.Tensor, beta: float) -> torch.Tensor:
    """``d/dx [2σ(βx)(1 + βx(1 − σ(βx))) − 1] = 2βσ(1 − σ)(2 + βx(1 − 2σ))``, ``σ = σ(βx)``."""
    s = torch.sigmoid(beta * x)
    return 2 * beta * s * (1 - s) * (2 + beta * x * (1 - 2 * s))


class SignSwish(torch.autograd.Function):
    """Forward ``sign(x)``; backward ``g · signswish_grad(x, β)`` (Luo & Wu's AAGE)."""

    @staticmethod
    def forward(ctx, x, beta: float):  # type: ignore[override]
        ctx.save_for_backward(x)
        ctx.beta = beta
        return sign(x)

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return g * signswish_grad(x, ctx.beta), None


def fourier_grad(x: torch.Tensor, n_terms: int, period: float) -> torch.Tensor:
    """BiGeaR's estimate of sign's derivative: ``(4/H) Σ_{i=1..n} cos((2i − 1)πx/H)``.

    The square wave of period 2H is ``(4/π) Σ sin((2i−1)πx/H)/(2i−1)``; this is
    the derivative of its first ``n`` terms (a smoothed Dirac delta at 0).
    """
    return sum(torch.cos((2 * i - 1) * math.pi * x / period) for i in range(1, n_terms + 1)) * (4 / period)


class SignFourier(torch.autograd.Function):
    """Forward ``sign(x)``; backward ``g · fourier_grad(x)``."""

    @staticmethod
    def forward(ctx, x, n_terms: int, period: float):  # type: ignore[override]
        ctx.save_for_backward(x)
        ctx.n, ctx.h = n_terms, period
        return sign(x)

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return g * fourier_grad(x, ctx.n, ctx.h), None, None


# ---- estimators ----------------------------------------------------------------------------


class Estimator:
    """Turns the hash layer's pre-activation ``a`` into the codes training scores use.

    ``forward(a, step)``: training codes at iteration ``step``; ``codes(a)``:
    evaluation codes, always ``sign(a)``; ``state(step)``: the schedule's
    values (p, β, τ) for the training history.
    """

    name = "estimator"
    defaults: dict = {}

    def __init__(self, **params):
        self.params = {**self.defaults, **params}

    def forward(self, a: torch.Tensor, step: int) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, a: torch.Tensor, step: int = 0) -> torch.Tensor:
        return self.forward(a, step)

    def codes(self, a: torch.Tensor) -> torch.Tensor:
        return sign(a)

    def state(self, step: int) -> dict:
        return {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v}' for k, v in self.params.items())})"


class STE(Estimator):
    name = "ste"

    def forward(self, a, step):
        return SignSTE.apply(torch.tanh(a))


class GuidedSTE(Estimator):
    name = "guided_ste"
    defaults = {"p0": 1.0, "decay": 0.95, "every": 250}

    def state(self, step):
        p = self.params
        return {"p": p["p0"] * p["decay"] ** (step // p["every"])}

    def forward(self, a, step):
        z = torch.tanh(a)
        q = torch.bernoulli(torch.full_like(z, self.state(step)["p"]))
        return q * z + (1 - q) * SignSTE.apply(z)


class HashNet(Estimator):
    name = "hashnet"
    defaults = {"beta0": 1.0, "gamma": 0.005}

    def state(self, step):
        return {"beta": self.params["beta0"] * (1 + self.params["gamma"] * step) ** 0.5}

    def forward(self, a, step):
        return torch.tanh(self.state(step)["beta"] * a)


class Gumbel(Estimator):
    name = "gumbel"
    defaults = {"tau0": 1.0, "decay": 0.9, "every": 100, "tau_min": 0.05}

    def state(self, step):
        p = self.params
        return {"tau": max(p["tau_min"], p["tau0"] * p["decay"] ** (step // p["every"]))}

    def forward(self, a, step):
        u = torch.rand_like(a).clamp_(1e-6, 1 - 1e-6)
        return 2 * torch.sigmoid((a + torch.log(u) - torch.log1p(-u)) / self.state(step)["tau"]) - 1


class SignSwishEstimator(Estimator):
    name = "signswish"
    defaults = {"beta": 5.0}

    def forward(self, a, step):
        return SignSwish.apply(a, float(self.params["beta"]))


class BGCH(Estimator):
    name = "bgch"
    defaults = {"n_terms": 4, "period": 2.0}

    def forward(self, a, step):
        z = torch.tanh(a)
        scale = z.abs().mean(dim=-1, keepdim=True)
        return scale * SignFourier.apply(z, int(self.params["n_terms"]), float(self.params["period"]))


ESTIMATORS: dict[str, type[Estimator]] = {cls.name: cls for cls in (STE, GuidedSTE, HashNet, Gumbel, SignSwishEstimator, BGCH)}
UNTRAINED = ("lsh", "sign")


def make_estimator(name: str, **params) -> Estimator:
    """The estimator ``name`` with its defaults (module docstring) overridden by ``params``."""
    if name in UNTRAINED:
        raise ValueError(f"{name!r} needs no training: use lsh_codes(user_emb, item_emb, bits) or pack_codes(emb)")
    if name not in ESTIMATORS:
        raise ValueError(f"unknown estimator {name!r}; choose one of {', '.join(ESTIMATORS)}")
    cls = ESTIMATORS[name]
    unknown = set(params) - set(cls.defaults)
    if unknown:
        raise ValueError(f"estimator {name!r} takes {sorted(cls.defaults) or 'no parameters'}; got {sorted(unknown)}")
    return cls(**params)


def split_method(method: str) -> tuple[str, dict]:
    """``"guided_ste_sp"`` → ``("guided_ste", {"freeze": True})``; ``_nr`` → ``lambda_rank = 0``."""
    extra = {}
    while method.endswith(("_sp", "_nr")):
        extra.update({"freeze": True} if method.endswith("_sp") else {"lambda_rank": 0.0})
        method = method[:-3]
    return method, extra


# ---- the hash layer and the hash model ------------------------------------------------------


class HashLayer(nn.Module):
    """``a = W e + b`` (``d → K``, ``b = 0`` at init); training codes ``estimator(a, step)``; eval codes ``sign(a)``."""

    def __init__(self, dim: int, bits: int, estimator: Estimator):
        super().__init__()
        if int(bits) != bits or bits <= 0 or bits % 8:
            raise ValueError(f"bits must be a positive multiple of 8; got {bits}")
        self.bits = int(bits)
        self.linear = nn.Linear(dim, self.bits)
        # zero bias: the initial codes are sign(W e), a random-hyperplane hash of the embeddings;
        # the default uniform bias would dominate W e for small embeddings and give every node one code
        nn.init.zeros_(self.linear.bias)
        self.estimator = estimator

    def forward(self, e: torch.Tensor, step: int = 0) -> torch.Tensor:
        return self.estimator.forward(self.linear(e), step)

    def codes(self, e: torch.Tensor) -> torch.Tensor:
        """``sign(tanh(W e + b)) = sign(W e + b)``, ±1 float."""
        return self.estimator.codes(self.linear(e))


OBJECTIVES = ("bpr", "softmax", "recall", "hashgnn")


class HashModel(nn.Module):
    """An encoder with a hash layer on top; answers the training loop's ``loss`` and ``evaluate``.

    Code scores are ``s(u, i) = γ ⟨ĥ_u, ĥ_i⟩ / K`` with ``γ = exp(log_scale)``
    learnable (``scale`` at init): raw ±1 inner products reach ±K and would
    saturate every sigmoid. The loss is

        cont_weight · [BPR(⟨e_u, e_i⟩, ⟨e_u, e_j⟩) + reg · L2]          (skipped when frozen)
      + hash_weight · L_hash(s)
      + distill · KL(softmax(⟨e_u, e_·⟩ / τ_d) ‖ softmax(s(u, ·)))     (distinct users × item pool;
                 the teacher e are the detached embeddings of :meth:`embeddings`, those hierarchical search re-ranks with)

    ``objective`` (``L_hash``):
      ``bpr``      BPR on code scores, ``n_negatives`` (1) uniform negatives per pair;
      ``softmax``  listwise: −log softmax of the positive among the pool of items
                   (all items if ``n_negatives = 0``: one logsumexp per distinct user
                   of the batch, so large batches cost little more than small ones;
                   else ``n_negatives`` uniform items shared by the batch);
      ``recall``   the smooth recall loss (Luo & Wu) on a pool of ``n_negatives`` (256) items;
      ``hashgnn``  HashGNN's cross-entropy link loss + λ × triplet ranking loss,
                   ``n_triplets`` per node (``lambda_rank = 0`` is ``_nr``).
    ``freeze_encoder`` (two-stage ``_sp``): only the hash layer (and γ) learn.
    ``continuous``: which embeddings :meth:`embeddings` returns and hierarchical
    search re-ranks with: the encoder's (``"encoder"``), HashGNN's
    ``z = tanh(W e + b)`` (``"hash"``), or (``"init"``, a :class:`TableEncoder`
    only) the trained embeddings the table started from, kept frozen: the
    table then serves the codes alone and the continuous model stays intact. ``candidates``: C of hierarchical search.
    The encoder is any module with ``embeddings(graph)``, ``dim`` and ``n_users``.
    """

    def __init__(self, encoder: nn.Module, bits: int, estimator: Estimator, *, objective: str = "bpr",
                 hash_weight: float = 1.0, cont_weight: float = 1.0, scale: float = 8.0, lambda_rank: float = 0.5,
                 margin: float = 0.2, n_triplets: int = 5, n_negatives: int | None = None, reg: float = 1e-4,
                 distill: float = 0.0, distill_tau: float = 1.0, tau_rank: float = 1.0, tau_recall: float = 1.0,
                 freeze_encoder: bool = False, candidates: int = 100, continuous: str = "encoder"):
        super().__init__()
        if objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}; got {objective!r}")
        if n_negatives is None:
            n_negatives = {"bpr": 1, "softmax": 0, "recall": 256}.get(objective, 1)
        if n_negatives < 0 or n_triplets < 1:
            raise ValueError(f"need n_negatives >= 0 and n_triplets >= 1; got {n_negatives}, {n_triplets}")
        self.encoder = encoder
        self.hash = HashLayer(getattr(encoder, "dim", 64), bits, estimator)
        self.log_scale = nn.Parameter(torch.tensor(math.log(scale)))
        self.objective, self.hash_weight, self.cont_weight = objective, hash_weight, cont_weight
        self.lambda_rank, self.margin, self.n_triplets, self.n_negatives = lambda_rank, margin, n_triplets, n_negatives
        self.reg, self.distill, self.distill_tau = reg, distill, distill_tau
        self.tau_rank, self.tau_recall = tau_rank, tau_recall
        self.freeze_encoder, self.candidates = freeze_encoder, candidates
        if continuous not in ("encoder", "hash", "init"):
            raise ValueError(f"continuous must be 'encoder', 'hash' or 'init'; got {continuous!r}")
        if continuous == "init" and not hasattr(encoder, "initial"):
            raise ValueError("continuous='init' needs an encoder started from trained embeddings (TableEncoder)")
        self.continuous = continuous
        if freeze_encoder:
            for p in self.encoder.parameters():
                p.requires_grad_(False)

    @property
    def bits(self) -> int:
        return self.hash.bits

    @property
    def n_users(self) -> int:
        return self.encoder.n_users

    def embeddings(self, graph: Graph | None) -> tuple[torch.Tensor, torch.Tensor]:
        """The continuous embeddings that hierarchical search re-ranks with: the encoder's,
        or (``continuous="hash"``, HashGNN's choice) the hash layer's ``z = tanh(W e + b)``."""
        if self.continuous == "init":
            return self.encoder.initial_embeddings()
        users, items = self.encoder.embeddings(graph)
        if self.continuous == "hash":
            return torch.tanh(self.hash.linear(users)), torch.tanh(self.hash.linear(items))
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

    def schedule_state(self, step: int) -> dict:
        return {**self.hash.estimator.state(step), "scale": float(self.log_scale.detach().exp())}

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
        h_uniq = self.hash(user_emb[uniq], step)
        hu = h_uniq[inv]
        needs_pool = self.objective in ("softmax", "recall") or bool(self.distill)
        pool = self._pool(n_items, device) if needs_pool else None
        negs = None
        if self.objective in ("bpr", "hashgnn"):
            k = self.n_negatives if self.objective == "bpr" else self.n_triplets
            negs = neg[:, None]
            if k > 1:
                negs = torch.cat([negs, torch.randint(0, n_items, (batch, k - 1), device=device)], 1)
        parts = [pos] + ([negs.reshape(-1)] if negs is not None else [])
        if needs_pool:
            parts.append(torch.arange(n_items, device=device) if pool is None else pool)
        item_ids, item_inv = torch.unique(torch.cat(parts), return_inverse=True)
        h_items = self.hash(item_emb[item_ids], step)
        # the all-items softmax reads the positives' scores off its (users × items) matrix instead
        all_items_softmax = self.objective == "softmax" and pool is None
        # a frozen teacher (continuous="init") has one softmax over all items, computed once: its KL then
        # shares the all-items softmax's pass over the score matrix
        fused_distill = all_items_softmax and bool(self.distill) and self.continuous == "init"
        s_pos = None if all_items_softmax else self._score(hu, h_items[item_inv[:batch]])
        if needs_pool:
            h_pool = h_items if pool is None else h_items[item_inv[len(item_inv) - len(pool):]]
            s_rows = self._score_pool(h_uniq, h_pool)
        if negs is not None:
            h_neg = h_items[item_inv[batch : batch + negs.numel()]].view(batch, negs.shape[1], -1)
            s_neg = self._score(hu[:, None, :], h_neg)
            if self.objective == "bpr":
                hashed = bpr_loss(s_pos, s_neg)
            else:
                hashed = hashgnn_loss(s_pos, s_neg, lambda_rank=self.lambda_rank, margin=self.margin)
        elif fused_distill:
            # −log softmax over all items and the distillation's cross-entropy share one pass
            probs, entropy = self._teacher_probs()
            hashed, cross = catalogue_softmax_distill(s_rows, inv, pos, probs[uniq])
            kd = cross - entropy[uniq].mean()  # KL(teacher ‖ codes) = cross-entropy − teacher entropy
        elif all_items_softmax:
            # −log softmax over all items: logsumexp once per distinct user, fused backward
            hashed = catalogue_softmax_loss(s_rows, inv, pos)
        elif self.objective == "softmax":
            # a sampled pool shared by the batch: its log-sum-exp once per distinct user, the
            # positive's own entries (drawn into the pool by chance) taken back out
            ordered = pool.sort().values
            hits = torch.searchsorted(ordered, pos, right=True) - torch.searchsorted(ordered, pos)
            hashed = pooled_listwise_loss(s_pos, s_rows, inv, hits)
        else:
            ids = torch.arange(n_items, device=device) if pool is None else pool
            s_pool = s_rows[inv].masked_fill(pos[:, None] == ids[None, :], float("-inf"))  # the positive leaves the pool
            hashed = smooth_recall_loss(s_pos, s_pool, top_n=20, n_items=n_items,
                                        tau_rank=self.tau_rank, tau_recall=self.tau_recall)
        total = total + self.hash_weight * hashed
        logs["loss_hash"] = float(hashed.detach())
        if self.distill:
            # the teacher is the continuous model that hierarchical search re-ranks with (with
            # continuous="init": the frozen LightGCN embeddings the table started from)
            if not fused_distill:
                t_users, t_items = self.embeddings(graph)
                teacher = t_users[uniq] @ (t_items if pool is None else t_items[pool]).T
                kd = distill_loss(s_rows, teacher, tau=self.distill_tau)
            total = total + self.distill * kd
            logs["loss_distill"] = float(kd.detach())
        return total, logs

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

    def evaluate(self, graph: Graph | None, target, exclude, ks=(10, 20, 50)) -> dict:
        """Continuous, Hamming and hierarchical (top-``candidates`` Hamming, re-ranked) search metrics."""
        from .metrics import evaluate_topk
        from .retrieval import continuous_topk, hamming_topk, hierarchical_topk

        with torch.no_grad():
            cu, ci = self.codes(graph)
            users, items = (t.float().cpu() for t in self.embeddings(graph))
        k = max(ks)
        u, i = users.numpy(), items.numpy()
        return {
            "continuous": evaluate_topk(continuous_topk(u, i, k, exclude), target, ks),
            "hamming": evaluate_topk(hamming_topk(cu, ci, k, exclude), target, ks),
            "hierarchical": evaluate_topk(hierarchical_topk(cu, ci, u, i, k, max(self.candidates, k), exclude), target, ks),
        }


class TableEncoder(nn.Module):
    """User and item tables initialised from trained embeddings, with the encoder interface.

    Fine-tuning a table instead of re-propagating makes hash training cheap (no
    sparse product per step); ``embedding`` is the ``(n_users + n_items, d)`` table.
    """

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


def lsh_codes(user_emb: np.ndarray, item_emb: np.ndarray, bits: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random-hyperplane LSH (Charikar 2002): ``sign(e R)``, ``R ~ N(0, 1)^{d×K}``; packed codes."""
    rng = np.random.default_rng(seed)
    planes = rng.standard_normal((user_emb.shape[1], bits)).astype(np.float32)
    return pack_codes(user_emb @ planes), pack_codes(item_emb @ planes)


def build_hash_model(config, data) -> nn.Module:
    """The hash model a :class:`~hashrec_utils.train.TrainConfig` names.

    ``config.hash_method``: an estimator name, optionally suffixed ``_sp``
    (frozen encoder) or ``_nr`` (no ranking loss). ``config.hash_params``:
    ``estimator`` (dict of estimator parameters), ``init`` (a run folder whose
    ``embeddings.npz`` seeds a :class:`TableEncoder`), ``freeze``, and any
    :class:`HashModel` keyword.

    ``config.model == "hashgnn"``: HashGNN as published — a GraphSAGE encoder
    trained end to end, cross-entropy + ranking loss, guided STE.
    Otherwise the encoder is ``config.model`` (``lightgcn``) trained end to
    end, or the ``init`` table (fine-tuned, or frozen with ``freeze``).
    """
    from .models import make_encoder

    method, implied = split_method(config.hash_method or "guided_ste")
    hp = {**implied, **dict(config.hash_params)}
    estimator = make_estimator(method, **hp.pop("estimator", {}))
    init = hp.pop("init", None)
    freeze = hp.pop("freeze", False)
    if config.model == "hashgnn":
        encoder = make_encoder("graphsage", data.n_users, data.n_items, dim=config.dim, reg=config.reg)
        # as published: loss on the (guided) codes only; z = tanh(W u + b) is the continuous embedding
        hp = {"objective": "hashgnn", "cont_weight": 0.0, "continuous": "hash", **hp}
    elif init:
        emb = np.load(f"{init}/embeddings.npz")
        if emb["user"].shape[0] != data.n_users or emb["item"].shape[0] != data.n_items:
            raise ValueError(f"{init}/embeddings.npz has {emb['user'].shape[0]} users, {emb['item'].shape[0]} items; "
                             f"the data has {data.n_users}, {data.n_items}")
        encoder = TableEncoder(emb["user"], emb["item"])
    else:
        encoder = make_encoder(config.model, data.n_users, data.n_items, dim=config.dim,
                               n_layers=config.n_layers, reg=config.reg)
    return HashModel(encoder, config.bits, estimator, reg=config.reg, freeze_encoder=freeze, **hp)
