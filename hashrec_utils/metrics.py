"""Ranking metrics from one hit matrix, and the one ranking function.

Conventions are LightGCN's (and RecBole's): for a user ``u`` with held-out
items ``T_u`` and a ranked list ``r_1, r_2, ...`` (train items never in it),
``hit_{u,j} = [r_j ∈ T_u]`` and, for a cut-off K,

    recall@K    = Σ_{j<K} hit_{u,j} / |T_u|
    precision@K = Σ_{j<K} hit_{u,j} / K
    hit@K       = [Σ_{j<K} hit_{u,j} > 0]
    ndcg@K      = DCG / IDCG,  DCG = Σ_{j<K} hit_{u,j} / log2(j + 2),
                  IDCG = Σ_{j < min(|T_u|, K)} 1 / log2(j + 2)

(ranks ``j`` count from 0), each averaged over users with ``|T_u| ≥ 1``. A list
shorter than K (fewer items left to recommend, padded with ``-1``) simply has
no hits past its end; precision still divides by K.
"""
from __future__ import annotations

from typing import Iterable

import numpy as np
import scipy.sparse as sp

__all__ = ["hit_matrix", "evaluate_topk", "rank_topk", "METRICS"]

METRICS = ("recall", "ndcg", "precision", "hit")


def _check_csr(matrix, name: str) -> sp.csr_matrix:
    if not sp.issparse(matrix):
        raise TypeError(f"{name} must be a scipy sparse matrix (users x items); got {type(matrix).__name__}")
    matrix = sp.csr_matrix(matrix)
    if not matrix.has_sorted_indices:
        matrix = matrix.copy()
        matrix.sort_indices()
    return matrix


def hit_matrix(topk_items: np.ndarray, test: sp.csr_matrix, users: np.ndarray | None = None) -> np.ndarray:
    """``hits[r, j] = topk_items[r, j] ∈ test[users[r]]`` as a bool array.

    ``users`` maps rows of ``topk_items`` to rows of ``test`` (default: row r is user r).
    """
    topk = np.asarray(topk_items)
    if topk.ndim != 2:
        raise ValueError(f"topk_items must be 2-D (users, k); got shape {topk.shape}")
    if not np.issubdtype(topk.dtype, np.integer):
        raise TypeError(f"topk_items must hold integer item ids; got dtype {topk.dtype}")
    test = _check_csr(test, "test")
    users = np.arange(topk.shape[0]) if users is None else np.asarray(users, dtype=np.int64)
    if len(users) != topk.shape[0]:
        raise ValueError(f"users has {len(users)} entries but topk_items has {topk.shape[0]} rows")
    if len(users) and (users.min() < 0 or users.max() >= test.shape[0]):
        raise ValueError(f"user ids must be in [0, {test.shape[0]}); got range [{users.min()}, {users.max()}]")
    if topk.size and topk.max() >= test.shape[1]:
        raise ValueError(f"item id {topk.max()} out of range: test has {test.shape[1]} items")
    n_items = np.int64(test.shape[1])
    # Sorted keys u * n_items + i of the test pairs (CSR rows ascending, columns sorted).
    rows = np.repeat(np.arange(test.shape[0], dtype=np.int64), np.diff(test.indptr))
    test_keys = rows * n_items + test.indices
    query = users[:, None] * n_items + topk.astype(np.int64)
    pos = np.searchsorted(test_keys, query)
    pos = np.minimum(pos, max(len(test_keys) - 1, 0))
    hits = (test_keys[pos] == query) if len(test_keys) else np.zeros(query.shape, bool)
    return hits & (topk >= 0)


def evaluate_topk(
    topk_items: np.ndarray,
    test: sp.csr_matrix,
    ks: Iterable[int] = (10, 20, 50),
    users: np.ndarray | None = None,
) -> dict[str, float]:
    """Recall, NDCG, precision and hit rate at each K (definitions in the module docstring).

    ``topk_items``: ``(n_rows, L)`` integer item ids, best first, ``-1`` for padding.
    ``test``: CSR users x items of held-out interactions. Returns keys like
    ``"recall@20"``; users without test items are left out of every average.
    """
    ks = tuple(int(k) for k in ks)
    if not ks or min(ks) <= 0:
        raise ValueError(f"ks must be positive integers; got {ks}")
    test = _check_csr(test, "test")
    hits = hit_matrix(topk_items, test, users)
    rows = np.arange(hits.shape[0]) if users is None else np.asarray(users)
    n_test = np.diff(test.indptr)[rows]
    keep = n_test > 0
    hits, n_test = hits[keep], n_test[keep].astype(np.float64)
    out: dict[str, float] = {}
    if not keep.any():
        raise ValueError("no user in topk_items has a test item: nothing to evaluate")
    discount = 1.0 / np.log2(np.arange(max(max(ks), hits.shape[1])) + 2.0)
    ideal_cum = np.concatenate([[0.0], np.cumsum(discount)])
    for k in ks:
        h = hits[:, :k].astype(np.float64)
        n_hit = h.sum(axis=1)
        dcg = h @ discount[: h.shape[1]]
        idcg = ideal_cum[np.minimum(n_test, k).astype(np.int64)]
        out[f"recall@{k}"] = float(np.mean(n_hit / n_test))
        out[f"ndcg@{k}"] = float(np.mean(dcg / idcg))
        out[f"precision@{k}"] = float(np.mean(n_hit / k))
        out[f"hit@{k}"] = float(np.mean(n_hit > 0))
    return out


