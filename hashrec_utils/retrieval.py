"""Retrieval: exact Hamming top-k, hierarchical search, and Faiss indexes behind one interface.

Every index answers ``build(items)`` then ``search(queries, k, exclude=None) -> (D, I)``:
``D``, ``I`` of shape ``(n_queries, k)``, best first; ``exclude`` an optional
CSR ``(n_queries, n_items)`` of items never to return (train items); rows
with fewer than ``k`` admissible items are padded with ``I = -1`` and the
worst value in ``D``. ``memory_bytes()`` is what the index holds.

Binary codes travel packed: ``np.uint8`` rows from ``np.packbits`` (Faiss's
layout), ``K/8`` bytes per row.

:class:`HammingIndex` is hashrec's own kernel (numba). Faiss's
``IndexBinaryFlat`` streams every code from memory once per query and keeps
a heap; ours streams the item codes once per *block of queries*, uses
hardware popcount on 64-bit words, and selects top-k by counting: distances
are integers ``0..K``, so per query a histogram of accepted distances gives
the running k-th distance, and an item is accepted only if it beats it.
Ties are broken by smaller item id, exactly (items arrive in id order, and an
item that only ties the k-th distance can never displace a smaller id).
``tests/test_retrieval.py`` checks it against Faiss's distances.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numba
import numpy as np
import scipy.sparse as sp

__all__ = [
    "hamming_distances",
    "hamming_topk",
    "hierarchical_topk",
    "continuous_topk",
    "HammingIndex",
    "HierarchicalIndex",
    "FaissIndex",
    "make_index",
    "INDEXES",
]

# --------------------------------------------------------------------------
# input checks
# --------------------------------------------------------------------------


def _check_codes(codes, name: str, bits: int | None = None) -> np.ndarray:
    codes = np.asarray(codes) if not isinstance(codes, np.ndarray) else codes
    if codes.dtype != np.uint8:
        raise TypeError(f"{name} must be packed np.uint8 codes (np.packbits rows); got dtype {codes.dtype}")
    if codes.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n, bits/8); got shape {codes.shape}")
    if bits is not None and codes.shape[1] * 8 != bits:
        raise ValueError(f"{name} rows have {codes.shape[1]} bytes = {codes.shape[1] * 8} bits; the index has {bits}")
    return np.ascontiguousarray(codes)


def _check_float(x, name: str, dim: int | None = None) -> np.ndarray:
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


def _check_k(k) -> int:
    if int(k) != k or int(k) <= 0:
        raise ValueError(f"k must be a positive integer; got {k}")
    return int(k)


def _check_exclude(exclude, n_queries: int, n_items: int):
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


def _words(codes: np.ndarray) -> np.ndarray:
    """Packed uint8 rows → uint64 words, zero-padded to a multiple of 8 bytes (padding adds no distance)."""
    n, nbytes = codes.shape
    pad = (-nbytes) % 8
    if pad:
        codes = np.concatenate([codes, np.zeros((n, pad), np.uint8)], axis=1)
    return np.ascontiguousarray(codes).view(np.uint64)


def hamming_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """All-pairs Hamming distances of packed codes ``(n, K/8)`` × ``(m, K/8)`` → ``int32 (n, m)`` (reference)."""
    a, b = _check_codes(a, "a"), _check_codes(b, "b", a.shape[1] * 8)
    return np.bitwise_count(a[:, None, :] ^ b[None, :, :]).sum(axis=2, dtype=np.int32)


# --------------------------------------------------------------------------
# the kernel
# --------------------------------------------------------------------------

_QUERY_BLOCK = 16


@numba.njit(cache=True, fastmath=True, nogil=True)
def _popcount64(x):
    # SWAR popcount: LLVM recognises the pattern and emits a hardware popcnt.
    x = x - ((x >> np.uint64(1)) & np.uint64(0x5555555555555555))
    x = (x & np.uint64(0x3333333333333333)) + ((x >> np.uint64(2)) & np.uint64(0x3333333333333333))
    x = (x + (x >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    return (x * np.uint64(0x0101010101010101)) >> np.uint64(56)


@numba.njit(cache=True, fastmath=True, nogil=True)
def _compact(cd, ci, n, thr, k, hist):
    """Keep the k best (distance, id) of the first n buffered candidates (already in id order)."""
    below = 0
    for t in range(n):
        if cd[t] < thr:
            below += 1
    ties_left = k - below
    m = 0
    for t in range(n):
        d = cd[t]
        if d < thr or (d == thr and ties_left > 0):
            if d == thr:
                ties_left -= 1
            cd[m] = d
            ci[m] = ci[t]
            m += 1
    hist[:] = 0
    for t in range(m):
        hist[cd[t]] += 1
    return m


_ITEM_TILE = 512


@numba.njit(cache=True, fastmath=True, nogil=True)
def _scan_block(qw, iw, q0, q1, k, bits, out_d, out_i, ex_ptr, ex_idx, has_ex):
    """Top-k of queries ``q0..q1`` over all items: distances a tile at a time, then counting selection."""
    nw = iw.shape[1]
    n = iw.shape[0]
    nb = q1 - q0
    cap = 2 * k + 64
    cd = np.empty((nb, cap), np.int32)
    ci = np.empty((nb, cap), np.int64)
    ncand = np.zeros(nb, np.int64)
    hist = np.zeros((nb, bits + 1), np.int64)
    thr = np.full(nb, bits + 1, np.int64)  # accept d < thr (thr = k-th distance once k are held)
    held = np.zeros(nb, np.int64)          # accepted items currently counted in hist
    ptr = np.zeros(nb, np.int64)
    dist = np.empty(_ITEM_TILE, np.int64)
    for qq in range(nb):
        ptr[qq] = ex_ptr[q0 + qq] if has_ex else 0
    for j0 in range(0, n, _ITEM_TILE):
        j1 = min(j0 + _ITEM_TILE, n)
        for qq in range(nb):
            # 1) distances of one query to the tile: a branch-free loop LLVM vectorises
            if nw == 1:
                qv = qw[q0 + qq, 0]
                for j in range(j0, j1):
                    dist[j - j0] = _popcount64(qv ^ iw[j, 0])
            else:
                for j in range(j0, j1):
                    d = 0
                    for w in range(nw):
                        d += _popcount64(qw[q0 + qq, w] ^ iw[j, w])
                    dist[j - j0] = d
            # 2) selection: most items fail the one comparison
            t_q = thr[qq]
            for j in range(j0, j1):
                d = dist[j - j0]
                if d < t_q:
                    if has_ex:
                        end = ex_ptr[q0 + qq + 1]
                        p = ptr[qq]
                        while p < end and ex_idx[p] < j:
                            p += 1
                        ptr[qq] = p
                        if p < end and ex_idx[p] == j:
                            continue
                    if ncand[qq] == cap:
                        ncand[qq] = _compact(cd[qq], ci[qq], ncand[qq], t_q, k, hist[qq])
                        held[qq] = ncand[qq]
                    c = ncand[qq]
                    cd[qq, c] = d
                    ci[qq, c] = j
                    ncand[qq] = c + 1
                    hist[qq, d] += 1
                    held[qq] += 1
                    if held[qq] >= k:
                        # the k-th smallest accepted distance: only an item strictly below it can enter
                        cum = 0
                        t = 0
                        while cum + hist[qq, t] < k:
                            cum += hist[qq, t]
                            t += 1
                        t_q = t
            thr[qq] = t_q
    for qq in range(nb):
        m = ncand[qq]
        d_ = cd[qq, :m]
        i_ = ci[qq, :m]
        order = np.argsort(d_, kind="mergesort")  # stable: equal distances keep id order
        take = min(k, m)
        for r in range(take):
            out_d[q0 + qq, r] = d_[order[r]]
            out_i[q0 + qq, r] = i_[order[r]]


@numba.njit(parallel=True, cache=True, nogil=True)
def _hamming_topk_kernel(qw, iw, k, bits, out_d, out_i, ex_ptr, ex_idx, has_ex):
    nq = qw.shape[0]
    n_blocks = (nq + _QUERY_BLOCK - 1) // _QUERY_BLOCK
    for b in numba.prange(n_blocks):
        q0 = b * _QUERY_BLOCK
        q1 = min(q0 + _QUERY_BLOCK, nq)
        _scan_block(qw, iw, q0, q1, k, bits, out_d, out_i, ex_ptr, ex_idx, has_ex)


def _with_threads(threads: int | None):
    class _Ctx:
        def __enter__(self):
            self.old = numba.get_num_threads()
            if threads:
                numba.set_num_threads(min(int(threads), numba.config.NUMBA_NUM_THREADS))
            return self

        def __exit__(self, *exc):
            numba.set_num_threads(self.old)

    return _Ctx()


def hamming_topk(query_codes: np.ndarray, item_codes: np.ndarray, k: int, exclude=None, *,
                 threads: int | None = None, return_distances: bool = False):
    """Exact top-``k`` items by Hamming distance (ties: smaller id), ``exclude`` never returned.

    Codes are packed ``np.uint8`` rows. Returns int64 ids ``(n_queries, k)``
    (``-1`` padding), and with ``return_distances`` the int32 distances
    (``bits + 1`` for padding).
    """
    q = _check_codes(query_codes, "query_codes")
    items = _check_codes(item_codes, "item_codes", q.shape[1] * 8)
    k = _check_k(k)
    bits = q.shape[1] * 8
    exclude = _check_exclude(exclude, q.shape[0], items.shape[0])
    out_d = np.full((q.shape[0], k), bits + 1, np.int32)
    out_i = np.full((q.shape[0], k), -1, np.int64)
    if exclude is not None:
        ex_ptr, ex_idx = exclude.indptr.astype(np.int64), exclude.indices.astype(np.int64)
    else:
        ex_ptr, ex_idx = np.zeros(1, np.int64), np.zeros(1, np.int64)
    with _with_threads(threads):
        _hamming_topk_kernel(_words(q), _words(items), k, bits, out_d, out_i, ex_ptr, ex_idx, exclude is not None)
    return (out_i, out_d) if return_distances else out_i


def continuous_topk(user_emb: np.ndarray, item_emb: np.ndarray, k: int, exclude=None) -> np.ndarray:
    """Exact inner-product top-``k`` (the one ranking function, :func:`hashrec_utils.metrics.rank_topk`)."""
    from .metrics import rank_topk

    return rank_topk(user_emb, item_emb, k, exclude=exclude)


def _rerank(cand: np.ndarray, user_emb: np.ndarray, item_emb: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Re-rank candidate ids (``-1`` padded) by ⟨e_u, e_i⟩, descending; ties by smaller id."""
    valid = cand >= 0
    safe = np.where(valid, cand, 0)
    scores = np.einsum("qd,qcd->qc", user_emb, item_emb[safe], optimize=True).astype(np.float32)
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
                      *, threads: int | None = None, batch: int = 4096) -> np.ndarray:
    """HashGNN's hierarchical search: Hamming top-``candidates``, re-ranked by the continuous inner product."""
    k = _check_k(k)
    if candidates < k:
        raise ValueError(f"candidates ({candidates}) must be at least k ({k})")
    user_emb = _check_float(user_emb, "user_emb")
    item_emb = _check_float(item_emb, "item_emb", user_emb.shape[1])
    cand = hamming_topk(query_codes, item_codes, candidates, exclude, threads=threads)
    out = np.empty((cand.shape[0], k), np.int64)
    for s in range(0, cand.shape[0], batch):
        out[s : s + batch] = _rerank(cand[s : s + batch], user_emb[s : s + batch], item_emb, k)[1]
    return out


