"""Hierarchical search with the re-rank in numba: Hamming top-C, then the top k by inner product, no (nq, C, d) gather.

:func:`hashrec_utils.retrieval.hierarchical_topk` runs the Hamming kernel for
the ``C`` candidates, then re-ranks them in NumPy, gathering a ``(nq, C, d)``
array per call; at Gowalla's shape the re-rank, not the scan, bounds its
throughput. :func:`fused_hierarchical_topk` does the re-rank in numba, one
query at a time, with no per-query allocation, after one of two scans:

``scan="hamming"`` (default): the byte-sliced Hamming kernel (8 queries share
each pass over the items), as
:func:`~hashrec_utils.retrieval.kernel.hamming_candidates`, gives the set of
the top ``C`` in id order (no sort by distance: the re-rank orders them
itself), in blocks of queries holding at most 64 MiB of candidates; the re-rank then scores the ``C`` ids
``s_j = <e_q, e_j>`` into a scratch row (independent gathers, which the CPU
overlaps) and keeps a sorted top ``k`` (``s`` descending, ties by smaller id).
At Gowalla's shape (``C = 100``, 2 threads, an idle machine) the scan takes about 0.17 s and
the re-rank 0.03 s, against about 0.5 s for the unfused call.

``scan="single"``: scan, top-C and re-rank in one pass per query:

1. **Scan.** ``D_j = popcount(q XOR x_j)`` for every item ``j`` in id order,
   over ``uint64`` words when ``K % 64 == 0`` (a vector ``popcnt`` per word
   on AVX-512, LLVM's vector ``ctpop`` elsewhere), else over bytes. A block of
   256 items is looked at only if its minimum distance is below the cut, then
   its sub-blocks of 32, their vectors of 8, then the items.
2. **Top-C by counting.** Distances are integers ``0..K``. Item ``j`` is a
   candidate iff it is not excluded and fewer than ``C`` admitted items
   have a distance ``<= D_j`` (they all have smaller ids, so they win the
   ties). With ``hist`` the histogram of the admitted distances, the cut
   ``t = min{m : sum_{d<=m} hist[d] >= C}`` (``K + 1`` while fewer than ``C``)
   only drops, and ``j`` is admitted iff ``D_j < t``. The admitted buffer
   (id order, ``2C + 64`` slots) is compacted to the ``C`` best when full:
   all ``D < t``, then the first (smallest-id) ones at ``D = t``.
3. **Re-rank** as above, the candidates taken in id order.

It is exact but, one query per pass, about 4x slower than the default at
Gowalla's shape (``benchmarks/bench_hierarchical.py`` prints both).

Excluded items (CSR ``exclude``, sorted indices) are never candidates; in the
single pass a pointer walks the query's excluded ids as ``j`` grows, moved
only for items that pass the cut. Rows with fewer than ``k`` admissible items are
padded with ``-inf`` / ``-1``.

The result is that of ``hierarchical_topk`` (same candidates, ties, order and
padding); scores are float32 sums in vector lanes and may differ from
NumPy's ``einsum`` in the last bits, so two scores closer than that may come
out in the other order (1 query in 29,858 at Gowalla's shape, C = 50).
``tests/retrieval/test_fused.py`` checks ids and scores against it,
``benchmarks/bench_hierarchical.py`` times both.
"""
from __future__ import annotations

import numba
import numpy as np
import scipy.sparse as sp

from .kernel import _popcount  # the one ctpop intrinsic of the package

__all__ = ["fused_hierarchical_topk"]

# the fused hierarchical kernel (Hamming cut + float re-rank): bump when its ids can change
VERSION = 1

_BLOCK = 256       # items per block, whose minimum distance is compared with the cut
_SUB = 32          # items per sub-block, looked at in a block that passes
_LANES = 8         # items per vector (8 uint64 words of AVX-512), looked at in a sub-block that passes
_QUERY_CHUNK = 64  # queries per parallel task (the task's scratch serves them all)
_RERANK_BYTES = 2**26  # scan='hamming': queries per Hamming call bounded by their (q, C) candidates' 12 C bytes




@numba.njit(cache=True, nogil=True, inline="always")
def _distance(qw, items, words, j):
    """``popcount(qw XOR item j)``, ``items`` flat with ``words`` words a row."""
    if words == 1:
        return _popcount(qw[0] ^ items[j])
    d = np.int64(0)
    for w in range(words):
        d += _popcount(qw[w] ^ items[words * j + w])
    return d


