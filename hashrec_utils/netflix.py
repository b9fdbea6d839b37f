"""Netflix Prize ratings: a streaming, chunked parser and a memory-lean loader.

The official files ``combined_data_1.txt`` … ``combined_data_4.txt`` hold
100,480,507 ratings (480,189 customers, 17,770 movies) as blocks::

    1:                      <- MovieID header
    1488844,3,2005-09-06    <- CustomerID,Rating,Date
    822109,5,2005-05-13
    2:
    ...

Files are read in byte chunks (64 MiB by default) and every chunk is parsed
with vectorised NumPy operations on its bytes: newline and comma positions by
``np.flatnonzero``, integers digit by digit over whole columns. No Python
loop runs per rating, and nothing of size ``nnz`` is ever an object array.
Only when a chunk holds a bad line is that one line re-read in Python, to
name the problem (file, line number, what is wrong).

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
import re
import warnings
import zipfile
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .data import InteractionData, split_per_user
from .utils import atomic_write

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
_MAX_DIGITS = 18  # ids up to 10**18 - 1 fit int64
_MIN_LINE_BYTES = 14  # "c,r,YYYY-MM-DD" (+ "\n"): bounds the ratings a file can hold
_PAD = 64  # the vectorised readers may look up to 18 bytes before a field: pad tiny buffers
_NL, _CR, _COMMA, _COLON, _DASH, _ZERO = 10, 13, 44, 58, 45, 48


# --------------------------------------------------------------------------
# Parsing one chunk of bytes
# --------------------------------------------------------------------------

@dataclass(frozen=True)
class _Chunk:
    """Ratings parsed from one byte chunk of one file.

    ``movies``, ``counts``: ``(n_blocks,)`` int64 — the chunk's ratings are
    ``counts[0]`` ratings of movie ``movies[0]``, then ``counts[1]`` of
    ``movies[1]``, ... (a block may continue a movie from the chunk before).
    ``customers``: ``(n,)`` int64 raw CustomerIDs; ``ratings``: ``(n,)`` int8;
    ``days``: ``(n,)`` int32 days since 1970-01-01, or None when not asked for.
    """

    movies: np.ndarray
    counts: np.ndarray
    customers: np.ndarray
    ratings: np.ndarray
    days: np.ndarray | None


def _line_error(path: Path, lineno: int, raw: bytes, movie_known: bool) -> ValueError:
    """The one ``ValueError`` for a bad line, naming file, line and problem (slow path, one line)."""
    text = raw.decode("utf-8", errors="replace").rstrip("\r")
    where = f"{path}:{lineno}"
    if not text:
        return ValueError(f"{where}: empty line inside the file")
    if text.endswith(":"):
        movie = text[:-1]
        if re.fullmatch(r"-\d+", movie):
            return ValueError(f"{where}: MovieID {movie} is negative")
        if not re.fullmatch(r"\d+", movie):
            return ValueError(f"{where}: MovieID {movie!r} is not an integer (header {text!r})")
        return ValueError(f"{where}: MovieID {movie} has more than {_MAX_DIGITS} digits")
    if not movie_known:
        return ValueError(f"{where}: rating line {text!r} comes before any 'MovieID:' header")
    fields = text.split(",")
    if len(fields) != 3:
        return ValueError(
            f"{where}: expected 3 fields CustomerID,Rating,Date (or a 'MovieID:' header), "
            f"got {len(fields)}: {text!r}"
        )
    customer, rating, day = fields
    for what, token in (("CustomerID", customer), ("rating", rating)):
        if re.fullmatch(r"-\d+", token):
            return ValueError(f"{where}: {what} {token} is negative")
        if not re.fullmatch(r"\d+", token):
            return ValueError(f"{where}: {what} {token!r} is not an integer")
    if len(customer) > _MAX_DIGITS:
        return ValueError(f"{where}: CustomerID {customer} has more than {_MAX_DIGITS} digits")
    if rating not in ("1", "2", "3", "4", "5"):
        return ValueError(f"{where}: rating {rating} is not in 1..5")
    match = re.fullmatch(r"(\d{4})-(\d{2})-(\d{2})", day)
    if not match:
        return ValueError(f"{where}: date {day!r} is not YYYY-MM-DD")
    try:
        date(*map(int, match.groups()))
    except ValueError:
        return ValueError(f"{where}: date {day!r} is not a calendar date")
    return ValueError(f"{where}: malformed line {text!r}")  # pragma: no cover - the checks above agree


def _parse_ints(arr: np.ndarray, end: np.ndarray, length: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Decimal integers ``arr[end-length:end]`` for many fields at once, right to left.

    ``arr``: ``(n_bytes,)`` uint8, at least ``_PAD`` bytes; ``end``,
    ``length``: ``(n,)`` int64. Returns ``(values (n,) int64, bad (n,)
    bool)``; ``bad`` marks fields that are empty, longer than 18 digits or
    hold a non-digit.
    """
    bad = (length < 1) | (length > _MAX_DIGITS)
    values = np.zeros(len(end), dtype=np.int64)
    for k in range(int(min(length.max(initial=0), _MAX_DIGITS))):
        digit = arr[end - (k + 1)] - np.uint8(_ZERO)  # uint8: a non-digit wraps to > 9
        active = length > k
        bad |= active & (digit > 9)
        digit[~active] = 0
        values += digit * np.int64(10**k)
    return values, bad


