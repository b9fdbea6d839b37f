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
                the continuous z, HashGNN §4.2); p(t) = ``p0`` · ``decay``^⌊t · ``stages``⌋ (1, 0.95, 50).
``hashnet``     tanh(β a), β(t) = ``beta0`` (1 + ((``beta_end``/``beta0``)² − 1) t)^½ (HashNet; 1 → 10).
``gumbel``      2σ((a + s g)/τ) − 1, logistic noise g, s = ``noise`` · median|a| (0.1: ~4 % of bits
                flip), τ(t) = max(``tau_min``, ``tau0`` · ``decay``^⌊t · ``stages``⌋).
``signswish``   forward sign(a), backward d/da of 2σ(βa)(1 + βa(1 − σ(βa))) − 1 (Luo & Wu), fixed ``beta``.
``bgch``        BGCH's official ``FS``: forward α · sign(a), α = mean|a| per row; backward
                clamp((4w/π) Σ_{k ≤ n} cos((2k − 1) w a), −1, 1), n = ``n_terms`` (4), w = 1.
``bigear``      BiGeaR's official ``Normal_Ddelta``: forward α · sign(a); backward
                clamp((a₀/√π) exp(−(a₀ a)²), 1e-8, 1), a₀ = ``norm_a`` (1).

Schedules are functions of the fraction of training done, t = step / total_steps ∈ [0, 1]
(:meth:`HashModel.set_total_steps`), so short and long runs anneal to the same end values.
Scaled estimators (bgch, bigear) score codes α_u α_i ⟨b_u, b_i⟩ in training and evaluation
(:meth:`HashModel.code_scales`, :func:`scaled_code_topk`).

No training: :func:`untrained_codes` — ``lsh`` (:func:`lsh_codes`, random hyperplanes,
Charikar 2002) and ``sign`` (``pack_codes(embeddings)``). Two-stage ``*_sp`` (HashGNN_sp): the
hash layer learns on frozen trained embeddings (``freeze_encoder``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..graph import Graph
from ..losses import bpr_loss, catalogue_softmax_distill, catalogue_softmax_loss, distill_loss, hashgnn_loss, pooled_listwise_loss, smooth_recall_loss

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
    "untrained_codes",
    "scaled_code_topk",
    "HashBatch",
    "register_objective",
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


def fourier_grad(x: torch.Tensor, n_terms: int, w: float) -> torch.Tensor:
    """BGCH's estimate of sign's derivative, before its clamp: ``(4w/π) Σ_{k=1..n} cos((2k − 1) w x)``.

    The square wave ``sign(sin(w x))`` (period ``2π/w``) is ``(4/π) Σ_k sin((2k−1) w x)/(2k−1)``;
    this is the derivative of its first ``n`` terms, a smoothed Dirac delta at 0 (peak ``4wn/π``).
    """
    return sum(torch.cos((2 * k - 1) * w * x) for k in range(1, n_terms + 1)) * (4 * w / math.pi)


def row_scales(x: torch.Tensor) -> torch.Tensor:
    """``α = mean_k |x_k|`` per row, ``(..., 1)``: BGCH / BiGeaR's code scale (``x.norm(1, 1) / K``)."""
    return x.abs().mean(dim=-1, keepdim=True)


class SignFourier(torch.autograd.Function):
    """BGCH's ``FS``: forward ``α · sign(x)``, ``α = mean|x|`` per row; backward
    ``g · clamp(fourier_grad(x), −1, 1)`` (no gradient through ``α``)."""

    @staticmethod
    def forward(ctx, x, n_terms: int, w: float):  # type: ignore[override]
        ctx.save_for_backward(x)
        ctx.n, ctx.w = n_terms, w
        return row_scales(x) * sign(x)

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return g * fourier_grad(x, ctx.n, ctx.w).clamp_(-1.0, 1.0), None, None


def gaussian_delta(x: torch.Tensor, a: float) -> torch.Tensor:
    """BiGeaR's estimate of sign's derivative: ``clamp((a/√π) exp(−(a x)²), 1e-8, 1)``."""
    return (a / math.sqrt(math.pi) * torch.exp(-(a * x) ** 2)).clamp(1e-8, 1.0)


class SignGaussian(torch.autograd.Function):
    """BiGeaR's ``Normal_Ddelta``: forward ``α · sign(x)``, ``α = mean|x|`` per row; backward
    ``g · gaussian_delta(x, a)`` (no gradient through ``α``)."""

    @staticmethod
    def forward(ctx, x, a: float):  # type: ignore[override]
        ctx.save_for_backward(x)
        ctx.a = a
        return row_scales(x) * sign(x)

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return g * gaussian_delta(x, ctx.a), None


# ---- estimators ----------------------------------------------------------------------------


def stage(t: float, stages: int) -> int:
    """``⌊t · stages⌋`` for ``t`` clamped to [0, 1] (a rounding guard so that ``t = 3/10`` with 10 stages is stage 3)."""
    return int(math.floor(clamp01(t) * stages + 1e-9))


def clamp01(t: float) -> float:
    """The fraction of training done, clamped to [0, 1]."""
    return min(max(float(t), 0.0), 1.0)


class Estimator:
    """Turns the hash layer's pre-activation ``a`` into the codes training scores use.

    ``forward(a, t)``: training codes when a fraction ``t ∈ [0, 1]`` of training is
    done (``t = step / total_steps``, see :meth:`HashModel.set_total_steps`), so a
    schedule anneals as fully over 30 iterations as over 1,000; ``codes(a)``:
    evaluation codes, always ``sign(a)``; ``state(t)``: the schedule's values
    (p, β, τ) for the training history. ``scaled``: training codes are
    ``α · sign(a)`` with ``α = mean|a|`` per row, and evaluation scores codes
    as ``α_u α_i ⟨b_u, b_i⟩`` (:meth:`HashModel.code_scales`).
    """

    name = "estimator"
    defaults: dict = {}
    scaled = False

    def __init__(self, **params):
        self.params = {**self.defaults, **params}

    def forward(self, a: torch.Tensor, t: float) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, a: torch.Tensor, t: float = 0.0) -> torch.Tensor:
        return self.forward(a, t)

    def codes(self, a: torch.Tensor) -> torch.Tensor:
        return sign(a)

    def state(self, t: float) -> dict:
        return {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v}' for k, v in self.params.items())})"