@numba.njit(cache=True, nogil=True, inline="always")
def _block_min(qw, items, words, b0, b1):
    """``min_{b0 <= j < b1} popcount(qw XOR item j)``: a pure reduction (no stores), which LLVM vectorises.

    Flat 1-D indexing, and the common widths (one or two words) spelled out.
    """
    low = np.int64(1 << 30)
    if words == 1:
        q0 = qw[0]
        for j in range(b0, b1):
            low = min(low, _popcount(q0 ^ items[j]))
    elif words == 2:
        q0, q1 = qw[0], qw[1]
        for j in range(b0, b1):
            low = min(low, _popcount(q0 ^ items[2 * j]) + _popcount(q1 ^ items[2 * j + 1]))
    else:
        for j in range(b0, b1):
            low = min(low, _distance(qw, items, words, j))
    return low


@numba.njit(cache=True, nogil=True, inline="always")
def _insert_top(top_s, top_i, filled, k, score, j):
    """Insert ``(score, j)`` into the sorted top-``k`` of ``filled`` entries (score descending, equal
    scores by smaller id), dropping what falls off the end; returns the new count."""
    if filled == k and (score < top_s[k - 1] or (score == top_s[k - 1] and j > top_i[k - 1])):
        return filled
    pos = filled if filled < k else k - 1
    while pos > 0 and (top_s[pos - 1] < score or (top_s[pos - 1] == score and top_i[pos - 1] > j)):
        top_s[pos] = top_s[pos - 1]
        top_i[pos] = top_i[pos - 1]
        pos -= 1
    top_s[pos] = score
    top_i[pos] = j
    return filled + 1 if filled < k else filled


@numba.njit(cache=True, nogil=True, fastmath=True)
def _dot(a, b):
    """``<a, b>`` in float32; fastmath lets LLVM sum in vector lanes (the order is fixed by the compiled code)."""
    s = np.float32(0.0)
    for c in range(a.shape[0]):
        s += a[c] * b[c]
    return s


@numba.njit(cache=True, nogil=True, inline="always")
def _query(q, qwords, items, query_emb, item_emb, C, k, bits, ex_ptr, ex_idx, has_ex,
           cand_d, cand_i, hist, top_s, top_i, out_s, out_i):
    """One query: scan, top-C by counting, re-rank; writes row ``q`` of ``out_s``, ``out_i``."""
    words = qwords.shape[1]
    n = items.shape[0] // words
    cap = cand_d.shape[0]
    qw = qwords[q]
    hist[:] = 0
    cut = bits + 1   # admit D < cut
    below = 0        # admitted items with D < cut (always < C)
    m = 0            # items in the buffer
    p = ex_ptr[q] if has_ex else 0
    p_end = ex_ptr[q + 1] if has_ex else 0
    for b0 in range(0, n, _BLOCK):
        b1 = min(b0 + _BLOCK, n)
        if _block_min(qw, items, words, b0, b1) >= cut:
            continue
        for s0 in range(b0, b1, _SUB):  # a hit: narrow it down to sub-blocks, vectors, then items
            s1 = min(s0 + _SUB, b1)
            if _block_min(qw, items, words, s0, s1) >= cut:
                continue
            for v0 in range(s0, s1, _LANES):
                v1 = min(v0 + _LANES, s1)
                if _block_min(qw, items, words, v0, v1) >= cut:
                    continue
                for j in range(v0, v1):
                    d = _distance(qw, items, words, j)
                    if d >= cut:
                        continue
                    if has_ex:
                        while p < p_end and ex_idx[p] < j:
                            p += 1
                        if p < p_end and ex_idx[p] == j:
                            continue
                    if m == cap:  # compact to the C best: every D < cut, then the smallest ids at D = cut
                        ties = C - below
                        w = 0
                        for s in range(m):
                            ds = cand_d[s]
                            if ds < cut or (ds == cut and ties > 0):
                                if ds == cut:
                                    ties -= 1
                                cand_d[w] = ds
                                cand_i[w] = cand_i[s]
                                w += 1
                        m = w
                        hist[:] = 0
                        for s in range(m):
                            hist[cand_d[s]] += 1
                    cand_d[m] = d
                    cand_i[m] = j
                    m += 1
                    hist[d] += 1
                    below += 1
                    while below >= C:
                        cut -= 1
                        below -= hist[cut]

    # Re-rank the C candidates (id order) into a sorted top-k: score descending, ties by smaller id.
    qe = query_emb[q]
    filled = 0
    ties = C - below
    for s in range(m):
        ds = cand_d[s]
        if ds > cut or (ds == cut and ties <= 0):
            continue
        if ds == cut:
            ties -= 1
        j = cand_i[s]
        filled = _insert_top(top_s, top_i, filled, k, _dot(qe, item_emb[j]), j)
    for r in range(filled):
        out_s[q, r] = top_s[r]
        out_i[q, r] = top_i[r]


