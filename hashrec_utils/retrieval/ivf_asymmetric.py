"""Sub-linear asymmetric search: an inverted file whose lists hold the items' binary codes.

A linear scan of every item's code costs ``O(n)`` per query, which graph and inverted-file indexes
beat once the catalogue reaches millions. :class:`IVFAsymmetricIndex` gives the asymmetric scan a
coarse stage, as Faiss's ``IndexIVFRaBitQ`` does for training-free codes:

1. **coarse**: the items' continuous embeddings are clustered into ``nlist`` cells by Faiss's own
   inner-product inverted file (``IndexIVFFlat`` with ``METRIC_INNER_PRODUCT``: k-means, items
   assigned to the centroid of largest inner product); a query visits the ``nprobe`` cells whose
   centroids have the largest inner product with its continuous embedding;
2. **scan**: the visited cells' items are scored by ``<h_u, b_i>`` — the query's real-valued
   hash-layer output against the item's packed ±1 code — with the full scan's quantised 4-bit tables
   and byte shuffles (:mod:`hashrec_utils.retrieval.asymmetric`; each list is stored byte-sliced in
   blocks of 32 items, as that scan's catalogue is). Within a task's chunk of queries the scan runs
   list by list, the chunk's queries that probe a list sharing its passes eight at a time; each
   query keeps a heap of its best ``max(candidates, k)`` (ties by smaller id, ``exclude`` never
   kept) whose worst entry is its cut-off in the scan;
3. **re-rank** (``candidates`` set): those candidates re-ordered by the float inner product of the
   continuous embeddings (hierarchical search restricted to the visited cells). Without it the
   search is code-only: the items' memory stays ``K/8`` bytes plus a 4-byte id.

With ``nprobe = nlist`` the scan visits every item and returns what the full asymmetric scan
returns: the float reference :func:`~hashrec_utils.retrieval.asymmetric_scores`' ranking wherever
the query quantisation is exact (the tests), within its stated bound otherwise; with
``candidates = n`` as well, the exact float top-k.
"""
from __future__ import annotations

import numba
import numpy as np

from ._checks import _check_codes, _check_exclude, _check_float, _check_k, _check_threads
from .asymmetric import _AQ, LEVELS, MAX_BITS, _asym_block, _kernel_tables, quantise_queries
from .indexes import _pair
from .exact import _drain, _excluded, _push, _worse
from .fused import _rerank_kernel
from .kernel import _BLOCK, _numba_threads, _planes, _trailing_zeros

# the coarse assignment, the scan's quantised tables, ties and the re-rank: bump when ids can change
VERSION = 1

_KEEP = object()  # set_search_params: a setting not passed stays
_CHUNK = 128      # the fewest queries a parallel task takes (a task a thread otherwise: its queries share lists)
_BATCH = 4096     # queries a kernel call holds heaps for (bounds the heaps' memory, 16 bytes x depth each)


