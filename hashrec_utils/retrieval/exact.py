"""Exact float search: inner-product top-k by tiled GEMM (torch) and a threshold scan (numba), the one implementation.

:func:`exact_topk` is what :func:`hashrec_utils.metrics.rank_topk`,
:func:`~hashrec_utils.retrieval.continuous_topk` and :class:`ExactIndex` run.
For queries ``Q (nq, d)`` and items ``X (n, d)`` it returns, per query, the
``k`` items of largest ``s_qi = <Q_q, X_i>``, excluded items never returned,
best first, equal scores by the smaller id.

The score matrix is walked in tiles of ``b`` queries x ``L`` items, chunks of
items in increasing id order (outer loop), blocks of queries within a chunk;
``b L`` scores take at most ``min(memory_mb MiB, 8 MiB)``, so that a tile is
still in cache when it is scanned:

1. ``S = Q_b @ X_{j:j+L}.T``: one GEMM. float32: oneDNN's inner product
   (``torch.ops.mkldnn._linear_pointwise``, which uses AVX-512 where the CPU
   has it: about twice the speed of torch's MKL ``torch.mm`` on the AMD EPYC
   CPUs of this project's machines), or ``torch.mm`` where torch lacks oneDNN;
   float64: ``torch.mm``;
2. per query row (numba, one thread: torch's OpenMP pool and numba's would spin
   against each other on a tile's few milliseconds): a heap of the best ``k`` so far,
   ordered by ``(score, -id)``; its worst score ``t_q`` is the row's threshold
   (``-inf`` while fewer than ``k`` are held). Runs of 64 scores are tested
   against ``t_q`` at once (a vectorised count of ``s > t_q``); only a run with
   a score above it is read item by item. An item enters the heap iff
   ``s > t_q`` and it is not excluded (the row's sorted excluded ids, walked by
   a pointer). Strictly greater is the exact tie rule: items come in
   increasing id order, so an item tying ``t_q`` has a larger id than every
   held item and ranks below them all;
3. at the end, each heap is sorted by (float32) score descending, then id
   ascending; unfilled places (fewer than ``k`` admissible items, or ``-inf``
   scores) are padding ``ids = -1``, ``scores = -inf``.

Cost: the GEMM, ``2 nq n d`` flops, plus a scan that reads each score once
(vectorised) and does ``O(k log(n/k) log k)`` heap work per query for random
scores (item ``i`` enters with probability about ``k / i``). Scores are the
GEMM's float32 dot products: BLAS libraries may round the last bit differently
for other tile shapes (a single row or column), as any GEMM may; integer-valued
embeddings are exact whatever the order.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import numba
import numpy as np

from ._checks import _check_exclude, _check_k, _check_threads

__all__ = ["exact_topk", "ExactIndex"]

# exact float top-k (blocked GEMM, in-place exclusion, ties by smaller id): bump when its ids can change
VERSION = 1

_TILE_BYTES = 8 << 20  # one tile of scores: in the L3 cache between the GEMM and the scan
_TILE_QUERIES = 256    # queries per tile when the items do not fit in one tile
_MAX_QUERIES = 1024    # queries per tile when they do
_RUN = 64              # scores tested against the threshold at once


@contextmanager
def _pools(threads: int | None) -> Iterator[None]:
    """Pin torch's intra-op pool (the GEMM's) to ``threads`` for one call, restoring it afterwards."""
    import torch

    old = torch.get_num_threads()
    if threads:
        torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        if threads:
            torch.set_num_threads(old)


def _as_tensor(x, name: str):
    """A 2-D finite floating torch tensor, no copy for C-contiguous float32/float64 input."""
    import torch

    t = torch.as_tensor(x)
    if t.ndim != 2:
        raise ValueError(f"{name} must be 2-D; got shape {tuple(t.shape)}")
    if not t.is_floating_point():
        raise TypeError(f"{name} must be floating point; got {t.dtype}")
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return t


# --------------------------------------------------------------------------
# the scan (numba)
# --------------------------------------------------------------------------
#
# A row's heap ``hs[0:cnt], hi[0:cnt]`` (scores, ids) is a binary min-heap on
# the key ``(score, -id)``: the root is the worst held item, the smallest score
# and, among equal scores, the largest id.


@numba.njit(cache=True, nogil=True, inline="always")
def _worse(sa, ia, sb, ib) -> bool:
    """Whether ``(sa, ia)`` ranks below ``(sb, ib)``: a smaller score, or an equal score and a larger id."""
    return sa < sb or (sa == sb and ia > ib)


@numba.njit(cache=True, nogil=True, inline="always")
def _heap_push(hs, hi, cnt, s, g):
    """Add ``(s, g)`` to a heap of ``cnt`` items (``cnt < k``): place it last and sift it up."""
    i = cnt
    while i > 0:
        p = (i - 1) >> 1
        if not _worse(s, g, hs[p], hi[p]):
            break
        hs[i] = hs[p]
        hi[i] = hi[p]
        i = p
    hs[i] = s
    hi[i] = g


@numba.njit(cache=True, nogil=True, inline="always")
def _heap_replace(hs, hi, k, s, g):
    """Replace the root of a full heap of ``k`` items by ``(s, g)`` and sift it down."""
    i = 0
    while True:
        w = 2 * i + 1
        if w >= k:
            break
        if w + 1 < k and _worse(hs[w + 1], hi[w + 1], hs[w], hi[w]):
            w += 1
        if not _worse(hs[w], hi[w], s, g):
            break
        hs[i] = hs[w]
        hi[i] = hi[w]
        i = w
    hs[i] = s
    hi[i] = g


@numba.njit(cache=True, nogil=True, inline="always")
def _push(hs, hi, size, cap, s, i):
    """Offer ``(s, i)`` to a heap of at most ``cap`` entries (worst at the root, larger scores better,
    ties by smaller id); returns the new size."""
    if size < cap:
        _heap_push(hs, hi, size, s, i)
        return size + 1
    if _worse(hs[0], hi[0], s, i):
        _heap_replace(hs, hi, size, s, i)
    return size


@numba.njit(cache=True, nogil=True)
def _excluded(item, q, ex_ptr, ex_idx):
    """Binary search of ``item`` in query ``q``'s sorted row of the exclusion matrix."""
    lo, hi = ex_ptr[q], ex_ptr[q + 1]
    while lo < hi:
        mid = (lo + hi) // 2
        if ex_idx[mid] < item:
            lo = mid + 1
        else:
            hi = mid
    return lo < ex_ptr[q + 1] and ex_idx[lo] == item


