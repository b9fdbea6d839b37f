"""Exact float search: inner-product top-k by one GEMM per query block (torch), the one implementation.

:func:`exact_topk` is what :func:`hashrec_utils.metrics.rank_topk`,
:func:`~hashrec_utils.retrieval.continuous_topk` and :class:`ExactIndex` run.
For queries ``Q (nq, d)`` and items ``X (n, d)`` it returns, per query, the
``k`` items of largest ``s_qi = <Q_q, X_i>``, excluded items never returned,
best first, equal scores by the smaller id.

Per block of ``b`` queries (``b * n * 4`` bytes at most ``memory_mb`` MiB):

1. ``S = Q_b @ X.T`` (one GEMM into a reused buffer);
2. excluded pairs set to ``-inf`` in place (one ``index_fill_`` on the flat view);
3. ``torch.topk(S, k + 1)``: the ``k+1``-th score tells cheaply whether an
   unselected item ties the ``k``-th one, ``s_(k+1) == s_(k)``; only such rows
   are re-selected exactly (all items above the ``k``-th score, then the
   smallest ids among those equal to it), and only rows with equal adjacent
   scores among the selected are re-ordered by id;
4. ``-inf`` scores (fewer than ``k`` admissible items) become padding ``-1``.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import numpy as np

from ._checks import _check_exclude, _check_k, _check_threads

__all__ = ["exact_topk", "ExactIndex"]


@contextmanager
def _torch_threads(threads: int | None) -> Iterator[None]:
    """Pin torch's intra-op pool to ``threads`` for one call, restoring it afterwards."""
    import torch

    old = torch.get_num_threads()
    if threads:
        torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        if threads:
            torch.set_num_threads(old)


def _as_tensor(x, name: str):
    """A 2-D finite floating torch tensor, no copy for C-contiguous float32/float64 input."""
    import torch

    t = torch.as_tensor(x)
    if t.ndim != 2:
        raise ValueError(f"{name} must be 2-D; got shape {tuple(t.shape)}")
    if not t.is_floating_point():
        raise TypeError(f"{name} must be floating point; got {t.dtype}")
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return t


def _fix_ties(scores, top_s, top_i, k: int, rows):
    """Exact selection on ``rows`` whose k-th score ties an unselected item: all above it, then smaller ids."""
    import torch

    sub = scores[rows]
    thr = top_s[rows, k - 1 : k]
    above = sub > thr
    tied = sub == thr
    need = k - above.sum(dim=1, keepdim=True)
    keep = above | (tied & (torch.cumsum(tied, dim=1) <= need))
    ids = torch.nonzero(keep)[:, 1].reshape(len(rows), k)  # ascending ids
    vals, order = torch.sort(torch.gather(sub, 1, ids), dim=1, descending=True, stable=True)
    top_i[rows, :k] = torch.gather(ids, 1, order)
    top_s[rows, :k] = vals


_GROUP = 16            # items per group: the selection first ranks group maxima
_CHUNK_BYTES = 16 << 20  # one block's scores over one item chunk stay in cache
_BLOCK_QUERIES = 256   # queries per block when the items are walked in chunks


def _select_chunk(S, kq: int):
    """Candidates of one ``(b, L)`` score chunk: ``(scores, columns, m)``, the top-``kq`` groups' items.

    Groups: the first ``16 ng`` columns, group ``c`` = columns ``c + r ng``, ``r < 16``.
    The items of every group whose maximum ranks in the top ``kq`` group maxima,
    plus the tail columns past the last whole group; ``m`` is the ``kq``-th
    group maximum (``-inf`` if there are fewer groups), the tie bound: an item
    outside the candidates scores at most ``m``.
    """
    import torch

    b, L = S.shape
    whole = L - L % _GROUP
    ng = whole // _GROUP
    parts_s, parts_c = [], []
    m = torch.full((b,), -torch.inf, dtype=S.dtype)
    if ng:
        # Group c holds columns c, c + ng, c + 2 ng, ...: the maximum over 16 contiguous rows of ng vectorises.
        gmax = S.as_strided((b, _GROUP, ng), (S.stride(0), ng, 1)).amax(dim=1)
        if ng <= kq:
            parts_s.append(S[:, :whole])
            parts_c.append(torch.arange(whole).expand(b, whole))
        else:
            gm, gi = torch.topk(gmax, kq, dim=1, sorted=False)
            m = gm.min(dim=1).values
            cols = (gi.unsqueeze(2) + torch.arange(_GROUP) * ng).reshape(b, kq * _GROUP)
            parts_s.append(torch.gather(S, 1, cols))
            parts_c.append(cols)
    if whole < L:
        parts_s.append(S[:, whole:])
        parts_c.append(torch.arange(whole, L).expand(b, L - whole))
    if len(parts_s) == 1:
        return parts_s[0], parts_c[0], m
    return torch.cat(parts_s, 1), torch.cat(parts_c, 1), m


