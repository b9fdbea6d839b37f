"""hashrec's exact Hamming top-k kernel (numba) and the plain-NumPy reference distances.

See the package docstring (:mod:`hashrec_utils.retrieval`) for the design:
byte-sliced blocks of 32 items, ``pshufb`` nibble tables, selection by
counting, ties by the smaller id.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from ._checks import _check_codes, _check_exclude, _check_k, _check_threads


# the Hamming top-k kernel (popcount, exclusion, ties by smaller id): bump when its ids can change
VERSION = 1


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
#
# Layout. Items are stored byte-sliced in blocks of 32: ``planes[g, b, i]`` is
# byte ``b`` of item ``32 g + i`` (zero rows pad the last block). One 32-byte
# vector thus holds the same byte of 32 items.
#
# Distances. For a query byte ``c`` and an item byte ``x``,
# ``popcount(c XOR x) = T_lo[x & 15] + T_hi[x >> 4]`` with the 16-entry tables
# ``T_lo[v] = popcount((c & 15) XOR v)`` and ``T_hi[v] = popcount((c >> 4) XOR v)``.
# AVX2's ``pshufb`` looks up 32 such table entries in one instruction, so the
# distances of 32 items to one query cost, per code byte, two lookups and two
# byte additions; splitting the item bytes into nibbles (three instructions)
# is shared by the ``_Q = 8`` queries of a group, whose 8 running sums stay in
# registers. The sums are saturating bytes: with K >= 256 bits a sum of 255
# may hide a larger distance, and such an item is measured again, exactly.

_Q = 8                # queries per group: 8 byte-accumulators held in AVX2 registers
_BLOCK = 32           # items per block: one 32-byte vector per code byte
_QUERY_BLOCK = 16     # queries per parallel task (two groups) sharing one pass over an item tile
_TILE_BYTES = 131_072  # one tile of codes stays in L2 while the task's groups walk it
_WARM_ITEMS = 512     # items whose k-th admissible distance is the first cut-off, or _WARM_PER_K * k when more
_WARM_PER_K = 16
_GUESS = 4            # first cut-off: the distance within which n0 items hold _GUESS times their share of the top k
_GUESS_MIN = 8        # ... and at least this many of them (fewer would make a poor estimate)


def _has_pshufb(context) -> bool:
    """Whether numba compiles for a CPU with AVX2 (``pshufb`` on 32 bytes): the features of its JIT target."""
    features = getattr(context.codegen(), "_tm_features", None)
    if features is None:  # numba's internals moved: fall back to what numba would ask LLVM
        import llvmlite.binding as llb

        features = numba.config.CPU_FEATURES or llb.get_host_cpu_features().flatten()
    return "+avx2" in features.split(",")


@intrinsic
def _popcount(typingctx, x):
    """Hardware population count (LLVM ``ctpop``) of an unsigned integer, as int64."""
    if not isinstance(x, types.Integer) or x.signed:
        return None

    def codegen(context, builder, signature, args):
        count = builder.ctpop(args[0])
        return builder.zext(count, context.get_value_type(types.int64)) if x.bitwidth < 64 else count

    return types.int64(x), codegen


@intrinsic
def _trailing_zeros(typingctx, x):
    """Index of the lowest set bit of a nonzero ``uint64`` (LLVM ``cttz``, one ``tzcnt``), as int64."""
    if x != types.uint64:
        return None

    def codegen(context, builder, signature, args):
        return builder.cttz(args[0], context.get_constant(types.boolean, True))

    return types.int64(x), codegen


def _vector_ptr(context, builder, array_type, array, offset, vty):
    """Pointer to ``vty`` at element ``offset`` of a 1-D uint8 numba array."""
    data = context.make_array(array_type)(context, builder, array).data
    return builder.bitcast(builder.gep(data, [offset]), vty.as_pointer())


def _splat(builder, byte, vty):
    """The vector ``vty`` with every lane equal to ``byte``."""
    i32 = ir.IntType(32)
    v = builder.insert_element(ir.Constant(vty, ir.Undefined), byte, ir.Constant(i32, 0))
    return builder.shuffle_vector(v, ir.Constant(vty, ir.Undefined), ir.Constant(ir.VectorType(i32, vty.count), [0] * vty.count))


def _is_bytes(*arrays) -> bool:
    """Typing guard of the intrinsics: 1-D C-contiguous uint8 arrays."""
    return all(isinstance(a, types.Array) and a.dtype == types.uint8 and a.ndim == 1 and a.layout == "C" for a in arrays)


@intrinsic
def _block_sums(typingctx, planes, pbase, nbytes, tables, qbytes, g0, admit, sums):
    """Distances of one item block (32 items) to the ``_Q`` queries of a group, as saturated bytes.

    ``sums[32 r + i] = min(255, sum_b popcount(planes[pbase + 32 b + i] XOR qbytes[g0 + r, b]))``
    for ``r < _Q``, ``i < 32``. Returns nonzero iff some ``sums[32 r + i] <= admit[r]``
    (``admit``: uint8 per query, the largest sum that may still enter its top k).

    With AVX2, the sum is ``T_lo[x & 15] + T_hi[x >> 4]`` by ``pshufb`` from
    ``tables[g0 + r, b] = (T_lo, T_lo, T_hi, T_hi)`` (64 bytes); otherwise a
    vector ``ctpop`` of ``x XOR c`` that LLVM lowers for the target (NEON ``cnt``).
    """
    if not _is_bytes(planes, tables, qbytes, admit, sums):
        return None
    sig = types.int64(planes, types.int64, types.int64, tables, qbytes, types.int64, admit, sums)

    def codegen(context, builder, signature, args):
        planes_v, pbase_v, nbytes_v, tables_v, qbytes_v, g0_v, admit_v, sums_v = args
        at = signature.args
        i8, i32, i64 = ir.IntType(8), ir.IntType(32), ir.IntType(64)
        vty = ir.VectorType(i8, _BLOCK)
        module = builder.module
        add_sat = cgutils.get_or_insert_function(module, ir.FunctionType(vty, [vty, vty]), "llvm.uadd.sat.v32i8")
        use_pshufb = _has_pshufb(context)
        if use_pshufb:
            pshufb = cgutils.get_or_insert_function(module, ir.FunctionType(vty, [vty, vty]), "llvm.x86.avx2.pshuf.b")
        else:
            ctpop = cgutils.get_or_insert_function(module, ir.FunctionType(vty, [vty]), "llvm.ctpop.v32i8")

        qdata = context.make_array(at[4])(context, builder, qbytes_v).data
        accs = [cgutils.alloca_once_value(builder, ir.Constant(vty, [0] * _BLOCK)) for _ in range(_Q)]
        with cgutils.for_range(builder, nbytes_v) as loop:
            b = loop.index
            x = builder.load(_vector_ptr(context, builder, at[0], planes_v,
                                         builder.add(pbase_v, builder.mul(b, ir.Constant(i64, _BLOCK))), vty), align=1)
            if use_pshufb:
                lo = builder.and_(x, ir.Constant(vty, [15] * _BLOCK))
                hi = builder.lshr(x, ir.Constant(vty, [4] * _BLOCK))
            for r in range(_Q):
                row = builder.add(builder.mul(builder.add(g0_v, ir.Constant(i64, r)), nbytes_v), b)
                if use_pshufb:
                    t_lo = builder.load(_vector_ptr(context, builder, at[3], tables_v,
                                                    builder.mul(row, ir.Constant(i64, 64)), vty), align=1)
                    t_hi = builder.load(_vector_ptr(context, builder, at[3], tables_v,
                                                    builder.add(builder.mul(row, ir.Constant(i64, 64)),
                                                                ir.Constant(i64, 32)), vty), align=1)
                    part = builder.add(builder.call(pshufb, [t_lo, lo]), builder.call(pshufb, [t_hi, hi]))
                else:
                    c = builder.load(builder.gep(qdata, [row]))
                    part = builder.call(ctpop, [builder.xor(x, _splat(builder, c, vty))])
                builder.store(builder.call(add_sat, [builder.load(accs[r]), part]), accs[r])
        admit_data = context.make_array(at[6])(context, builder, admit_v).data
        hit = None
        for r in range(_Q):
            acc = builder.load(accs[r])
            builder.store(acc, _vector_ptr(context, builder, at[7], sums_v, ir.Constant(i64, _BLOCK * r), vty), align=1)
            limit = _splat(builder, builder.load(builder.gep(admit_data, [ir.Constant(i64, r)])), vty)
            below = builder.icmp_unsigned("<=", acc, limit)
            hit = below if hit is None else builder.or_(hit, below)
        return builder.zext(builder.bitcast(hit, i32), i64)

    return sig, codegen


@intrinsic
def _block_masks(typingctx, sums, admit, masks):
    """``masks[r]``: bit ``i`` set iff ``sums[32 r + i] <= admit[r]``, for the ``_Q`` queries of a group."""
    if not _is_bytes(sums, admit) or masks != types.Array(types.int64, 1, "C"):
        return None
    sig = types.void(sums, admit, masks)

    def codegen(context, builder, signature, args):
        sums_v, admit_v, masks_v = args
        at = signature.args
        i8, i32, i64 = ir.IntType(8), ir.IntType(32), ir.IntType(64)
        vty = ir.VectorType(i8, _BLOCK)
        admit_data = context.make_array(at[1])(context, builder, admit_v).data
        mask_data = context.make_array(at[2])(context, builder, masks_v).data
        for r in range(_Q):
            acc = builder.load(_vector_ptr(context, builder, at[0], sums_v, ir.Constant(i64, _BLOCK * r), vty), align=1)
            limit = _splat(builder, builder.load(builder.gep(admit_data, [ir.Constant(i64, r)])), vty)
            bits = builder.bitcast(builder.icmp_unsigned("<=", acc, limit), i32)
            builder.store(builder.zext(bits, i64), builder.gep(mask_data, [ir.Constant(i64, r)]))
        return context.get_dummy_value()

    return sig, codegen


def _planes(codes: np.ndarray) -> np.ndarray:
    """Packed rows ``(n, B)`` -> byte-sliced blocks ``(ceil(n/32) * B * 32,)``: ``[g, b, i]`` = byte b of item 32g+i."""
    n, nbytes = codes.shape
    blocks = -(-n // _BLOCK)
    padded = np.zeros((blocks * _BLOCK, nbytes), np.uint8)
    padded[:n] = codes
    return np.ascontiguousarray(padded.reshape(blocks, _BLOCK, nbytes).transpose(0, 2, 1)).reshape(-1)


@numba.njit(cache=True, nogil=True)
def _fill_tables(qcodes, q0, q1, tables, qbytes):
    """Per query and code byte ``c``: ``(T_lo, T_lo, T_hi, T_hi)``, ``T_lo[v] = popcount((c & 15) ^ v)``,
    ``T_hi[v] = popcount((c >> 4) ^ v)``; rows past ``q1 - q0`` are padding queries whose sums saturate
    (tables of 255), so that they never pass a cut."""
    nbytes = qcodes.shape[1]
    tables[:] = 255
    qbytes[:] = 0
    for r in range(q1 - q0):
        for b in range(nbytes):
            c = qcodes[q0 + r, b]
            qbytes[r * nbytes + b] = c
            base = (r * nbytes + b) * 64
            for v in range(16):
                lo = np.uint8(_popcount(np.uint8((c & 15) ^ v)))
                hi = np.uint8(_popcount(np.uint8((c >> 4) ^ v)))
                tables[base + v] = lo
                tables[base + 16 + v] = lo
                tables[base + 32 + v] = hi
                tables[base + 48 + v] = hi


@numba.njit(cache=True, nogil=True)
def _item_distance(planes, g, i, nbytes, qcodes, q):
    """Exact distance of item ``32 g + i`` to query ``q`` (when a saturated byte sum cannot tell)."""
    d = 0
    for b in range(nbytes):
        d += _popcount(np.uint8(planes[(g * nbytes + b) * _BLOCK + i] ^ qcodes[q, b]))
    return d


@numba.njit(cache=True, nogil=True, inline="always")
def _compact(row, k, t, below, cand_d, cand_i, hist, count):
    """Keep a query's ``k`` best candidates: every one with distance ``< t``, then the first (smaller-id)
    ``k - below`` at ``t``; the buffer stays in id order and ``hist`` is rebuilt from what is kept."""
    ties = k - below
    m = 0
    for s in range(count[row]):
        ds = cand_d[row, s]
        if ds < t or (ds == t and ties > 0):
            if ds == t:
                ties -= 1
            cand_d[row, m] = ds
            cand_i[row, m] = cand_i[row, s]
            m += 1
    count[row] = m
    hist[row, :] = 0
    for s in range(m):
        hist[row, cand_d[row, s]] += 1


@numba.njit(cache=True, nogil=True, inline="always")
def _drop_excluded(mask, row, q, base, ptr, ex_ptr, ex_idx):
    """``mask`` (bit ``i``: item ``base + i``) without the items query ``q`` excludes; a merge along its sorted
    CSR row, whose position ``ptr[row]`` advances (blocks arrive in id order). Shared by both scans."""
    p, end = ptr[row], ex_ptr[q + 1]
    while p < end and ex_idx[p] < base:
        p += 1
    while p < end and ex_idx[p] < base + _BLOCK:
        mask &= ~(np.uint64(1) << np.uint64(ex_idx[p] - base))
        p += 1
    ptr[row] = p
    return mask


@numba.njit(cache=True, nogil=True, inline="always")
def _warm_histogram(whist, wsum, r, n0, q, row, ptr, ex_ptr, ex_idx, has_ex):
    """``whist``: the histogram of query ``q``'s distances ``wsum[r, :n0]`` over the first ``n0`` items, its
    excluded items left out; the query's CSR position ``ptr[row]`` starts at its row. Shared by both scans."""
    whist[:] = 0
    for j in range(n0):
        whist[wsum[r, j]] += 1
    if has_ex:
        p, end = ex_ptr[q], ex_ptr[q + 1]
        while p < end and ex_idx[p] < n0:
            whist[wsum[r, ex_idx[p]]] -= 1
            p += 1
        ptr[row] = ex_ptr[q]