class STE(Estimator):
    """Forward ``sign(tanh(a))``, backward identity through the sign, then ``tanh'`` (HashGNN's Hash_ste)."""

    name = "ste"

    def forward(self, a, t):
        return SignSTE.apply(torch.tanh(a))


class GuidedSTE(Estimator):
    """HashGNN §4.2: ``ĥ = Q ⊙ z + (1 − Q) ⊙ sign_ste(z)``, ``z = tanh(a)``, ``Q ~ Bernoulli(p)`` per element.

    ``p(t) = p0 · decay^⌊t · stages⌋``: the paper starts p at 1 and takes 5 % off every 250
    iterations (``decay = 0.95``); ``stages`` is how many such decays fit in the run.
    """

    name = "guided_ste"
    defaults = {"p0": 1.0, "decay": 0.95, "stages": 50}

    def state(self, t):
        p = self.params
        return {"p": p["p0"] * p["decay"] ** stage(t, p["stages"])}

    def forward(self, a, t):
        z = torch.tanh(a)
        q = torch.bernoulli(torch.full_like(z, self.state(t)["p"]))
        return q * z + (1 - q) * SignSTE.apply(z)


class HashNet(Estimator):
    """HashNet (Cao et al. 2017): ``tanh(β a)``, ``β = β0 (1 + γ · iter)^½``, here over ``t``:
    ``β(t) = β0 (1 + ((beta_end/β0)² − 1) t)^½`` — γ is fixed by the end value ``β(1) = beta_end``."""

    name = "hashnet"
    defaults = {"beta0": 1.0, "beta_end": 10.0}

    def state(self, t):
        b0, b1 = self.params["beta0"], self.params["beta_end"]
        return {"beta": b0 * (1 + ((b1 / b0) ** 2 - 1) * clamp01(t)) ** 0.5}

    def forward(self, a, t):
        return torch.tanh(self.state(t)["beta"] * a)


