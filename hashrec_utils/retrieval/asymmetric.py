"""Asymmetric search: real-valued queries scored against packed ±1 item codes, ``<q, b>``, at scan speed.

Items are stored as binary codes (``K/8`` bytes each, ``np.packbits`` rows, bit 1 = +1, bit 0 = -1);
the query — a user's real-valued hash-layer output ``h_u`` — is computed once per request and is
never binarised. Ranking the items by ``<h_u, sign h_i>`` instead of ``<sign h_u, sign h_i>`` keeps
the items' memory and most of the scan's speed, and recovers most of what symmetric Hamming
search loses (the same trade as Faiss's RaBitQ and PQ fast-scan, on learned codes).

The kernel (numba, the layout of :mod:`hashrec_utils.retrieval.kernel`):

* the ``K`` dimensions form ``K/4`` groups of 4, one per nibble of the packed code (the high
  nibble of byte ``b`` holds dimensions ``8b .. 8b+3``, the low one ``8b+4 .. 8b+7``); per query and
  group a 16-entry table ``L_g[v] = sum_j q_j (2 bit_j(v) - 1)`` holds the group's contribution
  for each of the 16 values the nibble can take;
* **query quantisation**: each table is shifted to start at 0 (``m_g = min_v L_g[v]``, a constant
  per query that cannot change a ranking) and all of a query's tables share one step
  ``s = max_g (max_v L_g - m_g) / 127``, so every entry becomes an integer ``0..127``
  (``round((L_g[v] - m_g) / s)``); two nibbles of a byte then add in one byte (``<= 254``);
* per code byte, 32 items are scored by two AVX2 ``pshufb`` lookups and one byte addition per
  query, widened into 16-bit accumulators (``254 * K/8 < 2^16`` for ``K <= 2048``); eight queries
  share a pass over the items' nibbles;
* top-k selection, exclusion and ties exactly as for Hamming: a per-query cut-off on the integer
  score, a histogram of accepted scores, a counting sort at the end; ties by the smaller id.

**Exactness.** The returned score of item ``i`` is ``s * sum_g round((L_g[v_g(i)] - m_g) / s) +
sum_g m_g``. Rankings equal those of the float ``<q, b_i>`` (ties by smaller id) whenever every
``(L_g[v] - m_g) / s`` is an integer — e.g. ``q = h / 2`` for integer ``h`` whose widest group has
``sum |h_j| = 127`` (the tests' case). Otherwise each table entry errs by at most ``s / 2``, so a
score errs by at most ``K/4 * s / 2`` (:func:`quantise_queries` returns this bound per query, and
:meth:`AsymmetricIndex.quantisation_error` the error measured on given items); an item can only
swap with one whose float score is within twice that.

``tests/retrieval/test_asymmetric.py`` holds the kernel to :func:`asymmetric_scores` (the plain
float reference); ``benchmarks/bench_asymmetric.py`` times it against the Hamming kernel and
Faiss's RaBitQ.
"""
from __future__ import annotations

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from ._checks import _check_codes, _check_exclude, _check_float, _check_k
from .indexes import CodeIndex
from .kernel import (_BLOCK, _TILE_BYTES, _compact, _drop_excluded, _has_pshufb, _is_bytes, _lower_cutoff,
                     _numba_threads, _splat, _trailing_zeros, _vector_ptr, _warm_histogram, _write_ranked)

# the asymmetric kernel (query quantisation, exclusion, ties by smaller id): bump when its ids can change
VERSION = 1

LEVELS = 127          # a group's table entries are integers 0..LEVELS; two of them add in one byte
MAX_BITS = 2048       # 254 * bits/8 must fit the 16-bit accumulators
_AQ = 8               # queries per group sharing a pass over the nibbles (8 beat 4 and 16 on bench_asymmetric)
_QUERY_BLOCK = 16     # queries per parallel task
_WARM_ITEMS = 512     # items whose k-th admissible score sets the first cut-off (or _WARM_PER_K * k)
_WARM_PER_K = 16

