"""hashrec's indexes: exact Hamming (:class:`HammingIndex`) and hierarchical search (:class:`HierarchicalIndex`)."""
from __future__ import annotations

import numpy as np

from ._checks import _check_codes, _check_exclude, _check_float, _check_k, _check_threads
from .kernel import _hamming_search, _planes


# continuous_topk and the hierarchical re-rank (_rerank): bump when their ids can change
VERSION = 1


def _pair(x, name: str):
    """``(codes, embeddings)`` of a hierarchical index's items or queries, or a clear error."""
    if not isinstance(x, (tuple, list)) or len(x) != 2:
        raise TypeError(f"{name} must be a pair (codes uint8 (n, bits/8), embeddings float (n, d)); "
                        f"got {type(x).__name__}" + (f" of length {len(x)}" if isinstance(x, (tuple, list)) else ""))
    return x[0], x[1]


def continuous_topk(user_emb: np.ndarray, item_emb: np.ndarray, k: int, exclude=None) -> np.ndarray:
    """Exact inner-product top-``k`` ids ``(nq, k)``: :func:`~hashrec_utils.retrieval.exact_topk`'s ids."""
    from .exact import exact_topk

    return exact_topk(user_emb, item_emb, k, exclude)[1]


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


def rerank_candidates(cand: np.ndarray, query_emb: np.ndarray, item_emb: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_rerank` of candidate ids ``(nq, C)`` a block of queries at a time, bounding the gathered
    ``(q, C, d)`` block: float32 scores and int64 ids ``(nq, k)``, best first."""
    scores = np.empty((len(cand), k), np.float32)
    ids = np.empty((len(cand), k), np.int64)
    step = max(1, 2**24 // (cand.shape[1] * item_emb.shape[1]))
    for s in range(0, len(cand), step):
        scores[s : s + step], ids[s : s + step] = _rerank(cand[s : s + step], query_emb[s : s + step], item_emb, k)
    return scores, ids


def hierarchical_topk(query_codes, item_codes, user_emb, item_emb, k: int, candidates: int = 100, exclude=None,
                      *, threads: int | None = None, fused: bool = False) -> np.ndarray:
    """HashGNN's hierarchical search: Hamming top-``candidates``, re-ranked by the inner product; ids ``(nq, k)``.

    The two-step reference by default (``fused=False``, see :class:`HierarchicalIndex`), what the
    fused kernel is tested against; the indexes of the sweeps use the fused path."""
    k = _check_k(k)
    if candidates < k:
        raise ValueError(f"candidates ({candidates}) must be at least k ({k})")
    index = HierarchicalIndex(np.shape(query_codes)[-1] * 8, candidates=candidates, threads=threads, fused=fused)
    return index.build((item_codes, item_emb)).search((query_codes, user_emb), k, exclude)[1]


class CodeIndex:
    """What an index over packed item codes shares: ``bits`` (a multiple of 8, at most ``MAX_BITS``),
    ``threads`` (numba's pool during a search; results do not depend on it), the codes held
    byte-sliced in blocks of 32 items (the kernels' layout), ``build``, ``memory_bytes``."""

    MAX_BITS: int | None = None

    def __init__(self, bits: int, threads: int | None = None):
        if not isinstance(bits, (int, np.integer)) or bits <= 0 or bits % 8:
            raise ValueError(f"bits must be a positive multiple of 8; got {bits!r}")
        if self.MAX_BITS is not None and bits > self.MAX_BITS:
            raise ValueError(f"bits must be at most {self.MAX_BITS} (16-bit accumulators); got {bits}")
        self.bits, self.threads = int(bits), _check_threads(threads)
        self.planes: np.ndarray | None = None  # byte-sliced item codes, see the kernel's notes
        self.n_items = 0

    def build(self, items: np.ndarray):
        items = _check_codes(items, "items", self.bits)
        self.planes, self.n_items = _planes(items), len(items)
        return self

    def _built(self) -> np.ndarray:
        if self.planes is None:
            raise RuntimeError("search before build: call build(items) first")
        return self.planes

    def memory_bytes(self) -> int:
        return int(self._built().nbytes)


class HammingIndex(CodeIndex):
    """Exact Hamming top-k over packed codes with hashrec's numba kernel.

    ``HammingIndex(bits, threads=None)``; ``build(codes (n, bits/8) uint8)``;
    ``search(queries (nq, bits/8) uint8, k, exclude=None) -> (D int32, I int64)``,
    ``D[q, r] = popcount(queries[q] XOR codes[I[q, r]])`` ascending, ties by
    smaller id, padding ``D = bits + 1``, ``I = -1``. ``threads`` pins numba's
    pool during a search (``None``: numba's current setting); results do not
    depend on it. Holds the codes byte-sliced in blocks of 32 items: ``bits/8``
    bytes per item, the item count rounded up to a multiple of 32.
    Queries are scanned in groups of 8, so batches of 8 or more use it best.
    """

    kind = "binary"
    name = "hamming"

    def search(self, queries: np.ndarray, k: int, exclude=None) -> tuple[np.ndarray, np.ndarray]:
        planes = self._built()
        q = _check_codes(queries, "queries", self.bits)
        k = _check_k(k)
        exclude = _check_exclude(exclude, len(q), self.n_items)
        return _hamming_search(q, planes, self.n_items, k, exclude, self.threads)


class HierarchicalIndex:
    """Hamming top-``candidates``, then exact inner-product re-rank (HashGNN's hierarchical search).

    The interface of every index, with items and queries as pairs of both representations:

    * ``build((item_codes (n, bits/8) uint8, item_emb (n, d) float))``
    * ``search((query_codes (nq, bits/8) uint8, query_emb (nq, d) float), k, exclude=None) -> (D, I)``

    ``I`` = the ``k`` of the ``C = max(candidates, k)`` Hamming nearest
    (ties by id, ``exclude`` removed) with the largest ``<e_q, e_i>``;
    ``D`` = those inner products, descending (ties by smaller id), padding
    ``-inf`` / ``-1``. Memory: the codes plus the float32 embeddings.

    ``source="asymmetric"``: the candidates are the asymmetric scan's instead
    (:class:`~hashrec_utils.retrieval.AsymmetricIndex`, ``<q, b_i>``); the queries' first half is then
    their real-valued ``(nq, bits)`` vectors, not codes. Fewer candidates suffice, as that scan ranks
    closer to the float one; the re-rank is the two-step one.

    ``fused=True`` (the default) re-ranks in numba, per query, straight from the Hamming kernel's
    candidates (:func:`hashrec_utils.retrieval.fused.fused_hierarchical_topk`: no gathered ``(q, C, d)``
    array); ``fused=False`` is the two-step reference (Hamming top-C, then a NumPy re-rank), which
    the tests and ``benchmarks/bench_hierarchical.py`` hold the fused path to. Both return the same
    ids, up to float32 rounding of two scores closer than it.
    """

    kind = "hierarchical"
    name = "hierarchical"
    SEARCH = ("candidates",)

    def __init__(self, bits: int, candidates: int = 100, threads: int | None = None, fused: bool = True,
                 source: str = "hamming"):
        if source not in ("hamming", "asymmetric"):
            raise ValueError(f"source must be 'hamming' or 'asymmetric'; got {source!r}")
        self.hamming = HammingIndex(bits, threads)
        self.candidates = _check_k(candidates, "candidates")
        self.item_emb: np.ndarray | None = None
        self.source = source
        self.fused = bool(fused) and source == "hamming"
        if source == "asymmetric":
            from .asymmetric import AsymmetricIndex

            self.first = AsymmetricIndex(bits, threads)
        else:
            self.first = self.hamming

    @property
    def bits(self) -> int:
        return self.hamming.bits

    def build(self, items) -> "HierarchicalIndex":
        """``items``: the pair ``(codes (n, bits/8) uint8, embeddings (n, d) float)``."""
        item_codes, item_emb = _pair(items, "items")
        item_emb = _check_float(item_emb, "item_emb")
        if len(item_emb) != len(item_codes):
            raise ValueError(f"item_codes has {len(item_codes)} rows but item_emb has {len(item_emb)}")
        self.first.build(item_codes)
        self.item_codes = np.ascontiguousarray(item_codes)
        self.item_emb = np.ascontiguousarray(item_emb, dtype=np.float32)
        return self

    def set_search_params(self, candidates: int) -> "HierarchicalIndex":
        """Change the number of Hamming candidates without a rebuild."""
        self.candidates = _check_k(candidates, "candidates")
        return self

    def search(self, queries, k: int, exclude=None) -> tuple[np.ndarray, np.ndarray]:
        """``queries``: the pair ``(codes (nq, bits/8) uint8, embeddings (nq, d) float)``."""
        query_codes, query_emb = _pair(queries, "queries")
        self.first._built()
        k = _check_k(k)
        query_emb = _check_float(query_emb, "query_emb", self.item_emb.shape[1])
        if len(query_emb) != len(query_codes):
            raise ValueError(f"query_codes has {len(query_codes)} rows but query_emb has {len(query_emb)}")
        if self.fused:
            from .fused import fused_hierarchical_topk

            return fused_hierarchical_topk(np.ascontiguousarray(query_codes), self.item_codes,
                                           np.ascontiguousarray(query_emb, dtype=np.float32), self.item_emb, k,
                                           max(self.candidates, k), exclude, threads=self.hamming.threads)
        _, cand = self.first.search(query_codes, max(self.candidates, k), exclude)
        return rerank_candidates(cand, query_emb, self.item_emb, k)

    def memory_bytes(self) -> int:
        return self.first.memory_bytes() + int(self.item_emb.nbytes)