@numba.njit(cache=True, nogil=True)
def _drain(hs, hi, size, out_s, out_i, row):
    """Write a heap's entries into ``out[row]``, best first (score descending, ties by smaller id);
    the row's slots past ``size`` keep what the caller filled them with (the padding)."""
    for r in range(size - 1, -1, -1):
        out_s[row, r], out_i[row, r] = hs[0], hi[0]
        if r:
            _heap_replace(hs, hi, r, hs[r], hi[r])  # the last entry to the root, the heap one shorter


@numba.njit(cache=True, nogil=True)
def _scan_tile(S, j0, q0, hs, hi, fill, ex_ptr, ex_idx, ex_pos, has_ex):
    """Fold the scores ``S (b, L)`` of queries ``q0 + r`` and items ``j0 + c`` into the heaps ``hs, hi (nq, k)``.

    ``fill[q]``: how many items query ``q``'s heap holds; ``ex_pos[q]``: its
    pointer into its excluded ids ``ex_idx[ex_ptr[q]:ex_ptr[q+1]]`` (sorted),
    past every excluded id below the last item it tested.
    """
    b, L = S.shape
    k = hs.shape[1]
    width = np.uint64(L)
    run = np.uint64(_RUN)
    for r in range(b):
        q = q0 + r
        row = S[r]
        hsq = hs[q]
        hiq = hi[q]
        cnt = fill[q]
        p = ex_pos[q] if has_ex else 0
        end = ex_ptr[q + 1] if has_ex else 0
        thr = hsq[0] if cnt == k else -np.inf
        c = np.uint64(0)
        while c < width:
            stop = min(c + run, width)
            above = 0
            for t in range(c, stop):  # unsigned indices: no wrap-around test, so LLVM vectorises the count
                above += row[t] > thr
            if above:
                for t in range(c, stop):
                    s = row[t]
                    if s > thr:
                        g = j0 + np.int64(t)
                        if has_ex:
                            while p < end and ex_idx[p] < g:
                                p += 1
                            if p < end and ex_idx[p] == g:
                                continue
                        if cnt < k:
                            _heap_push(hsq, hiq, cnt, s, g)
                            cnt += 1
                            if cnt == k:
                                thr = hsq[0]
                        else:
                            _heap_replace(hsq, hiq, k, s, g)
                            thr = hsq[0]
            c = stop
        fill[q] = cnt
        if has_ex:
            ex_pos[q] = p