@numba.njit(cache=True, nogil=True)
def _scan_chunk(q0, q1, tables, probes, blk_ptr, list_n, planes, list_ids, nbytes, depth, ex_ptr, ex_idx, has_ex,
                heap_s, heap_i, heap_n):
    """The asymmetric scan of queries ``q0..q1`` over their probed lists, list by list: the chunk's queries
    probing a list share its passes in groups of ``_AQ`` (:func:`~.asymmetric._asym_block`, the tables
    gathered per group); each query keeps a heap of its best ``depth`` by ``-D`` (D: the quantised
    distance, smaller is better), whose worst entry is the lane's cut-off."""
    nq = q1 - q0
    nprobe = probes.shape[1]
    nlist = len(list_n)
    # the chunk's (list, query) pairs grouped by list: a counting sort
    count = np.zeros(nlist + 1, np.int64)
    for r in range(nq):
        for p in range(nprobe):
            count[probes[q0 + r, p] + 1] += 1
    for c in range(nlist):
        count[c + 1] += count[c]
    fill = count[:-1].copy()
    by_list = np.empty(nq * nprobe, np.int64)
    for r in range(nq):
        for p in range(nprobe):
            c = probes[q0 + r, p]
            by_list[fill[c]] = r
            fill[c] += 1
    row_bytes = nbytes * 64
    gathered = np.full(_AQ * row_bytes, LEVELS, np.uint8)  # padding lanes hold LEVELS: never admitted
    real = np.zeros(_AQ, np.bool_)  # lanes whose tables are a query's (to be reset before padding again)
    admit = np.zeros(_AQ, np.uint16)
    sums = np.empty(_AQ * _BLOCK, np.uint16)
    masks = np.empty(_AQ, np.int64)
    lanes = np.empty(_AQ, np.int64)
    for c in range(nlist):
        start, stop = count[c], count[c + 1]
        if start == stop or list_n[c] == 0:
            continue
        n_blocks = blk_ptr[c + 1] - blk_ptr[c]
        tail = list_n[c] - (n_blocks - 1) * _BLOCK
        last_mask = np.uint64((1 << tail) - 1)
        for g in range(start, stop, _AQ):
            nr = min(_AQ, stop - g)
            for r in range(_AQ):
                if r < nr:
                    lanes[r] = q0 + by_list[g + r]  # the query's row in the batch (heaps, tables)
                    src = lanes[r] * row_bytes
                    gathered[r * row_bytes : (r + 1) * row_bytes] = tables[src : src + row_bytes]
                    real[r] = True
                    admit[r] = -heap_s[lanes[r], 0] if heap_n[lanes[r]] == depth else 65535
                else:
                    if real[r]:  # a padding lane again: LEVELS everywhere
                        gathered[r * row_bytes : (r + 1) * row_bytes] = LEVELS
                        real[r] = False
                    admit[r] = 0
            for blk in range(n_blocks):
                gb = blk_ptr[c] + blk
                if _asym_block(planes, gb * nbytes * _BLOCK, nbytes, gathered, 0, admit, sums, masks) == 0:
                    continue
                for r in range(nr):
                    mask = np.uint64(masks[r])
                    if blk == n_blocks - 1:
                        mask &= last_mask
                    lane = lanes[r]
                    while mask:
                        i = _trailing_zeros(mask)
                        mask &= mask - np.uint64(1)
                        item = np.int64(list_ids[gb * _BLOCK + i])
                        d = np.int64(sums[r * _BLOCK + i])
                        size = heap_n[lane]
                        if size == depth and not _worse(heap_s[lane, 0], heap_i[lane, 0], -d, item):
                            continue
                        if has_ex and _excluded(item, lane, ex_ptr, ex_idx):
                            continue
                        heap_n[lane] = _push(heap_s[lane], heap_i[lane], size, depth, -d, item)
                        if heap_n[lane] == depth:
                            admit[r] = -heap_s[lane, 0]


@numba.njit(parallel=True, cache=True, nogil=True)
def _ivf_kernel(tables, probes, blk_ptr, list_n, planes, list_ids, nbytes, depth, ex_ptr, ex_idx, has_ex,
                heap_s, heap_i, heap_n, chunk):
    nq = probes.shape[0]
    n_tasks = (nq + chunk - 1) // chunk
    for t in numba.prange(n_tasks):
        q0 = t * chunk
        _scan_chunk(q0, min(q0 + chunk, nq), tables, probes, blk_ptr, list_n, planes, list_ids, nbytes, depth,
                    ex_ptr, ex_idx, has_ex, heap_s, heap_i, heap_n)


@numba.njit(parallel=True, cache=True, nogil=True)
def _drain_all(heap_s, heap_i, heap_n, out_d, out_i):
    """Code-only: each query's heap drained best first into ``out_d`` (``-D``) and ``out_i``."""
    for q in numba.prange(heap_s.shape[0]):
        _drain(heap_s[q], heap_i[q], heap_n[q], out_d, out_i, q)