@numba.njit(cache=True, nogil=True)
def _task(q0, q1, qwords, items, query_emb, item_emb, C, k, bits, ex_ptr, ex_idx, has_ex, out_s, out_i):
    """Queries ``q0..q1`` with one set of scratch, allocated here (so LLVM knows it aliases nothing)."""
    cap = 2 * C + 64
    cand_d = np.empty(cap, np.int64)
    cand_i = np.empty(cap, np.int64)
    hist = np.empty(bits + 2, np.int64)
    top_s = np.empty(k, np.float32)
    top_i = np.empty(k, np.int64)
    for q in range(q0, q1):
        _query(q, qwords, items, query_emb, item_emb, C, k, bits, ex_ptr, ex_idx, has_ex,
               cand_d, cand_i, hist, top_s, top_i, out_s, out_i)


@numba.njit(parallel=True, cache=True, nogil=True)
def _fused_kernel(qwords, items, query_emb, item_emb, C, k, bits, ex_ptr, ex_idx, has_ex, out_s, out_i):
    nq = qwords.shape[0]
    n_tasks = (nq + _QUERY_CHUNK - 1) // _QUERY_CHUNK
    for t in numba.prange(n_tasks):
        _task(t * _QUERY_CHUNK, min((t + 1) * _QUERY_CHUNK, nq), qwords, items, query_emb, item_emb, C, k, bits,
              ex_ptr, ex_idx, has_ex, out_s, out_i)


@numba.njit(parallel=True, cache=True, nogil=True)
def _rerank_kernel(cand, query_emb, item_emb, k, out_s, out_i):
    """Per query ``q``: the top ``k`` of candidate ids ``cand[q]`` (``-1`` padding at the end) by
    ``<e_q, e_i>``, descending, ties by smaller id; gathers one embedding row at a time (nothing of shape
    ``(nq, C, d)``). All ``C`` scores first (independent loads the CPU overlaps), then the selection."""
    nq, C = cand.shape
    n_tasks = (nq + _QUERY_CHUNK - 1) // _QUERY_CHUNK
    for t in numba.prange(n_tasks):
        scores = np.empty(C, np.float32)
        top_s = np.empty(k, np.float32)
        top_i = np.empty(k, np.int64)
        for q in range(t * _QUERY_CHUNK, min((t + 1) * _QUERY_CHUNK, nq)):
            qe = query_emb[q]
            m = 0
            while m < C and cand[q, m] >= 0:
                scores[m] = _dot(qe, item_emb[cand[q, m]])
                m += 1
            filled = 0
            for c in range(m):
                filled = _insert_top(top_s, top_i, filled, k, scores[c], cand[q, c])
            for r in range(filled):
                out_s[q, r] = top_s[r]
                out_i[q, r] = top_i[r]


# --------------------------------------------------------------------------
# checks and the public call
# --------------------------------------------------------------------------


def _codes(x, name: str) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype != np.uint8:
        raise TypeError(f"{name} must be packed np.uint8 codes (np.packbits rows); got dtype {x.dtype}")
    if x.ndim != 2 or x.shape[1] == 0:
        raise ValueError(f"{name} must be 2-D (n, bits/8) with at least one byte a row; got shape {x.shape}")
    return np.ascontiguousarray(x)


def _emb(x, name: str) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype != np.float32:
        raise TypeError(f"{name} must be np.float32; got dtype {x.dtype}")
    if x.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n, d); got shape {x.shape}")
    return np.ascontiguousarray(x)


def _positive(x, name: str) -> int:
    if isinstance(x, (bool, np.bool_)) or not isinstance(x, (int, np.integer)) or x <= 0:
        raise ValueError(f"{name} must be a positive integer; got {x!r}")
    return int(x)


def _words(codes: np.ndarray) -> np.ndarray:
    """Packed rows as uint64 words when the width allows (popcount of XOR ignores byte order), else bytes."""
    return codes.view(np.uint64) if codes.shape[1] % 8 == 0 else codes