def _mm(A, B, out):
    """``A @ B.T`` into ``out``: torch's GEMM (its BLAS)."""
    import torch

    return torch.mm(A, B.T, out=out)


def _onednn(A, B, out):
    """``A @ B.T`` of float32 ``A (m, d)``, ``B (n, d)``, a new tensor (``out`` unused): oneDNN's inner product."""
    import torch

    return torch.ops.mkldnn._linear_pointwise(A, B, None, "none", [], "")


_GEMM: dict = {}


def _gemm(dtype):
    """The GEMM for ``dtype``: oneDNN for float32 where torch has it and it computes ``A @ B.T``, else :func:`_mm`."""
    import torch

    if dtype != torch.float32:
        return _mm
    if "float32" not in _GEMM:
        fn = _mm
        try:
            if torch.backends.mkldnn.is_available():
                g = torch.Generator().manual_seed(0)
                A = torch.randint(-3, 4, (5, 7), generator=g).float()  # small integers: exact in any order
                B = torch.randint(-3, 4, (9, 7), generator=g).float()
                if torch.equal(_onednn(A, B, None), A @ B.T):
                    fn = _onednn
        except (AttributeError, RuntimeError):
            pass
        _GEMM["float32"] = fn
    return _GEMM["float32"]


def _tiles(nq: int, n: int, esize: int, memory_mb: int) -> tuple[int, int]:
    """``(b, L)``: queries and items per tile, ``b L esize`` at most ``min(memory_mb MiB, _TILE_BYTES)``."""
    budget = max(esize, min(int(memory_mb) << 20, _TILE_BYTES))
    if n * esize * min(nq, _TILE_QUERIES) <= budget:  # all items in one tile: as many queries as fit
        return max(1, min(nq, _MAX_QUERIES, budget // (n * esize))), n
    b = max(1, min(nq, _TILE_QUERIES, budget // esize))
    return b, max(1, min(n, budget // (esize * b)))


def exact_topk(queries, items, k: int, exclude=None, *, threads: int | None = None, memory_mb: int = 256):
    """Exact inner-product top-``k``: ``(scores float32 (nq, k), ids int64 (nq, k))``.

    ``queries (nq, d)``, ``items (n, d)``: NumPy or torch, floating point
    (float64 queries are scored in float64, anything else in float32).
    ``exclude``: ``None`` or a sparse ``(nq, n)`` of items never returned.
    Rows sorted by score descending, equal scores by the smaller id; where
    fewer than ``k`` items are admissible, padding ``ids = -1``,
    ``scores = -inf``. ``threads`` pins torch's pool (the GEMM's) for the
    call (restored after); ``memory_mb`` bounds one tile's score matrix
    (capped at 8 MiB, a cache-sized tile). See the module docstring for the
    tiles, the GEMM and the threshold scan.
    """
    import torch

    Q = _as_tensor(queries, "queries")
    X = _as_tensor(items, "items")
    if Q.shape[1] != X.shape[1]:
        raise ValueError(f"queries have dim {Q.shape[1]} but items have dim {X.shape[1]}")
    k = _check_k(k)
    threads = _check_threads(threads)
    nq, n = Q.shape[0], X.shape[0]
    exclude = _check_exclude(exclude, nq, n)
    dtype = torch.float64 if Q.dtype == torch.float64 else torch.float32
    Q = Q.to(dtype).contiguous()
    X = X.to(dtype).contiguous()
    scores_out = np.full((nq, k), -np.inf, np.float32)
    ids_out = np.full((nq, k), -1, np.int64)
    if nq == 0 or n == 0:
        return scores_out, ids_out
    np_dtype = np.float64 if dtype == torch.float64 else np.float32
    hs = np.full((nq, k), -np.inf, np_dtype)
    hi = np.full((nq, k), -1, np.int64)
    fill = np.zeros(nq, np.int64)
    if exclude is not None:
        ex_ptr = exclude.indptr.astype(np.int64)
        ex_idx = exclude.indices.astype(np.int64)
        ex_pos = ex_ptr[:-1].copy()
    else:
        ex_ptr = ex_idx = ex_pos = np.zeros(1, np.int64)
    b, L = _tiles(nq, n, Q.element_size(), memory_mb)
    gemm = _gemm(dtype)
    buf = torch.empty(b * L, dtype=dtype) if gemm is _mm else None  # oneDNN returns a new tensor
    with torch.no_grad(), _pools(threads):
        for j in range(0, n, L):
            chunk = X[j : j + L]
            width = chunk.shape[0]
            for start in range(0, nq, b):
                Qb = Q[start : start + b]
                out = None if buf is None else buf[: Qb.shape[0] * width].view(Qb.shape[0], width)
                S = gemm(Qb, chunk, out)
                _scan_tile(S.numpy(), j, start, hs, hi, fill, ex_ptr, ex_idx, ex_pos, exclude is not None)
    # Best first, equal (float32) scores by the smaller id; padding last.
    s = hs.astype(np.float32)
    order = np.lexsort((np.where(hi < 0, np.iinfo(np.int64).max, hi), -s), axis=1)
    s = np.take_along_axis(s, order, 1)
    i = np.take_along_axis(hi, order, 1)
    kk = min(k, n)
    scores_out[:, :kk] = s[:, :kk]
    ids_out[:, :kk] = np.where(np.isneginf(s[:, :kk]), -1, i[:, :kk])
    return scores_out, ids_out


class ExactIndex:
    """Exact float search by GEMM (:func:`exact_topk`) behind the index interface.

    ``ExactIndex(threads=None, memory_mb=256)``; ``build(items (n, d) float)``;
    ``search(queries (nq, d), k, exclude=None) -> (scores float32, ids int64)``,
    inner products descending, ties by smaller id, padding ``-inf`` / ``-1``;
    exclusion is exact (excluded scores are ``-inf`` before the selection).
    Holds the items as float32: ``4 d`` bytes per item.
    """

    name = "exact"
    kind = "float"
    metric = "inner_product"

    def __init__(self, threads: int | None = None, memory_mb: int = 256):
        self.threads = _check_threads(threads)
        self.memory_mb = int(memory_mb)
        self.items = None
        self.n_items = 0

    def build(self, items) -> "ExactIndex":
        from ._checks import _check_float

        self.items = _check_float(items, "items")
        self.n_items = len(self.items)
        return self

    def search(self, queries, k: int, exclude=None) -> tuple[np.ndarray, np.ndarray]:
        from ._checks import _check_float

        if self.items is None:
            raise RuntimeError("search before build: call build(items) first")
        queries = _check_float(queries, "queries", self.items.shape[1])
        return exact_topk(queries, self.items, k, exclude, threads=self.threads, memory_mb=self.memory_mb)

    def memory_bytes(self) -> int:
        if self.items is None:
            raise RuntimeError("search before build: call build(items) first")
        return int(self.items.nbytes)
