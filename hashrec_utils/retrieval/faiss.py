"""Faiss indexes behind hashrec's interface (``build(items)``, ``search(queries, k, exclude=None)``)."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import numpy as np
import scipy.sparse as sp

from ._checks import _check_codes, _check_exclude, _check_float, _check_k, _check_threads


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