def fused_hierarchical_topk(query_codes, item_codes, query_emb, item_emb, k: int, candidates: int, exclude=None,
                            *, threads: int | None = None, scan: str = "hamming") -> tuple[np.ndarray, np.ndarray]:
    """Hierarchical search fused in one kernel: Hamming top-``candidates``, then top-``k`` by inner product.

    ``query_codes (nq, K/8)``, ``item_codes (n, K/8)``: packed ``np.uint8``
    (``np.packbits`` rows, any ``K`` multiple of 8); ``query_emb (nq, d)``,
    ``item_emb (n, d)``: ``np.float32``; ``exclude``: ``None`` or a sparse
    ``(nq, n)`` matrix of items never to return (nonzeros count).

    Candidates ``S_q`` = the ``C = candidates`` admissible items of smallest
    ``popcount(q XOR x_i)``, ties by smaller id; returns float32 scores and
    int64 ids ``(nq, k)``: the ``k`` items of ``S_q`` with the largest
    ``<e_q, e_i>``, descending, ties by smaller id; padding ``-inf`` / ``-1``
    when fewer than ``k`` items are admissible. The ids of
    :func:`hashrec_utils.retrieval.hierarchical_topk` with ``candidates >= k``.
    ``threads`` pins numba's pool for the call (restored afterwards); results
    do not depend on it.

    ``scan`` picks how the candidates are found (same results either way):
    ``"hamming"`` (default, the faster at Gowalla's shape) runs
    :func:`~hashrec_utils.retrieval.kernel.hamming_candidates` for the top
    ``C`` of each block of ``max(1024, _RERANK_BYTES // (12 C))`` queries, then the
    numba re-rank (memory ``12 C`` bytes a query of the block); ``"single"`` does
    scan, top-C and re-rank in one pass per query (memory ``O(C + K)`` a task).
    """
    qc = _codes(query_codes, "query_codes")
    ic = _codes(item_codes, "item_codes")
    if ic.shape[1] != qc.shape[1]:
        raise ValueError(f"item_codes rows have {ic.shape[1]} bytes but query_codes rows have {qc.shape[1]}")
    qe = _emb(query_emb, "query_emb")
    ie = _emb(item_emb, "item_emb")
    if len(qe) != len(qc):
        raise ValueError(f"query_emb has {len(qe)} rows but query_codes has {len(qc)}")
    if len(ie) != len(ic):
        raise ValueError(f"item_emb has {len(ie)} rows but item_codes has {len(ic)}")
    if qe.shape[1] != ie.shape[1]:
        raise ValueError(f"query_emb has dim {qe.shape[1]} but item_emb has dim {ie.shape[1]}")
    k = _positive(k, "k")
    C = _positive(candidates, "candidates")
    if C < k:
        raise ValueError(f"candidates ({C}) must be at least k ({k})")
    if threads is not None:
        threads = _positive(threads, "threads")
    if scan not in ("hamming", "single"):
        raise ValueError(f"scan must be 'hamming' or 'single'; got {scan!r}")
    nq, n = len(qc), len(ic)
    if exclude is not None:
        if not sp.issparse(exclude):
            raise TypeError(f"exclude must be a scipy sparse matrix (queries x items); got {type(exclude).__name__}")
        if exclude.shape != (nq, n):
            raise ValueError(f"exclude must have shape {(nq, n)}; got {exclude.shape}")
        exclude = sp.csr_matrix(exclude, copy=True)
        exclude.eliminate_zeros()  # an explicit zero excludes nothing
        exclude.sort_indices()
        ex_ptr, ex_idx = exclude.indptr.astype(np.int64), exclude.indices.astype(np.int64)
    else:
        ex_ptr = ex_idx = np.zeros(1, np.int64)
    out_s = np.full((nq, k), -np.inf, np.float32)
    out_i = np.full((nq, k), -1, np.int64)
    if nq == 0 or n == 0:
        return out_s, out_i
    old = numba.get_num_threads()
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS) if threads else old)
    try:
        if scan == "single":
            _fused_kernel(_words(qc), _words(ic).reshape(-1), qe, ie, C, k, 8 * qc.shape[1], ex_ptr, ex_idx,
                          exclude is not None, out_s, out_i)
        else:
            from .kernel import hamming_candidates

            step = max(1024, _RERANK_BYTES // (12 * C))
            for s0 in range(0, nq, step):
                s1 = min(s0 + step, nq)
                cand = hamming_candidates(qc[s0:s1], ic, C, None if exclude is None else exclude[s0:s1],
                                          threads=threads)
                _rerank_kernel(cand, qe[s0:s1], ie, k, out_s[s0:s1], out_i[s0:s1])
    finally:
        numba.set_num_threads(old)
    return out_s, out_i
