"""The scan shared by the table-lookup indexes: per query and code byte a 256-entry float32 table,
an item's score the sum of its bytes' entries (times its scale), the best ``k`` kept in heaps.

:class:`~.additive.AdditiveCodeIndex` (tables ``⟨q, C_m[v]⟩`` of additive codes) and
:class:`~.scaled_asymmetric.ScaledAsymmetricIndex` (tables of ±1 code bytes, a scale an item) make
their tables and call :func:`table_scan`: a task per group of four queries sharing each pass over the
items' bytes (independent sums: the lookups of the group overlap), each with its own heap (ties by the
smaller id; items come in id order, so an equal score never enters a full heap); ``exclude`` is looked
up (binary search of the query's sorted row) only for an item that would enter its heap.
"""
from __future__ import annotations

import numba
import numpy as np

from .exact import _drain, _excluded, _push
from .kernel import _numba_threads

__all__ = ["table_scan", "table_search"]

_QB = 4  # queries sharing a pass over the items (the unrolled accumulators below)
CHUNK = 4096  # queries whose tables are made at once (1 KiB a query and code byte)


def table_search(make_tables, n_queries: int, codes: np.ndarray, scales: np.ndarray, k: int, exclude,
                 threads: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` of ``n_queries`` queries, ``make_tables(q0, q1)`` giving the tables ``(q1 − q0, nbytes,
    256)`` float32 of queries ``q0..q1`` (:data:`CHUNK` at a time); ``exclude``: a checked CSR or None.
    Returns ``(scores float32, ids int64)``, padding ``-inf`` / ``-1`` where fewer than ``k`` are admissible."""
    out_s = np.full((n_queries, k), -np.inf, np.float32)
    out_i = np.full((n_queries, k), -1, np.int64)
    if exclude is None:
        ptr, idx = np.zeros(n_queries + 1, np.int64), np.zeros(1, np.int64)
    else:
        ptr, idx = exclude.indptr.astype(np.int64), exclude.indices.astype(np.int64)
    with _numba_threads(threads):
        for q0 in range(0, n_queries, CHUNK):
            tables = make_tables(q0, min(q0 + CHUNK, n_queries))
            table_scan(tables, codes, scales, k, out_s, out_i, q0, ptr, idx, exclude is not None)
    return out_s, out_i


@numba.njit(parallel=True, cache=True, nogil=True)
def table_scan(tables, codes, scales, k, out_s, out_i, q_base, ex_ptr, ex_idx, has_ex):
    """Queries ``q_base + r`` with ``tables (nq, nbytes, 256)`` against ``codes (n, nbytes) uint8``:
    scores ``scales[i] · Σ_j tables[r, j, codes[i, j]]`` (``scales``: float32 ``(n,)``, or empty for
    none); the best ``k`` of each into ``out_s``/``out_i`` row ``q_base + r`` (the exclusion's rows are
    numbered the same way), best first."""
    nq, nbytes = tables.shape[0], codes.shape[1]
    n = codes.shape[0]
    scaled = scales.shape[0] > 0
    groups = (nq + _QB - 1) // _QB
    for g in numba.prange(groups):
        q0 = g * _QB
        m = min(_QB, nq - q0)
        tab = np.zeros((_QB, nbytes, 256), np.float32)
        for r in range(m):
            tab[r] = tables[q0 + r]
        hs = np.empty((_QB, k), np.float32)
        hi = np.empty((_QB, k), np.int64)
        size = np.zeros(_QB, np.int64)
        cut = np.full(_QB, -np.inf, np.float32)  # a full heap's worst score: only a larger one can enter
        for i in range(n):
            a0 = np.float32(0.0)
            a1 = np.float32(0.0)
            a2 = np.float32(0.0)
            a3 = np.float32(0.0)
            for j in range(nbytes):
                b = codes[i, j]
                a0 += tab[0, j, b]
                a1 += tab[1, j, b]
                a2 += tab[2, j, b]
                a3 += tab[3, j, b]
            c = scales[i] if scaled else np.float32(1.0)
            acc = (a0, a1, a2, a3)
            for r in range(m):
                sc = acc[r] * c
                q = q_base + q0 + r
                if (size[r] < k or sc > cut[r]) and not (has_ex and _excluded(i, q, ex_ptr, ex_idx)):
                    size[r] = _push(hs[r], hi[r], size[r], k, sc, i)
                    if size[r] == k:
                        cut[r] = hs[r, 0]
        for r in range(m):
            _drain(hs[r], hi[r], size[r], out_s, out_i, q_base + q0 + r)