@numba.njit(cache=True, nogil=True, inline="always")
def _lower_cutoff(hist, row, t, below, k):
    """Drop the cut-off ``t`` while ``k`` or more candidates lie below it; returns ``(t, below)``."""
    while below >= k:
        t -= 1
        below -= hist[row, t]
    return t, below


@numba.njit(cache=True, nogil=True, inline="always")
def _write_ranked(row, out_row, k, nbins, hist, count, cand_d, cand_i, start, out_d, out_i):
    """A query's kept candidates into ``out_*[out_row]`` by a stable counting sort over ``nbins`` distances
    (equal distances stay in id order); only the first ``k`` positions are written. Shared by both scans."""
    acc = 0
    for d in range(nbins):
        start[d] = acc
        acc += hist[row, d]
    for s in range(count[row]):
        d = cand_d[row, s]
        pos = start[d]
        start[d] = pos + 1
        if pos < k:
            out_d[out_row, pos] = d
            out_i[out_row, pos] = cand_i[row, s]


@numba.njit(cache=True, fastmath=True, nogil=True, inline="always")
def _scan(qcodes, planes, n, q0, nq, k, tile, groups, n_blocks, nbytes, saturates, last_mask, cap, attempt,
          active, tables, qbytes, admit, cutoff, count, below, ptr, hist, cand_d, cand_i, sums, masks,
          ex_ptr, ex_idx, has_ex):
    """One round of the scan over every block for the ``active`` queries (see :func:`_topk_block`)."""
    for t0 in range(0, n_blocks, tile):
        t1 = min(t0 + tile, n_blocks)
        for grp in range(groups):
            if attempt == 1:
                any_active = False
                for r in range(_Q):
                    any_active |= active[grp * _Q + r]
                if not any_active:
                    continue
            gadmit = admit[grp * _Q :]
            nr = min(_Q, nq - grp * _Q)
            for g in range(t0, t1):
                if _block_sums(planes, g * nbytes * _BLOCK, nbytes, tables, qbytes, grp * _Q, gadmit, sums) == 0:
                    continue
                _block_masks(sums, gadmit, masks)
                base = g * _BLOCK
                live = np.uint64(0)  # bit r: query r has an item that passes (no branch per query)
                for r in range(nr):
                    live |= np.uint64(masks[r] != 0) << np.uint64(r)
                while live:
                    r = _trailing_zeros(live)
                    live &= live - np.uint64(1)
                    mask = np.uint64(masks[r])
                    row = grp * _Q + r
                    if attempt == 1 and not active[row]:
                        continue
                    t = cutoff[row]
                    if t == 0:  # k items at distance 0: nothing more can enter (admit 0 still passes d = 0)
                        continue
                    if g == n_blocks - 1:
                        mask &= last_mask
                    q = q0 + row
                    if has_ex:
                        mask = _drop_excluded(mask, row, q, base, ptr, ex_ptr, ex_idx)
                    if mask == 0:
                        continue
                    if count[row] + _BLOCK > cap:
                        _compact(row, k, t, below[row], cand_d, cand_i, hist, count)
                    m = count[row]
                    b = below[row]
                    while mask:
                        i = _trailing_zeros(mask)
                        mask &= mask - np.uint64(1)
                        d = np.int64(sums[r * _BLOCK + i])
                        if saturates and d == 255:
                            d = _item_distance(planes, g, i, nbytes, qcodes, q)
                            if d >= t:
                                continue
                        cand_d[row, m] = d
                        cand_i[row, m] = base + i
                        m += 1
                        hist[row, d] += 1
                        b += 1
                    count[row] = m
                    if b >= k:
                        t, b = _lower_cutoff(hist, row, t, b, k)
                        cutoff[row] = t
                        gadmit[r] = min(max(t - 1, 0), 255)
                    below[row] = b