def _topk_smaller_id_on_ties(scores, k: int):
    """``torch.topk`` whose choice among items tied at the k-th score is the smaller ids.

    ``torch.topk`` picks arbitrarily among ties at the cut-off; deterministic
    rankings (same seed, same numbers, on every kernel) need a rule. Items
    scoring above the k-th score ``t`` are all kept; of those scoring exactly
    ``t``, the ones with the smallest ids fill the remaining places.
    """
    import torch

    top_s, _ = torch.topk(scores, k, dim=1)
    thr = top_s[:, -1:]
    above = scores > thr
    tied = scores == thr
    need = k - above.sum(dim=1, keepdim=True)
    keep = above | (tied & (torch.cumsum(tied, dim=1) <= need))
    ids = torch.nonzero(keep)[:, 1].reshape(scores.shape[0], k)
    return torch.gather(scores, 1, ids), ids


def rank_topk(
    user_emb,
    item_emb,
    k: int,
    exclude: sp.csr_matrix | None = None,
    *,
    users: np.ndarray | None = None,
    batch_size: int | None = None,
    memory_mb: int = 256,
    return_scores: bool = False,
):
    """Top-``k`` items per user by inner product ``⟨e_u, e_i⟩``, excluded items never returned.

    ``user_emb``: ``(n_users, d)``, ``item_emb``: ``(n_items, d)`` (NumPy or torch,
    float). ``exclude``: CSR ``(n_users, n_items)`` of items to skip (train
    items). ``users``: rows of ``user_emb`` to rank (default all). Users are
    scored in batches of at most ``memory_mb`` MiB of scores (or ``batch_size``
    users) by :func:`hashrec_utils.retrieval.exact_topk`, which this delegates to. Returns int64
    ids ``(n, k)`` sorted by score (equal scores: smaller id first), ``-1`` where fewer
    than ``k`` items are left; with ``return_scores`` also the scores
    (``-inf`` for padding).
    """
    import torch

    from .retrieval.exact import _as_tensor, exact_topk

    U, V = _as_tensor(user_emb, "user_emb"), _as_tensor(item_emb, "item_emb")
    if U.shape[1] != V.shape[1]:
        raise ValueError(f"user_emb has dim {U.shape[1]} but item_emb has dim {V.shape[1]}")
    if int(k) <= 0:
        raise ValueError(f"k must be positive; got {k}")
    k = int(k)
    n_items = V.shape[0]
    if exclude is not None:
        exclude = _check_csr(exclude, "exclude")
        if exclude.shape != (U.shape[0], n_items):
            raise ValueError(f"exclude must have shape {(U.shape[0], n_items)}; got {exclude.shape}")
    if users is not None:
        users = np.asarray(users, dtype=np.int64)
        U = U[torch.as_tensor(users)]
        exclude = exclude[users] if exclude is not None else None
    memory = memory_mb if batch_size is None else max(1, (int(batch_size) * 4 * max(n_items, 1)) >> 20)
    scores_out, ids_out = exact_topk(U, V, k, exclude, memory_mb=memory)
    return (ids_out, scores_out) if return_scores else ids_out


def degree_buckets(train: sp.csr_matrix, n_buckets: int = 4) -> tuple[np.ndarray, list[str]]:
    """Assign each user to one of ``n_buckets`` quantile buckets of train degree.

    Returns ``(bucket_of_user, labels)``; labels read like ``"20–44"`` (degree range, inclusive).
    """
    degree = np.diff(_check_csr(train, "train").indptr)
    edges = np.unique(np.quantile(degree, np.linspace(0, 1, n_buckets + 1)).round().astype(np.int64))
    bucket = np.clip(np.searchsorted(edges, degree, side="right") - 1, 0, len(edges) - 2)
    labels = [f"{edges[b]}–{edges[b + 1] - 1 if b + 2 < len(edges) else edges[b + 1]}" for b in range(len(edges) - 1)]
    return bucket, labels


def evaluate_by_group(
    topk_items: np.ndarray, test: sp.csr_matrix, groups: np.ndarray, labels: list[str], ks: Iterable[int] = (20,)
) -> list[dict]:
    """:func:`evaluate_topk` within each group of users (row r of ``topk_items`` is user r).

    Groups without a user holding test items are left out. Each row holds
    ``group``, ``users`` (with test items) and the metric keys.
    """
    test = _check_csr(test, "test")
    groups = np.asarray(groups)
    n_test = np.diff(test.indptr)
    rows = []
    for g, label in enumerate(labels):
        users = np.flatnonzero((groups == g) & (n_test > 0))
        if len(users):
            rows.append({"group": label, "users": int(len(users)), **evaluate_topk(topk_items[users], test, ks, users=users)})
    return rows