class Gumbel(Estimator):
    """Two-class Gumbel softmax (HashGNN's Hash_gumb): ``2σ((a + s · g)/τ) − 1``,
    ``g = ln u − ln(1 − u)`` logistic, ``τ(t) = max(tau_min, tau0 · decay^⌊t · stages⌋)``.

    Noise scale ``s = noise · median|a|`` of the batch (detached): unit noise (``s = 1``) on
    pre-activations whose median |a| is about 0.18 — what the hash layer gives on LightGCN
    embeddings — flips the sign of ~44 % of the training bits, so such a run measures the noise.
    Relative to the batch the flip rate does not depend on the encoder's scale: for Gaussian
    ``a`` it is ``E σ(−|a| / s)`` ≈ 1.9 % at ``noise = 0.05``, 3.7 % at 0.1 (the default),
    7.3 % at 0.2 and 42 % at 3.75 (the old unit noise).
    """

    name = "gumbel"
    defaults = {"tau0": 1.0, "tau_min": 0.05, "decay": 0.9, "stages": 20, "noise": 0.1}

    def state(self, t):
        p = self.params
        return {"tau": max(p["tau_min"], p["tau0"] * p["decay"] ** stage(t, p["stages"]))}

    def forward(self, a, t):
        u = torch.rand_like(a).clamp_(1e-6, 1 - 1e-6)
        s = self.params["noise"] * a.detach().abs().median()
        return 2 * torch.sigmoid((a + s * (torch.log(u) - torch.log1p(-u))) / self.state(t)["tau"]) - 1


class SignSwishEstimator(Estimator):
    """Luo & Wu (paper 003): forward ``sign(a)``; backward the derivative of
    ``2σ(βa)(1 + βa(1 − σ(βa))) − 1`` (their AAGE equation). The abstract gives no value of β
    and no schedule (β → ∞ is sign): β is fixed, ``beta`` (5)."""

    name = "signswish"
    defaults = {"beta": 5.0}

    def forward(self, a, t):
        return SignSwish.apply(a, float(self.params["beta"]))


class BGCH(Estimator):
    """BGCH (Chen et al. WWW 2023), as its official code (github.com/yankai-chen/BGCH) computes it.

    ``src/gradient.py:21-38`` (class ``FS``): forward ``α · sign(x)``, ``α = x.norm(1, 1) / K``
    (``mean_k |x_k|`` per row) of the hash layer's output ``x`` itself — no tanh, no bias (the
    layer is ``nn.Linear(..., bias=False)``, ``src/model.py:33-41``; use ``hash_layer="linear_nobias"``);
    backward ``clamp(Σ_{i = 1, 3, .. < N} (4w/π) cos(i w x), −1, 1) · g``, nothing through α.
    ``N`` and ``w`` are ``--N`` (20) and ``--w`` (1) (``src/parse.py:32-33``,
    ``src/powerboard.py:27-28``); ``src/run_all.py:3-8`` runs MovieLens with ``--N 16`` (8 terms)
    and Gowalla with ``--N 8`` (4 terms), both ``w = 1``: period 2π (H = π). Here ``n_terms`` is
    the number of odd harmonics (``N // 2``; default 4, Gowalla's) and ``w`` the frequency.
    Scores: ``get_scores`` (``src/model.py:161-166``) is the inner product of the scaled codes,
    ``α_u α_i ⟨b_u, b_i⟩`` — see :meth:`HashModel.code_scales`. (Differences: ``torch.sign(0) = 0``
    there, +1 here; the official model concatenates the scaled codes of every propagation layer,
    ``src/model.py:97-116``, where this hash layer codes the encoder's output.)
    """

    name = "bgch"
    defaults = {"n_terms": 4, "w": 1.0}
    scaled = True

    def forward(self, a, t):
        return SignFourier.apply(a, int(self.params["n_terms"]), float(self.params["w"]))