_MONTH_DAYS = np.array([0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31, 0, 0, 0], dtype=np.int16)


def _parse_dates(arr: np.ndarray, end: np.ndarray, length: np.ndarray, want_days: bool) -> tuple[np.ndarray | None, np.ndarray]:
    """``YYYY-MM-DD`` fields ending at ``end``: int32 days since 1970-01-01 (if ``want_days``) and ``bad`` (``(n,)``)."""
    start = np.maximum(end - 10, 0)
    bad = length != 10
    bad |= (arr[start + 4] != _DASH) | (arr[start + 7] != _DASH)

    def number(lo: int, hi: int) -> np.ndarray:
        value = np.zeros(len(start), dtype=np.int16)
        for k in range(lo, hi):
            digit = arr[start + k] - np.uint8(_ZERO)
            np.logical_or(bad, digit > 9, out=bad)
            value = value * np.int16(10) + digit
        return value

    year, month, day = number(0, 4), number(5, 7), number(8, 10)
    leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    bad |= (month < 1) | (month > 12) | (day < 1) | (day > _MONTH_DAYS[month & 15])
    bad |= (month == 2) & (day == 29) & ~leap
    if not want_days:
        return None, bad
    year, month, day = (np.where(bad, fill, v).astype(np.int64) for v, fill in ((year, 1970), (month, 1), (day, 1)))
    first = ((year - 1970) * 12 + month - 1).astype("datetime64[M]").astype("datetime64[D]")
    return (first + (day - 1)).astype(np.int64).astype(np.int32), bad