def exact_topk(queries, items, k: int, exclude=None, *, threads: int | None = None, memory_mb: int = 256):
    """Exact inner-product top-``k``: ``(scores float32 (nq, k), ids int64 (nq, k))``.

    ``queries (nq, d)``, ``items (n, d)``: NumPy or torch, floating point
    (float64 queries are scored in float64, anything else in float32).
    ``exclude``: ``None`` or a sparse ``(nq, n)`` of items never returned.
    Rows sorted by score descending, equal scores by the smaller id; where
    fewer than ``k`` items are admissible, padding ``ids = -1``,
    ``scores = -inf``. ``threads`` pins torch's pool for the call (restored
    after); ``memory_mb`` bounds one block's score matrix.

    Selection (exact): per chunk of items, the scores are grouped 16 items
    to a group (strided, so that the group maxima vectorise) and only the groups whose maximum is among the top
    ``k + 1`` group maxima are candidates (every item of the chunk's top ``k``
    lies in one of them); ``torch.topk`` ranks the candidates. A row is
    re-selected over all its items (ties by the smaller id) only when an item
    outside the selection may tie the ``k``-th score: the ``k+1``-th candidate
    equals it, or a discarded group's bound reaches it.
    """
    import torch

    Q = _as_tensor(queries, "queries")
    X = _as_tensor(items, "items")
    if Q.shape[1] != X.shape[1]:
        raise ValueError(f"queries have dim {Q.shape[1]} but items have dim {X.shape[1]}")
    k = _check_k(k)
    threads = _check_threads(threads)
    nq, n = Q.shape[0], X.shape[0]
    exclude = _check_exclude(exclude, nq, n)
    dtype = torch.float64 if Q.dtype == torch.float64 else torch.float32
    Q = Q.to(dtype).contiguous()
    X = X.to(dtype).contiguous()
    scores_out = np.full((nq, k), -np.inf, np.float32)
    ids_out = np.full((nq, k), -1, np.int64)
    if nq == 0 or n == 0:
        return scores_out, ids_out
    kk = min(k, n)
    kq = min(k + 1, n)  # one more than k: the tie test
    esize = Q.element_size()
    # Blocks of up to 1024 queries over all items when that fits in cache-sized memory; otherwise
    # blocks of 256 queries over item chunks of _CHUNK_BYTES of scores.
    cap = 1024 if 1024 * n * esize <= 2 * _CHUNK_BYTES else _BLOCK_QUERIES
    block = max(1, min(nq, (int(memory_mb) << 20) // (esize * n) or 1, cap))
    chunk = n if block * n * esize <= 2 * _CHUNK_BYTES else max(64 * _GROUP, _CHUNK_BYTES // (esize * block) // _GROUP * _GROUP)
    if exclude is not None:
        indptr = exclude.indptr.astype(np.int64)
        cols_ex = exclude.indices.astype(np.int64)
    buf = torch.empty(block * min(chunk, n), dtype=dtype)
    with torch.no_grad(), _torch_threads(threads):
        for start in range(0, nq, block):
            stop = min(start + block, nq)
            b = stop - start
            Qb = Q[start:stop]
            if exclude is not None and indptr[stop] > indptr[start]:
                lo, hi = indptr[start], indptr[stop]
                ex_rows = np.repeat(np.arange(b, dtype=np.int64), np.diff(indptr[start : stop + 1]))
                ex_cols = cols_ex[lo:hi]
            else:
                ex_rows = None
            cand_s, cand_i, bound = [], [], None
            for j in range(0, n, chunk):
                L = min(chunk, n - j)
                S = torch.mm(Qb, X[j : j + L].T, out=buf[: b * L].view(b, L))
                if ex_rows is not None:
                    if L == n:
                        flat = ex_rows * n + ex_cols
                    else:
                        sel = (ex_cols >= j) & (ex_cols < j + L)
                        flat = ex_rows[sel] * L + (ex_cols[sel] - j)
                    if len(flat):
                        S.view(-1).index_fill_(0, torch.from_numpy(flat), -torch.inf)
                cs, cc, m = _select_chunk(S, kq)
                if cs.shape[1] > kq:
                    cs, pos = torch.topk(cs, kq, dim=1, sorted=False)
                    cc = torch.gather(cc, 1, pos)
                cand_s.append(cs)
                cand_i.append(cc + j)
                bound = m if bound is None else torch.maximum(bound, m)
            cs = cand_s[0] if len(cand_s) == 1 else torch.cat(cand_s, 1)
            ci = cand_i[0] if len(cand_i) == 1 else torch.cat(cand_i, 1)
            top_s, pos = torch.topk(cs, kq, dim=1, sorted=True)
            top_i = torch.gather(ci, 1, pos)
            # Rows where an item outside the top k may tie the k-th score: exact re-selection over all items.
            kth = top_s[:, kk - 1]
            tie = (bound >= kth) & torch.isfinite(kth)
            if kq > kk:
                tie |= (top_s[:, kk] == kth) & torch.isfinite(kth)
            rows = torch.nonzero(tie).flatten()
            if len(rows):
                full = Qb[rows] @ X.T
                if ex_rows is not None:
                    hit = np.isin(ex_rows, rows.numpy())
                    remap = np.full(b, -1, np.int64)
                    remap[rows.numpy()] = np.arange(len(rows))
                    full.view(-1).index_fill_(0, torch.from_numpy(remap[ex_rows[hit]] * n + ex_cols[hit]), -torch.inf)
                fs, fi = torch.topk(full, kq, dim=1, sorted=True)
                _fix_ties(full, fs, fi, kk, torch.arange(len(rows)))
                top_s[rows], top_i[rows] = fs, fi
            s = top_s[:, :kk].numpy().astype(np.float32)
            i = top_i[:, :kk].numpy().copy()
            if kk > 1:  # equal adjacent scores among the selected: order those rows by id
                eq = (s[:, 1:] == s[:, :-1]).any(axis=1)
                if eq.any():
                    r = np.flatnonzero(eq)
                    order = np.lexsort((i[r], -s[r]), axis=1)
                    s[r] = np.take_along_axis(s[r], order, 1)
                    i[r] = np.take_along_axis(i[r], order, 1)
            scores_out[start:stop, :kk] = s
            ids_out[start:stop, :kk] = np.where(np.isneginf(s), -1, i)
    return scores_out, ids_out


class ExactIndex:
    """Exact float search by GEMM (:func:`exact_topk`) behind the index interface.

    ``ExactIndex(threads=None, memory_mb=256)``; ``build(items (n, d) float)``;
    ``search(queries (nq, d), k, exclude=None) -> (scores float32, ids int64)``,
    inner products descending, ties by smaller id, padding ``-inf`` / ``-1``;
    exclusion is exact (excluded scores are ``-inf`` before the selection).
    Holds the items as float32: ``4 d`` bytes per item.
    """

    name = "exact"
    kind = "float"
    metric = "inner_product"

    def __init__(self, threads: int | None = None, memory_mb: int = 256):
        self.threads = _check_threads(threads)
        self.memory_mb = int(memory_mb)
        self.items = None
        self.n_items = 0

    def build(self, items) -> "ExactIndex":
        from ._checks import _check_float

        self.items = _check_float(items, "items")
        self.n_items = len(self.items)
        return self

    def search(self, queries, k: int, exclude=None) -> tuple[np.ndarray, np.ndarray]:
        from ._checks import _check_float

        if self.items is None:
            raise RuntimeError("search before build: call build(items) first")
        queries = _check_float(queries, "queries", self.items.shape[1])
        return exact_topk(queries, self.items, k, exclude, threads=self.threads, memory_mb=self.memory_mb)

    def memory_bytes(self) -> int:
        if self.items is None:
            raise RuntimeError("search before build: call build(items) first")
        return int(self.items.nbytes)
