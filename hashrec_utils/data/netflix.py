"""Netflix Prize ratings: a DataFrame reader and a memory-lean loader over one parser.

The official files ``combined_data_1.txt`` … ``combined_data_4.txt`` hold
100,480,507 ratings (480,189 customers, 17,770 movies); the streaming, chunked
parser of :mod:`hashrec_utils.data.netflix_parse` reads them (the format is
described there).

Two entry points share the parser:

* :func:`read_netflix_files` — a DataFrame, for small files a user hands to
  :func:`hashrec_utils.data.load_interactions`;
* :func:`load_netflix` — the big path behind ``load_dataset("netflix")``:
  int32 arrays only, the full matrix cached as ``netflix_cache.npz`` beside
  the files, and an 80/20 per-user split done in row batches
  (:func:`hashrec_utils.data.split_per_user`, batched: a fraction of the
  memory a global sort would take).

Peak memory of :func:`load_netflix` on data of the full shape: 1.28 GiB
parsing ~2 GB of text, 1.24 GiB from the cache (resident set of a fresh
process, imports included; ``benchmarks/bench_netflix_load.py`` measures it).

:func:`netflix_memory_estimate` sizes LightGCN's training state on a graph of
that shape.
"""
from __future__ import annotations

import json
import math
import os
import warnings
import zipfile
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..utils import atomic_write
from .core import InteractionData, split_per_user
from .netflix_parse import _scan_file

__all__ = [
    "read_netflix_files",
    "load_netflix",
    "netflix_files",
    "netflix_memory_estimate",
    "format_bytes",
    "CACHE_NAME",
]

CACHE_NAME = "netflix_cache.npz"
_CACHE_VERSION = 1
_CHUNK_BYTES = 64 << 20
_MIN_LINE_BYTES = 14  # "c,r,YYYY-MM-DD" (+ "\n"): bounds the ratings a file can hold


def _progress(paths: Sequence[Path], enabled: bool | None):
    total = sum(p.stat().st_size for p in paths if p.is_file())
    if enabled is None:
        enabled = total > (256 << 20)
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="B", unit_scale=True, desc="netflix")


# --------------------------------------------------------------------------
# DataFrame path (small files)
# --------------------------------------------------------------------------

def read_netflix_files(
    paths: Sequence[str | os.PathLike], *, chunk_bytes: int = _CHUNK_BYTES, progress: bool | None = None
) -> pd.DataFrame:
    """Netflix Prize files as one DataFrame, rows in file order.

    Columns: ``user`` (int64 CustomerID), ``item`` (int64 MovieID), ``rating``
    (int8, 1..5), ``date`` (datetime64). Raises one ``ValueError`` naming the
    file and line of the first malformed line (rating line before any
    ``MovieID:`` header, wrong field count, non-integer or negative id, rating
    outside 1..5, bad date, empty line inside the file), or naming an empty file.
    For the full data set use :func:`load_netflix`, which never builds a
    100M-row frame.
    """
    paths = [Path(p) for p in paths]
    if not paths:
        raise ValueError("read_netflix_files: no files given")
    bar = _progress(paths, progress)
    users, items, ratings, days = [], [], [], []
    try:
        for path in paths:
            for chunk in _scan_file(path, chunk_bytes, bar, want_days=True):
                users.append(chunk.customers)
                items.append(np.repeat(chunk.movies, chunk.counts))
                ratings.append(chunk.ratings)
                days.append(chunk.days)
    finally:
        if bar is not None:
            bar.close()
    return pd.DataFrame({
        "user": np.concatenate(users),
        "item": np.concatenate(items),
        "rating": np.concatenate(ratings),
        "date": np.concatenate(days).astype("datetime64[D]").astype("datetime64[s]"),
    })


# --------------------------------------------------------------------------
# Big path: compact ids, CSR, cache, split
# --------------------------------------------------------------------------

def netflix_files(folder: str | os.PathLike) -> list[Path]:
    """``combined_data_*.txt`` in ``folder``, in numeric order (1, 2, ..., 10)."""
    folder = Path(folder)
    found = [p for p in folder.glob("combined_data_*.txt") if p.is_file()]
    if not found:
        raise ValueError(f"{folder}: no combined_data_*.txt files (the Netflix Prize training set)")

    def number(p: Path) -> tuple[int, str]:
        tail = p.stem.rsplit("_", 1)[-1]
        return (int(tail) if tail.isdigit() else 1 << 30, p.name)

    return sorted(found, key=number)


def _manifest(paths: Sequence[Path]) -> dict:
    stats = [p.stat() for p in paths]
    return {
        "version": _CACHE_VERSION,
        "files": [p.name for p in paths],
        "sizes": [s.st_size for s in stats],
        "mtimes_ns": [s.st_mtime_ns for s in stats],
    }