class BiGeaR(Estimator):
    """BiGeaR (Chen et al. KDD 2022), as its official code (github.com/yankai-chen/BiGeaR) computes it.

    ``src/model.py:184-199`` (class ``Normal_Ddelta``): forward ``α · sign(x)``, ``α = mean|x|`` per
    row; backward ``clamp((a/√π) exp(−(a x)²), 1e-8, 1) · g`` — the Dirac delta approximated by a
    normal density — with ``a = --norm_a`` (1, ``src/parse.py:31``); nothing through α. Scores
    ``α_u α_i ⟨b_u, b_i⟩`` (``get_scores``, ``src/model.py:377-381``).
    """

    name = "bigear"
    defaults = {"norm_a": 1.0}
    scaled = True

    def forward(self, a, t):
        return SignGaussian.apply(a, float(self.params["norm_a"]))


ESTIMATORS: dict[str, type[Estimator]] = {cls.name: cls for cls in (STE, GuidedSTE, HashNet, Gumbel, SignSwishEstimator,
                                                                     BGCH, BiGeaR)}
UNTRAINED = ("lsh", "sign")


def make_estimator(name: str, **params) -> Estimator:
    """The estimator ``name`` with its defaults (module docstring) overridden by ``params``."""
    if name in UNTRAINED:
        raise ValueError(f"{name!r} needs no training: use untrained_codes({name!r}, user_emb, item_emb, bits)")
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


HASH_LAYERS = ("linear", "linear_nobias", "identity")


class HashLayer(nn.Module):
    """``a = W e + b`` (``d → K``, ``b = 0`` at init); training codes ``estimator(a, t)``; eval codes ``sign(a)``.

    ``kind``: ``"linear"`` (HashGNN's ``W e + b``), ``"linear_nobias"`` (BGCH's ``W e``) or
    ``"identity"`` (``a = e``, needs ``bits == dim``: Luo & Wu and BiGeaR binarise the
    LightGCN embeddings themselves).
    """

    def __init__(self, dim: int, bits: int, estimator: Estimator, kind: str = "linear"):
        super().__init__()
        if int(bits) != bits or bits <= 0 or bits % 8:
            raise ValueError(f"bits must be a positive multiple of 8; got {bits}")
        if kind not in HASH_LAYERS:
            raise ValueError(f"hash_layer must be one of {', '.join(HASH_LAYERS)}; got {kind!r}")
        if kind == "identity" and bits != dim:
            raise ValueError(f"hash_layer='identity' codes the embeddings themselves: bits must equal dim ({dim}); got {bits}")
        self.bits, self.kind = int(bits), kind
        if kind == "identity":
            self.linear = nn.Identity()
        else:
            self.linear = nn.Linear(dim, self.bits, bias=kind == "linear")
            if kind == "linear":
                # zero bias: the initial codes are sign(W e), a random-hyperplane hash of the embeddings;
                # the default uniform bias would dominate W e for small embeddings and give every node one code
                nn.init.zeros_(self.linear.bias)
        self.estimator = estimator

    def forward(self, e: torch.Tensor, t: float = 0.0) -> torch.Tensor:
        return self.estimator.forward(self.linear(e), t)

    def codes(self, e: torch.Tensor) -> torch.Tensor:
        """``sign(tanh(W e + b)) = sign(W e + b)``, ±1 float."""
        return self.estimator.codes(self.linear(e))

    def scales(self, e: torch.Tensor) -> torch.Tensor | None:
        """``α = mean|a|`` per row ``(n,)`` for a scaled estimator (BGCH, BiGeaR); else ``None``."""
        return row_scales(self.linear(e))[:, 0] if self.estimator.scaled else None


# ---- objectives -------------------------------------------------------------------------------


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


Objective = Callable[["HashModel", HashBatch], "tuple[torch.Tensor, dict]"]
OBJECTIVES: dict[str, Objective] = {}


