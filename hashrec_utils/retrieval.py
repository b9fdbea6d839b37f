"""Retrieval: exact Hamming top-k, hierarchical search, and Faiss indexes behind one interface.

Every index answers ``build(items)`` then ``search(queries, k, exclude=None) -> (D, I)``:
``D``, ``I`` of shape ``(n_queries, k)``, best first; ``exclude`` an optional
CSR ``(n_queries, n_items)`` of items never to return (train items); rows
with fewer than ``k`` admissible items are padded with ``I = -1`` and the
worst value in ``D`` (``bits + 1`` for Hamming distances, ``-inf`` for inner
products). ``memory_bytes()`` is what the index holds.
:class:`HierarchicalIndex` is the one exception: it needs both the codes and
the continuous embeddings (``build(codes, emb)``, ``search(codes, emb, k)``).

Binary codes travel packed: ``np.uint8`` rows from ``np.packbits`` (Faiss's
layout), ``K/8`` bytes per row; the Hamming distance of codes ``x, y`` is
``popcount(x XOR y)``.

:class:`HammingIndex` is hashrec's own exact kernel (numba). Faiss's
``IndexBinaryFlat`` computes one scalar ``popcnt`` per 64-bit word and
pushes into a heap. Ours

* stores the item codes word-major (``words[w, j]`` = word ``w`` of item
  ``j``), so that for every word the items are one contiguous stream that LLVM
  vectorises: four items per AVX2 instruction, popcount by nibble lookup
  (``pshufb``) and byte sums (``psadbw``);
* walks a block of 16 queries over one L1-sized tile of items, so each tile
  is read from memory once per block rather than once per query;
* selects the top k by counting. Distances are integers ``0..K``; per query
  a histogram of the accepted distances gives the running k-th distance
  ``t``, and only an item with ``d < t`` can enter. A chunk of 128 items is
  tested at once, branch-free, as ``OR_j (d_j - t) < 0``, so the common case
  (no item of the chunk beats ``t``) costs no branch per item.

Ties are broken by the smaller item id, exactly: items arrive in id order, and
an item that only ties the k-th distance can never displace a smaller id.
``tests/test_retrieval.py`` checks distances against Faiss and ids against a
brute-force reference; ``benchmarks/bench_retrieval.py`` times it against
Faiss.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import numba
import numpy as np
import scipy.sparse as sp
from numba import types
from numba.extending import intrinsic

__all__ = [
    "hamming_distances",
    "hamming_topk",
    "hierarchical_topk",
    "continuous_topk",
    "HammingIndex",
    "HierarchicalIndex",
    "FaissIndex",
    "IndexFlatIP",
    "IndexHNSWFlat",
    "IndexNSGFlat",
    "IndexIVFFlat",
    "IndexIVFPQ",
    "IndexBinaryFlat",
    "IndexBinaryHNSW",
    "IndexBinaryIVF",
    "IndexBinaryMultiHash",
    "make_index",
    "INDEXES",
]

# --------------------------------------------------------------------------
# input checks: one clear error naming the argument
# --------------------------------------------------------------------------


def _check_codes(codes, name: str, bits: int | None = None) -> np.ndarray:
    """Packed codes: a 2-D ``np.uint8`` array, ``bits/8`` bytes per row."""
    codes = np.asarray(codes)
    if codes.dtype != np.uint8:
        raise TypeError(f"{name} must be packed np.uint8 codes (np.packbits rows); got dtype {codes.dtype}")
    if codes.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n, bits/8); got shape {codes.shape}")
    if codes.shape[1] == 0:
        raise ValueError(f"{name} rows are empty (0 bytes)")
    if bits is not None and codes.shape[1] * 8 != bits:
        raise ValueError(f"{name} rows have {codes.shape[1]} bytes = {codes.shape[1] * 8} bits; the index has {bits}")
    return np.ascontiguousarray(codes)


def _check_float(x, name: str, dim: int | None = None) -> np.ndarray:
    """Finite floating-point vectors, 2-D, returned as C-contiguous float32."""
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n, d); got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.floating):
        raise TypeError(f"{name} must be floating point; got dtype {x.dtype}")
    if dim is not None and x.shape[1] != dim:
        raise ValueError(f"{name} has dim {x.shape[1]}; the index has {dim}")
    x = np.ascontiguousarray(x, dtype=np.float32)
    if not np.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return x


def _check_k(k, name: str = "k") -> int:
    if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer)) or k <= 0:
        raise ValueError(f"{name} must be a positive integer; got {k!r}")
    return int(k)


def _check_exclude(exclude, n_queries: int, n_items: int) -> sp.csr_matrix | None:
    """``None`` or a CSR ``(n_queries, n_items)`` with sorted column indices."""
    if exclude is None:
        return None
    if not sp.issparse(exclude):
        raise TypeError(f"exclude must be a scipy sparse matrix (queries x items); got {type(exclude).__name__}")
    exclude = sp.csr_matrix(exclude)
    if exclude.shape != (n_queries, n_items):
        raise ValueError(f"exclude must have shape {(n_queries, n_items)}; got {exclude.shape}")
    if not exclude.has_sorted_indices:
        exclude = exclude.copy()
        exclude.sort_indices()
    return exclude


def hamming_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """All-pairs Hamming distances ``popcount(a_i XOR b_j)``: ``(n, K/8) x (m, K/8) -> int32 (n, m)``.

    The plain-NumPy reference the kernel is tested against; memory ``n*m*K/8``.
    """
    a = _check_codes(a, "a")
    b = _check_codes(b, "b", a.shape[1] * 8)
    return np.bitwise_count(a[:, None, :] ^ b[None, :, :]).sum(axis=2, dtype=np.int32)


# --------------------------------------------------------------------------
# the kernel
# --------------------------------------------------------------------------

_QUERY_BLOCK = 16     # queries that share one pass over an item tile
_TILE_BYTES = 32_768  # one tile of item words fills L1d (32 KiB on current x86 cores)
_CHUNK = 128          # items tested at once against the running k-th distance


@intrinsic
def _popcount(typingctx, x):
    """Hardware population count (LLVM ``ctpop``) of an unsigned word, as int64.

    NumPy's ``bitwise_count`` is not supported inside numba; ``ctpop`` is what
    LLVM lowers to ``popcnt`` for scalars and vectorises for AVX2.
    """
    if not isinstance(x, types.Integer) or x.signed:
        return None

    def codegen(context, builder, signature, args):
        count = builder.ctpop(args[0])
        return builder.zext(count, context.get_value_type(types.int64)) if x.bitwidth < 64 else count

    return types.int64(x), codegen


def _words(codes: np.ndarray) -> np.ndarray:
    """Packed ``uint8`` rows ``(n, K/8)`` -> machine words ``(n, W)``, zero-padded.

    ``uint64`` words when ``K % 64 == 0``, else ``uint32`` (at most 3 padding
    bytes). Zero padding on both sides adds nothing to ``popcount(x XOR y)``;
    the byte order inside a word is irrelevant for the same reason.
    """
    n, nbytes = codes.shape
    size = 8 if nbytes % 8 == 0 else 4
    pad = (-nbytes) % size
    if pad:
        codes = np.concatenate([codes, np.zeros((n, pad), np.uint8)], axis=1)
    return np.ascontiguousarray(codes).view(np.uint64 if size == 8 else np.uint32)


@numba.njit(cache=True, nogil=True)
def _accept(r, j, d, t, k, cand_d, cand_i, n_cand, hist, below):
    """Add item ``j`` at distance ``d < t`` to query row ``r``'s candidates; return the new cut-off.

    Invariant: ``below[r]`` counts the candidates with ``d < t``; once it
    reaches ``k``, ``t`` drops to the k-th smallest candidate distance.
    """
    if n_cand[r] == cand_d.shape[1]:
        # Full: keep every candidate below t and, of those at t, the smaller ids (the buffer is in id order).
        ties = k - below[r]
        m = 0
        for s in range(n_cand[r]):
            ds = cand_d[r, s]
            if ds < t or (ds == t and ties > 0):
                if ds == t:
                    ties -= 1
                cand_d[r, m] = ds
                cand_i[r, m] = cand_i[r, s]
                m += 1
        n_cand[r] = m
        hist[r, :] = 0
        for s in range(m):
            hist[r, cand_d[r, s]] += 1
    c = n_cand[r]
    cand_d[r, c] = d
    cand_i[r, c] = j
    n_cand[r] = c + 1
    hist[r, d] += 1
    below[r] += 1
    while below[r] >= k:
        t -= 1
        below[r] -= hist[r, t]
    return t


@numba.njit(cache=True, fastmath=True, nogil=True)
def _topk_block(qw, iw, q0, q1, k, bits, tile, out_d, out_i, ex_ptr, ex_idx, has_ex):
    """Exact top-k of queries ``q0..q1`` (rows of ``qw (nq, W)``) over items ``iw (W, n)``, word-major."""
    nw, n = iw.shape
    nb = q1 - q0
    cap = min(2 * k + _CHUNK, n)  # candidate buffer; compacted to k when full
    cand_d = np.empty((nb, cap), np.int64)
    cand_i = np.empty((nb, cap), np.int64)
    n_cand = np.zeros(nb, np.int64)
    hist = np.zeros((nb, bits + 2), np.int64)
    below = np.zeros(nb, np.int64)
    cut = np.full(nb, bits + 1, np.int64)  # accept d < cut
    ptr = np.zeros(nb, np.int64)           # next excluded item of each query (CSR merge)
    if has_ex:
        for r in range(nb):
            ptr[r] = ex_ptr[q0 + r]
    dist = np.empty(tile, np.int64)
    first = iw[0]  # 1-D rows: with 2-D indexing numba's negative-index wrap defeats LLVM's vectoriser
    for t0 in range(0, n, tile):
        t1 = min(t0 + tile, n)
        for r in range(nb):
            q = q0 + r
            qv = qw[q, 0]
            if nw > 1:
                # Multi-word codes: sum word by word over the tile; each pass is one contiguous vectorised stream.
                for j in range(t0, t1):
                    dist[np.uint64(j - t0)] = _popcount(qv ^ first[np.uint64(j)])
                for w in range(1, nw):
                    qv_w = qw[q, w]
                    row = iw[w]
                    for j in range(t0, t1):
                        dist[np.uint64(j - t0)] += _popcount(qv_w ^ row[np.uint64(j)])
            t = cut[r]
            for c0 in range(t0, t1, _CHUNK):
                c1 = min(c0 + _CHUNK, t1)
                # Branch-free test of the whole chunk: the sign bit of OR(d - t) is set iff some d < t.
                acc = 0
                if nw == 1:
                    for j in range(c0, c1):
                        acc |= _popcount(qv ^ first[np.uint64(j)]) - t
                else:
                    for j in range(c0 - t0, c1 - t0):
                        acc |= dist[np.uint64(j)] - t
                if acc >= 0:
                    continue
                for j in range(c0, c1):
                    d = _popcount(qv ^ first[np.uint64(j)]) if nw == 1 else dist[j - t0]
                    if d >= t:
                        continue
                    if has_ex:
                        end = ex_ptr[q + 1]
                        p = ptr[r]
                        while p < end and ex_idx[p] < j:
                            p += 1
                        ptr[r] = p
                        if p < end and ex_idx[p] == j:
                            continue
                    t = _accept(r, j, d, t, k, cand_d, cand_i, n_cand, hist, below)
            cut[r] = t
    for r in range(nb):
        m = n_cand[r]
        order = np.argsort(cand_d[r, :m], kind="mergesort")  # stable: equal distances stay in id order
        for s in range(min(k, m)):
            out_d[q0 + r, s] = cand_d[r, order[s]]
            out_i[q0 + r, s] = cand_i[r, order[s]]


@numba.njit(parallel=True, cache=True, nogil=True)
def _topk_kernel(qw, iw, k, bits, block, tile, out_d, out_i, ex_ptr, ex_idx, has_ex):
    nq = qw.shape[0]
    n_blocks = (nq + block - 1) // block
    for b in numba.prange(n_blocks):
        q0 = b * block
        _topk_block(qw, iw, q0, min(q0 + block, nq), k, bits, tile, out_d, out_i, ex_ptr, ex_idx, has_ex)


@contextmanager
def _numba_threads(threads: int | None) -> Iterator[int]:
    """Run with ``threads`` numba threads (capped at the pool size), restoring the previous count."""
    old = numba.get_num_threads()
    n = min(int(threads), numba.config.NUMBA_NUM_THREADS) if threads else old
    numba.set_num_threads(n)
    try:
        yield n
    finally:
        numba.set_num_threads(old)


def _check_threads(threads) -> int | None:
    if threads is not None and (not isinstance(threads, (int, np.integer)) or threads <= 0):
        raise ValueError(f"threads must be a positive integer or None; got {threads!r}")
    return None if threads is None else int(threads)


def _hamming_search(qw: np.ndarray, iw: np.ndarray, k: int, bits: int, exclude, threads):
    """Kernel call on prepared words: ``qw (nq, W)``, ``iw (W, n)`` -> int32 distances, int64 ids."""
    nq, n = qw.shape[0], iw.shape[1]
    out_d = np.full((nq, k), bits + 1, np.int32)
    out_i = np.full((nq, k), -1, np.int64)
    if nq == 0 or n == 0:
        return out_d, out_i
    if exclude is not None:
        ex_ptr, ex_idx = exclude.indptr.astype(np.int64), exclude.indices.astype(np.int64)
    else:
        ex_ptr = ex_idx = np.zeros(1, np.int64)
    tile = max(_CHUNK, _TILE_BYTES // (iw.shape[0] * iw.itemsize) // _CHUNK * _CHUNK)
    with _numba_threads(threads) as n_threads:
        # Small batches: shrink the block so that every thread gets one.
        block = max(1, min(_QUERY_BLOCK, -(-nq // n_threads)))
        _topk_kernel(qw, iw, k, bits, block, tile, out_d, out_i, ex_ptr, ex_idx, exclude is not None)
    return out_d, out_i


def hamming_topk(query_codes: np.ndarray, item_codes: np.ndarray, k: int, exclude=None, *,
                 threads: int | None = None, return_distances: bool = False):
    """Exact top-``k`` items by Hamming distance, ties by smaller id, ``exclude`` never returned.

    ``query_codes (nq, K/8)`` and ``item_codes (n, K/8)``: packed ``np.uint8``.
    Returns int64 ids ``(nq, k)`` (``-1`` padding) and, with
    ``return_distances``, ``(ids, distances)`` with int32 distances
    (``K + 1`` for padding). One-off convenience over :class:`HammingIndex`.
    """
    q = _check_codes(query_codes, "query_codes")
    index = HammingIndex(q.shape[1] * 8, threads=threads).build(_check_codes(item_codes, "item_codes", q.shape[1] * 8))
    dist, ids = index.search(q, k, exclude)
    return (ids, dist) if return_distances else ids


def continuous_topk(user_emb: np.ndarray, item_emb: np.ndarray, k: int, exclude=None) -> np.ndarray:
    """Exact inner-product top-``k`` (the one ranking function, :func:`hashrec_utils.metrics.rank_topk`)."""
    from .metrics import rank_topk

    return rank_topk(user_emb, item_emb, k, exclude=exclude)


def _rerank(cand: np.ndarray, query_emb: np.ndarray, item_emb: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Re-rank candidate ids ``(nq, C)`` (``-1`` padded) by ``<e_q, e_i>``, descending, ties by smaller id.

    Returns float32 scores and int64 ids ``(nq, k)``; padding ``-inf`` / ``-1``.
    """
    valid = cand >= 0
    safe = np.where(valid, cand, 0)
    scores = np.einsum("qd,qcd->qc", query_emb, item_emb[safe]).astype(np.float32)
    scores[~valid] = -np.inf
    order = np.lexsort((np.where(valid, cand, np.iinfo(np.int64).max), -scores), axis=1)[:, :k]
    ids = np.take_along_axis(cand, order, 1)
    top = np.take_along_axis(scores, order, 1)
    ids[np.isneginf(top)] = -1
    if ids.shape[1] < k:
        pad = k - ids.shape[1]
        ids = np.pad(ids, ((0, 0), (0, pad)), constant_values=-1)
        top = np.pad(top, ((0, 0), (0, pad)), constant_values=-np.inf)
    return top, ids