# --------------------------------------------------------------------------
# indexes
# --------------------------------------------------------------------------


class HammingIndex:
    """Exact Hamming top-k over packed codes with hashrec's kernel; ``threads`` pins numba's pool."""

    kind = "binary"

    def __init__(self, bits: int, threads: int | None = None):
        if int(bits) <= 0 or int(bits) % 8:
            raise ValueError(f"bits must be a positive multiple of 8; got {bits}")
        self.bits, self.threads = int(bits), threads
        self.items: np.ndarray | None = None

    def build(self, items: np.ndarray) -> "HammingIndex":
        self.items = _check_codes(items, "items", self.bits)
        return self

    def _built(self) -> np.ndarray:
        if self.items is None:
            raise RuntimeError("search before build: call build(items) first")
        return self.items

    def search(self, queries: np.ndarray, k: int, exclude=None) -> tuple[np.ndarray, np.ndarray]:
        items = self._built()
        ids, dist = hamming_topk(_check_codes(queries, "queries", self.bits), items, k, exclude,
                                 threads=self.threads, return_distances=True)
        return dist, ids

    def memory_bytes(self) -> int:
        return int(self._built().nbytes)


class HierarchicalIndex:
    """Hamming top-``candidates`` then exact inner-product re-rank (HashGNN's hierarchical search).

    Unlike the others it needs both representations: ``build(item_codes, item_emb)`` and
    ``search(query_codes, query_emb, k, exclude=None) -> (scores, ids)`` (scores descending).
    """

    kind = "hierarchical"

    def __init__(self, bits: int, candidates: int = 100, threads: int | None = None):
        self.hamming = HammingIndex(bits, threads)
        self.candidates = int(candidates)
        self.item_emb: np.ndarray | None = None

    def build(self, item_codes: np.ndarray, item_emb: np.ndarray) -> "HierarchicalIndex":
        self.hamming.build(item_codes)
        self.item_emb = _check_float(item_emb, "item_emb")
        if len(self.item_emb) != len(item_codes):
            raise ValueError(f"item_codes has {len(item_codes)} rows but item_emb has {len(self.item_emb)}")
        return self

    def search(self, query_codes, query_emb, k: int, exclude=None) -> tuple[np.ndarray, np.ndarray]:
        k = _check_k(k)
        self.hamming._built()
        query_emb = _check_float(query_emb, "query_emb", self.item_emb.shape[1])
        _, cand = self.hamming.search(query_codes, max(self.candidates, k), exclude)
        return _rerank(cand, query_emb, self.item_emb, k)

    def memory_bytes(self) -> int:
        return self.hamming.memory_bytes() + int(self.item_emb.nbytes)


