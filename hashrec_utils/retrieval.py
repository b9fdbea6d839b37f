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
``IndexBinaryFlat`` spends, per item and query, a load, an XOR and a scalar
``popcnt`` per 64-bit word, then a heap comparison. Ours

* stores the codes byte-sliced in blocks of 32 items, so that one 32-byte
  vector holds the same code byte of 32 items;
* turns each query byte ``c`` into two 16-entry tables,
  ``popcount(c XOR x) = T_lo[x & 15] + T_hi[x >> 4]``, looked up 32 at a time
  by AVX2's ``pshufb``: per code byte, 32 items cost two lookups and two byte
  additions per query, and the nibble split of the items is shared by a group
  of 8 queries whose running sums stay in registers (CPUs without AVX2 get
  LLVM's vector ``ctpop`` of ``x XOR c`` instead: the same results);
* walks a task of 16 queries over one L2-sized tile of items at a time;
* selects the top k by counting. Distances are integers ``0..K``: a
  histogram of the first few hundred distances gives the initial k-th
  distance ``t`` at once, and from then on a block is looked at only if one
  of its 32 x 8 sums is below its query's ``t`` (one compare per query and
  block); a histogram of the accepted distances keeps ``t`` the running
  k-th distance. The final ranking is a counting sort.

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
from llvmlite import ir
from numba import types
from numba.core import cgutils
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
    if not exclude.has_sorted_indices or (exclude.data == 0).any():
        exclude = exclude.copy()
        exclude.eliminate_zeros()  # an explicit zero excludes nothing
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
_WARM_ITEMS = 512     # items selected by counting before the scan, or _WARM_PER_K * k when more
_WARM_PER_K = 16


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
def _accept(j, d, t, k, cand_d, cand_i, hist, state):
    """Add item ``j`` at distance ``d < t`` to one query's candidates; return the new cut-off ``t``.

    ``state = [n_candidates, below]``; invariant: ``below`` counts the
    candidates with distance ``< t``, and once it would reach ``k``, ``t``
    drops to the k-th smallest candidate distance. The buffer is in id order,
    so when it is full, keeping the first of the candidates tied at ``t``
    keeps the smaller ids.
    """
    if state[0] == cand_d.shape[0]:
        ties = k - state[1]
        m = 0
        for s in range(state[0]):
            ds = cand_d[s]
            if ds < t or (ds == t and ties > 0):
                if ds == t:
                    ties -= 1
                cand_d[m] = ds
                cand_i[m] = cand_i[s]
                m += 1
        state[0] = m
        hist[:] = 0
        for s in range(m):
            hist[cand_d[s]] += 1
    c = state[0]
    cand_d[c] = d
    cand_i[c] = j
    state[0] = c + 1
    hist[d] += 1
    below = state[1] + 1
    while below >= k:
        t -= 1
        below -= hist[t]
    state[1] = below
    return t


@numba.njit(cache=True, nogil=True, inline="always")
def _excluded_item(j, ptr, r, end, ex_idx):
    """Whether item ``j`` is in the query's sorted exclusion list; ``ptr[r]`` walks the list as ``j`` grows."""
    p = ptr[r]
    while p < end and ex_idx[p] < j:
        p += 1
    ptr[r] = p
    return p < end and ex_idx[p] == j


@numba.njit(cache=True, nogil=True, inline="always")
def _warm_start(dist, n0, k, bits, cand_d, cand_i, hist, state):
    """Exact top-k of the first ``n0`` items from their distances ``dist`` by counting; returns the cut-off.

    The state the item-by-item scan would reach after ``n0`` items, but a
    histogram gives the k-th distance at once, so the early items, which
    nearly all beat a still-loose cut-off, are not accepted one by one.
    Excluded items carry ``dist = bits + 1`` and are never collected.
    """
    hist[:] = 0
    for j in range(n0):
        hist[dist[j]] += 1
    t, below = 0, 0
    while t <= bits and below + hist[t] < k:
        below += hist[t]
        t += 1
    # Every item below t and, of those at t, the first k - below (the smaller ids).
    ties = k - below if t <= bits else 0
    hist[:] = 0
    m = 0
    for j in range(n0):
        d = dist[j]
        if d < t or (d == t and ties > 0):
            if d == t:
                ties -= 1
            cand_d[m] = d
            cand_i[m] = j
            hist[d] += 1
            m += 1
    state[0], state[1] = m, below
    return t


