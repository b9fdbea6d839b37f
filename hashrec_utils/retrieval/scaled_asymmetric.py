"""Asymmetric search with a scale byte an item: ``score(q, i) = c_i ⟨q, b_i⟩``.

±1 codes hold an item's direction, not its magnitude. Where the magnitude carries the ranking — a
LightGCN trained on few interactions a user, whose item norms track popularity — symmetric and
asymmetric search of the codes fall far behind the model (``scripts/sparse_standin.py``), and
Faiss's RaBitQ, which keeps each vector's norm in a float factor, is ahead. One byte an item puts
the magnitude back: ``c_i`` is stored as a log-scale byte,

    byte_i = round((log c_i − lo) / step),   ĉ_i = exp(lo + step · byte_i),   step = (hi − lo) / 255

(``lo``, ``hi``: the log range of the scales), so ``ĉ_i`` is within a factor ``exp(step / 2)`` of
``c_i`` (:meth:`ScaledAsymmetricIndex.scale_error`). ``bits/8 + 1`` bytes an item.

The scan (:func:`.table_scan.table_scan`, numba, a task per group of four queries sharing each pass
over the items, their sums independent): per query and code byte a 256-entry float32 table
``T_j[v] = Σ_t q_{8j+t} (2 bit_t(v) − 1)`` (bit 0 the MSB, ``np.packbits``' order; made a chunk of
queries at a time), so an item costs ``bits/8`` lookups and one multiply a query; the best ``k`` by
``ĉ_i · Σ_j T_j[code_ij]`` are kept in the exact scan's heaps (ties by the smaller id); ``exclude`` is
looked up (binary search of the query's sorted row) only for an item that would enter its heap.
Scores are float32 sums of the tables: equal to ``ĉ_i ⟨q, b_i⟩`` up to float32 rounding, so rankings
equal the float reference's wherever two scores differ by more than that (exactly, for queries and
scales whose sums are exact in float32: the tests' case). No quantisation of the query: the
integer-histogram kernel of :mod:`.asymmetric` cannot multiply per item, so this scan is slower than
it (``benchmarks/bench_scaled_asymmetric.py``, Gowalla's shape, two threads: 12,253 queries/s against
its 83,061 and Faiss RaBitQ FastScan's 10,917 at 16 bytes an item).
"""
from __future__ import annotations

import numba
import numpy as np

from ._checks import _check_codes, _check_exclude, _check_float, _check_k, _check_threads
from .table_scan import table_search

__all__ = ["ScaledAsymmetricIndex", "scaled_asymmetric_scores", "encode_scales", "VERSION"]

# the scan (tables, the scale byte, ties): bump when its ids can change
VERSION = 1
LEVELS = 255


def scaled_asymmetric_scores(queries: np.ndarray, codes: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """The float reference: ``scales[i] · ⟨q, b_i⟩`` for every query and item ``(nq, n)`` (float64)."""
    signs = np.unpackbits(np.asarray(codes), axis=1).astype(np.float64) * 2 - 1
    return (np.asarray(queries, dtype=np.float64) @ signs.T) * np.asarray(scales, dtype=np.float64)[None, :]


def encode_scales(scales) -> tuple[np.ndarray, float, float]:
    """Positive finite ``scales (n,)`` → ``(bytes uint8 (n,), lo, step)`` with ``ĉ = exp(lo + step · byte)``."""
    c = np.asarray(scales, dtype=np.float64)
    if c.ndim != 1 or len(c) == 0:
        raise ValueError(f"scales must be a non-empty 1-D array, one per item; got shape {c.shape}")
    if not np.all(np.isfinite(c)) or np.any(c <= 0):
        bad = int(np.flatnonzero(~(np.isfinite(c) & (c > 0)))[0])
        raise ValueError(f"scales must be finite and > 0; scales[{bad}] = {float(c[bad])!r}")
    logs = np.log(c)
    lo, hi = float(logs.min()), float(logs.max())
    step = (hi - lo) / LEVELS if hi > lo else 1.0
    return np.rint((logs - lo) / step).astype(np.uint8), lo, step


@numba.njit(cache=True, nogil=True)
def _tables(q, nbytes, out):
    """``out[j, v]``: byte ``j``'s contribution ``Σ_t q[8j+t] (2 bit_t(v) − 1)`` for each of its 256 values."""
    for j in range(nbytes):
        for v in range(256):
            s = np.float32(0.0)
            for t in range(8):
                if (v >> (7 - t)) & 1:
                    s += q[8 * j + t]
                else:
                    s -= q[8 * j + t]
            out[j, v] = s


@numba.njit(parallel=True, cache=True, nogil=True)
def _query_tables(queries, nbytes, out):
    """:func:`_tables` of every query, a task per query."""
    for r in numba.prange(queries.shape[0]):
        _tables(queries[r], nbytes, out[r])


class ScaledAsymmetricIndex:
    """``c_i ⟨q, b_i⟩`` over packed ±1 codes and a log-scale byte an item (module docstring).

    ``build((codes (n, bits/8) uint8, scales (n,) > 0))``; ``search(queries (nq, bits) float, k,
    exclude=None) -> (scores float32 (nq, k), ids int64 (nq, k))``, best first, ties by the smaller
    id, padding ``-inf`` / ``-1``."""

    kind = "scaled_asymmetric"
    name = "scaled asymmetric"

    def __init__(self, bits: int, threads: int | None = None):
        if not isinstance(bits, (int, np.integer)) or bits <= 0 or bits % 8:
            raise ValueError(f"bits must be a positive multiple of 8; got {bits!r}")
        self.bits, self.threads = int(bits), _check_threads(threads)
        self.codes: np.ndarray | None = None

    def build(self, items) -> "ScaledAsymmetricIndex":
        if not isinstance(items, (tuple, list)) or len(items) != 2:
            raise TypeError("items must be the pair (codes (n, bits/8) uint8, scales (n,))")
        codes = _check_codes(items[0], "codes", self.bits)
        scale_bytes, self.lo, self.step = encode_scales(items[1])
        if len(scale_bytes) != len(codes):
            raise ValueError(f"codes has {len(codes)} rows but scales has {len(scale_bytes)}")
        self.codes, self.scale_bytes = codes, scale_bytes
        self.scales = np.exp(self.lo + self.step * scale_bytes.astype(np.float64)).astype(np.float32)
        return self

    @property
    def n_items(self) -> int:
        return 0 if self.codes is None else len(self.codes)

    def scale_error(self) -> float:
        """The largest relative error of a decoded scale: ``exp(step / 2) − 1``."""
        return float(np.expm1(self.step / 2))

    def search(self, queries, k: int, exclude=None) -> tuple[np.ndarray, np.ndarray]:
        if self.codes is None:
            raise RuntimeError("search before build: call build((codes, scales)) first")
        queries = _check_float(queries, "queries", self.bits)
        k = _check_k(k)
        exclude = _check_exclude(exclude, len(queries), self.n_items)
        nbytes = self.codes.shape[1]

        def tables(q0, q1):
            out = np.empty((q1 - q0, nbytes, 256), np.float32)
            _query_tables(queries[q0:q1], nbytes, out)
            return out

        return table_search(tables, len(queries), self.codes, self.scales, k, exclude, self.threads)

    def memory_bytes(self) -> int:
        """The codes, the scale bytes and the two floats that decode them."""
        return int(self.codes.nbytes + self.scale_bytes.nbytes + 16)
