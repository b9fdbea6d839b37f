"""Additive item codes: ``bits/8`` bytes an item, each a codeword of its own codebook, summed.

A ±1 code keeps one bit per direction; an additive code keeps, per byte, the index of one of 256
learned codewords, and the item's vector is their sum: ``x̂_i = Σ_m C_m[c_im]``. Faiss's residual
quantizer learns the codebooks greedily (k-means of what the codebooks before it leave unexplained,
``beam`` encodings kept while encoding) and encodes the items; a real-valued query then scores an item
by ``M`` table lookups (:class:`hashrec_utils.retrieval.additive.AdditiveCodeIndex`). At 64 bits it
keeps far more of an inner-product ranking than 64 sign bits: on MovieLens-1M PureSVD (rank 64) it
finds 0.906 of the model's exact top-20 against 0.666 for 8-byte product quantization and 0.569 for
distilled ±1 codes scored asymmetrically.

:func:`fit_additive_code` takes the items only; the query side is the user's embedding itself, so
any user of the same model (seen in fitting or not) is served.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["AdditiveCode", "fit_additive_code", "BEAMS"]

# the encoder's beam widths tried (chosen on validation by the caller): 1 is greedy
BEAMS = (1, 5)


@dataclass(frozen=True)
class AdditiveCode:
    """``codes (n, M) uint8`` and ``codebooks (M, 256, d) float32``; ``beam`` that encoded them."""

    codes: np.ndarray
    codebooks: np.ndarray
    beam: int

    def decode(self) -> np.ndarray:
        """``x̂_i = Σ_m C_m[c_im]``, float32 ``(n, d)``."""
        return sum(self.codebooks[m][self.codes[:, m]] for m in range(self.codes.shape[1])).astype(np.float32)


def fit_additive_code(item: np.ndarray, bits: int = 64, *, beam: int = 1, seed: int = 0,
                      max_train: int = 262144) -> AdditiveCode:
    """Faiss's residual quantizer of ``item (n, d)`` at ``bits/8`` codebooks of 256 words, trained on
    at most ``max_train`` items (a seeded sample), every item encoded with beam width ``beam``.
    Deterministic for a seed (Faiss's k-means is seeded; one thread). A catalogue of at most 256
    items is coded exactly (its first codebook holds the items; k-means needs more points than words)."""
    import faiss

    item = np.ascontiguousarray(item, dtype=np.float32)
    if item.ndim != 2 or len(item) == 0:
        raise ValueError(f"item must be a non-empty 2-D array (n, d); got shape {item.shape}")
    if bits <= 0 or bits % 8:
        raise ValueError(f"bits must be a positive multiple of 8; got {bits}")
    if int(beam) < 1:
        raise ValueError(f"beam must be a positive integer; got {beam!r}")
    if not np.isfinite(item).all():
        raise ValueError("item contains NaN or infinite values")
    n, d = item.shape
    m = bits // 8
    if n <= 256:  # a catalogue a codebook can hold: the first codebook is the items themselves, exactly
        books = np.zeros((m, 256, d), np.float32)
        books[0, :n] = item
        codes = np.zeros((n, m), np.uint8)
        codes[:, 0] = np.arange(n)
        return AdditiveCode(codes, books, int(beam))
    rq = faiss.ResidualQuantizer(d, m, 8)
    rq.max_beam_size = int(beam)
    rq.cp.seed = int(seed)
    rq.cp.min_points_per_centroid = 1  # only the threshold of a warning for small catalogues: no code changes
    train = item if n <= max_train else item[np.random.default_rng(seed).choice(n, max_train, replace=False)]
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)  # k-means and the beam search give the same codes on any machine
    try:
        rq.train(train)
        packed = rq.compute_codes(item)
    finally:
        faiss.omp_set_num_threads(threads)
    books = faiss.vector_to_array(rq.codebooks).reshape(m, 256, d).astype(np.float32)
    return AdditiveCode(np.ascontiguousarray(packed[:, :m], dtype=np.uint8), books, int(beam))