def _read_cache(path: Path, manifest: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """``(indptr, indices, user_ids, item_ids)`` from ``path`` if it matches ``manifest``, else None."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            if json.loads(bytes(npz["manifest"]).decode()) != manifest:
                return None
            out = tuple(npz[k] for k in ("indptr", "indices", "user_ids", "item_ids"))
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        warnings.warn(f"{path}: unreadable cache, rebuilding it ({exc})", stacklevel=3)
        return None
    indptr, indices, user_ids, item_ids = out
    if len(indptr) != len(user_ids) + 1 or indptr[-1] != len(indices):
        warnings.warn(f"{path}: inconsistent cache, rebuilding it", stacklevel=3)
        return None
    return indptr, indices, user_ids, item_ids


def _write_cache(path: Path, manifest: dict, indptr, indices, user_ids, item_ids) -> None:
    blob = np.frombuffer(json.dumps(manifest).encode(), dtype=np.uint8)
    try:
        with atomic_write(path, "wb") as fh:
            np.savez(fh, manifest=blob, indptr=indptr, indices=indices, user_ids=user_ids, item_ids=item_ids)
    except OSError as exc:  # a read-only mirror: go on without a cache
        warnings.warn(f"{path}: cannot write the cache ({exc}); the next load parses the files again", stacklevel=3)


def _compact(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct raw ids ``(m,)`` int64, and ``raw`` rewritten in place to compact ids.

    ``raw``: ``(n,)`` int32 or int64, non-negative. Ids below 2**26 go through
    a lookup table (``O(n)``, no sort of ``n`` values); larger ones through
    ``np.unique``.
    """
    top = int(raw.max())
    if top < (1 << 26):
        present = np.zeros(top + 1, dtype=bool)
        present[raw] = True
        ids = np.flatnonzero(present).astype(np.int64)
        table = (np.cumsum(present, dtype=np.int64) - 1).astype(raw.dtype)
        del present
        step = 1 << 23
        for lo in range(0, len(raw), step):  # in place, a slice at a time
            raw[lo : lo + step] = table[raw[lo : lo + step]]
        return ids, raw
    ids, inverse = np.unique(raw, return_inverse=True)
    raw[:] = inverse
    return ids.astype(np.int64), raw


def _build_matrix(paths: Sequence[Path], chunk_bytes: int, progress: bool | None):
    """Parse ``paths`` into the full binary users x items matrix.

    Returns ``(indptr (n_users+1,), indices (nnz,) int32, user_ids (n_users,)
    int64, item_ids (n_items,) int64)``: row ``u`` of compact user ``u`` holds
    its compact items, sorted, duplicates (same customer rating a movie twice)
    counted once.
    """
    bound = sum(p.stat().st_size for p in paths) // _MIN_LINE_BYTES + len(paths)
    # Untouched pages of this upper bound are never resident.
    customers = np.empty(bound, dtype=np.int32)
    block_movies, block_counts = [], []
    n = 0
    bar = _progress(paths, progress)
    try:
        for path in paths:
            for chunk in _scan_file(path, chunk_bytes, bar):
                m = len(chunk.customers)
                if customers.dtype == np.int32 and chunk.customers.max() >= 2**31:
                    wide = np.empty(bound, dtype=np.int64)  # untouched pages stay free
                    wide[:n] = customers[:n]
                    customers = wide
                customers[n : n + m] = chunk.customers
                block_movies.append(chunk.movies)
                block_counts.append(chunk.counts)
                n += m
    finally:
        if bar is not None:
            bar.close()
    customers = customers[:n]
    movies = np.concatenate(block_movies)
    counts = np.concatenate(block_counts)
    item_ids, block_items = np.unique(movies, return_inverse=True)
    user_ids, customers = _compact(customers)
    customers = customers.astype(np.int32, copy=False)
    shape = (len(user_ids), len(item_ids))
    flags = np.ones(n, dtype=bool)  # 1 byte a rating: the values are never read
    if (np.diff(block_items) >= 0).all():
        # Ratings arrive grouped by movie: that is a CSC matrix already, and
        # CSC -> CSR is one O(nnz) counting pass that leaves rows sorted.
        col_counts = np.bincount(block_items, weights=counts, minlength=shape[1]).astype(np.int64)
        indptr = np.concatenate([[0], np.cumsum(col_counts)])
        matrix = sp.csc_matrix((flags, customers, indptr), shape=shape).tocsr()
    else:  # movie blocks out of order (hand-made files): general COO route
        cols = np.repeat(block_items.astype(np.int32), counts)
        matrix = sp.coo_matrix((flags, (customers, cols)), shape=shape).tocsr()
        del cols
    del customers, flags
    matrix.sort_indices()
    indices, indptr = matrix.indices, matrix.indptr
    same = indices[1:] == indices[:-1]
    inner = indptr[1:-1]
    same[inner[(inner > 0) & (inner < len(indices))] - 1] = False
    if same.any():
        matrix.sum_duplicates()
        indices, indptr = matrix.indices, matrix.indptr
    del same, matrix
    return indptr.astype(np.int64), indices.astype(np.int32, copy=False), user_ids, item_ids


def load_netflix(
    folder: str | os.PathLike,
    seed: int = 0,
    *,
    test_fraction: float = 0.2,
    cache: bool = True,
    chunk_bytes: int = _CHUNK_BYTES,
    progress: bool | None = None,
) -> InteractionData:
    """The Netflix Prize training set in ``folder`` as :class:`InteractionData`.

    Every rating is an implicit interaction. Ids are compacted
    (``user_ids[u]`` = CustomerID, ``item_ids[i]`` = MovieID, both sorted);
    ``test`` holds ``test_fraction`` of each user's items, drawn with ``seed``
    exactly as :func:`hashrec_utils.data.split_per_user` would; ``valid`` is
    empty (``load_dataset`` carves it). The full matrix is cached in
    ``folder/netflix_cache.npz`` (written atomically; rebuilt when a source
    file's name, size or mtime changes; skipped with a warning on a read-only
    folder). Peak memory ~1.3 GiB on the full data (no DataFrame is built).
    """
    folder = Path(folder)
    paths = netflix_files(folder)
    manifest = _manifest(paths)
    cache_path = folder / CACHE_NAME
    loaded = _read_cache(cache_path, manifest) if cache else None
    if loaded is None:
        loaded = _build_matrix(paths, chunk_bytes, progress)
        if cache:
            _write_cache(cache_path, manifest, *loaded)
    indptr, indices, user_ids, item_ids = loaded
    shape = (len(user_ids), len(item_ids))
    full = sp.csr_matrix((np.ones(len(indices), dtype=np.float32), indices, indptr), shape=shape)
    full.has_sorted_indices = True
    train, test = split_per_user(full, test_fraction, seed)
    del loaded, indptr, indices
    valid = sp.csr_matrix(shape, dtype=np.float32)
    return InteractionData("netflix", shape[0], shape[1], train, valid, test, user_ids, item_ids)


# --------------------------------------------------------------------------
# Memory of LightGCN at this scale
# --------------------------------------------------------------------------

def netflix_memory_estimate(n_users: int, n_items: int, n_edges: int, dim: int = 64, *, n_layers: int = 3) -> dict:
    """Bytes LightGCN's training state takes on a bipartite graph (a lower bound, no allocator slack).

    With ``N = n_users + n_items`` nodes and the symmetric normalised
    adjacency ``Ã = D^{-1/2} [[0, R], [Rᵀ, 0]] D^{-1/2}`` (``nnz = 2·n_edges``,
    both directions):

    * ``adjacency_csr_int32``: ``4·nnz`` float32 values + ``4·nnz`` int32
      column indices + ``8·(N+1)`` int64 row pointers (an upper bound for
      :func:`hashrec_utils.graph.csr_to_torch`, whose row pointers are int32 too where ``nnz`` fits);
    * ``adjacency_csr_int64``: the same with int64 indices (``csr_to_torch`` past 2³¹ non-zeros);
    * ``adjacency_coo_int64``: ``(2, nnz)`` int64 indices + values (``torch.sparse_coo``);
    * ``embeddings``: the ``(N, dim)`` float32 table E⁰; ``embedding_grad``: its dense gradient;
    * ``adam_state``: ``exp_avg`` and ``exp_avg_sq``, ``2·4·N·dim``;
    * ``propagation``: ``n_layers`` outputs ``E¹..E^K`` kept for backward;
    * ``total_csr_int32`` / ``total_csr_int64``: the sums.
    """
    for arg, value in (("n_users", n_users), ("n_items", n_items), ("n_edges", n_edges), ("dim", dim)):
        if int(value) <= 0:
            raise ValueError(f"{arg} must be positive; got {value}")
    nodes = int(n_users) + int(n_items)
    nnz = 2 * int(n_edges)
    table = 4 * nodes * int(dim)
    out = {
        "n_nodes": nodes,
        "adjacency_nnz": nnz,
        "adjacency_csr_int32": 4 * nnz + 4 * nnz + 8 * (nodes + 1),
        "adjacency_csr_int64": 4 * nnz + 8 * nnz + 8 * (nodes + 1),
        "adjacency_coo_int64": 4 * nnz + 16 * nnz,
        "embeddings": table,
        "embedding_grad": table,
        "adam_state": 2 * table,
        "propagation": int(n_layers) * table,
    }
    dense = out["embeddings"] + out["embedding_grad"] + out["adam_state"] + out["propagation"]
    out["total_csr_int32"] = out["adjacency_csr_int32"] + dense
    out["total_csr_int64"] = out["adjacency_csr_int64"] + dense
    return out


def format_bytes(n: int) -> str:
    """``1536`` -> ``'1.50 KiB'``."""
    if n < 1024:
        return f"{n} B"
    exp = min(int(math.log(n, 1024)), 4)
    return f"{n / 1024 ** exp:.2f} {'BKMGT'[exp]}iB"
