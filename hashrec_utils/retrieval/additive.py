"""Asymmetric search of additive item codes: ``score(q, i) = ⟨q, Σ_m C_m[c_im]⟩``.

An additive code (:mod:`hashrec_utils.hashing.additive`: Faiss's residual quantizer) stores an item
as ``M`` bytes, one codeword index into each of ``M`` codebooks ``C_m (256, d)``; the item's vector
is the sum of its ``M`` codewords. A real-valued query ``q`` scores every item by

    ⟨q, x̂_i⟩ = Σ_m T_m[c_im],   T_m[v] = ⟨q, C_m[v]⟩,

so a query costs one ``(d × 256 M)`` product for its tables (BLAS, a chunk of queries at a time) and
an item ``M`` lookups — 8 bytes and 8 lookups an item at 64 bits, against ``4 d`` bytes and ``d``
multiply-adds for the float vector. Faiss's ``IndexResidualQuantizer`` (inner product, look-up
tables) answers the same scores; the tests hold this index to it.

The scan is :func:`.table_scan.table_scan` (numba, a task per group of four queries sharing each pass
over the items' bytes, the best ``k`` in the exact scan's heaps, ties by the smaller id), shared with
the scaled asymmetric index. Scores are float32 sums of the tables.
"""
from __future__ import annotations

import numpy as np

from ._checks import _check_exclude, _check_float, _check_k, _check_threads
from .table_scan import table_search

__all__ = ["AdditiveCodeIndex", "additive_scores", "VERSION"]

# the scan (tables, ties): bump when its ids can change
VERSION = 1
_NO_SCALES = np.zeros(0, np.float32)


def additive_scores(queries: np.ndarray, codes: np.ndarray, codebooks: np.ndarray) -> np.ndarray:
    """The float reference: ``⟨q, Σ_m C_m[c_im]⟩`` for every query and item, ``(nq, n)`` float64."""
    codebooks = np.asarray(codebooks, dtype=np.float64)
    items = sum(codebooks[m][np.asarray(codes)[:, m]] for m in range(codebooks.shape[0]))
    return np.asarray(queries, dtype=np.float64) @ items.T


class AdditiveCodeIndex:
    """``⟨q, Σ_m C_m[c_im]⟩`` over ``M``-byte additive codes (module docstring).

    ``build((codes (n, M) uint8, codebooks (M, 256, d) float))``; ``search(queries (nq, d) float, k,
    exclude=None) -> (scores float32 (nq, k), ids int64 (nq, k))``, best first, ties by the smaller
    id, padding ``-inf`` / ``-1``."""

    kind = "additive"
    name = "additive code (asymmetric)"

    def __init__(self, threads: int | None = None):
        self.threads = _check_threads(threads)
        self.codes: np.ndarray | None = None

    def build(self, items) -> "AdditiveCodeIndex":
        if not isinstance(items, (tuple, list)) or len(items) != 2:
            raise TypeError("items must be the pair (codes (n, M) uint8, codebooks (M, 256, d))")
        codes, books = np.asarray(items[0]), np.asarray(items[1])
        if codes.dtype != np.uint8 or codes.ndim != 2 or codes.shape[0] == 0 or codes.shape[1] == 0:
            raise ValueError(f"codes must be a non-empty 2-D np.uint8 array (n, M); got {codes.dtype} {codes.shape}")
        if books.ndim != 3 or books.shape[0] != codes.shape[1] or books.shape[1] != 256:
            raise ValueError(f"codebooks must have shape (M, 256, d) with M = {codes.shape[1]} (the codes' bytes); "
                             f"got {books.shape}")
        self.codebooks = _check_float(books.reshape(-1, books.shape[2]), "codebooks").reshape(books.shape)
        self.codes = np.ascontiguousarray(codes)
        self.dim = books.shape[2]
        return self

    @property
    def n_items(self) -> int:
        return 0 if self.codes is None else len(self.codes)

    def search(self, queries, k: int, exclude=None) -> tuple[np.ndarray, np.ndarray]:
        if self.codes is None:
            raise RuntimeError("search before build: call build((codes, codebooks)) first")
        queries = _check_float(queries, "queries", self.dim)
        k = _check_k(k)
        exclude = _check_exclude(exclude, len(queries), self.n_items)
        M = self.codes.shape[1]
        flat = self.codebooks.reshape(M * 256, self.dim).T  # (d, 256 M)

        def tables(q0, q1):
            return np.ascontiguousarray((queries[q0:q1] @ flat).reshape(-1, M, 256))

        return table_search(tables, len(queries), self.codes, _NO_SCALES, k, exclude, self.threads)

    def memory_bytes(self) -> int:
        """The codes and the codebooks (fixed: ``M · 256 · d`` floats, whatever the catalogue's size)."""
        return int(self.codes.nbytes + self.codebooks.nbytes)