@numba.njit(cache=True, fastmath=True, nogil=True)
def _topk_block(qcodes, planes, n, q0, q1, k, tile, ranked, out_d, out_i, ex_ptr, ex_idx, has_ex):
    """Exact top-k of queries ``q0..q1`` over the ``n`` items of ``planes``; writes rows of ``out_d``, ``out_i``.

    ``ranked``: rows sorted by (distance, id); else the same set in id order.

    Per query, a buffer of candidates in id order, ``hist`` of their
    distances, a cut-off ``t`` (admit ``d < t``) and ``below`` = the number of
    candidates with ``d < t``. A warm start histograms the first ``n0`` items:
    one more than their k-th admissible distance is the safe cut-off (the final
    k-th distance is at most that; ``bits + 1`` when they hold fewer than ``k``),
    and one more than the distance within which they hold ``guess_k`` (about
    ``_GUESS`` times the top k's share of ``n0``, at least ``_GUESS_MIN``) is the
    first, tighter one. A query whose cut-off never drops from its guess saw
    fewer than ``k`` admissible items below it: a second round scans just those
    queries again from the safe cut-off. The scan walks every
    block: the items of a block that pass a query's cut are appended all at
    once (bits of a mask: no per-item test), then ``t`` drops while
    ``below >= k``. An item appended in the same block after ``t`` would have
    dropped has ``d >= t`` and stays out of the final selection, which is
    every candidate with ``d < t`` and the first ``k - below`` at ``t``; an item
    that never passed has ``d >= t`` with ``k`` smaller ids at ``<= t`` ahead of it.
    """
    nbytes = qcodes.shape[1]
    bits = 8 * nbytes
    n_blocks = planes.shape[0] // (nbytes * _BLOCK)
    nq = q1 - q0
    groups = -(-nq // _Q)
    rows = groups * _Q
    tables = np.empty(rows * nbytes * 64, np.uint8)
    qbytes = np.empty(rows * nbytes, np.uint8)
    _fill_tables(qcodes, q0, q1, tables, qbytes)
    cap = min(2 * k, n) + 64  # candidate buffer, in id order; compacted to <= min(k, n) when a block might not fit
    cand_d = np.empty((rows, cap), np.int32)
    cand_i = np.empty((rows, cap), np.int32)
    hist = np.zeros((rows, bits + 2), np.int32)
    count = np.zeros(rows, np.int64)       # per query: candidates in the buffer
    below = np.zeros(rows, np.int64)       # per query: candidates with d < cutoff
    cutoff = np.zeros(rows, np.int64)      # per query: admit d < cutoff
    admit = np.zeros(rows, np.uint8)       # per query: largest byte sum that may pass (0 for padding rows)
    ptr = np.zeros(rows, np.int64)         # per query: next excluded item (CSR merge)
    sums = np.empty(_Q * _BLOCK, np.uint8)
    masks = np.empty(_Q, np.int64)
    whist = np.empty(256, np.int64)
    saturates = bits >= 255
    tail = n - (n_blocks - 1) * _BLOCK     # real items in the last block
    last_mask = np.uint64((1 << tail) - 1)

    # Warm start: the k-th admissible byte sum among the first n0 items bounds the final k-th distance.
    w0 = min(n_blocks, -(-max(_WARM_ITEMS, _WARM_PER_K * k) // _BLOCK))
    n0 = min(n, w0 * _BLOCK)
    wsum = np.empty((_Q, w0 * _BLOCK), np.uint8)
    guess_k = min(k, max(_GUESS_MIN, -(-k * n0 * _GUESS // n)))  # _GUESS times the top k's share of n0 items
    safe = np.zeros(rows, np.int64)    # per query: the cut-off that is sure to hold k admissible items
    first = np.zeros(rows, np.int64)   # per query: the cut-off the scan started with
    active = np.ones(rows, np.bool_)   # per query: scanned in this round
    for grp in range(groups):
        admit[grp * _Q : (grp + 1) * _Q] = 255
        for g in range(w0):
            _block_sums(planes, g * nbytes * _BLOCK, nbytes, tables, qbytes, grp * _Q, admit[grp * _Q :], sums)
            for r in range(_Q):
                for i in range(_BLOCK):
                    wsum[r, g * _BLOCK + i] = sums[r * _BLOCK + i]
        for r in range(_Q):
            row, q = grp * _Q + r, q0 + grp * _Q + r
            if r >= nq - grp * _Q:
                admit[row] = 0
                continue
            _warm_histogram(whist, wsum, r, n0, q, row, ptr, ex_ptr, ex_idx, has_ex)
            # a sum of 255 only says d >= 255: such items bound nothing
            t, acc = 0, whist[0]
            guess = bits + 1
            while True:
                if acc >= guess_k and guess > bits:
                    guess = t + 1
                if acc >= k or t == 254:
                    break
                t += 1
                acc += whist[t]
            safe[row] = t + 1 if acc >= k else bits + 1
            cutoff[row] = min(guess, safe[row])
            first[row] = cutoff[row]
            admit[row] = min(cutoff[row] - 1, 255)

    # The scan: tile by tile, group by group, block by block; a block is inspected only if some sum passes.
    # Round 1 starts from the guessed cut-off; a query whose cut-off never dropped found fewer than k items
    # below its guess, and round 2 scans it again from the safe one (the other queries admit nothing).
    for attempt in range(2):
        if attempt == 1:
            redo = False
            for row in range(rows):
                active[row] = row < nq and cutoff[row] == first[row] and first[row] < safe[row]
                if active[row]:
                    redo = True
                    q = q0 + row
                    count[row] = 0
                    below[row] = 0
                    hist[row, :] = 0
                    ptr[row] = ex_ptr[q] if has_ex else 0
                    cutoff[row] = safe[row]
                    admit[row] = min(safe[row] - 1, 255)
                else:
                    admit[row] = 0
            if not redo:
                break
        _scan(qcodes, planes, n, q0, nq, k, tile, groups, n_blocks, nbytes, saturates, last_mask, cap, attempt,
              active, tables, qbytes, admit, cutoff, count, below, ptr, hist, cand_d, cand_i, sums, masks,
              ex_ptr, ex_idx, has_ex)

    # Every candidate with d < t and the first k - below at t. Ranked: a counting sort by distance, stable,
    # so equal distances stay in id order; else the buffer order (ids ascending).
    start = np.empty(bits + 2, np.int64)
    for row in range(nq):
        t = cutoff[row]
        if ranked:
            _write_ranked(row, q0 + row, k, bits + 2, hist, count, cand_d, cand_i, start, out_d, out_i)
        else:
            ties = k - below[row]
            pos = 0
            for s in range(count[row]):
                d = cand_d[row, s]
                if d < t or (d == t and ties > 0):
                    if d == t:
                        ties -= 1
                    out_d[q0 + row, pos] = d
                    out_i[q0 + row, pos] = cand_i[row, s]
                    pos += 1


@numba.njit(parallel=True, cache=True, fastmath=True, nogil=True)
def _topk_kernel(qcodes, planes, n, k, block, tile, ranked, out_d, out_i, ex_ptr, ex_idx, has_ex):
    nq = qcodes.shape[0]
    n_tasks = (nq + block - 1) // block
    for b in numba.prange(n_tasks):
        q0 = b * block
        _topk_block(qcodes, planes, n, q0, min(q0 + block, nq), k, tile, ranked, out_d, out_i, ex_ptr, ex_idx,
                    has_ex)


# parallel tasks handed out at a time: a thread held up (a shared machine, a query block with more
# exclusions) leaves its share to the others instead of the call waiting on it (static halves did:
# bench_asymmetric's scans then varied by 1.7x run to run on two cores)
_CHUNK_TASKS = 4


@contextmanager
def _numba_threads(threads: int | None) -> Iterator[int]:
    """Run with ``threads`` numba threads (capped at the pool size) and parallel loops handed out
    :data:`_CHUNK_TASKS` iterations at a time, restoring both after."""
    old = numba.get_num_threads()
    n = min(int(threads), numba.config.NUMBA_NUM_THREADS) if threads else old
    numba.set_num_threads(n)
    try:
        with numba.parallel_chunksize(_CHUNK_TASKS):
            yield n
    finally:
        numba.set_num_threads(old)



def _hamming_search(qcodes: np.ndarray, planes: np.ndarray, n: int, k: int, exclude, threads, ranked: bool = True):
    """Kernel call: packed queries ``(nq, B)``, byte-sliced items -> int32 distances, int64 ids ``(nq, k)``.

    ``ranked=False``: the same top-k set per row, in id order (what a re-rank needs; no sort by distance)."""
    if n >= 2**31:
        raise ValueError(f"item_codes has {n} rows; the kernel holds ids as int32 (fewer than 2**31 items)")
    nq, nbytes = qcodes.shape
    out_d = np.full((nq, k), 8 * nbytes + 1, np.int32)
    out_i = np.full((nq, k), -1, np.int64)
    if nq == 0 or n == 0:
        return out_d, out_i
    if exclude is not None:
        ex_ptr, ex_idx = exclude.indptr.astype(np.int64), exclude.indices.astype(np.int64)
    else:
        ex_ptr = ex_idx = np.zeros(1, np.int64)
    tile = max(1, _TILE_BYTES // (nbytes * _BLOCK))
    with _numba_threads(threads) as n_threads:
        # Tasks of whole groups; small batches get smaller tasks, so that every thread has one.
        per_thread = -(-nq // n_threads)
        block = min(_QUERY_BLOCK, -(-per_thread // _Q) * _Q)
        _topk_kernel(qcodes, planes, n, k, block, tile, ranked, out_d, out_i, ex_ptr, ex_idx, exclude is not None)
    return out_d, out_i


def hamming_topk(query_codes: np.ndarray, item_codes: np.ndarray, k: int, exclude=None, *,
                 threads: int | None = None, return_distances: bool = False):
    """Exact top-``k`` items by Hamming distance, ties by smaller id, ``exclude`` never returned.

    ``query_codes (nq, K/8)`` and ``item_codes (n, K/8)``: packed ``np.uint8``.
    Returns int64 ids ``(nq, k)`` (``-1`` padding) and, with
    ``return_distances``, ``(ids, distances)`` with int32 distances
    (``K + 1`` for padding). One-off convenience; what
    :class:`~hashrec_utils.retrieval.HammingIndex` computes.
    """
    q = _check_codes(query_codes, "query_codes")
    items = _check_codes(item_codes, "item_codes", q.shape[1] * 8)
    k = _check_k(k)
    exclude = _check_exclude(exclude, len(q), len(items))
    dist, ids = _hamming_search(q, _planes(items), len(items), k, exclude, _check_threads(threads))
    return (ids, dist) if return_distances else ids


def hamming_candidates(query_codes: np.ndarray, item_codes: np.ndarray, c: int, exclude=None, *,
                       threads: int | None = None) -> np.ndarray:
    """The set of :func:`hamming_topk`'s ``c`` ids per query, in id order (ascending), ``-1`` padding at the end.

    ``query_codes (nq, K/8)``, ``item_codes (n, K/8)``: packed ``np.uint8``; returns int64 ``(nq, c)``.
    Row ``q`` holds exactly the ids of ``hamming_topk(query_codes, item_codes, c, exclude)[q]`` (every item
    at distance below the c-th, then the smallest ids at it), sorted by id instead of by distance: the
    candidates of a re-rank, which orders them itself. Skips the final sort by distance.
    """
    q = _check_codes(query_codes, "query_codes")
    items = _check_codes(item_codes, "item_codes", q.shape[1] * 8)
    c = _check_k(c, "c")
    exclude = _check_exclude(exclude, len(q), len(items))
    return _hamming_search(q, _planes(items), len(items), c, exclude, _check_threads(threads), ranked=False)[1]
