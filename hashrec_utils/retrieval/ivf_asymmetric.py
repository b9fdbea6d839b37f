"""Sub-linear asymmetric search: an inverted file whose lists hold the items' binary codes.

A linear scan of every item's code costs ``O(n)`` per query, which graph and inverted-file indexes
beat once the catalogue reaches millions. :class:`IVFAsymmetricIndex` gives the asymmetric scan a
coarse stage, as Faiss's ``IndexIVFRaBitQ`` does for training-free codes:

1. **coarse**: the items' continuous embeddings are clustered into ``nlist`` cells by Faiss's own
   inner-product inverted file (``IndexIVFFlat`` with ``METRIC_INNER_PRODUCT``: k-means, items
   assigned to the centroid of largest inner product); a query visits the ``nprobe`` cells whose
   centroids have the largest inner product with its continuous embedding;
2. **scan**: the visited cells' items are scored by ``<h_u, b_i>`` — the query's real-valued
   hash-layer output against the item's packed ±1 code — through a per-byte float table
   (``T_b[v] = sum_t h_{8b+t} (2 bit_t(v) - 1)``, 256 entries per code byte, so an item costs
   ``K/8`` lookups; the score is the float32 sum of those entries), keeping the best
   ``max(candidates, k)`` (ties by smaller id, ``exclude`` never kept);
3. **re-rank** (``candidates`` set): those candidates re-ordered by the float inner product of the
   continuous embeddings (hierarchical search restricted to the visited cells). Without it the
   search is code-only: the items' memory stays ``K/8`` bytes plus a 4-byte id.

With ``nprobe = nlist`` the scan visits every item and returns what a full asymmetric scan with
float tables returns (the tests hold it to :func:`~hashrec_utils.retrieval.asymmetric_scores`; the
float32 sums are exact for integer-valued queries, otherwise they differ from float64 only by
rounding), and with ``candidates = n`` as well, the exact float top-k.
"""
from __future__ import annotations

import numba
import numpy as np

from ._checks import _check_codes, _check_exclude, _check_float, _check_k, _check_threads
from .indexes import _pair
from .kernel import _numba_threads

# the coarse assignment, the scan's float tables, ties and the re-rank: bump when ids can change
VERSION = 1

# _BYTE_SIGNS[v, t] = +1 if bit (7 - t) of byte v is set (np.packbits writes dimension 8b + t there), else -1
_BYTE_SIGNS = np.where((np.arange(256)[:, None] >> (7 - np.arange(8))[None, :]) & 1, 1.0, -1.0).astype(np.float32)
_KEEP = object()  # set_search_params: a setting not passed stays
_QUERY_CHUNK = 1024  # queries whose tables (chunk x K/8 x 256 float32) are built at once