def hierarchical_topk(query_codes, item_codes, user_emb, item_emb, k: int, candidates: int = 100, exclude=None,
                      *, threads: int | None = None) -> np.ndarray:
    """HashGNN's hierarchical search: Hamming top-``candidates``, re-ranked by the inner product; ids ``(nq, k)``."""
    k = _check_k(k)
    if candidates < k:
        raise ValueError(f"candidates ({candidates}) must be at least k ({k})")
    index = HierarchicalIndex(np.shape(query_codes)[-1] * 8, candidates=candidates, threads=threads)
    return index.build(item_codes, item_emb).search(query_codes, user_emb, k, exclude)[1]


# --------------------------------------------------------------------------
# hashrec's indexes
# --------------------------------------------------------------------------


class HammingIndex:
    """Exact Hamming top-k over packed codes with hashrec's numba kernel.

    ``HammingIndex(bits, threads=None)``; ``build(codes (n, bits/8) uint8)``;
    ``search(queries (nq, bits/8) uint8, k, exclude=None) -> (D int32, I int64)``,
    ``D[q, r] = popcount(queries[q] XOR codes[I[q, r]])`` ascending, ties by
    smaller id, padding ``D = bits + 1``, ``I = -1``. ``threads`` pins numba's
    pool during a search (``None``: numba's current setting); results do not
    depend on it. Holds the codes as machine words: ``ceil(bits/64) * 8``
    bytes per item (``ceil(bits/32) * 4`` when ``bits % 64 != 0``).
    """

    kind = "binary"

    def __init__(self, bits: int, threads: int | None = None):
        if not isinstance(bits, (int, np.integer)) or bits <= 0 or bits % 8:
            raise ValueError(f"bits must be a positive multiple of 8; got {bits!r}")
        self.bits, self.threads = int(bits), _check_threads(threads)
        self.words: np.ndarray | None = None  # (W, n) word-major item codes

    def build(self, items: np.ndarray) -> "HammingIndex":
        self.words = np.ascontiguousarray(_words(_check_codes(items, "items", self.bits)).T)
        return self

    @property
    def n_items(self) -> int:
        return self._built().shape[1]

    def _built(self) -> np.ndarray:
        if self.words is None:
            raise RuntimeError("search before build: call build(items) first")
        return self.words

    def search(self, queries: np.ndarray, k: int, exclude=None) -> tuple[np.ndarray, np.ndarray]:
        words = self._built()
        q = _check_codes(queries, "queries", self.bits)
        k = _check_k(k)
        exclude = _check_exclude(exclude, len(q), words.shape[1])
        return _hamming_search(_words(q), words, k, self.bits, exclude, self.threads)

    def memory_bytes(self) -> int:
        return int(self._built().nbytes)