def register_objective(name: str, *, negatives: Callable[["HashModel"], int] | None = None, pool: bool = False,
                       default_negatives: int = 1):
    """Register ``fn(model, batch: HashBatch) -> (loss, extra)`` as objective ``name``.

    ``negatives(model)``: how many negatives per pair the batch samples (the first is the
    loader's); ``pool``: the batch scores every distinct user against an item pool
    (``model.n_negatives`` uniform items shared by the batch, ``0``: all items);
    ``default_negatives``: ``n_negatives`` when the model is not given one. ``extra`` may
    hold ``"distill"``: the distillation KL when the objective computed it (``batch.fused_distill``).
    """

    def wrap(fn):
        fn.negatives, fn.pool, fn.default_negatives = negatives, pool, default_negatives
        OBJECTIVES[name] = fn
        return fn

    return wrap


@register_objective("bpr", negatives=lambda m: m.n_negatives, default_negatives=1)
def bpr_objective(model: "HashModel", b: HashBatch):
    """BPR on code scores, ``n_negatives`` uniform negatives per pair."""
    s_pos = model._score(b.hu, b.h_pos)
    return bpr_loss(s_pos, model._score(b.hu[:, None, :], b.h_neg)), {}


@register_objective("softmax", pool=True, default_negatives=0)
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


@register_objective("recall", pool=True, default_negatives=256)
def recall_objective(model: "HashModel", b: HashBatch):
    """Luo & Wu's smooth recall loss at ``top_n`` over the pool (all items with ``n_negatives = 0``)."""
    ids = torch.arange(b.n_items, device=b.pos.device) if b.pool is None else b.pool
    s_pool = b.s_rows[b.inv].masked_fill(b.pos[:, None] == ids[None, :], float("-inf"))  # the positive leaves the pool
    return smooth_recall_loss(model._score(b.hu, b.h_pos), s_pool, top_n=model.top_n, n_items=b.n_items,
                              tau_rank=model.tau_rank, tau_recall=model.tau_recall), {}


@register_objective("bgch", negatives=lambda m: m.n_negatives, default_negatives=1)
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


@register_objective("hashgnn", negatives=lambda m: m.n_triplets, default_negatives=1)
def hashgnn_objective(model: "HashModel", b: HashBatch):
    """HashGNN (Eq. 7): cross-entropy on links + λ × triplet ranking loss, ``n_triplets`` per pair."""
    s_pos = model._score(b.hu, b.h_pos)
    s_neg = model._score(b.hu[:, None, :], b.h_neg)
    return hashgnn_loss(s_pos, s_neg, lambda_rank=model.lambda_rank, margin=model.margin), {}


