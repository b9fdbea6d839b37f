"""Gradient estimators for the sign: what the training forward pass returns and what its backward uses.

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
(:meth:`HashModel.code_scales`, :func:`.codes.scaled_code_topk`).
Every estimator class carries a ``version`` (:class:`Estimator`); :data:`ESTIMATORS` is read-only.
"""
from __future__ import annotations

import math
from types import MappingProxyType
from typing import Mapping

import torch

from .codes import UNTRAINED, sign


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

    ``version``: every subclass declares its own; bump it when a change moves what
    ``forward`` / backward / ``codes`` compute. It is part of every run's identity, checked by
    the golden test (the base class has none, so a subclass cannot inherit one by accident).
    """

    version: int
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

    version = 1
    name = "ste"

    def forward(self, a, t):
        return SignSTE.apply(torch.tanh(a))


class GuidedSTE(Estimator):
    """HashGNN §4.2: ``ĥ = Q ⊙ z + (1 − Q) ⊙ sign_ste(z)``, ``z = tanh(a)``, ``Q ~ Bernoulli(p)`` per element.

    ``p(t) = p0 · decay^⌊t · stages⌋``: the paper starts p at 1 and takes 5 % off every 250
    iterations (``decay = 0.95``); ``stages`` is how many such decays fit in the run.
    """

    version = 1
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

    version = 1
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

    version = 1
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

    version = 1
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

    version = 1
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

    version = 1
    name = "bigear"
    defaults = {"norm_a": 1.0}
    scaled = True

    def forward(self, a, t):
        return SignGaussian.apply(a, float(self.params["norm_a"]))


ESTIMATORS: Mapping[str, type[Estimator]] = MappingProxyType(
    {cls.name: cls for cls in (STE, GuidedSTE, HashNet, Gumbel, SignSwishEstimator, BGCH, BiGeaR)})


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
