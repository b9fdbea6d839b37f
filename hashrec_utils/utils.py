"""Small shared helpers: seeding, atomic writes, device choice.

Every file hashrec writes (results, checkpoints, caches, downloads) goes
through :func:`atomic_write` so that an interrupted run never leaves a
half-written file behind: data goes to a temporary file in the same folder
and is moved into place with :func:`os.replace`, which is atomic on POSIX.
"""
from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import json
import math
import os
import random
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np

__all__ = [
    "seed_everything",
    "atomic_write",
    "write_json",
    "read_json",
    "default_device",
    "keep_freed_memory",
]


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and (when installed) PyTorch, CPU and CUDA."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a hard dependency
        return
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def _umask() -> int:
    """The process's umask (read by setting it and putting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[Any]:
    """Open a temporary file beside ``path``; on success move it into place.

    On any exception the temporary file is removed and ``path`` is untouched. The file gets the
    permissions of a plain ``open(path, "w")`` under the user's umask (``mkstemp`` makes it 0600).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as fh:
            yield fh
            os.fchmod(fh.fileno(), 0o666 & ~_umask())
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented, strict JSON, atomically (NaN and ±inf become ``null``,
    which Typst, browsers and ``json.loads(strict)`` all read)."""
    with atomic_write(path, "w") as fh:
        json.dump(_finite(obj), fh, indent=2, sort_keys=True, default=_json_default, allow_nan=False)
        fh.write("\n")


def read_json(path: str | os.PathLike) -> Any:
    with open(path) as fh:
        return json.load(fh)


def _finite(obj: Any) -> Any:
    """``obj`` with every non-finite float replaced by ``None`` (recursively through dicts, lists, arrays)."""
    if isinstance(obj, float | np.floating):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _finite(obj.tolist())
    return obj


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def default_device() -> str:
    """``"cuda"`` when a GPU is visible, else ``"cpu"``."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


# glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
_GLIBC_MMAP_MAX_DEFAULT, _GLIBC_TRIM_DEFAULT = 65536, 128 * 1024


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    """The C library when it is glibc (``mallopt`` and ``gnu_get_libc_version``), looked up once:
    ``find_library`` runs ``ldconfig`` in a subprocess, and every training run asks."""
    name = ctypes.util.find_library("c")
    if name is None:  # pragma: no cover - every Linux has a C library
        return None
    libc = ctypes.CDLL(name)
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "gnu_get_libc_version") else None  # not musl, macOS


def keep_freed_memory(enable: bool = True) -> bool:
    """Make glibc keep the memory of freed large tensors for the next ones (``enable=False``: its defaults).

    glibc serves every block over 32 MiB with a fresh ``mmap`` and returns it on ``free``; each new
    (users × items) score matrix of a hash step then page-faults its way into memory, which costs
    more than the arithmetic on it (measured on two cores: ``exp`` of 6,040 × 3,706 floats 48 ms,
    13 ms on reused memory; a whole ml-1m hash step about twice as fast, see
    ``benchmarks/bench_hash_step.py``). With ``mmap`` off and no trimming, freed blocks stay on
    the heap and are reused; the process keeps its peak memory until it exits. PyTorch's CPU
    tuning guide gets the same effect by preloading jemalloc or tcmalloc.

    Called by :func:`hashrec_utils.training.fit` on CPU; ``HASHREC_MALLOC=system`` in the environment
    leaves glibc as it is. Returns whether the setting was applied (``False`` off glibc).
    """
    if enable and os.environ.get("HASHREC_MALLOC", "").lower() == "system":
        return False
    libc = _glibc()
    if libc is None:
        return False
    mmap_max, trim = (0, 2**31 - 1) if enable else (_GLIBC_MMAP_MAX_DEFAULT, _GLIBC_TRIM_DEFAULT)
    return bool(libc.mallopt(_M_MMAP_MAX, mmap_max)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, trim))
