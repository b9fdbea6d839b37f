"""Transform coding: a training-free K-bit asymmetric code of a model's item embeddings.

The score to keep is ``⟨e_u, e_i⟩``. With ``C = E_u[e_u e_uᵀ]`` (the users' second moment),
``⟨e_u, e_i⟩ = ⟨C^{-½} e_u, C^{½} e_i⟩``, and an error ``δ`` in ``x_i = C^{½} e_i`` changes a user's
score by ``⟨C^{-½} e_u, δ⟩``, whose mean square over the users is ``|δ|²``: in the whitened space the
expected squared score error is the plain squared error of the items. Classic transform coding
(Goyal, "Theoretical foundations of transform coding", IEEE SPM 2001) then applies:

1. **transform**: the principal axes ``P`` of the centred items ``x_i − μ`` (weighted by ``weight``
   when given), coordinates ``y_i = Pᵀ (x_i − μ)`` with variances ``λ_1 ≥ λ_2 ≥ …``;
2. **bit allocation**: greedy, each of the ``K`` bits to the axis whose distortion is largest, a bit
   dividing it by 4 (the high-rate rule ``D_k(b) = λ_k 4^{-b}``), at most :data:`MAX_BITS_PER_AXIS`;
   axes left with no bit are dropped;
3. **scalar quantisation**: an axis with ``b`` bits gets an additive quantiser
   ``y ≈ o + Σ_j w_j s_j`` with ``s_j ∈ {−1, +1}`` (its ``2^b`` levels), started uniform over the
   axis's 0.1–99.9 % range and refined by Lloyd iterations (nearest level, then weighted least
   squares for ``w`` and ``o``).

The code of item ``i`` is its ``K`` signs ``s``; the query of user ``u`` is ``a_u = W e_u`` with one
row of ``W`` a bit, ``W_(k,j) = w_kj P_kᵀ C^{-½}``, so ``⟨a_u, s_i⟩`` estimates ``⟨e_u, e_i⟩`` up to a
constant of the user (``⟨C^{-½} e_u, μ + P o⟩``, which no ranking sees). That is exactly what
asymmetric search (:class:`~hashrec_utils.retrieval.AsymmetricIndex`) scores, and ``W`` is a
function of the embedding, so new users are served like any other. Unlike sign codes of a hash
layer (one bit an axis, same weight each) the bits go where the score's variance is: on
MovieLens-1M the first axes get 4–5 bits and half the axes none.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

__all__ = ["TransformCode", "fit_transform_code", "allocate_bits", "fit_levels", "MAX_BITS_PER_AXIS"]

# 2^8 levels an axis at most: the nearest-level step enumerates them for every item
MAX_BITS_PER_AXIS = 8


@dataclass(frozen=True)
class TransformCode:
    """``weight (K, d)`` float32 (the query ``a = weight @ e_u``), ``codes (n_items, K)`` ±1 int8,
    ``allocation (d,)`` bits of each principal axis (sum ``K``)."""

    weight: np.ndarray
    codes: np.ndarray
    allocation: np.ndarray

    @property
    def bits(self) -> int:
        return self.weight.shape[0]

    def query(self, user: np.ndarray) -> np.ndarray:
        """``a = W e_u`` (float32 ``(n, K)``)."""
        return np.asarray(user, dtype=np.float32) @ self.weight.T


def allocate_bits(variances, bits: int, max_per_axis: int = MAX_BITS_PER_AXIS) -> np.ndarray:
    """Greedy allocation of ``bits`` over axes of ``variances``: each bit to the axis with the largest
    current distortion (``λ_k 4^{-b_k}``; ties to the lower axis), none past ``max_per_axis``."""
    lam = np.asarray(variances, dtype=np.float64)
    if lam.ndim != 1 or len(lam) == 0 or not np.all(np.isfinite(lam)) or np.any(lam < 0):
        raise ValueError(f"variances must be a non-empty 1-D array of finite values >= 0; got {lam!r}")
    if bits <= 0 or bits > max_per_axis * len(lam):
        raise ValueError(f"bits must be in 1..{max_per_axis * len(lam)} ({len(lam)} axes, at most {max_per_axis} "
                         f"bits each); got {bits}")
    alloc = np.zeros(len(lam), dtype=np.int64)
    dist = lam.copy()
    for _ in range(bits):
        k = int(np.argmax(np.where(alloc < max_per_axis, dist, -np.inf)))
        alloc[k] += 1
        dist[k] /= 4.0
    return alloc


def _quantile(x: np.ndarray, w: np.ndarray, q: float) -> float:
    order = np.argsort(x, kind="stable")
    cum = np.cumsum(w[order])
    return float(x[order][min(np.searchsorted(cum, q * cum[-1]), len(x) - 1)])


def fit_levels(x, b: int, weight=None, iters: int = 20) -> tuple[np.ndarray, float, np.ndarray]:
    """An additive ``b``-bit scalar quantiser of the values ``x``: ``x ≈ o + Σ_j w_j s_j``.

    Returns ``(w (b,), o, signs (n, b) ±1 int8)``. Started uniform over the (weighted) 0.1–99.9 %
    range, ``w_j = step · 2^{j-1}``; each iteration assigns every value its nearest of the ``2^b``
    levels and refits ``w, o`` by weighted least squares."""
    x = np.asarray(x, dtype=np.float64)
    wt = np.ones(len(x)) if weight is None else np.asarray(weight, dtype=np.float64)
    if not 1 <= b <= MAX_BITS_PER_AXIS:
        raise ValueError(f"b must be in 1..{MAX_BITS_PER_AXIS}; got {b}")
    lo, hi = _quantile(x, wt, 0.001), _quantile(x, wt, 0.999)
    step = (hi - lo) / (2**b - 1) if hi > lo else 1.0
    w, o = step * 2.0 ** (np.arange(b) - 1), (hi + lo) / 2
    combos = np.array(list(itertools.product((-1.0, 1.0), repeat=b)))  # (2^b, b)
    root = np.sqrt(wt)
    for it in range(iters + 1):
        levels = combos @ w + o
        order = np.argsort(levels)
        cut = (levels[order][1:] + levels[order][:-1]) / 2
        assign = order[np.searchsorted(cut, x)]
        if it == iters:
            break
        design = np.c_[combos[assign], np.ones(len(x))]
        sol, *_ = np.linalg.lstsq(design * root[:, None], x * root, rcond=None)
        w, o = sol[:-1], float(sol[-1])
    return w, float(o), combos[assign].astype(np.int8)


def fit_transform_code(user, item, bits: int = 64, *, weight=None, iters: int = 20) -> TransformCode:
    """The :class:`TransformCode` of ``item (n, d)`` for queries like ``user (m, d)`` (module docstring).

    ``user``: the embeddings whose second moment weighs the score error (the users distilled on, or
    all users); ``weight`` (optional, ``(n,)`` ≥ 0): how much each item's error counts, e.g. how often
    it is in the users' top lists. Deterministic: no random draws."""
    U = np.asarray(user, dtype=np.float64)
    V = np.asarray(item, dtype=np.float64)
    if U.ndim != 2 or V.ndim != 2 or U.shape[1] != V.shape[1]:
        raise ValueError(f"user and item must be 2-D with the same dim; got {U.shape} and {V.shape}")
    if not (np.all(np.isfinite(U)) and np.all(np.isfinite(V))):
        raise ValueError("user and item must be finite (no NaN or inf)")
    wt = np.ones(len(V)) if weight is None else np.asarray(weight, dtype=np.float64)
    if wt.shape != (len(V),) or not np.all(np.isfinite(wt)) or np.any(wt < 0) or wt.sum() <= 0:
        raise ValueError(f"weight must be ({len(V)},), finite, >= 0 and not all 0")
    ev, evec = np.linalg.eigh(U.T @ U / len(U))
    ev = np.clip(ev, max(ev.max(), 1e-30) * 1e-9, None)
    half, inv_half = (evec * np.sqrt(ev)) @ evec.T, (evec / np.sqrt(ev)) @ evec.T
    X = V @ half
    mu = (wt[:, None] * X).sum(0) / wt.sum()
    Xc = X - mu
    lam, P = np.linalg.eigh((Xc * wt[:, None]).T @ Xc / wt.sum())
    lam, P = np.clip(lam[::-1], 0.0, None), P[:, ::-1]
    Y = Xc @ P
    alloc = allocate_bits(lam, bits)
    rows, codes = [], []
    for k in np.flatnonzero(alloc):
        w, _, signs = fit_levels(Y[:, k], int(alloc[k]), wt, iters)
        axis = inv_half @ P[:, k]
        rows += [wj * axis for wj in w]
        codes.append(signs)
    return TransformCode(np.asarray(rows, dtype=np.float32), np.concatenate(codes, axis=1), alloc)