# _SIGNS[v, t] = +1 if bit (3 - t) of the nibble v is set, else -1: dimension t of a group is the nibble's
# bit 3 - t, as np.packbits writes dimension 8b + t into bit 7 - t of byte b.
_SIGNS = np.where((np.arange(16)[:, None] >> (3 - np.arange(4))[None, :]) & 1, 1.0, -1.0)


def asymmetric_scores(queries: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """The float reference: ``<q, b>`` for every query and item, ``b = 2 unpackbits(code) - 1``.

    ``queries (nq, K)`` float, ``codes (n, K/8)`` packed ``np.uint8`` -> float64 ``(nq, n)``.
    """
    codes = _check_codes(codes, "codes")
    queries = _check_float(queries, "queries", codes.shape[1] * 8)
    signs = np.unpackbits(codes, axis=1).astype(np.float64) * 2 - 1
    return queries.astype(np.float64) @ signs.T


def _group_tables(queries: np.ndarray) -> np.ndarray:
    """``L[q, g, v]``: the contribution of nibble group ``g`` (dimensions ``4g .. 4g+3``) when its value is ``v``."""
    nq, bits = queries.shape
    flat = np.asarray(queries, dtype=np.float64).reshape(nq * (bits // 4), 4)
    return (flat @ _SIGNS.T).reshape(nq, bits // 4, 16)  # sums of four float32 values: exact in float64


@numba.njit(parallel=True, cache=True, nogil=True)
def _quantise_kernel(queries, signs, levels, tables, step, offset):
    """:func:`quantise_queries` a query a task: the same float64 operations in the same order as its
    NumPy reference (:func:`_quantise_reference`), so the same tables, steps and offsets."""
    nq, bits = queries.shape
    groups = bits // 4
    for r in numba.prange(nq):
        L = np.empty((groups, 16), np.float64)
        width = 0.0
        total = 0.0
        for g in range(groups):
            lo = np.inf
            for v in range(16):
                x = 0.0
                for t in range(4):
                    x += np.float64(queries[r, 4 * g + t]) * signs[v, t]
                L[g, v] = x
                lo = min(lo, x)
            for v in range(16):
                L[g, v] -= lo
                width = max(width, L[g, v])
            total += lo
        st = width / levels if width > 0 else 1.0
        for g in range(groups):
            for v in range(16):
                e = np.rint(L[g, v] / st)
                tables[r, g, v] = np.uint8(min(max(e, 0.0), levels))
        step[r] = st
        offset[r] = total


def quantise_queries(queries: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Each query's integer tables and how to read them back.

    ``queries (nq, K)`` float -> ``(tables uint8 (nq, K/4, 16), step (nq,), offset (nq,), bound (nq,))``:
    ``<q, b> ≈ step * sum_g tables[g, v_g(b)] + offset`` with every entry in ``0..127``, and
    ``bound = K/4 * step / 2`` the most that approximation can err (module docstring). A numba kernel,
    a query a task (:func:`_quantise_reference` is the NumPy formula it is held to: the NumPy one
    took half of a Gowalla-sized search).
    """
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    nq, bits = queries.shape
    tables = np.empty((nq, bits // 4, 16), np.uint8)
    step, offset = np.empty(nq, np.float64), np.empty(nq, np.float64)
    _quantise_kernel(queries, _SIGNS, float(LEVELS), tables, step, offset)
    return tables, step, offset, (bits // 4) * step / 2


def _quantise_reference(queries: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The NumPy formula of :func:`quantise_queries` (the tests hold the kernel to it)."""
    L = _group_tables(queries)
    low = L.min(axis=2, keepdims=True)
    L -= low
    width = L.max(axis=2).max(axis=1)
    step = np.where(width > 0, width / LEVELS, 1.0)
    L /= step[:, None, None]
    tables = np.clip(np.rint(L, out=L), 0, LEVELS).astype(np.uint8)
    groups = queries.shape[1] // 4
    return tables, step, low.sum(axis=(1, 2)), groups * step / 2


def _kernel_tables(tables: np.ndarray, rows: int) -> np.ndarray:
    """Tables in the kernel's layout: per query and code byte 64 bytes ``(T_lo, T_lo, T_hi, T_hi)`` of
    ``LEVELS - entry`` (a distance: smaller is better), the low nibble's group (``2b + 1``) then the high one's
    (``2b``); padding queries up to ``rows`` get ``LEVELS`` everywhere, which no cut-off admits."""
    nq, groups, _ = tables.shape
    out = np.full((rows, groups // 2, 4, 16), LEVELS, np.uint8)
    dist = (LEVELS - tables).reshape(nq, groups // 2, 2, 16)
    out[:nq, :, 0] = out[:nq, :, 1] = dist[:, :, 1]
    out[:nq, :, 2] = out[:nq, :, 3] = dist[:, :, 0]
    return out.reshape(-1)


@intrinsic
def _asym_block(typingctx, planes, pbase, nbytes, tables, g0, admit, sums, masks):
    """Distances of one 32-item block to the ``_AQ`` queries of a group, in 16-bit lanes.

    ``sums[32 r + i] = sum_b (T_lo[x & 15] + T_hi[x >> 4])`` for item byte ``x = planes[pbase + 32 b + i]``
    and the tables of query ``g0 + r`` and byte ``b``; ``masks[r]`` bit ``i`` set iff that sum ``<= admit[r]``;
    returns nonzero iff any mask is. With AVX2, ``pshufb`` looks the tables up 32 items at a time;
    otherwise each lane is looked up on its own (the same sums).
    """
    u16 = types.Array(types.uint16, 1, "C")
    if not _is_bytes(planes, tables) or admit != u16 or sums != u16 or masks != types.Array(types.int64, 1, "C"):
        return None
    sig = types.int64(planes, types.int64, types.int64, tables, types.int64, admit, sums, masks)

    def codegen(context, builder, signature, args):
        planes_v, pbase_v, nbytes_v, tables_v, g0_v, admit_v, sums_v, masks_v = args
        at = signature.args
        i8, i16, i32, i64 = ir.IntType(8), ir.IntType(16), ir.IntType(32), ir.IntType(64)
        vty = ir.VectorType(i8, _BLOCK)
        wty = ir.VectorType(i16, _BLOCK)
        use_pshufb = _has_pshufb(context)
        if use_pshufb:
            pshufb = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vty, [vty, vty]), "llvm.x86.avx2.pshuf.b")
        tdata = context.make_array(at[3])(context, builder, tables_v).data

        def lookup(base, idx):
            """``T[idx]`` lane by lane: the 32 table bytes at ``tables[base:]``, indexed by the lanes of ``idx``."""
            if use_pshufb:
                return builder.call(pshufb, [builder.load(_vector_ptr(context, builder, at[3], tables_v, base, vty),
                                                          align=1), idx])
            out = ir.Constant(vty, ir.Undefined)
            for lane in range(_BLOCK):
                j = builder.zext(builder.extract_element(idx, ir.Constant(i32, lane)), i64)
                out = builder.insert_element(out, builder.load(builder.gep(tdata, [builder.add(base, j)])),
                                             ir.Constant(i32, lane))
            return out

        accs = [cgutils.alloca_once_value(builder, ir.Constant(wty, [0] * _BLOCK)) for _ in range(_AQ)]
        with cgutils.for_range(builder, nbytes_v) as loop:
            b = loop.index
            x = builder.load(_vector_ptr(context, builder, at[0], planes_v,
                                         builder.add(pbase_v, builder.mul(b, ir.Constant(i64, _BLOCK))), vty), align=1)
            lo = builder.and_(x, ir.Constant(vty, [15] * _BLOCK))
            hi = builder.lshr(x, ir.Constant(vty, [4] * _BLOCK))
            for r in range(_AQ):
                row = builder.add(builder.mul(builder.add(g0_v, ir.Constant(i64, r)), nbytes_v), b)
                base = builder.mul(row, ir.Constant(i64, 64))
                part = builder.add(lookup(base, lo), lookup(builder.add(base, ir.Constant(i64, 32)), hi))
                builder.store(builder.add(builder.load(accs[r]), builder.zext(part, wty)), accs[r])
        admit_data = context.make_array(at[5])(context, builder, admit_v).data
        sums_data = context.make_array(at[6])(context, builder, sums_v).data
        mask_data = context.make_array(at[7])(context, builder, masks_v).data
        hit = ir.Constant(i64, 0)
        for r in range(_AQ):
            acc = builder.load(accs[r])
            ptr = builder.bitcast(builder.gep(sums_data, [ir.Constant(i64, _BLOCK * r)]), wty.as_pointer())
            builder.store(acc, ptr, align=2)
            limit = _splat(builder, builder.load(builder.gep(admit_data, [ir.Constant(i64, r)])), wty)
            bits = builder.zext(builder.bitcast(builder.icmp_unsigned("<=", acc, limit), i32), i64)
            builder.store(bits, builder.gep(mask_data, [ir.Constant(i64, r)]))
            hit = builder.or_(hit, bits)
        return hit

    return sig, codegen


@numba.njit(cache=True, fastmath=True, nogil=True)
def _asym_topk_block(tables, planes, n, nbytes, q0, q1, k, tile, dmax, out_d, out_i, ex_ptr, ex_idx, has_ex):
    """Top-k (smallest distance ``D = 127 K/4 - sum of entries``, ties by id) of queries ``q0..q1``.

    The selection of :func:`hashrec_utils.retrieval.kernel._topk_block` in one round: the ``k``-th
    admissible distance among the first ``n0`` items is a safe first cut-off (admit ``D < t``); the scan
    appends every item of a block that passes, and ``t`` drops while ``k`` candidates lie below it. The
    result is every candidate below ``t`` and the first (smallest-id) ones at ``t``, sorted by counting.
    """
    n_blocks = -(-n // _BLOCK)
    nq = q1 - q0
    groups = -(-nq // _AQ)
    rows = groups * _AQ
    cap = min(2 * k, n) + 64
    cand_d = np.empty((rows, cap), np.int32)
    cand_i = np.empty((rows, cap), np.int32)
    hist = np.zeros((rows, dmax + 2), np.int32)
    count = np.zeros(rows, np.int64)
    below = np.zeros(rows, np.int64)
    cutoff = np.zeros(rows, np.int64)
    admit = np.zeros(rows, np.uint16)
    ptr = np.zeros(rows, np.int64)
    sums = np.empty(_AQ * _BLOCK, np.uint16)
    masks = np.empty(_AQ, np.int64)
    tail = n - (n_blocks - 1) * _BLOCK
    last_mask = np.uint64((1 << tail) - 1)

    # Warm start: the k-th admissible distance among the first n0 items bounds the final k-th distance.
    w0 = min(n_blocks, -(-max(_WARM_ITEMS, _WARM_PER_K * k) // _BLOCK))
    n0 = min(n, w0 * _BLOCK)
    wsum = np.empty((_AQ, w0 * _BLOCK), np.int64)
    whist = np.empty(dmax + 2, np.int64)
    for grp in range(groups):
        g0 = q0 + grp * _AQ
        admit[grp * _AQ : (grp + 1) * _AQ] = 65535
        for g in range(w0):
            _asym_block(planes, g * nbytes * _BLOCK, nbytes, tables, g0, admit[grp * _AQ :], sums, masks)
            for r in range(_AQ):
                for i in range(_BLOCK):
                    wsum[r, g * _BLOCK + i] = sums[r * _BLOCK + i]
        for r in range(_AQ):
            row, q = grp * _AQ + r, g0 + r
            if r >= nq - grp * _AQ:
                admit[row] = 0
                continue
            _warm_histogram(whist, wsum, r, n0, q, row, ptr, ex_ptr, ex_idx, has_ex)
            t, acc = 0, whist[0]
            while acc < k and t <= dmax:
                t += 1
                acc += whist[t]
            cutoff[row] = t + 1 if acc >= k else dmax + 1
            admit[row] = min(cutoff[row] - 1, 65535)

    for t0 in range(0, n_blocks, tile):
        t1 = min(t0 + tile, n_blocks)
        for grp in range(groups):
            gadmit = admit[grp * _AQ :]
            nr = min(_AQ, nq - grp * _AQ)
            g0 = q0 + grp * _AQ
            for g in range(t0, t1):
                if _asym_block(planes, g * nbytes * _BLOCK, nbytes, tables, g0, gadmit, sums, masks) == 0:
                    continue
                base = g * _BLOCK
                for r in range(nr):
                    mask = np.uint64(masks[r])
                    if mask == 0:
                        continue
                    row = grp * _AQ + r
                    t = cutoff[row]
                    if t == 0:
                        continue
                    if g == n_blocks - 1:
                        mask &= last_mask
                    if has_ex:
                        mask = _drop_excluded(mask, row, g0 + r, base, ptr, ex_ptr, ex_idx)
                    if mask == 0:
                        continue
                    if count[row] + _BLOCK > cap:
                        _compact(row, k, t, below[row], cand_d, cand_i, hist, count)
                    m = count[row]
                    bl = below[row]
                    while mask:
                        i = _trailing_zeros(mask)
                        mask &= mask - np.uint64(1)
                        d = np.int64(sums[r * _BLOCK + i])
                        cand_d[row, m] = d
                        cand_i[row, m] = base + i
                        m += 1
                        hist[row, d] += 1
                        bl += 1
                    count[row] = m
                    if bl >= k:
                        t, bl = _lower_cutoff(hist, row, t, bl, k)
                        cutoff[row] = t
                        gadmit[r] = max(t - 1, 0)
                    below[row] = bl

    start = np.empty(dmax + 2, np.int64)
    for row in range(nq):
        _write_ranked(row, q0 + row, k, dmax + 2, hist, count, cand_d, cand_i, start, out_d, out_i)


@numba.njit(parallel=True, cache=True, fastmath=True, nogil=True)
def _asym_kernel(tables, planes, n, nbytes, k, block, tile, dmax, out_d, out_i, ex_ptr, ex_idx, has_ex):
    nq = out_d.shape[0]
    n_tasks = (nq + block - 1) // block
    for b in numba.prange(n_tasks):
        q0 = b * block
        _asym_topk_block(tables, planes, n, nbytes, q0, min(q0 + block, nq), k, tile, dmax, out_d, out_i, ex_ptr, ex_idx,
                         has_ex)


def _asymmetric_search(queries: np.ndarray, planes: np.ndarray, n: int, k: int, exclude, threads):
    """Kernel call: float queries ``(nq, K)``, byte-sliced items -> float32 scores, int64 ids ``(nq, k)``."""
    nq, bits = queries.shape
    nbytes = bits // 8
    scores = np.full((nq, k), -np.inf, np.float32)
    ids = np.full((nq, k), -1, np.int64)
    if nq == 0 or n == 0:
        return scores, ids
    if n >= 2**31:
        raise ValueError(f"items has {n} rows; the kernel holds ids as int32 (fewer than 2**31 items)")
    tables, step, offset, _ = quantise_queries(queries)
    with _numba_threads(threads) as n_threads:
        per_thread = -(-nq // n_threads)
        block = min(_QUERY_BLOCK, -(-per_thread // _AQ) * _AQ)
        rows = -(-nq // block) * block
        flat = _kernel_tables(tables, rows)
        if exclude is not None:
            ex_ptr, ex_idx = exclude.indptr.astype(np.int64), exclude.indices.astype(np.int64)
        else:
            ex_ptr = ex_idx = np.zeros(1, np.int64)
        dmax = 2 * LEVELS * nbytes
        out_d = np.full((nq, k), -1, np.int64)
        tile = max(1, _TILE_BYTES // (nbytes * _BLOCK))
        _asym_kernel(flat, planes, n, nbytes, k, block, tile, dmax, out_d, ids, ex_ptr, ex_idx, exclude is not None)
    found = ids >= 0
    total = LEVELS * (bits // 4)
    scores[found] = (step[:, None] * (total - out_d) + offset[:, None])[found]
    return scores, ids


def asymmetric_topk(queries: np.ndarray, item_codes: np.ndarray, k: int, exclude=None, *,
                    threads: int | None = None, return_scores: bool = False):
    """Top-``k`` items by ``<q, b_i>`` (quantised, module docstring), ties by smaller id, ``exclude`` never returned.

    ``queries (nq, K)`` float, ``item_codes (n, K/8)`` packed ``np.uint8``. Returns int64 ids
    ``(nq, k)`` (``-1`` padding) and, with ``return_scores``, ``(ids, scores)`` (float32, ``-inf``
    padding). One-off convenience; what :class:`AsymmetricIndex` computes.
    """
    items = _check_codes(item_codes, "item_codes")
    index = AsymmetricIndex(items.shape[1] * 8, threads).build(items)
    scores, ids = index.search(queries, k, exclude)
    return (ids, scores) if return_scores else ids


class AsymmetricIndex(CodeIndex):
    """Real-valued queries against packed ±1 item codes, ``<q, b_i>`` by table lookups (module docstring).

    ``AsymmetricIndex(bits, threads=None)``; ``build(codes (n, bits/8) uint8)``;
    ``search(queries (nq, bits) float, k, exclude=None) -> (scores float32, ids int64)``, scores
    descending (the quantised ``<q, b_i>``), ties by smaller id, padding ``-inf`` / ``-1``.
    Memory: the codes, ``bits/8`` bytes per item (rounded up to blocks of 32 items).
    """

    kind = "asymmetric"
    name = "asymmetric"
    MAX_BITS = MAX_BITS

    def search(self, queries: np.ndarray, k: int, exclude=None) -> tuple[np.ndarray, np.ndarray]:
        planes = self._built()
        queries = _check_float(queries, "queries", self.bits)
        k = _check_k(k)
        exclude = _check_exclude(exclude, len(queries), self.n_items)
        return _asymmetric_search(queries, planes, self.n_items, k, exclude, self.threads)

    def quantisation_error(self, queries: np.ndarray, items: np.ndarray) -> dict[str, float]:
        """How far the quantised scores are from ``<q, b>`` on ``items`` (packed codes):
        ``max_abs``, ``mean_abs``, the largest ``bound`` (module docstring) and ``max_abs / score range``."""
        queries = _check_float(queries, "queries", self.bits)
        items = _check_codes(items, "items", self.bits)
        tables, step, offset, bound = quantise_queries(queries)
        exact = asymmetric_scores(queries, items)
        nibbles = np.stack([items >> 4, items & 15], axis=2).reshape(len(items), -1)  # (n, K/4) in group order
        approx = step[:, None] * tables[:, np.arange(nibbles.shape[1]), nibbles].sum(axis=2) + offset[:, None]
        err = np.abs(approx - exact)
        spread = exact.max(axis=1) - exact.min(axis=1)
        return {"max_abs": float(err.max()), "mean_abs": float(err.mean()), "bound": float(bound.max()),
                "relative": float((err.max(axis=1) / np.where(spread > 0, spread, 1)).max())}