class HierarchicalIndex:
    """Hamming top-``candidates``, then exact inner-product re-rank (HashGNN's hierarchical search).

    Unlike the other indexes it needs both representations of every item and query:

    * ``build(item_codes (n, bits/8) uint8, item_emb (n, d) float)``
    * ``search(query_codes (nq, bits/8) uint8, query_emb (nq, d) float, k, exclude=None) -> (D, I)``

    ``I`` = the ``k`` of the ``C = max(candidates, k)`` Hamming nearest
    (ties by id, ``exclude`` removed) with the largest ``<e_q, e_i>``;
    ``D`` = those inner products, descending (ties by smaller id), padding
    ``-inf`` / ``-1``. Memory: the codes plus the float32 embeddings.
    """

    kind = "hierarchical"

    def __init__(self, bits: int, candidates: int = 100, threads: int | None = None):
        self.hamming = HammingIndex(bits, threads)
        self.candidates = _check_k(candidates, "candidates")
        self.item_emb: np.ndarray | None = None

    @property
    def bits(self) -> int:
        return self.hamming.bits

    def build(self, item_codes: np.ndarray, item_emb: np.ndarray) -> "HierarchicalIndex":
        item_emb = _check_float(item_emb, "item_emb")
        if len(item_emb) != len(item_codes):
            raise ValueError(f"item_codes has {len(item_codes)} rows but item_emb has {len(item_emb)}")
        self.hamming.build(item_codes)
        self.item_emb = item_emb
        return self

    def search(self, query_codes, query_emb, k: int, exclude=None) -> tuple[np.ndarray, np.ndarray]:
        self.hamming._built()
        k = _check_k(k)
        query_emb = _check_float(query_emb, "query_emb", self.item_emb.shape[1])
        if len(query_emb) != len(query_codes):
            raise ValueError(f"query_codes has {len(query_codes)} rows but query_emb has {len(query_emb)}")
        _, cand = self.hamming.search(query_codes, max(self.candidates, k), exclude)
        scores = np.empty((len(cand), k), np.float32)
        ids = np.empty((len(cand), k), np.int64)
        step = max(1, 2**24 // (cand.shape[1] * self.item_emb.shape[1]))  # bound the gathered (q, C, d) block
        for s in range(0, len(cand), step):
            scores[s : s + step], ids[s : s + step] = _rerank(cand[s : s + step], query_emb[s : s + step], self.item_emb, k)
        return scores, ids

    def memory_bytes(self) -> int:
        return self.hamming.memory_bytes() + int(self.item_emb.nbytes)


# --------------------------------------------------------------------------
# Faiss indexes behind the same interface
# --------------------------------------------------------------------------


@contextmanager
def _faiss_threads(threads: int | None) -> Iterator[None]:
    """Pin Faiss's OpenMP pool to ``threads`` for one call, restoring it afterwards."""
    import faiss

    old = faiss.omp_get_max_threads()
    if threads:
        faiss.omp_set_num_threads(int(threads))
    try:
        yield
    finally:
        faiss.omp_set_num_threads(old)


def _excluded(ids: np.ndarray, exclude: sp.csr_matrix) -> np.ndarray:
    """``mask[q, r] = ids[q, r] in exclude[q]`` (``-1`` never), by binary search in the sorted keys ``q*n + i``."""
    n = np.int64(exclude.shape[1])
    rows = np.repeat(np.arange(exclude.shape[0], dtype=np.int64), np.diff(exclude.indptr))
    keys = rows * n + exclude.indices
    if not len(keys):
        return np.zeros(ids.shape, bool)
    query = np.arange(ids.shape[0], dtype=np.int64)[:, None] * n + ids
    pos = np.minimum(np.searchsorted(keys, query), len(keys) - 1)
    return (keys[pos] == query) & (ids >= 0)


class FaissIndex:
    """A Faiss index behind hashrec's interface; subclasses name the Faiss index they wrap.

    ``search`` returns, for float indexes, inner products ``<q, x>``
    descending (padding ``-inf``) and, for binary ones, int32 Hamming
    distances ascending (padding ``bits + 1``). Exclusion searches
    ``k + max_q |exclude_q|`` and drops excluded ids, which is exact for the
    exact indexes. ``threads`` pins ``faiss.omp_set_num_threads`` during build
    and search (restored afterwards), so timings compare like with like.
    Parameters carry the names of the Faiss attributes they set (``M``,
    ``efSearch``, ``nprobe``, ...); search-time ones can be changed without a
    rebuild with :meth:`set_search_params`.
    """

    name = ""
    kind = "float"
    metric = "inner_product"
    BUILD: dict = {}   # build-time parameters and defaults
    SEARCH: dict = {}  # search-time parameters and defaults

    def __init__(self, *, threads: int | None = None, **params):
        allowed = {**self.BUILD, **self.SEARCH}
        unknown = sorted(set(params) - set(allowed))
        if unknown:
            raise ValueError(f"{type(self).__name__} has no parameter {', '.join(map(repr, unknown))}; "
                             f"it takes {', '.join(allowed) or 'none'}")
        self.params = {**allowed, **params}
        self.threads = _check_threads(threads)
        self.index = None
        self.dim = 0
        self.n_items = 0

    # -- subclass hooks ------------------------------------------------------
    def _make(self, dim: int):
        raise NotImplementedError

    def _apply_search_params(self) -> None:
        pass

    # -- the interface -------------------------------------------------------
    def _check_items(self, x, name: str, dim: int | None = None) -> np.ndarray:
        if self.kind == "binary":
            return _check_codes(x, name, dim)
        return _check_float(x, name, dim)

    def build(self, items: np.ndarray) -> "FaissIndex":
        items = self._check_items(items, "items")
        self.dim = items.shape[1] * 8 if self.kind == "binary" else items.shape[1]
        with _faiss_threads(self.threads):
            index = self._make(self.dim)
            items = self._transform_items(items)
            if not index.is_trained:
                index.train(items)
            index.add(items)
        self.index, self.n_items = index, len(items)
        self._apply_search_params()
        return self

    def _transform_items(self, items: np.ndarray) -> np.ndarray:
        return items

    def _transform_queries(self, queries: np.ndarray) -> np.ndarray:
        return queries

    def _to_scores(self, D: np.ndarray, queries: np.ndarray) -> np.ndarray:
        return D

    def set_search_params(self, **params) -> "FaissIndex":
        """Change search-time settings (``efSearch``, ``nprobe``, ``search_L``, ``nflip``) without a rebuild."""
        bad = sorted(set(params) - set(self.SEARCH))
        if bad:
            raise ValueError(f"{type(self).__name__}: {', '.join(map(repr, bad))} not a search-time parameter; "
                             f"those are {', '.join(self.SEARCH) or 'none'}")
        self.params.update(params)
        if self.index is not None:
            self._apply_search_params()
        return self

    def search(self, queries: np.ndarray, k: int, exclude=None) -> tuple[np.ndarray, np.ndarray]:
        if self.index is None:
            raise RuntimeError("search before build: call build(items) first")
        queries = self._check_items(queries, "queries", self.dim)
        k = _check_k(k)
        exclude = _check_exclude(exclude, len(queries), self.n_items)
        extra = int(np.diff(exclude.indptr).max()) if exclude is not None and exclude.nnz else 0
        kk = max(1, min(k + extra, self.n_items))
        with _faiss_threads(self.threads):
            D, I = self.index.search(self._transform_queries(queries), kk)
        I = I.astype(np.int64)
        binary = self.kind == "binary"
        D = D.astype(np.int32) if binary else self._to_scores(D.astype(np.float32), queries)
        worst = self.dim + 1 if binary else -np.inf
        if exclude is not None:
            I = np.where(_excluded(I, exclude), -1, I)
        # Admissible ids first, in the order Faiss ranked them; then the padding.
        order = np.argsort(I < 0, axis=1, kind="stable")[:, :k]
        I = np.take_along_axis(I, order, 1)
        D = np.take_along_axis(D, order, 1)
        D[I < 0] = worst
        if I.shape[1] < k:
            pad = ((0, 0), (0, k - I.shape[1]))
            I, D = np.pad(I, pad, constant_values=-1), np.pad(D, pad, constant_values=worst)
        return D, I

    def memory_bytes(self) -> int:
        """Bytes of the serialised index (Faiss's own account of what it holds), counted without a copy."""
        import faiss

        if self.index is None:
            raise RuntimeError("search before build: call build(items) first")
        total = 0

        def count(chunk):
            nonlocal total
            total += len(chunk)
            return len(chunk)

        writer = faiss.PyCallbackIOWriter(count)
        (faiss.write_index_binary if self.kind == "binary" else faiss.write_index)(self.index, writer)
        del writer  # flushes the last buffered chunk
        return total


class _GraphFloat(FaissIndex):
    """Graph indexes: native inner product, or with ``mips_l2=True`` L2 on lifted vectors.

    The MIPS-to-L2 transform (Bachrach et al. 2014): ``x -> [x, sqrt(M^2 - |x|^2)]``
    with ``M = max |x|``, ``q -> [q, 0]``, so ``|q' - x'|^2 = |q|^2 + M^2 - 2<q, x>``
    and L2 order is inner-product order; the scores are mapped back to ``<q, x>``.
    Faiss 1.15 searches HNSW and NSG graphs by inner product natively (the
    default); the transform is there for older Faiss and for comparison.
    """

    def __init__(self, *, threads: int | None = None, mips_l2: bool = False, **params):
        super().__init__(threads=threads, **params)
        self.mips_l2 = bool(mips_l2)
        self.metric = "l2 (MIPS transform)" if self.mips_l2 else "inner_product"
        self._max_norm = 0.0

    def _metric(self):
        import faiss

        return faiss.METRIC_L2 if self.mips_l2 else faiss.METRIC_INNER_PRODUCT

    def _make(self, dim: int):
        return self._make_graph(dim + 1 if self.mips_l2 else dim)

    def _transform_items(self, items):
        if not self.mips_l2:
            return items
        sq = np.einsum("ij,ij->i", items, items)
        self._max_norm = float(np.sqrt(sq.max()))
        lift = np.sqrt(np.maximum(self._max_norm**2 - sq, 0.0)).astype(np.float32)
        return np.hstack([items, lift[:, None]])

    def _transform_queries(self, queries):
        return np.hstack([queries, np.zeros((len(queries), 1), np.float32)]) if self.mips_l2 else queries

    def _to_scores(self, D, queries):
        if not self.mips_l2:
            return D
        sq = np.einsum("ij,ij->i", queries, queries)[:, None]
        return ((sq + self._max_norm**2 - D) / 2).astype(np.float32)


class IndexFlatIP(FaissIndex):
    """Faiss ``IndexFlatIP``: exact inner-product search, ``4 d`` bytes per item."""

    name = "flat_ip"

    def _make(self, dim):
        import faiss

        return faiss.IndexFlatIP(dim)


class IndexHNSWFlat(_GraphFloat):
    """Faiss ``IndexHNSWFlat`` (Malkov & Yashunin 2018), inner product; ``M`` links, ``efSearch`` beam width."""

    name = "hnsw"
    BUILD = {"M": 32, "efConstruction": 80}
    SEARCH = {"efSearch": 64}

    def _make_graph(self, dim):
        import faiss

        index = faiss.IndexHNSWFlat(dim, self.params["M"], self._metric())
        index.hnsw.efConstruction = self.params["efConstruction"]
        return index

    def _apply_search_params(self):
        self.index.hnsw.efSearch = self.params["efSearch"]


class IndexNSGFlat(_GraphFloat):
    """Faiss ``IndexNSGFlat`` (Fu et al. 2019), inner product; ``R`` out-degree, ``search_L`` beam width."""

    name = "nsg"
    BUILD = {"R": 32}
    SEARCH = {"search_L": 64}

    def _make_graph(self, dim):
        import faiss

        return faiss.IndexNSGFlat(dim, self.params["R"], self._metric())

    def _apply_search_params(self):
        self.index.nsg.search_L = self.params["search_L"]


class IndexIVFFlat(FaissIndex):
    """Faiss ``IndexIVFFlat``, inner product: ``nlist`` k-means cells, ``nprobe`` of them visited."""

    name = "ivf_flat"
    BUILD = {"nlist": 64}
    SEARCH = {"nprobe": 8}

    def _make(self, dim):
        import faiss

        return faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, self.params["nlist"], faiss.METRIC_INNER_PRODUCT)

    def _apply_search_params(self):
        self.index.nprobe = self.params["nprobe"]