def byte_tables(queries: np.ndarray) -> np.ndarray:
    """``T[q, b, v]``: query ``q``'s score contribution of code byte ``b`` when that byte is ``v`` (float32)."""
    nq, bits = queries.shape
    return (queries.reshape(nq, bits // 8, 8) @ _BYTE_SIGNS.T).astype(np.float32)


@numba.njit(cache=True, inline="always")
def _worse(s1, i1, s2, i2):
    """Entry 1 ranks below entry 2: a smaller score, or the same score and a larger id."""
    return s1 < s2 or (s1 == s2 and i1 > i2)


@numba.njit(cache=True)
def _sift_down(hs, hi, size, pos):
    """Restore the min-heap (worst entry at the root) below ``pos``."""
    while True:
        child = 2 * pos + 1
        if child >= size:
            return
        if child + 1 < size and _worse(hs[child + 1], hi[child + 1], hs[child], hi[child]):
            child += 1
        if not _worse(hs[child], hi[child], hs[pos], hi[pos]):
            return
        hs[pos], hs[child] = hs[child], hs[pos]
        hi[pos], hi[child] = hi[child], hi[pos]
        pos = child


@numba.njit(cache=True)
def _push(hs, hi, size, cap, s, i):
    """Offer ``(s, i)`` to a heap of at most ``cap`` entries; returns the new size."""
    if size < cap:
        pos = size
        hs[pos], hi[pos] = s, i
        while pos > 0:
            parent = (pos - 1) // 2
            if not _worse(hs[pos], hi[pos], hs[parent], hi[parent]):
                break
            hs[pos], hs[parent] = hs[parent], hs[pos]
            hi[pos], hi[parent] = hi[parent], hi[pos]
            pos = parent
        return size + 1
    if _worse(hs[0], hi[0], s, i):
        hs[0], hi[0] = s, i
        _sift_down(hs, hi, size, 0)
    return size


@numba.njit(cache=True)
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


@numba.njit(cache=True)
def _drain(hs, hi, size, out_s, out_i, row):
    """Write a heap's entries into ``out[row]``, best first (score descending, ties by smaller id)."""
    for r in range(size - 1, -1, -1):
        out_s[row, r], out_i[row, r] = hs[0], hi[0]
        size -= 1
        hs[0], hi[0] = hs[size], hi[size]
        _sift_down(hs, hi, size, 0)


@numba.njit(parallel=True, cache=True, fastmath=False, nogil=True)
def _ivf_kernel(tables, probes, list_ptr, list_codes, list_ids, q_emb, item_emb, depth, rerank, k,
                ex_ptr, ex_idx, has_ex, out_s, out_i):
    nq, nbytes = tables.shape[0], tables.shape[1]
    for q in numba.prange(nq):
        hs = np.empty(depth, np.float32)
        hi = np.empty(depth, np.int64)
        size = 0
        for p in range(probes.shape[1]):
            cell = probes[q, p]
            for j in range(list_ptr[cell], list_ptr[cell + 1]):
                s = np.float32(0.0)
                for b in range(nbytes):
                    s += tables[q, b, list_codes[j, b]]
                item = np.int64(list_ids[j])
                if size == depth and not _worse(hs[0], hi[0], s, item):
                    continue
                if has_ex and _excluded(item, q, ex_ptr, ex_idx):
                    continue
                size = _push(hs, hi, size, depth, s, item)
        if not rerank:
            _drain(hs, hi, size, out_s, out_i, q)
            continue
        ks = np.empty(k, np.float32)
        ki = np.empty(k, np.int64)
        kept = 0
        for c in range(size):
            item = hi[c]
            s = np.float32(0.0)
            for t in range(q_emb.shape[1]):
                s += q_emb[q, t] * item_emb[item, t]
            kept = _push(ks, ki, kept, k, s, item)
        _drain(ks, ki, kept, out_s, out_i, q)


class IVFAsymmetricIndex:
    """Inverted file over the items' continuous embeddings, lists of binary codes scanned asymmetrically.

    ``IVFAsymmetricIndex(bits, nlist, nprobe=1, candidates=None, threads=None)``;
    ``build((codes (n, bits/8) uint8, embeddings (n, d) float))``;
    ``search((queries (nq, bits) float, query_emb (nq, d) float), k, exclude=None) -> (scores, ids)``:
    the queries' real-valued hash-layer outputs and their continuous embeddings (the coarse probe,
    and the re-rank when ``candidates`` is set). Scores float32 descending (``<h_u, b_i>`` code-only,
    the float inner product after a re-rank), ties by smaller id, padding ``-inf`` / ``-1``; fewer
    than ``k`` ids where the visited cells hold fewer admissible items. ``nprobe`` and
    ``candidates`` change without a rebuild (:meth:`set_search_params`). Module docstring: the stages.
    """

    kind = "ivf_asymmetric"
    name = "ivf_asymmetric"
    SEARCH = ("nprobe", "candidates")

    def __init__(self, bits: int, nlist: int, nprobe: int = 1, candidates: int | None = None,
                 threads: int | None = None):
        if not isinstance(bits, (int, np.integer)) or bits <= 0 or bits % 8:
            raise ValueError(f"bits must be a positive multiple of 8; got {bits!r}")
        self.bits, self.nlist = int(bits), _check_k(nlist, "nlist")
        self.threads = _check_threads(threads)
        self.candidates = None
        self.set_search_params(nprobe=nprobe, candidates=candidates)
        self.centroids: np.ndarray | None = None

    def set_search_params(self, nprobe: int | None = None, candidates=_KEEP) -> "IVFAsymmetricIndex":
        """Change ``nprobe`` and/or ``candidates`` (``None``: code-only) without a rebuild; what is not
        passed stays."""
        if nprobe is not None:
            self.nprobe = _check_k(nprobe, "nprobe")
        if candidates is not _KEEP:
            self.candidates = None if candidates is None else _check_k(candidates, "candidates")
        return self

    def build(self, items) -> "IVFAsymmetricIndex":
        """``items``: the pair ``(codes (n, bits/8) uint8, embeddings (n, d) float)``."""
        import faiss

        codes, emb = _pair(items, "items")
        codes = _check_codes(codes, "item_codes", self.bits)
        emb = _check_float(emb, "item_emb")
        if len(emb) != len(codes):
            raise ValueError(f"item_codes has {len(codes)} rows but item_emb has {len(emb)}")
        if len(emb) < self.nlist:
            raise ValueError(f"nlist ({self.nlist}) must not exceed the number of items ({len(emb)})")
        coarse = faiss.IndexIVFFlat(faiss.IndexFlatIP(emb.shape[1]), emb.shape[1], self.nlist, faiss.METRIC_INNER_PRODUCT)
        coarse.train(emb)
        self.centroids = coarse.quantizer.reconstruct_n(0, self.nlist)
        cell = coarse.quantizer.search(emb, 1)[1][:, 0]
        order = np.argsort(cell, kind="stable")
        self.list_ptr = np.concatenate([[0], np.cumsum(np.bincount(cell, minlength=self.nlist))]).astype(np.int64)
        self.list_codes = np.ascontiguousarray(codes[order])
        self.list_ids = order.astype(np.int32)
        self.item_emb = emb
        self.n_items = len(emb)
        return self

    def search(self, queries, k: int, exclude=None) -> tuple[np.ndarray, np.ndarray]:
        """``queries``: the pair ``(real-valued queries (nq, bits) float, embeddings (nq, d) float)``."""
        if self.centroids is None:
            raise RuntimeError("search before build: call build((codes, embeddings)) first")
        real, q_emb = _pair(queries, "queries")
        real = _check_float(real, "queries", self.bits)
        q_emb = _check_float(q_emb, "query_emb", self.item_emb.shape[1])
        if len(real) != len(q_emb):
            raise ValueError(f"queries has {len(real)} rows but query_emb has {len(q_emb)}")
        k = _check_k(k)
        exclude = _check_exclude(exclude, len(real), self.n_items)
        nprobe = min(self.nprobe, self.nlist)
        rerank = self.candidates is not None
        depth = max(self.candidates or 0, k)
        scores = np.full((len(real), k), -np.inf, np.float32)
        ids = np.full((len(real), k), -1, np.int64)
        if exclude is not None:
            ex_ptr, ex_idx = exclude.indptr.astype(np.int64), exclude.indices.astype(np.int64)
        else:
            ex_ptr = ex_idx = np.zeros(1, np.int64)
        with _numba_threads(self.threads):
            for s in range(0, len(real), _QUERY_CHUNK):
                e = min(s + _QUERY_CHUNK, len(real))
                coarse = q_emb[s:e] @ self.centroids.T
                probes = np.argsort(-coarse, axis=1, kind="stable")[:, :nprobe].astype(np.int64)
                rows = slice(s, e)
                sub_ptr = ex_ptr[s : e + 1] if exclude is not None else ex_ptr
                _ivf_kernel(byte_tables(real[s:e]), probes, self.list_ptr, self.list_codes, self.list_ids,
                            q_emb[s:e], self.item_emb, depth, rerank, k, sub_ptr, ex_idx, exclude is not None,
                            scores[rows], ids[rows])
        return scores, ids

    def memory_bytes(self) -> int:
        """Codes and ids of the lists, the centroids, and the float embeddings when re-ranking."""
        if self.centroids is None:
            raise RuntimeError("search before build: call build((codes, embeddings)) first")
        base = self.list_codes.nbytes + self.list_ids.nbytes + self.centroids.nbytes
        return int(base + (self.item_emb.nbytes if self.candidates is not None else 0))