@numba.njit(cache=True, fastmath=True, nogil=True)
def _topk_block(qcodes, planes, n, q0, q1, k, tile, out_d, out_i, ex_ptr, ex_idx, has_ex):
    """Exact top-k of queries ``q0..q1`` over the ``n`` items of ``planes``; writes rows of ``out_d``, ``out_i``."""
    nbytes = qcodes.shape[1]
    bits = 8 * nbytes
    n_blocks = planes.shape[0] // (nbytes * _BLOCK)
    nq = q1 - q0
    groups = -(-nq // _Q)
    rows = groups * _Q
    tables = np.empty(rows * nbytes * 64, np.uint8)
    qbytes = np.empty(rows * nbytes, np.uint8)
    _fill_tables(qcodes, q0, q1, tables, qbytes)
    cap = min(2 * k + 64, n)  # candidate buffer, in id order; compacted to k when full
    cand_d = np.empty((rows, cap), np.int64)
    cand_i = np.empty((rows, cap), np.int64)
    hist = np.zeros((rows, bits + 2), np.int64)
    state = np.zeros((rows, 2), np.int64)  # per query: n_candidates, below
    cutoff = np.zeros(rows, np.int64)      # per query: accept d < cutoff
    admit = np.zeros(rows, np.uint8)       # per query: largest byte sum that may pass (0 for padding rows)
    ptr = np.zeros(rows, np.int64)         # per query: next excluded item (CSR merge)
    sums = np.empty(_Q * _BLOCK, np.uint8)
    masks = np.empty(_Q, np.int64)
    saturates = bits >= 255

    # Warm start: the first w0 blocks, exact distances, top-k by counting.
    w0 = min(n_blocks, -(-max(_WARM_ITEMS, _WARM_PER_K * k) // _BLOCK))
    n0 = min(n, w0 * _BLOCK)
    dist = np.empty((_Q, w0 * _BLOCK), np.int64)
    for grp in range(groups):
        admit[grp * _Q : (grp + 1) * _Q] = 255
        for g in range(w0):
            _block_sums(planes, g * nbytes * _BLOCK, nbytes, tables, qbytes, grp * _Q, admit[grp * _Q :], sums)
            for r in range(_Q):
                for i in range(_BLOCK):
                    dist[r, g * _BLOCK + i] = sums[r * _BLOCK + i]
        for r in range(min(_Q, nq - grp * _Q)):
            row, q = grp * _Q + r, q0 + grp * _Q + r
            if saturates:
                for j in range(n0):
                    if dist[r, j] == 255:
                        dist[r, j] = _item_distance(planes, j // _BLOCK, j % _BLOCK, nbytes, qcodes, q)
            if has_ex:
                p, end = ex_ptr[q], ex_ptr[q + 1]
                while p < end and ex_idx[p] < n0:
                    dist[r, ex_idx[p]] = bits + 1
                    p += 1
                ptr[row] = p
            t = _warm_start(dist[r], n0, k, bits, cand_d[row], cand_i[row], hist[row], state[row])
            cutoff[row] = t
        for r in range(_Q):
            row = grp * _Q + r
            admit[row] = min(max(cutoff[row] - 1, 0), 255) if r < nq - grp * _Q else 0

    # The scan: tile by tile, group by group, block by block; a block is inspected only if some sum passes.
    for t0 in range(w0, n_blocks, tile):
        t1 = min(t0 + tile, n_blocks)
        for grp in range(groups):
            gadmit = admit[grp * _Q :]
            for g in range(t0, t1):
                if _block_sums(planes, g * nbytes * _BLOCK, nbytes, tables, qbytes, grp * _Q, gadmit, sums) == 0:
                    continue
                _block_masks(sums, gadmit, masks)
                for r in range(min(_Q, nq - grp * _Q)):
                    mask = np.uint64(masks[r])
                    row = grp * _Q + r
                    q = q0 + row
                    t = cutoff[row]
                    while mask:
                        i = _trailing_zeros(mask)
                        mask &= mask - np.uint64(1)
                        j = g * _BLOCK + i
                        if j >= n:  # padding items of the last block
                            break
                        d = np.int64(sums[r * _BLOCK + i])
                        if saturates and d == 255:
                            d = _item_distance(planes, g, i, nbytes, qcodes, q)
                        if d >= t:  # t may have dropped since the mask was taken
                            continue
                        if has_ex and _excluded_item(j, ptr, row, ex_ptr[q + 1], ex_idx):
                            continue
                        t = _accept(j, d, t, k, cand_d[row], cand_i[row], hist[row], state[row])
                    if t != cutoff[row]:
                        cutoff[row] = t
                        gadmit[r] = min(max(t - 1, 0), 255)

    # Counting sort of the candidates by distance; stable, so equal distances stay in id order.
    start = np.empty(bits + 2, np.int64)
    for row in range(nq):
        acc = 0
        for d in range(bits + 2):
            start[d] = acc
            acc += hist[row, d]
        for s in range(state[row, 0]):
            d = cand_d[row, s]
            pos = start[d]
            start[d] = pos + 1
            if pos < k:
                out_d[q0 + row, pos] = d
                out_i[q0 + row, pos] = cand_i[row, s]


@numba.njit(parallel=True, cache=True, fastmath=True, nogil=True)
def _topk_kernel(qcodes, planes, n, k, block, tile, out_d, out_i, ex_ptr, ex_idx, has_ex):
    nq = qcodes.shape[0]
    n_tasks = (nq + block - 1) // block
    for b in numba.prange(n_tasks):
        q0 = b * block
        _topk_block(qcodes, planes, n, q0, min(q0 + block, nq), k, tile, out_d, out_i, ex_ptr, ex_idx, has_ex)


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


def _hamming_search(qcodes: np.ndarray, planes: np.ndarray, n: int, k: int, exclude, threads):
    """Kernel call: packed queries ``(nq, B)``, byte-sliced items -> int32 distances, int64 ids ``(nq, k)``."""
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
        _topk_kernel(qcodes, planes, n, k, block, tile, out_d, out_i, ex_ptr, ex_idx, exclude is not None)
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
    depend on it. Holds the codes byte-sliced in blocks of 32 items: ``bits/8``
    bytes per item, the item count rounded up to a multiple of 32.
    Queries are scanned in groups of 8, so batches of 8 or more use it best.
    """

    kind = "binary"
    name = "hamming"

    def __init__(self, bits: int, threads: int | None = None):
        if not isinstance(bits, (int, np.integer)) or bits <= 0 or bits % 8:
            raise ValueError(f"bits must be a positive multiple of 8; got {bits!r}")
        self.bits, self.threads = int(bits), _check_threads(threads)
        self.planes: np.ndarray | None = None  # byte-sliced item codes, see the kernel's notes
        self.n_items = 0

    def build(self, items: np.ndarray) -> "HammingIndex":
        items = _check_codes(items, "items", self.bits)
        self.planes, self.n_items = _planes(items), len(items)
        return self

    def _built(self) -> np.ndarray:
        if self.planes is None:
            raise RuntimeError("search before build: call build(items) first")
        return self.planes

    def search(self, queries: np.ndarray, k: int, exclude=None) -> tuple[np.ndarray, np.ndarray]:
        planes = self._built()
        q = _check_codes(queries, "queries", self.bits)
        k = _check_k(k)
        exclude = _check_exclude(exclude, len(q), self.n_items)
        return _hamming_search(q, planes, self.n_items, k, exclude, self.threads)

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
    name = "hierarchical"
    SEARCH = ("candidates",)

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

    def set_search_params(self, candidates: int) -> "HierarchicalIndex":
        """Change the number of Hamming candidates without a rebuild."""
        self.candidates = _check_k(candidates, "candidates")
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
