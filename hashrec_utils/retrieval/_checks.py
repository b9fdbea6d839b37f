"""Argument checks shared by every index: one clear error naming the argument."""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp


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



def _check_threads(threads) -> int | None:
    if threads is not None and (not isinstance(threads, (int, np.integer)) or threads <= 0):
        raise ValueError(f"threads must be a positive integer or None; got {threads!r}")
    return None if threads is None else int(threads)