class FaissIndex:
    """A Faiss index behind the common interface.

    ``name``: ``flat_ip``, ``hnsw`` (M, ef_search, ef_construction), ``nsg`` (R,
    search_L), ``ivf_flat`` and ``ivf_pq`` (nlist, nprobe, m, nbits),
    ``binary_flat``, ``binary_hnsw`` (M, ef_search), ``binary_ivf`` (nlist,
    nprobe), ``binary_multihash`` (nhash, b, nflip). Float indexes search by
    inner product; where Faiss offers only L2 (NSG) the items are lifted by the
    MIPS transform ``x ↦ [x, sqrt(M² − ‖x‖²)]``, queries by ``q ↦ [q, 0]``,
    so L2 order equals inner-product order (``metric`` says which).
    Exclusion searches ``k + max excluded per row`` and filters.
    """

    FLOAT = ("flat_ip", "hnsw", "nsg", "ivf_flat", "ivf_pq")
    BINARY = ("binary_flat", "binary_hnsw", "binary_ivf", "binary_multihash")

    def __init__(self, name: str, *, threads: int | None = None, **params):
        if name not in self.FLOAT + self.BINARY:
            raise ValueError(f"unknown Faiss index {name!r}; choose one of {', '.join(self.FLOAT + self.BINARY)}")
        self.name, self.params, self.threads = name, params, threads
        self.kind = "binary" if name in self.BINARY else "float"
        self.metric = "hamming" if self.kind == "binary" else ("l2 (MIPS transform)" if name == "nsg" else "inner product")
        self.index = None
        self.n_items = 0

    def _set_threads(self):
        import faiss

        if self.threads:
            faiss.omp_set_num_threads(int(self.threads))

    def build(self, items: np.ndarray) -> "FaissIndex":
        import faiss

        self._set_threads()
        p = self.params
        if self.kind == "binary":
            items = _check_codes(items, "items")
            bits = items.shape[1] * 8
            self.dim = bits
            if self.name == "binary_flat":
                index = faiss.IndexBinaryFlat(bits)
            elif self.name == "binary_hnsw":
                index = faiss.IndexBinaryHNSW(bits, p.get("M", 16))
                index.hnsw.efConstruction = p.get("ef_construction", 40)
            elif self.name == "binary_ivf":
                index = faiss.IndexBinaryIVF(faiss.IndexBinaryFlat(bits), bits, p.get("nlist", 64))
                index.train(items)
            else:
                index = faiss.IndexBinaryMultiHash(bits, p.get("nhash", 2), p.get("b", min(bits // 2, 24)))
            index.add(items)
        else:
            items = _check_float(items, "items")
            d = items.shape[1]
            self.dim = d
            if self.name == "nsg":
                norms = np.linalg.norm(items, axis=1)
                self._max_norm = float(norms.max())
                lift = np.sqrt(np.maximum(self._max_norm**2 - norms**2, 0.0)).astype(np.float32)
                items = np.hstack([items, lift[:, None]])
                index = faiss.IndexNSGFlat(d + 1, p.get("R", 32))
            elif self.name == "flat_ip":
                index = faiss.IndexFlatIP(d)
            elif self.name == "hnsw":
                index = faiss.IndexHNSWFlat(d, p.get("M", 32), faiss.METRIC_INNER_PRODUCT)
                index.hnsw.efConstruction = p.get("ef_construction", 80)
            elif self.name == "ivf_flat":
                index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, p.get("nlist", 64), faiss.METRIC_INNER_PRODUCT)
            else:
                index = faiss.IndexIVFPQ(faiss.IndexFlatIP(d), d, p.get("nlist", 64), p.get("m", 16), p.get("nbits", 8),
                                         faiss.METRIC_INNER_PRODUCT)
            if not index.is_trained:
                index.train(items)
            index.add(items)
        self.index, self.n_items = index, len(items)
        self._apply_search_params()
        return self

    def _apply_search_params(self):
        p = self.params
        if self.name in ("hnsw", "binary_hnsw"):
            self.index.hnsw.efSearch = p.get("ef_search", 64)
        elif self.name in ("ivf_flat", "ivf_pq", "binary_ivf"):
            self.index.nprobe = p.get("nprobe", 8)
        elif self.name == "nsg":
            self.index.nsg.search_L = p.get("search_L", 64)
        elif self.name == "binary_multihash":
            self.index.nflip = p.get("nflip", 2)

    def set_search_params(self, **params) -> "FaissIndex":
        """Change search-time settings (efSearch, nprobe, search_L, nflip) without rebuilding."""
        self.params.update(params)
        if self.index is not None:
            self._apply_search_params()
        return self

    def search(self, queries: np.ndarray, k: int, exclude=None) -> tuple[np.ndarray, np.ndarray]:
        if self.index is None:
            raise RuntimeError("search before build: call build(items) first")
        k = _check_k(k)
        self._set_threads()
        if self.kind == "binary":
            queries = _check_codes(queries, "queries", self.dim)
        else:
            queries = _check_float(queries, "queries", self.dim)
            if self.name == "nsg":
                queries = np.hstack([queries, np.zeros((len(queries), 1), np.float32)])
        exclude = _check_exclude(exclude, len(queries), self.n_items)
        extra = int(np.diff(exclude.indptr).max()) if exclude is not None and exclude.nnz else 0
        kk = min(k + extra, self.n_items)
        D, I = self.index.search(queries, kk)
        I = I.astype(np.int64)
        worst = np.inf if (self.kind == "binary" or self.name == "nsg") else -np.inf
        if exclude is not None:
            from .metrics import hit_matrix

            banned = hit_matrix(np.where(I < 0, 0, I), exclude) & (I >= 0)
            I = np.where(banned, -1, I)
        keep = I >= 0
        order = np.argsort(~keep, axis=1, kind="stable")[:, :k]
        I = np.take_along_axis(I, order, 1)
        D = np.take_along_axis(D.astype(np.float32), order, 1)
        D[I < 0] = worst
        if I.shape[1] < k:
            pad = k - I.shape[1]
            I = np.pad(I, ((0, 0), (0, pad)), constant_values=-1)
            D = np.pad(D, ((0, 0), (0, pad)), constant_values=worst)
        return D, I

    def memory_bytes(self) -> int:
        """Bytes of the serialised index (Faiss's own account of what it holds)."""
        import faiss

        if self.index is None:
            raise RuntimeError("search before build: call build(items) first")
        if self.kind == "binary":
            return int(faiss.serialize_index_binary(self.index).nbytes)
        return int(faiss.serialize_index(self.index).nbytes)


INDEXES = ("hamming", "hierarchical") + FaissIndex.FLOAT + FaissIndex.BINARY


def make_index(name: str, *, bits: int = 64, threads: int | None = None, **params):
    """An index by name: ``hamming``, ``hierarchical`` (candidates) or a Faiss name (see :class:`FaissIndex`)."""
    if name == "hamming":
        return HammingIndex(bits, threads)
    if name == "hierarchical":
        return HierarchicalIndex(bits, params.get("candidates", 100), threads)
    if name in FaissIndex.FLOAT + FaissIndex.BINARY:
        return FaissIndex(name, threads=threads, **params)
    raise ValueError(f"unknown index {name!r}; choose one of {', '.join(INDEXES)}")
