"""Learning to hash: a hash layer, its gradient estimators, and the hash models.

Hash layer (HashGNN, Tan et al. WWW 2020): a fully connected layer and tanh map
an embedding ``e ∈ R^d`` to ``z = tanh(W e + b) ∈ (-1, 1)^K``; the code is
``h = sign(z) ∈ {-1, +1}^K`` with ``sign(0) = +1``. For ±1 codes
``ham(h_u, h_i) = (K - ⟨h_u, h_i⟩) / 2``: ranking by Hamming distance is
ranking by the code inner product. Codes leave the model packed with
``np.packbits`` (bit 1 for +1; ``K/8`` bytes per row, Faiss's binary layout).

``sign`` has zero gradient almost everywhere; an *estimator* decides what the
training forward pass returns and what its backward pass uses. Evaluation
always uses plain ``sign(z)`` codes. Estimators (``make_estimator(name)``):

``ste``         forward sign, backward identity (Hash_ste).
``guided_ste``  ĥ = Q ⊙ z + (1 − Q) ⊙ sign_ste(z), Q ~ Bernoulli(p) per element; p = 1
                at the start, multiplied by ``decay`` (0.95) every ``every`` (250) iterations.
``hashnet``     tanh(β a) on the pre-activation a, β = (1 + γ t)^½ grows with iteration t (HashNet).
``gumbel``      2σ((a + g)/τ) − 1 with logistic noise g = ln u − ln(1 − u), τ annealed
                from ``tau0`` by ``decay`` every ``every`` iterations (Gumbel-sigmoid).
``signswish``   forward sign, backward d/dx of 2σ(βx)(1 + βx(1 − σ(βx))) − 1 (Luo & Wu).
``bgch``        forward sign(z) scaled by the row's mean |z| (BGCH / BiGeaR); backward of the
                sign by BiGeaR's Dirac-delta estimate: the derivative of the Fourier series
                of the square wave, (4/H) Σ_{i=1..n} cos((2i − 1)πz/H), n = 4, H = 2.
``lsh``         no training: sign of random Gaussian projections of trained embeddings.
``sign``        no training: sign of the trained embeddings themselves (K = d), the post-hoc baseline.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .graph import Graph
from .losses import bpr_loss, hashgnn_loss, smooth_recall_loss

__all__ = [
    "sign",
    "pack_codes",
    "unpack_codes",
    "ESTIMATORS",
    "Estimator",
    "make_estimator",
    "HashLayer",
    "HashModel",
    "build_hash_model",
    "lsh_codes",
]

# ---- codes ------------------------------------------------------------------------


def sign(x: torch.Tensor) -> torch.Tensor:
    """±1 with ``sign(0) = +1`` (torch.sign gives 0 there), so codes are identical on every kernel."""
    return torch.where(x >= 0, 1.0, -1.0).to(x.dtype)


def pack_codes(codes) -> np.ndarray:
    """±1 (or real: the sign is taken) ``(n, K)`` → ``np.uint8 (n, K/8)``; +1 → bit 1, MSB first (np.packbits)."""
    arr = codes.detach().cpu().numpy() if isinstance(codes, torch.Tensor) else np.asarray(codes)
    if arr.ndim != 2:
        raise ValueError(f"codes must be 2-D (n, bits); got shape {arr.shape}")
    if arr.shape[1] % 8:
        raise ValueError(f"bits must be a multiple of 8; got {arr.shape[1]}")
    return np.packbits(arr >= 0, axis=1)


def unpack_codes(packed: np.ndarray, bits: int | None = None) -> np.ndarray:
    """``np.uint8 (n, K/8)`` → ±1 float32 ``(n, K)``."""
    packed = np.asarray(packed)
    if packed.dtype != np.uint8 or packed.ndim != 2:
        raise TypeError(f"packed codes must be a 2-D uint8 array; got {packed.dtype} with shape {packed.shape}")
    bits = packed.shape[1] * 8 if bits is None else bits
    return np.unpackbits(packed, axis=1, count=bits).astype(np.float32) * 2.0 - 1.0


# ---- estimators ------------------------------------------------------------------------


class _SignSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):  # type: ignore[override]
        return sign(x)

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        return g


class _SignSwish(torch.autograd.Function):
    """Forward sign; backward ``d/dx [2σ(βx)(1 + βx(1 − σ(βx))) − 1] = 2βσ(βx)(1-σ(βx))(2 + βx(1 − 2σ(βx)))``."""

    @staticmethod
    def forward(ctx, x, beta: float):  # type: ignore[override]
        ctx.save_for_backward(x)
        ctx.beta = beta
        return sign(x)

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        b = ctx.beta
        s = torch.sigmoid(b * x)
        return g * 2 * b * s * (1 - s) * (2 + b * x * (1 - 2 * s)), None


class _SignFourier(torch.autograd.Function):
    """Forward sign; backward BiGeaR's Dirac-delta estimate ``(4/H) Σ_{i=1..n} cos((2i−1)πx/H)``."""

    @staticmethod
    def forward(ctx, x, n_terms: int, period: float):  # type: ignore[override]
        ctx.save_for_backward(x)
        ctx.n, ctx.h = n_terms, period
        return sign(x)

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        grad = sum(torch.cos((2 * i - 1) * math.pi * x / ctx.h) for i in range(1, ctx.n + 1)) * (4 / ctx.h)
        return g * grad, None, None