class HashModel(nn.Module):
    """An encoder with a hash layer on top; answers the training loop's ``loss`` and ``evaluate``.

    Code scores are ``s(u, i) = γ ⟨ĥ_u, ĥ_i⟩ / K`` with ``γ = exp(log_scale)``
    learnable (``scale`` at init): raw ±1 inner products reach ±K and would
    saturate every sigmoid. The loss is

        cont_weight · [BPR(⟨e_u, e_i⟩, ⟨e_u, e_j⟩) + reg · L2]          (skipped when frozen)
      + hash_weight · L_hash(s)
      + distill · KL(softmax(⟨e_u, e_·⟩ / τ_d) ‖ softmax(s(u, ·)))     (distinct users × item pool;
                 the teacher e are the detached embeddings of :meth:`embeddings`, those hierarchical search re-ranks with)

    ``objective`` (``L_hash``, a name in :data:`OBJECTIVES`; a new one is one registered function):
      ``bpr``      BPR on code scores, ``n_negatives`` (1) uniform negatives per pair;
      ``softmax``  listwise: −log softmax of the positive among the pool of items
                   (all items if ``n_negatives = 0``: one logsumexp per distinct user
                   of the batch, so large batches cost little more than small ones;
                   else ``n_negatives`` uniform items shared by the batch);
      ``recall``   the smooth recall loss (Luo & Wu) at ``top_n`` on a pool of ``n_negatives`` (256) items;
      ``hashgnn``  HashGNN's cross-entropy link loss + λ × triplet ranking loss,
                   ``n_triplets`` per node (``lambda_rank = 0`` is ``_nr``);
      ``bgch``     BGCH's: BPR on code scores + BCE reconstruction on the ego embeddings
                   (logged as ``loss_recon``, included in ``loss_hash``).
    ``freeze_encoder`` (two-stage ``_sp``): only the hash layer (and γ) learn.
    ``continuous``: which embeddings :meth:`embeddings` returns and hierarchical
    search re-ranks with: the encoder's (``"encoder"``), HashGNN's
    ``z = tanh(W e + b)`` (``"hash"``), or (``"init"``, a :class:`TableEncoder`
    only) the trained embeddings the table started from, kept frozen: the
    table then serves the codes alone and the continuous model stays intact. ``candidates``: C of hierarchical search.
    ``hash_layer``: see :class:`HashLayer`. Schedules: :meth:`set_total_steps` once before
    training; the estimator then sees ``t = step / total_steps`` (clamped to [0, 1]; ``t = 0``
    until it is called).
    The encoder is any module with ``embeddings(graph)``, ``dim`` and ``n_users``.
    """

    def __init__(self, encoder: nn.Module, bits: int, estimator: Estimator, *, objective: str = "bpr",
                 hash_weight: float = 1.0, cont_weight: float = 1.0, scale: float = 8.0, lambda_rank: float = 0.5,
                 margin: float = 0.2, n_triplets: int = 5, n_negatives: int | None = None, reg: float = 1e-4,
                 distill: float = 0.0, distill_tau: float = 1.0, tau_rank: float = 1.0, tau_recall: float = 1.0,
                 top_n: int = 20, freeze_encoder: bool = False, candidates: int = 100, continuous: str = "encoder",
                 hash_layer: str = "linear"):
        super().__init__()
        if objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}; got {objective!r}")
        if n_negatives is None:
            n_negatives = OBJECTIVES[objective].default_negatives
        if n_negatives < 0 or n_triplets < 1:
            raise ValueError(f"need n_negatives >= 0 and n_triplets >= 1; got {n_negatives}, {n_triplets}")
        if top_n < 1:
            raise ValueError(f"top_n must be >= 1; got {top_n}")
        self.encoder = encoder
        self.hash = HashLayer(getattr(encoder, "dim", 64), bits, estimator, kind=hash_layer)
        self.log_scale = nn.Parameter(torch.tensor(math.log(scale)))
        self.objective, self.hash_weight, self.cont_weight = objective, hash_weight, cont_weight
        self.lambda_rank, self.margin, self.n_triplets, self.n_negatives = lambda_rank, margin, n_triplets, n_negatives
        self.reg, self.distill, self.distill_tau = reg, distill, distill_tau
        self.tau_rank, self.tau_recall, self.top_n = tau_rank, tau_recall, int(top_n)
        self.freeze_encoder, self.candidates = freeze_encoder, candidates
        self.total_steps: int | None = None
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
        objective = OBJECTIVES[self.objective]
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
        h_uniq = self.hash(user_emb[uniq], t)
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
                        s_rows=s_rows, fused_distill=fused)
        hashed, extra = objective(self, ctx)
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
        """Continuous, Hamming and hierarchical (top-``candidates`` Hamming, re-ranked) search metrics.

        Scaled codes (:meth:`code_scales`, BGCH / BiGeaR) are ranked as their official
        ``get_scores`` scores them, ``α_u α_i ⟨b_u, b_i⟩``: ``α_u > 0`` does not change a user's
        order, so items are ranked by ``α_i ⟨b_u, b_i⟩`` (an exact float product over the ±1
        codes), in the "hamming" section and for the hierarchical candidates alike.
        """
        from ..metrics import evaluate_topk
        from ..retrieval import continuous_topk, hamming_topk, hierarchical_topk

        with torch.no_grad():
            cu, ci = self.codes(graph)
            users, items = (t.detach().float().cpu() for t in self.embeddings(graph))  # table slices are views that keep requires_grad
        k = max(ks)
        u, i = users.numpy(), items.numpy()
        c = max(self.candidates, k)
        scales = self.code_scales(graph)
        if scales is None:
            ham = hamming_topk(cu, ci, k, exclude)
            hier = hierarchical_topk(cu, ci, u, i, k, c, exclude)
        else:
            ham, hier = scaled_code_topk(cu, ci, scales[1], k, exclude, candidates=c, user_emb=u, item_emb=i)
        return {
            "continuous": evaluate_topk(continuous_topk(u, i, k, exclude), target, ks),
            "hamming": evaluate_topk(ham, target, ks),
            "hierarchical": evaluate_topk(hier, target, ks),
        }