class IndexIVFPQ(IndexIVFFlat):
    """Faiss ``IndexIVFPQ``, inner product: IVF cells, vectors as ``m`` sub-codes of ``nbits`` bits (``m*nbits/8`` bytes)."""

    name = "ivf_pq"
    BUILD = {"nlist": 64, "m": 16, "nbits": 8}

    def _make(self, dim):
        import faiss

        p = self.params
        if dim % p["m"]:
            raise ValueError(f"ivf_pq: m ({p['m']}) must divide the dimension ({dim})")
        return faiss.IndexIVFPQ(faiss.IndexFlatIP(dim), dim, p["nlist"], p["m"], p["nbits"], faiss.METRIC_INNER_PRODUCT)


class IndexBinaryFlat(FaissIndex):
    """Faiss ``IndexBinaryFlat``: exact Hamming search over packed codes (the reference for :class:`HammingIndex`)."""

    name = "binary_flat"
    kind = "binary"
    metric = "hamming"

    def _make(self, bits):
        import faiss

        return faiss.IndexBinaryFlat(bits)


class IndexBinaryHNSW(FaissIndex):
    """Faiss ``IndexBinaryHNSW``: an HNSW graph in Hamming space; ``M``, ``efConstruction``, ``efSearch``."""

    name = "binary_hnsw"
    kind = "binary"
    metric = "hamming"
    BUILD = {"M": 16, "efConstruction": 40}
    SEARCH = {"efSearch": 64}

    def _make(self, bits):
        import faiss

        index = faiss.IndexBinaryHNSW(bits, self.params["M"])
        index.hnsw.efConstruction = self.params["efConstruction"]
        return index

    def _apply_search_params(self):
        self.index.hnsw.efSearch = self.params["efSearch"]