@dataclass
class Estimator:
    """Turns the hash layer's pre-activation ``a`` (and ``z = tanh(a)``) into training codes.

    ``forward(a, step)`` returns what the scores use while training;
    ``state(step)`` what the history records (p, β, τ).
    """

    name: str
    params: dict

    def forward(self, a: torch.Tensor, step: int) -> torch.Tensor:
        p, name = self.params, self.name
        z = torch.tanh(a)
        if name == "ste":
            return _SignSTE.apply(z)
        if name == "guided_ste":
            prob = self.state(step)["p"]
            q = torch.bernoulli(torch.full_like(z, prob))
            return q * z + (1 - q) * _SignSTE.apply(z)
        if name == "hashnet":
            return torch.tanh(self.state(step)["beta"] * a)
        if name == "gumbel":
            u = torch.rand_like(a).clamp_(1e-6, 1 - 1e-6)
            return 2 * torch.sigmoid((a + torch.log(u) - torch.log1p(-u)) / self.state(step)["tau"]) - 1
        if name == "signswish":
            return _SignSwish.apply(a, p["beta"])
        if name == "bgch":
            scale = z.abs().mean(dim=1, keepdim=True)
            return scale * _SignFourier.apply(z, p["n_terms"], p["period"])
        raise AssertionError(name)

    def state(self, step: int) -> dict:
        p = self.params
        if self.name == "guided_ste":
            return {"p": p["p0"] * p["decay"] ** (step // p["every"])}
        if self.name == "hashnet":
            return {"beta": p["beta0"] * (1 + p["gamma"] * step) ** 0.5}
        if self.name == "gumbel":
            return {"tau": max(p["tau_min"], p["tau0"] * p["decay"] ** (step // p["every"]))}
        return {}


ESTIMATORS: dict[str, dict] = {
    "ste": {},
    "guided_ste": {"p0": 1.0, "decay": 0.95, "every": 250},
    "hashnet": {"beta0": 1.0, "gamma": 0.005},
    "gumbel": {"tau0": 1.0, "decay": 0.9, "every": 100, "tau_min": 0.05},
    "signswish": {"beta": 5.0},
    "bgch": {"n_terms": 4, "period": 2.0},
}
UNTRAINED = ("lsh", "sign")


def make_estimator(name: str, **params) -> Estimator:
    """An estimator by name with its defaults (module docstring), overridden by ``params``."""
    if name not in ESTIMATORS:
        raise ValueError(f"unknown estimator {name!r}; choose one of {', '.join(ESTIMATORS)}")
    unknown = set(params) - set(ESTIMATORS[name])
    if unknown:
        raise ValueError(f"estimator {name!r} takes {sorted(ESTIMATORS[name]) or 'no parameters'}; got {sorted(unknown)}")
    return Estimator(name, {**ESTIMATORS[name], **params})


# ---- the hash layer and the hash model -------------------------------------------------


class HashLayer(nn.Module):
    """``a = W e + b`` (``d → K``); ``z = tanh(a)``; eval codes ``sign(z)``; train codes from the estimator."""

    def __init__(self, dim: int, bits: int, estimator: Estimator):
        super().__init__()
        if bits <= 0 or bits % 8:
            raise ValueError(f"bits must be a positive multiple of 8; got {bits}")
        self.bits = bits
        self.linear = nn.Linear(dim, bits)
        self.estimator = estimator

    def forward(self, e: torch.Tensor, step: int = 0) -> torch.Tensor:
        return self.estimator.forward(self.linear(e), step)

    def codes(self, e: torch.Tensor) -> torch.Tensor:
        return sign(torch.tanh(self.linear(e)))


class HashModel(nn.Module):
    """An encoder with a hash layer on top, trained by one of three objectives.

    ``objective``:
      ``bpr``     BPR on the continuous scores + ``hash_weight`` × BPR on the code scores
                  ``γ ⟨ĥ_u, ĥ_i⟩ / K`` (γ learnable, ``scale``-initialised: raw ±1 inner
                  products up to K would saturate the sigmoid);
      ``recall``  as ``bpr`` with the smooth recall loss (Luo & Wu) on the code scores;
      ``hashgnn`` HashGNN's cross-entropy link loss + λ × triplet ranking loss on the codes
                  (``lambda_rank = 0`` is ``_nr``), plus BPR on the continuous scores.
    ``freeze_encoder`` (the two-stage ``_sp`` variant): only the hash layer learns.
    The encoder is any module with ``embeddings(graph)``; ``TableEncoder`` serves
    fixed (pre-trained) embeddings as a learnable table, which makes hash training
    cheap: no propagation per step.
    """

    def __init__(self, encoder: nn.Module, bits: int, estimator: Estimator, *, objective: str = "bpr",
                 hash_weight: float = 1.0, scale: float = 8.0, lambda_rank: float = 0.5, margin: float = 0.2,
                 n_triplets: int = 5, reg: float = 1e-4, freeze_encoder: bool = False,
                 n_negatives: int = 1, candidates: int = 100):
        super().__init__()
        if objective not in ("bpr", "recall", "hashgnn"):
            raise ValueError(f"objective must be bpr, recall or hashgnn; got {objective!r}")
        self.encoder = encoder
        self.hash = HashLayer(getattr(encoder, "dim", 64), bits, estimator)
        self.log_scale = nn.Parameter(torch.tensor(math.log(scale)))
        self.objective, self.hash_weight, self.lambda_rank = objective, hash_weight, lambda_rank
        self.margin, self.n_triplets, self.reg = margin, n_triplets, reg
        self.freeze_encoder, self.candidates = freeze_encoder, candidates
        self.n_negatives = n_negatives
        if freeze_encoder:
            for p in self.encoder.parameters():
                p.requires_grad_(False)

    @property
    def n_users(self) -> int:
        return self.encoder.n_users

    def embeddings(self, graph: Graph) -> tuple[torch.Tensor, torch.Tensor]:
        return self.encoder.embeddings(graph)

    def codes(self, graph: Graph) -> tuple[torch.Tensor, torch.Tensor]:
        users, items = self.encoder.embeddings(graph)
        return self.hash.codes(users), self.hash.codes(items)

    def packed_codes(self, graph: Graph) -> tuple[np.ndarray, np.ndarray]:
        users, items = self.codes(graph)
        return pack_codes(users), pack_codes(items)

    def schedule_state(self, step: int) -> dict:
        return self.hash.estimator.state(step)

    def loss(self, graph: Graph, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, step: int = 0):
        user_emb, item_emb = self.encoder.embeddings(graph)
        eu, ei, ej = user_emb[users], item_emb[pos], item_emb[neg]
        logs = {}
        total = torch.zeros((), device=eu.device)
        if not self.freeze_encoder:
            cont = bpr_loss((eu * ei).sum(-1), (eu * ej).sum(-1))
            ego = getattr(self.encoder, "embedding", None)
            if ego is not None and self.reg:
                n_u = self.encoder.n_users
                w = ego.weight
                l2 = 0.5 * (w[users].square().sum() + w[n_u + pos].square().sum() + w[n_u + neg].square().sum()) / len(users)
                total = total + self.reg * l2
            total = total + cont
            logs["bpr_continuous"] = float(cont.detach())
        hu, hi, hj = self.hash(eu, step), self.hash(ei, step), self.hash(ej, step)
        k = self.hash.bits
        gamma = self.log_scale.exp()
        s_pos = gamma * (hu * hi).sum(-1) / k
        if self.objective == "hashgnn":
            # T triplets per node: the batch's negative plus T - 1 more drawn uniformly
            negs = [(hu * hj).sum(-1, keepdim=True)]
            if self.n_triplets > 1:
                extra = torch.randint(0, item_emb.shape[0], (len(users), self.n_triplets - 1), device=eu.device)
                negs.append((hu[:, None, :] * self.hash(item_emb[extra], step)).sum(-1))
            s_neg = gamma * torch.cat(negs, 1) / k
            hashed = hashgnn_loss(s_pos, s_neg, lambda_rank=self.lambda_rank, margin=self.margin)
        elif self.objective == "bpr":
            hashed = bpr_loss(s_pos, gamma * (hu * hj).sum(-1) / k)
        else:  # smooth recall with the batch's items as the sampled pool
            s_pool = gamma * hu @ torch.cat([hi, hj]).T / k
            hashed = smooth_recall_loss(s_pos, s_pool, top_n=20, n_items=item_emb.shape[0])
        total = total + self.hash_weight * hashed
        logs["loss_hash"] = float(hashed.detach())
        return total, logs

    def evaluate(self, graph: Graph, target, exclude, ks=(10, 20, 50)) -> dict:
        """Continuous, Hamming and hierarchical (top-``candidates`` Hamming, re-ranked) search metrics."""
        from .metrics import evaluate_topk
        from .retrieval import hamming_topk, hierarchical_topk, continuous_topk

        users, items = (t.float().cpu() for t in self.encoder.embeddings(graph))
        cu, ci = (pack_codes(t) for t in (self.hash.codes(users), self.hash.codes(items)))
        k = max(ks)
        return {
            "continuous": evaluate_topk(continuous_topk(users.numpy(), items.numpy(), k, exclude), target, ks),
            "hamming": evaluate_topk(hamming_topk(cu, ci, k, exclude), target, ks),
            "hierarchical": evaluate_topk(
                hierarchical_topk(cu, ci, users.numpy(), items.numpy(), k, max(self.candidates, k), exclude), target, ks),
        }


class TableEncoder(nn.Module):
    """Fixed-size user and item tables (initialised from trained embeddings) with the encoder interface."""

    def __init__(self, user_emb: np.ndarray, item_emb: np.ndarray):
        super().__init__()
        self.n_users, self.n_items = len(user_emb), len(item_emb)
        self.dim = user_emb.shape[1]
        self.embedding = nn.Embedding(self.n_users + self.n_items, self.dim)
        self.embedding.weight.data.copy_(torch.from_numpy(np.concatenate([user_emb, item_emb])))

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

    ``config.model == "hashgnn"``: HashGNN as published — a GraphSAGE encoder
    trained end to end, cross-entropy + ranking loss, guided STE.
    Otherwise the encoder is ``config.model`` (``lightgcn``), end to end unless
    ``hash_params["init"]`` names a run folder whose ``embeddings.npz`` seeds a
    :class:`TableEncoder` (fine-tuned, or frozen with ``hash_params["freeze"]``).
    """
    from .models import make_encoder

    hp = dict(config.hash_params)
    method = config.hash_method or "guided_ste"
    est_params = hp.pop("estimator", {})
    estimator = make_estimator(method, **est_params)
    init = hp.pop("init", None)
    freeze = hp.pop("freeze", False)
    if config.model == "hashgnn":
        encoder = make_encoder("graphsage", data.n_users, data.n_items, dim=config.dim, reg=config.reg)
        hp.setdefault("objective", "hashgnn")
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