def scaled_code_topk(user_codes: np.ndarray, item_codes: np.ndarray, item_scales: np.ndarray, k: int, exclude=None, *,
                     candidates: int | None = None, user_emb: np.ndarray | None = None,
                     item_emb: np.ndarray | None = None):
    """Top-``k`` item ids ``(n_users, k)`` by ``α_i ⟨b_u, b_i⟩`` over packed codes (BGCH's ranking).

    With ``candidates`` (and the continuous ``user_emb``, ``item_emb``) also the hierarchical
    top-``k``: the top-``candidates`` by that score, re-ranked by ``⟨e_u, e_i⟩``. Returns the
    ids, or ``(ids, hierarchical ids)``.
    """
    from ..retrieval import continuous_topk
    from ..retrieval.indexes import _rerank

    # float64 over ±1 codes and float32 scales is exact: every partial sum is a multiple k·α_i,
    # |k| ≤ K, of a 24-bit mantissa, so equal scores (e.g. ⟨b_u, b_i⟩ = 0) tie exactly (smaller id first)
    bu, bi = unpack_codes(user_codes).astype(np.float64), unpack_codes(item_codes).astype(np.float64)
    item_scales = np.asarray(item_scales, np.float32)
    if item_scales.shape != (len(bi),):
        raise ValueError(f"item_scales must be ({len(bi)},), one per item; got {item_scales.shape}")
    weighted = bi * item_scales.astype(np.float64)[:, None]
    ids = continuous_topk(bu, weighted, k, exclude)
    if candidates is None:
        return ids
    cand = continuous_topk(bu, weighted, candidates, exclude)
    return ids, _rerank(cand, np.asarray(user_emb, np.float32), np.asarray(item_emb, np.float32), k)[1]


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


def untrained_codes(method: str, user_emb: np.ndarray, item_emb: np.ndarray, bits: int,
                    seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Packed codes of a method with no training, from trained embeddings ``(n, d)``.

    ``"lsh"``: :func:`lsh_codes` (``bits`` random hyperplanes, ``seed``); ``"sign"``: the sign
    of the embeddings themselves (``bits`` must equal ``d``). Returns ``(user_codes, item_codes)``,
    ``np.uint8 (n, bits/8)``.
    """
    user_emb, item_emb = np.asarray(user_emb, np.float32), np.asarray(item_emb, np.float32)
    if user_emb.ndim != 2 or item_emb.ndim != 2 or user_emb.shape[1] != item_emb.shape[1]:
        raise ValueError(f"user_emb and item_emb must be (n, d) with one d; got {user_emb.shape} and {item_emb.shape}")
    if int(bits) != bits or bits <= 0 or bits % 8:
        raise ValueError(f"bits must be a positive multiple of 8; got {bits}")
    if method == "lsh":
        return lsh_codes(user_emb, item_emb, int(bits), seed=seed)
    if method == "sign":
        if bits != user_emb.shape[1]:
            raise ValueError(f"'sign' codes are the signs of the {user_emb.shape[1]}-d embeddings: bits must be "
                             f"{user_emb.shape[1]}; got {bits} (use 'lsh' for other code lengths)")
        return pack_codes(user_emb), pack_codes(item_emb)
    raise ValueError(f"untrained method must be one of {', '.join(UNTRAINED)}; got {method!r}")


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
    from ..models import make_encoder

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