class IndexBinaryIVF(FaissIndex):
    """Faiss ``IndexBinaryIVF``: binary k-means cells (``nlist``), ``nprobe`` visited, exact Hamming inside."""

    name = "binary_ivf"
    kind = "binary"
    metric = "hamming"
    BUILD = {"nlist": 64}
    SEARCH = {"nprobe": 8}

    def _make(self, bits):
        import faiss

        return faiss.IndexBinaryIVF(faiss.IndexBinaryFlat(bits), bits, self.params["nlist"])

    def _apply_search_params(self):
        self.index.nprobe = self.params["nprobe"]


class IndexBinaryMultiHash(FaissIndex):
    """Faiss ``IndexBinaryMultiHash`` (multi-index hashing, Norouzi et al. 2012): ``nhash`` tables on
    ``b``-bit substrings (``nhash * b <= bits``); a query probes buckets within ``nflip`` flips."""

    name = "binary_multihash"
    kind = "binary"
    metric = "hamming"
    BUILD = {"nhash": 2, "b": None}
    SEARCH = {"nflip": 2}

    def _make(self, bits):
        import faiss

        nhash = self.params["nhash"]
        b = self.params["b"] or min(bits // nhash, 24)  # 2^24 buckets per table at most
        if nhash * b > bits:
            raise ValueError(f"binary_multihash: nhash * b = {nhash * b} exceeds the {bits} bits")
        return faiss.IndexBinaryMultiHash(bits, nhash, b)

    def _apply_search_params(self):
        self.index.nflip = self.params["nflip"]


FAISS_INDEXES = {cls.name: cls for cls in (
    IndexFlatIP, IndexHNSWFlat, IndexNSGFlat, IndexIVFFlat, IndexIVFPQ,
    IndexBinaryFlat, IndexBinaryHNSW, IndexBinaryIVF, IndexBinaryMultiHash,
)}
INDEXES = ("hamming", "hierarchical", *FAISS_INDEXES)


def make_index(name: str, *, bits: int = 64, threads: int | None = None, **params):
    """An index by name.

    ``hamming`` -> :class:`HammingIndex` (``bits``); ``hierarchical`` ->
    :class:`HierarchicalIndex` (``bits``, ``candidates``); ``flat_ip``,
    ``hnsw``, ``nsg``, ``ivf_flat``, ``ivf_pq``, ``binary_flat``,
    ``binary_hnsw``, ``binary_ivf``, ``binary_multihash`` -> the Faiss wrapper
    of that name (``bits`` is taken from the codes at build time).
    """
    if name == "hamming":
        if params:
            raise ValueError(f"hamming takes no parameters besides bits and threads; got {', '.join(params)}")
        return HammingIndex(bits, threads)
    if name == "hierarchical":
        extra = set(params) - {"candidates"}
        if extra:
            raise ValueError(f"hierarchical takes candidates (besides bits and threads); got {', '.join(sorted(extra))}")
        return HierarchicalIndex(bits, params.get("candidates", 100), threads)
    if name in FAISS_INDEXES:
        return FAISS_INDEXES[name](threads=threads, **params)
    raise ValueError(f"unknown index {name!r}; choose one of {', '.join(INDEXES)}")