def _parse_chunk(
    buf: bytes, size: int, path: Path, first_lineno: int, movie: int | None, blank_since: int | None, want_days: bool
) -> tuple[_Chunk, int | None, int, int | None]:
    """Parse ``buf[:size]`` (whole lines, ending with a newline).

    ``movie``: the movie whose block the previous chunk ended in (None at the
    start of a file); ``blank_since``: line number of a run of empty lines the
    previous chunk ended with (allowed only at the end of a file).
    Returns ``(chunk, movie, n_lines, blank_since)`` to carry on with.
    """
    arr = np.frombuffer(buf, dtype=np.uint8, count=size)
    if size < _PAD:  # reads at end - 18 or start + 9 stay inside the array (negative ones wrap)
        arr = np.concatenate([arr, np.zeros(_PAD, dtype=np.uint8)])
    ends = np.flatnonzero(arr == _NL)
    n_lines = len(ends)
    starts = np.empty_like(ends)
    starts[:1] = 0
    starts[1:] = ends[:-1] + 1
    if buf.find(b"\r", 0, size) >= 0:  # Windows line ends: drop the \r before \n
        ends = ends - ((ends > starts) & (arr[np.maximum(ends - 1, 0)] == _CR))
    length = ends - starts
    blank = length == 0
    is_header = ~blank & (arr[np.maximum(ends - 1, 0)] == _COLON)
    is_data = ~(blank | is_header)

    def fail(line: int) -> None:
        before = movie is not None or bool(is_header[:line].any())
        raw = bytes(buf[starts[line] : ends[line]])
        raise _line_error(path, first_lineno + line, raw, before)

    filled = ~blank
    if blank_since is not None and filled.any():
        raise ValueError(f"{path}:{blank_since}: empty line inside the file")
    if blank.any():
        first_blank = int(np.argmax(blank))
        if filled[first_blank:].any():
            raise ValueError(f"{path}:{first_lineno + first_blank}: empty line inside the file")
        if blank_since is None:
            blank_since = first_lineno + first_blank

    bad = np.zeros(n_lines, dtype=bool)
    header_lines = np.flatnonzero(is_header)
    header_movies = np.zeros(len(header_lines), dtype=np.int64)
    for j, line in enumerate(header_lines):  # ~17,770 headers in all: a Python loop is fine
        token = bytes(buf[starts[line] : ends[line] - 1])
        if token.isdigit() and len(token) <= _MAX_DIGITS:
            header_movies[j] = int(token)
        else:
            bad[line] = True

    data_lines = np.flatnonzero(is_data)
    n = len(data_lines)
    if n and movie is None:
        orphan = data_lines[0] < header_lines[0] if len(header_lines) else True
        if orphan:
            bad[data_lines[0]] = True
    s, e = starts[data_lines], ends[data_lines]
    commas = np.flatnonzero(arr == _COMMA)
    # Valid data lines hold exactly two commas and headers none, so the k-th
    # data line owns commas 2k and 2k+1: check that each pair lies in its line.
    paired = len(commas) == 2 * n
    if paired:
        c1, c2 = commas[0::2], commas[1::2]
        paired = bool(((c1 >= s) & (c2 < e)).all())
    if not paired:  # some line has the wrong number of fields: find it, check the rest as usual
        per_line = np.bincount(np.searchsorted(ends, commas), minlength=n_lines)
        bad |= (is_data & (per_line != 2)) | (is_header & (per_line != 0))
        two = per_line[data_lines] == 2
        first = np.minimum(np.searchsorted(commas, s), max(len(commas) - 2, 0))
        c1 = np.where(two, commas[first] if len(commas) else s, s)
        c2 = np.where(two, commas[first + 1] if len(commas) > 1 else s + 2, s + 2)
    customers, bad_c = _parse_ints(arr, c1, c1 - s)
    rating = arr[c1 + 1]
    bad_r = (c2 - c1 != 2) | (rating < _ZERO + 1) | (rating > _ZERO + 5)
    days, bad_d = _parse_dates(arr, e, e - c2 - 1, want_days)
    bad[data_lines] |= bad_c | bad_r | bad_d
    if bad.any():
        fail(int(np.argmax(bad)))

    # Blocks: the data lines before the first header continue ``movie``.
    segment = np.cumsum(is_header)[data_lines]  # 0 = before this chunk's first header
    counts = np.bincount(segment, minlength=len(header_lines) + 1).astype(np.int64)
    movies = np.concatenate([[movie if movie is not None else -1], header_movies]).astype(np.int64)
    keep = counts > 0
    chunk = _Chunk(movies[keep], counts[keep], customers, (rating - _ZERO).astype(np.int8), days)
    if len(header_lines):
        movie = int(header_movies[-1])
    return chunk, movie, n_lines, blank_since


def _scan_file(path: Path, chunk_bytes: int, bar=None, want_days: bool = False) -> Iterator[_Chunk]:
    """Yield the parsed chunks of one Netflix file, streaming ``chunk_bytes`` at a time."""
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    lineno, movie, blank_since, n_ratings = 1, None, None, 0
    with open(path, "rb") as fh:
        rest = b""
        while True:
            block = fh.read(chunk_bytes)
            if bar is not None:
                bar.update(len(block))
            if lineno == 1 and not rest and block.startswith(b"\xef\xbb\xbf"):
                block = block[3:]  # a UTF-8 byte order mark is no part of the first header
            buf = rest + block if rest else block
            if not block:  # end of file: the remainder is the last line
                if not buf:
                    break
                if not buf.endswith(b"\n"):
                    buf += b"\n"
            size = buf.rfind(b"\n") + 1
            if size == 0:
                rest = buf
                continue
            rest = buf[size:]
            chunk, movie, n_lines, blank_since = _parse_chunk(buf, size, path, lineno, movie, blank_since, want_days)
            lineno += n_lines
            n_ratings += len(chunk.customers)
            if len(chunk.customers):
                yield chunk
            if not block:
                break
    if n_ratings == 0:
        raise ValueError(f"{path}: empty file, no ratings (expected 'MovieID:' headers and CustomerID,Rating,Date lines)")


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
      column indices + ``8·(N+1)`` int64 row pointers;
    * ``adjacency_csr_int64``: the same with int64 indices (what
      ``torch.sparse_csr_tensor`` gets from :func:`hashrec_utils.graph.csr_to_torch`);
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
