"""Hash codes: the sign, the packed layout, ranking by scaled codes, and codes made without training.

For ±1 codes ``h = sign(a) ∈ {-1, +1}^K`` (``sign(0) = +1``), ``ham(h_u, h_i) = (K - ⟨h_u, h_i⟩) / 2``:
ranking by Hamming distance is ranking by the code inner product. Codes leave a model packed with
``np.packbits`` (bit 1 for +1; ``K/8`` bytes per row, MSB first: Faiss's binary layout).
Scaled codes (BGCH, BiGeaR) are ranked by ``α_i ⟨b_u, b_i⟩`` (:func:`scaled_code_topk`); codes of
every propagation layer side by side, one scale per layer, by ``Σ_l α_u^l α_i^l ⟨b_u^l, b_i^l⟩``
(:func:`dequantize`).

No training: :func:`untrained_codes` — ``lsh`` (:func:`lsh_codes`, random hyperplanes,
Charikar 2002) and ``sign`` (``pack_codes(embeddings)``); :data:`UNTRAINED_VERSIONS` holds each
method's version (bump when a change moves the codes it makes; part of every run's identity,
checked by the golden test).
"""
from __future__ import annotations

from types import MappingProxyType

import numpy as np
import torch

UNTRAINED = ("lsh", "sign")
UNTRAINED_VERSIONS = MappingProxyType({"lsh": 1, "sign": 1})


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


def dequantize(codes: np.ndarray, scales: np.ndarray, dtype=np.float64) -> np.ndarray:
    """Packed codes ``(n, K/8)`` times their scales: ``α_r b_r`` with one scale a row (``scales (n,)``),
    or ``α_r^l b_r^l`` block by block with one a layer (``scales (n, L)``: ``K / L`` bits a block);
    ``dtype`` rows ``(n, K)``. One clear error for scales of another shape."""
    b = unpack_codes(codes).astype(dtype)
    scales = np.asarray(scales, np.float32)
    if scales.ndim == 1 and scales.shape == (len(b),):
        return b * scales.astype(dtype)[:, None]
    if scales.ndim == 2 and len(scales) == len(b) and scales.shape[1] >= 1 and b.shape[1] % scales.shape[1] == 0:
        return b * np.repeat(scales.astype(dtype), b.shape[1] // scales.shape[1], axis=1)
    raise ValueError(f"scales must be ({len(b)},), one a row, or ({len(b)}, L) with L dividing the {b.shape[1]} bits; "
                     f"got {scales.shape}")


def scaled_code_topk(user_codes: np.ndarray, item_codes: np.ndarray, item_scales: np.ndarray, k: int, exclude=None, *,
                     candidates: int | None = None, user_emb: np.ndarray | None = None,
                     item_emb: np.ndarray | None = None, user_scales: np.ndarray | None = None):
    """Top-``k`` item ids ``(n_users, k)`` by ``α_i ⟨b_u, b_i⟩`` over packed codes (BGCH's ranking);
    with a scale per layer (``item_scales (n_items, L)``, ``user_scales (n_users, L)``) by
    ``Σ_l α_u^l α_i^l ⟨b_u^l, b_i^l⟩`` (BGCH's and BiGeaR's ``get_scores`` over every layer's codes).

    With ``candidates`` (and the continuous ``user_emb``, ``item_emb``) also the hierarchical
    top-``k``: the top-``candidates`` by that score, re-ranked by ``⟨e_u, e_i⟩``. Returns the
    ids, or ``(ids, hierarchical ids)``.
    """
    from ..retrieval import continuous_topk
    from ..retrieval.indexes import rerank_candidates

    item_scales = np.asarray(item_scales, np.float32)
    if item_scales.ndim == 2:
        # per-layer scales: user scales matter; float32 (ties between distinct items are measure-zero)
        if user_scales is None:
            raise ValueError("item_scales has one scale per layer: user_scales (n_users, L) is needed too")
        user_scales = np.asarray(user_scales, np.float32)
        if user_scales.shape[1:] != item_scales.shape[1:]:
            raise ValueError(f"user_scales and item_scales must have one number of layers; got {user_scales.shape} "
                             f"and {item_scales.shape}")
        bu, weighted = dequantize(user_codes, user_scales, np.float32), dequantize(item_codes, item_scales, np.float32)
    else:
        # float64 over ±1 codes and float32 scales is exact: every partial sum is a multiple k·α_i,
        # |k| ≤ K, of a 24-bit mantissa, so equal scores (e.g. ⟨b_u, b_i⟩ = 0) tie exactly (smaller id first)
        bu = unpack_codes(user_codes).astype(np.float64)
        if item_scales.shape != (len(item_codes),):
            raise ValueError(f"item_scales must be ({len(item_codes)},), one per item; got {item_scales.shape}")
        weighted = dequantize(item_codes, item_scales)
    if candidates is None:
        return continuous_topk(bu, weighted, k, exclude)
    # one search serves both: rows come sorted by score, ties by the smaller id, so the top-k is the
    # first k of the top-max(k, C); the re-rank goes a block of users at a time (bounded (q, C, d) gather)
    top = continuous_topk(bu, weighted, max(k, candidates), exclude)
    hier = rerank_candidates(top[:, :candidates], np.asarray(user_emb, np.float32), np.asarray(item_emb, np.float32), k)
    return top[:, :k], hier[1]


def _lsh_planes(dim: int, bits: int, seed: int) -> np.ndarray:
    """LSH's random hyperplanes ``R ~ N(0, 1)^{d×K}`` (float32) for ``seed``."""
    return np.random.default_rng(seed).standard_normal((dim, bits)).astype(np.float32)


def lsh_codes(user_emb: np.ndarray, item_emb: np.ndarray, bits: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random-hyperplane LSH (Charikar 2002): ``sign(e R)``, ``R ~ N(0, 1)^{d×K}``; packed codes."""
    planes = _lsh_planes(user_emb.shape[1], bits, seed)
    return pack_codes(user_emb @ planes), pack_codes(item_emb @ planes)


def untrained_queries(method: str, user_emb: np.ndarray, bits: int, seed: int = 0) -> np.ndarray:
    """The users' real-valued vectors whose signs are :func:`untrained_codes`' user codes (asymmetric
    search's queries): ``e R`` for ``lsh``, the embeddings themselves for ``sign``; float32 ``(n, bits)``."""
    user_emb = np.asarray(user_emb, np.float32)
    return user_emb @ _lsh_planes(user_emb.shape[1], int(bits), seed) if method == "lsh" else user_emb.copy()


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

