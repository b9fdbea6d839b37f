"""What ``distill`` reads, checked before any work: a model's embeddings and the items its users saw.

Every check raises one ``ValueError`` (``TypeError`` for a wrong type) naming the argument, so a
bad input never leaves a half-written output folder behind:

* embeddings: ``user (n_users, d)`` and ``item (n_items, d)``, floating point, finite, one ``d``,
  at least ``k`` items (:func:`check_embeddings`; from a file: :func:`read_embeddings`, which also
  names a missing key);
* interactions: a CSR ``(n_users, n_items)`` or an edge-list file ``user item …`` whose ids are
  0-based *row indices* of those matrices (no id compaction), every id inside them
  (:func:`read_interactions`, :func:`check_interactions`);
* the output folder: absent, empty, or a folder this command wrote (:func:`check_out`).
"""
from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np
import scipy.sparse as sp

__all__ = ["check_embeddings", "read_embeddings", "read_interactions", "check_interactions", "check_out",
           "MANIFEST"]

# the file whose presence marks a folder as a distilled searcher (written last)
MANIFEST = "searcher.json"


def _check_matrix(x, name: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array (rows x dim); got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"{name} must hold floating-point values; got dtype {x.dtype}")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {x.shape})")
    bad = ~np.isfinite(x)
    if bad.any():
        row = int(np.flatnonzero(bad.any(axis=1))[0])
        raise ValueError(f"{name} holds NaN or infinite values ({int(bad.sum())} of them; first in row {row})")
    return np.ascontiguousarray(x, dtype=np.float32)


def check_embeddings(user, item, k: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """``(user, item)`` as C-contiguous float32 after the checks of the module docstring."""
    user, item = _check_matrix(user, "user embeddings"), _check_matrix(item, "item embeddings")
    if user.shape[1] != item.shape[1]:
        raise ValueError(f"user and item embeddings must have one dimension (their inner product is the score); "
                         f"got user dim {user.shape[1]}, item dim {item.shape[1]}")
    if item.shape[0] < k:
        raise ValueError(f"item embeddings hold {item.shape[0]} items, fewer than k = {k}: top-{k} search needs at least k")
    return user, item


def read_embeddings(path: str | os.PathLike, k: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """``user`` and ``item`` of an ``.npz`` file (a run folder's ``embeddings.npz`` works), checked."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--embeddings {path}: no such file")
    try:
        npz = np.load(path, allow_pickle=False)
        if not isinstance(npz, np.lib.npyio.NpzFile):
            raise ValueError("a single .npy array, not an .npz archive")
        with npz:
            arrays = {key: npz[key] for key in npz.files}
    except (OSError, EOFError, ValueError, zipfile.BadZipFile) as exc:  # not an npz archive, truncated, pickled
        raise ValueError(f"--embeddings {path} is not a readable .npz file ({exc})") from None
    missing = [key for key in ("user", "item") if key not in arrays]
    if missing:
        raise ValueError(f"--embeddings {path} lacks the key(s) {', '.join(missing)} (it holds "
                         f"{', '.join(arrays) or 'nothing'}); save with np.savez(path, user=U, item=V)")
    user, item = arrays["user"], arrays["item"]
    return check_embeddings(user, item, k)


def check_interactions(matrix, n_users: int, n_items: int, name: str = "interactions") -> sp.csr_matrix:
    """A binary CSR ``(n_users, n_items)`` with sorted indices, from a sparse matrix of that shape."""
    if not sp.issparse(matrix):
        raise TypeError(f"{name} must be a scipy sparse matrix (users x items); got {type(matrix).__name__}")
    if matrix.shape != (n_users, n_items):
        raise ValueError(f"{name} must have shape (n_users, n_items) = {(n_users, n_items)}; got {matrix.shape}")
    out = sp.csr_matrix(matrix, dtype=np.float32, copy=True)
    out.eliminate_zeros()
    out.data[:] = 1.0
    out.sum_duplicates()
    out.data[:] = 1.0
    out.sort_indices()
    return out


def read_interactions(path: str | os.PathLike, n_users: int, n_items: int, name: str = "--interactions") -> sp.csr_matrix:
    """An edge-list file ``user item [rating [timestamp]]`` (whitespace, comma or tab; an optional
    header) as a binary CSR; ids are 0-based rows of the embedding matrices, checked to lie inside them."""
    from ..data import load_interactions

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{name} {path}: no such file")
    frame = load_interactions(path, format="edges")
    users, items = frame["user"].to_numpy(np.int64), frame["item"].to_numpy(np.int64)
    for ids, n, what in ((users, n_users, "user"), (items, n_items, "item")):
        outside = np.flatnonzero(ids >= n)
        if len(outside):
            first = int(outside[0])
            raise ValueError(f"{name} {path}: {len(outside)} {what} id(s) outside the embeddings' {n} rows "
                             f"(ids are 0-based row indices, no compaction); first: {what} {int(ids[first])} "
                             f"on data line {first + 1}")
    matrix = sp.csr_matrix((np.ones(len(users), np.float32), (users, items)), shape=(n_users, n_items))
    return check_interactions(matrix, n_users, n_items, name)


def check_out(out: str | os.PathLike) -> Path:
    """``out`` if it is absent, an empty folder, or a folder :mod:`.searcher` wrote (its manifest
    present): anything else is refused, so distillation never mixes its files with another's."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; give a folder")
    if out.is_dir():
        entries = [p.name for p in out.iterdir() if not p.name.startswith(".")]
        if entries and MANIFEST not in entries:
            raise ValueError(f"--out {out} holds other files ({', '.join(sorted(entries)[:3])}"
                             f"{', …' if len(entries) > 3 else ''}) and no {MANIFEST}: choose an empty or new folder")
    return out