def _probes(coarse: np.ndarray, nprobe: int) -> np.ndarray:
    """Each row's ``nprobe`` cells of largest score, best first (ties by smaller cell): a partition, then a
    sort of the chosen (a full argsort of every cell cost half the search at small ``nprobe``)."""
    if nprobe < coarse.shape[1]:
        part = np.argpartition(-coarse, nprobe - 1, axis=1)[:, :nprobe]
    else:
        part = np.broadcast_to(np.arange(coarse.shape[1]), coarse.shape)
    order = np.lexsort((part, -np.take_along_axis(coarse, part, 1)), axis=1)
    return np.ascontiguousarray(np.take_along_axis(part, order, 1))


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
        if not isinstance(bits, (int, np.integer)) or bits <= 0 or bits % 8 or bits > MAX_BITS:
            raise ValueError(f"bits must be a positive multiple of 8, at most {MAX_BITS}; got {bits!r}")
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
        self.cells = cell.astype(np.int32)  # each item's list
        self.list_n = np.bincount(cell, minlength=self.nlist).astype(np.int64)
        blocks = -(-self.list_n // _BLOCK)
        self.blk_ptr = np.concatenate([[0], np.cumsum(blocks)]).astype(np.int64)
        # each list starts a block of 32 (the scan's layout) and is padded to whole blocks: the slot of the
        # r-th item of list c is 32 blk_ptr[c] + r; ids -1 and zero codes in the padding
        first = np.concatenate([[0], np.cumsum(self.list_n)[:-1]])
        sorted_cells = cell[order]
        slots = self.blk_ptr[sorted_cells] * _BLOCK + np.arange(len(order)) - first[sorted_cells]
        self.list_ids = np.full(int(self.blk_ptr[-1]) * _BLOCK, -1, np.int32)
        self.list_ids[slots] = order
        padded = np.zeros((len(self.list_ids), codes.shape[1]), np.uint8)
        padded[slots] = codes[order]
        self.planes = _planes(padded)
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
        nq, nbytes = len(real), self.bits // 8
        if exclude is not None:
            ex_ptr, ex_idx = exclude.indptr.astype(np.int64), exclude.indices.astype(np.int64)
        else:
            ex_ptr = ex_idx = np.zeros(1, np.int64)
        out_d = np.zeros((nq, k), np.int64)
        ids = np.full((nq, k), -1, np.int64)
        scores = np.full((nq, k), -np.inf, np.float32)
        with _numba_threads(self.threads) as n_threads:
            for s in range(0, nq, _BATCH):
                e = min(s + _BATCH, nq)
                tables, step, offset, _ = quantise_queries(real[s:e])
                probes = _probes(q_emb[s:e] @ self.centroids.T, nprobe)
                heap_s = np.empty((e - s, depth), np.int64)
                heap_i = np.full((e - s, depth), -1, np.int64)  # -1 past a heap's size: the re-rank stops there
                heap_n = np.zeros(e - s, np.int64)
                _ivf_kernel(_kernel_tables(tables, e - s), probes.astype(np.int64), self.blk_ptr, self.list_n,
                            self.planes, self.list_ids, nbytes, depth, ex_ptr[s : e + 1] if exclude is not None
                            else ex_ptr, ex_idx, exclude is not None, heap_s, heap_i, heap_n,
                            max(_CHUNK, -(-(e - s) // n_threads)))  # a task a thread: more queries share a list
                if rerank:  # hierarchical search's re-rank of the candidates (the heaps' ids)
                    _rerank_kernel(heap_i, q_emb[s:e], self.item_emb, k, scores[s:e], ids[s:e])
                else:
                    _drain_all(heap_s, heap_i, heap_n, out_d[s:e], ids[s:e])
                    found = ids[s:e] >= 0
                    total = LEVELS * (self.bits // 4)
                    part = step[:, None] * (total + out_d[s:e]) + offset[:, None]  # out_d holds -D
                    scores[s:e][found] = part[found]
        return scores, ids

    def memory_bytes(self) -> int:
        """Codes and ids of the lists, the centroids, and the float embeddings when re-ranking."""
        if self.centroids is None:
            raise RuntimeError("search before build: call build((codes, embeddings)) first")
        base = self.planes.nbytes + self.list_ids.nbytes + self.centroids.nbytes
        return int(base + (self.item_emb.nbytes if self.candidates is not None else 0))
