"""Netflix Prize files: a streaming, chunked, vectorised parser.

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

:func:`_scan_file` yields one file's ratings a chunk at a time (:class:`_Chunk`);
the DataFrame reader and the memory-lean loader of :mod:`hashrec_utils.data.netflix`
both consume it.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Iterator

import numpy as np

_MAX_DIGITS = 18  # ids up to 10**18 - 1 fit int64
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
