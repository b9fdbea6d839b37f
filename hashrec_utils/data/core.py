"""Interaction data over compact ids: :class:`InteractionData`, built from pairs, split per user.

Every dataset arrives as an :class:`InteractionData`: binary CSR matrices
(users x items) for ``train``, ``valid`` and ``test`` over compact ids
``0..n_users-1`` and ``0..n_items-1``, plus the raw ids they came from.

:func:`from_pairs` compacts raw ids and builds the matrices (a pair in two
splits is an error); :func:`split_per_user` holds out a share of each user's
items, for the test split of one interaction table (:func:`_split_frame`) and
for the valid split carved from train (:func:`_with_valid`);
:func:`subset_users` keeps the first users and the items they touch;
:func:`dataset_stats` describes a dataset; :func:`synthetic_interactions`
draws the pairs of the ``synthetic`` dataset.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp

__all__ = [
    "InteractionData",
    "SPLIT_VERSION",
    "from_pairs",
    "split_per_user",
    "subset_users",
    "synthetic_interactions",
    "dataset_stats",
]

# The version of the split procedure (split_per_user, the valid carve-out, subset_users): bump it
# when a change moves which pair lands in which split; it is part of every run's identity.
SPLIT_VERSION = 1


@dataclass(frozen=True)
class InteractionData:
    """One dataset, split, over compact ids.

    ``train``, ``valid``, ``test``: ``scipy.sparse.csr_matrix`` of shape
    ``(n_users, n_items)``, float32 ones, sorted indices, pairwise disjoint.
    ``user_ids[u]`` / ``item_ids[i]``: the raw id of compact user ``u`` / item ``i``.
    """

    name: str
    n_users: int
    n_items: int
    train: sp.csr_matrix = field(repr=False)
    valid: sp.csr_matrix = field(repr=False)
    test: sp.csr_matrix = field(repr=False)
    user_ids: np.ndarray = field(repr=False)
    item_ids: np.ndarray = field(repr=False)

    @property
    def n_interactions(self) -> int:
        return int(self.train.nnz + self.valid.nnz + self.test.nnz)

    @property
    def train_full(self) -> sp.csr_matrix:
        """``train + valid``: what a final model may learn from."""
        return _binary(self.train + self.valid)


# --------------------------------------------------------------------------
# Building InteractionData
# --------------------------------------------------------------------------

def _binary(matrix: sp.spmatrix) -> sp.csr_matrix:
    out = sp.csr_matrix(matrix, dtype=np.float32)
    out.sum_duplicates()
    out.data[:] = 1.0
    out.eliminate_zeros()
    out.sort_indices()
    return out


def _csr(users: np.ndarray, items: np.ndarray, shape: tuple[int, int]) -> sp.csr_matrix:
    ones = np.ones(len(users), dtype=np.float32)
    return _binary(sp.csr_matrix((ones, (users, items)), shape=shape))


def from_pairs(
    name: str,
    train: pd.DataFrame,
    test: pd.DataFrame,
    valid: pd.DataFrame | None = None,
    *,
    sources: tuple[str, str] = ("train", "test"),
) -> InteractionData:
    """Compact raw ids and build the three CSR matrices.

    A (user, item) pair present in both ``train`` and ``test`` is an error
    naming ``sources``: a split that leaks test items into training is no split.
    """
    frames = [train, test] + ([valid] if valid is not None else [])
    user_ids = np.unique(np.concatenate([f["user"].to_numpy() for f in frames]))
    item_ids = np.unique(np.concatenate([f["item"].to_numpy() for f in frames]))
    shape = (len(user_ids), len(item_ids))

    def to_csr(frame: pd.DataFrame) -> sp.csr_matrix:
        u = np.searchsorted(user_ids, frame["user"].to_numpy())
        i = np.searchsorted(item_ids, frame["item"].to_numpy())
        return _csr(u, i, shape)

    tr, te = to_csr(train), to_csr(test)
    va = to_csr(valid) if valid is not None else sp.csr_matrix(shape, dtype=np.float32)
    for (a, an), (b, bn) in [((tr, sources[0]), (te, sources[1])), ((va, "valid"), (te, sources[1])), ((tr, sources[0]), (va, "valid"))]:
        both = a.multiply(b).tocoo()
        if both.nnz:
            u, i = int(both.row[0]), int(both.col[0])
            raise ValueError(
                f"{both.nnz} (user, item) pairs are in both {an} and {bn}, e.g. user "
                f"{user_ids[u]} item {item_ids[i]}: the split leaks held-out items"
            )
    return InteractionData(name, shape[0], shape[1], tr, va, te, user_ids, item_ids)


def split_per_user(matrix: sp.csr_matrix, fraction: float, seed: int, *, batch_nnz: int = 1 << 22) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Hold out ``round(fraction * n_u)`` of each user's items, at random with ``seed``.

    Every user keeps at least one item on the kept side: ``n_out = min(rint(fraction·n_u), n_u − 1)``.
    One float64 key per interaction is drawn from ``default_rng(seed)`` in CSR
    order; in each row the ``n_out`` smallest keys are held out. Rows go in
    batches of at most 1,024 rows and about ``batch_nnz`` interactions (the
    keys come from one generator stream, so batching does not change them);
    a batch sorts one int64 per interaction, ``local_row << 53 | key·2^53``
    (exact: NumPy's float64 draws are multiples of 2^-53), which keeps the
    peak memory at one bool per interaction plus the outputs — 100M
    interactions (Netflix) split in about 1.3 GiB. Returns ``(kept, held_out)``,
    both binary CSR of ``matrix``'s shape.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"fraction must be in [0, 1); got {fraction}")
    matrix = _binary(matrix)
    if fraction == 0.0:
        return matrix, sp.csr_matrix(matrix.shape, dtype=np.float32)
    indptr, indices, shape = matrix.indptr, matrix.indices, matrix.shape
    n_rows, nnz = shape[0], int(indptr[-1])
    degree = np.diff(indptr).astype(np.int64)
    n_out = np.minimum(np.rint(degree * fraction).astype(np.int64), np.maximum(degree - 1, 0))
    held = np.zeros(nnz, dtype=bool)
    rng = np.random.default_rng(seed)
    row = 0
    while row < n_rows:
        stop = int(np.searchsorted(indptr, indptr[row] + batch_nnz, side="right")) - 1
        stop = min(max(stop, row + 1), row + 1024, n_rows)
        lo, hi = int(indptr[row]), int(indptr[stop])
        deg = degree[row:stop]
        key = (rng.random(hi - lo) * 2.0**53).astype(np.int64)
        key |= np.repeat(np.arange(stop - row, dtype=np.int64) << 53, deg)
        order = np.argsort(key, kind="stable")
        rank = np.empty(hi - lo, dtype=np.int64)
        rank[order] = np.arange(hi - lo) - np.repeat(indptr[row:stop] - lo, deg)
        held[lo:hi] = rank < np.repeat(n_out[row:stop], deg)
        row = stop
    held_indices = indices[held]
    np.logical_not(held, out=held)
    kept_indices = indices[held]
    del held
    out = []
    for idx, per_row in ((kept_indices, degree - n_out), (held_indices, n_out)):
        ptr = np.zeros(n_rows + 1, dtype=np.int64)
        np.cumsum(per_row, out=ptr[1:])
        m = sp.csr_matrix((np.ones(len(idx), dtype=np.float32), idx, ptr), shape=shape)
        m.has_sorted_indices = True
        out.append(m)
    return out[0], out[1]


def _with_valid(data: InteractionData, valid_fraction: float, seed: int) -> InteractionData:
    if valid_fraction == 0.0 or data.valid.nnz:
        return data
    train, valid = split_per_user(data.train, valid_fraction, seed)
    return InteractionData(data.name, data.n_users, data.n_items, train, valid, data.test, data.user_ids, data.item_ids)


def _split_frame(name: str, frame: pd.DataFrame, test_fraction: float, seed: int) -> InteractionData:
    """Random per-user train/test split of one interaction table (ids compacted)."""
    user_ids = np.unique(frame["user"].to_numpy())
    item_ids = np.unique(frame["item"].to_numpy())
    u = np.searchsorted(user_ids, frame["user"].to_numpy())
    i = np.searchsorted(item_ids, frame["item"].to_numpy())
    full = _csr(u, i, (len(user_ids), len(item_ids)))
    train, test = split_per_user(full, test_fraction, seed)
    empty = sp.csr_matrix(full.shape, dtype=np.float32)
    return InteractionData(name, full.shape[0], full.shape[1], train, empty, test, user_ids, item_ids)


def subset_users(data: InteractionData, max_users: int | None) -> InteractionData:
    """The first ``max_users`` users and the items they touch (ids re-compacted).

    Used by the ``quick`` profile: a small slice of real data.
    """
    if max_users is None or max_users >= data.n_users:
        return data
    rows = slice(0, max_users)
    parts = [m[rows] for m in (data.train, data.valid, data.test)]
    used = np.flatnonzero(np.asarray(sum(p.sum(axis=0) for p in parts)).ravel() > 0)
    parts = [_binary(p[:, used]) for p in parts]
    return InteractionData(
        f"{data.name}[:{max_users}]", max_users, len(used), *parts, data.user_ids[rows], data.item_ids[used]
    )


# --------------------------------------------------------------------------
# Synthetic interactions
# --------------------------------------------------------------------------

def synthetic_interactions(n_users: int, n_items: int, n_interactions: int, *, seed: int = 0, exponent: float = 1.0) -> pd.DataFrame:
    """Power-law users and items: P(user u) ∝ (u+1)^-a, P(item i) ∝ (i+1)^-a, a = ``exponent``.

    Returns ``n_interactions`` distinct pairs (fewer only if the grid is
    nearly full), each user with at least one item.
    """
    for arg, value in (("n_users", n_users), ("n_items", n_items), ("n_interactions", n_interactions)):
        if int(value) <= 0:
            raise ValueError(f"{arg} must be positive; got {value}")
    if n_interactions < n_users:
        raise ValueError(f"n_interactions ({n_interactions}) must be at least n_users ({n_users})")
    if n_interactions > 0.5 * n_users * n_items:
        raise ValueError(f"n_interactions ({n_interactions}) exceeds half the {n_users}x{n_items} grid")
    rng = np.random.default_rng(seed)
    pu = (np.arange(1, n_users + 1, dtype=np.float64)) ** -exponent
    pi = (np.arange(1, n_items + 1, dtype=np.float64)) ** -exponent
    pu /= pu.sum()
    pi /= pi.sum()
    keys = np.arange(n_users, dtype=np.int64) * n_items + rng.choice(n_items, n_users, p=pi)
    while len(keys) < n_interactions:
        need = int((n_interactions - len(keys)) * 1.2) + 16
        new = rng.choice(n_users, need, p=pu).astype(np.int64) * n_items + rng.choice(n_items, need, p=pi)
        keys = np.unique(np.concatenate([keys, new]))
    if len(keys) > n_interactions:
        # keep every user's guaranteed first pair, drop a random share of the rest
        keys = rng.permutation(keys)
        users = keys // n_items
        _, first = np.unique(users, return_index=True)
        rest = np.setdiff1d(np.arange(len(keys)), first)
        keep = np.concatenate([first, rest[: n_interactions - len(first)]])
        keys = np.sort(keys[keep])
    return pd.DataFrame({"user": keys // n_items, "item": keys % n_items})


# --------------------------------------------------------------------------
# Statistics
# --------------------------------------------------------------------------

def dataset_stats(data: InteractionData) -> dict:
    """Users, items, interactions, density and degree percentiles."""
    full = data.train + data.valid + data.test
    user_deg = np.diff(sp.csr_matrix(full).indptr)
    item_deg = np.asarray(full.sum(axis=0)).ravel()
    stats = {
        "dataset": data.name,
        "users": data.n_users,
        "items": data.n_items,
        "interactions": data.n_interactions,
        "train": int(data.train.nnz),
        "valid": int(data.valid.nnz),
        "test": int(data.test.nnz),
        "density": data.n_interactions / (data.n_users * data.n_items),
    }
    for who, deg in (("user", user_deg), ("item", item_deg)):
        for q in (0, 25, 50, 75, 90, 99, 100):
            stats[f"{who}_degree_p{q}"] = float(np.percentile(deg, q))
    return stats
