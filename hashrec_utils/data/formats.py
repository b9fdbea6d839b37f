"""Interaction files: detect the format, parse, check ids; write LightGCN lines.

File formats read by :func:`load_interactions` (``format="auto"`` detects):

``lightgcn``  ``user item item ...`` one line per user (the LightGCN split files);
``edges``     ``user item [rating [timestamp]]``, separated by whitespace, comma or tab
              (ratings may be decimal, ``4.5``; timestamps are kept as text);
``grouplens`` ``user::item::rating::timestamp`` (MovieLens ``ratings.dat``);
``netflix``   Netflix Prize blocks: a ``MovieID:`` line, then ``CustomerID,Rating,Date`` lines.

A first line none of whose fields is a number is a header and skipped (a CSV
header ``user_id,item_id,rating``, RecBole's typed ``user_id:token
item_id:token rating:float``); any later line without a number is an error
naming its line. Ids must be non-negative integers that fit in int64.

Auto-detection: ``::`` means GroupLens; a first line ``<int>:`` means Netflix;
commas mean an edge list. Otherwise (whitespace or tabs) a user id that starts
two lines proves an edge list (a LightGCN file has one line per user); with
every first token unique, lines of varying token counts or of more than four
tokens are LightGCN lines, and lines of one or two tokens read the same either
way. Lines of a constant three or four tokens with unique first tokens are an
edge list when a third or fourth token is not an integer (a rating ``4.5``, a
date) or the file has a header; otherwise they are truly ambiguous (a user with
2-3 items, or one edge per user with rating and time) and the loader asks for
``format=`` (``--format`` on the command line). In a folder, a test or valid
file ambiguous alone is read in the format of its train file.
"""
from __future__ import annotations

import io
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..utils import atomic_write
from .netflix import read_netflix_files

__all__ = [
    "FORMATS",
    "detect_format",
    "load_interactions",
    "write_lightgcn_file",
]

FORMATS = ("lightgcn", "edges", "grouplens", "netflix")


def _read_text(path: Path) -> list[str]:
    path = Path(path)
    if not path.exists():
        raise ValueError(f"{path}: no such file")
    with open(path, "r", encoding="utf-8-sig", errors="strict") as fh:  # -sig: a leading BOM is not data
        try:
            lines = fh.read().splitlines()
        except UnicodeDecodeError as exc:
            raise ValueError(f"{path}: not a UTF-8 text file ({exc})") from None
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise ValueError(f"{path}: empty file, no interactions")
    return lines


_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)
_ID_RUN = re.compile(r"\d+(?: \d+)*", re.ASCII)  # ids joined by one space: all plain digits
_INT64_MAX = np.iinfo(np.int64).max
_ID_DIGITS = len(str(_INT64_MAX))  # 19: shorter digit strings always fit in int64


def _fields(line: str) -> list[str]:
    """Tokens of one line: split on ``::`` where present, else on whitespace and commas."""
    if "::" in line:
        return [f.strip() for f in line.split("::")]
    return line.replace(",", " ").split()


def _split_header(path: Path, lines: list[str]) -> tuple[list[str] | None, list[str], int]:
    """``(header fields or None, data lines, line number of the first data line)``.

    A header is a first line none of whose fields is a number (``user_id,item_id,rating``,
    RecBole's ``user_id:token\\titem_id:token``). A header that names the user and item
    columns in another order than ``user, item`` is an error (the rows would read transposed).
    """
    first = _fields(lines[0])
    if not first or any(_NUMBER.fullmatch(f) for f in first):
        return None, lines, 1
    names = [f.split(":", 1)[0].lower() for f in first]
    user = next((j for j, n in enumerate(names) if "user" in n), None)
    item = next((j for j, n in enumerate(names) if "item" in n or "movie" in n), None)
    if user is not None and item is not None and (user, item) != (0, 1):
        raise ValueError(
            f"{path}:1: header {lines[0].strip()!r} puts the user column at {user + 1} and the item column "
            f"at {item + 1}; the loader reads user, item[, rating[, timestamp]] in that order"
        )
    rest = lines[1:]
    if not rest:
        raise ValueError(f"{path}: only a header line ({lines[0].strip()!r}), no interactions")
    return first, rest, 2


def _to_ids(tokens: list[str], path: Path, lineno, what: str) -> np.ndarray:
    """int64 ids of ``tokens``; ``lineno(j)`` is the line of token ``j``.

    Fast path: one regex over the joined tokens (all plain digits) and a length check
    (< 19 digits always fits in int64). Otherwise every token is checked and the first
    bad one raises a ``ValueError`` naming file, line and token.
    """
    if not tokens:
        return np.zeros(0, dtype=np.int64)
    if _ID_RUN.fullmatch(" ".join(tokens)) and max(map(len, tokens)) < _ID_DIGITS:
        return np.array(tokens, dtype=np.int64)
    out = np.empty(len(tokens), dtype=np.int64)
    for j, tok in enumerate(tokens):
        if not re.fullmatch(r"[+-]?\d+", tok, re.ASCII):
            raise ValueError(f"{path}:{lineno(j)}: {what} {tok!r} is not an integer")
        value = int(tok)
        if value < 0:
            raise ValueError(f"{path}:{lineno(j)}: {what} {value} is negative")
        if value > _INT64_MAX:
            raise ValueError(f"{path}:{lineno(j)}: {what} {tok!r} does not fit in a 64-bit integer (at most {_INT64_MAX})")
        out[j] = value
    return out


def _not_data(path: Path, lineno: int, line: str) -> None:
    """A line with no number in it past line 1: a second header, a comment, a stray title."""
    fields = _fields(line)
    if fields and not any(_NUMBER.fullmatch(f) for f in fields):
        raise ValueError(f"{path}:{lineno}: {line.strip()!r} is not a data line (only line 1 may be a header)")


def _ambiguous(path: Path, n_tokens: int) -> ValueError:
    return ValueError(
        f"{path}: ambiguous format: every line has {n_tokens} integer tokens and no user starts two lines, "
        "which reads both as LightGCN lines (user item item ...) and as an edge list "
        "(user item rating [timestamp]); pass format='lightgcn' or format='edges' (--format on the command line)"
    )


def _detect(path: Path, lines: list[str], header: list[str] | None) -> str | None:
    """The format of the data ``lines`` (header removed); ``None`` when truly ambiguous."""
    sample = [line for line in lines[:2000] if line.strip()]
    if not sample:
        return "lightgcn"  # nothing to tell apart: the parser reports the empty line
    if any("::" in line for line in sample):
        return "grouplens"
    if header is None and re.fullmatch(r"\s*\d+:\s*", sample[0]):
        return "netflix"
    if any("," in line for line in sample):
        return "edges"  # LightGCN lines are whitespace-separated
    seen: set[str] = set()
    for line in lines:  # a user on two lines proves an edge list; stops at the first repeat
        head = line.split(None, 1)[:1]
        if head:
            if head[0] in seen:
                return "edges"
            seen.add(head[0])
    counts = {len(line.split()) for line in lines if line.strip()}
    if max(counts) > 4 or len(counts) > 1 or counts <= {1, 2}:
        return "lightgcn"  # one line per user; two tokens read the same either way
    if any(not tok.isdigit() for line in lines for tok in line.split()[2:]):
        return "edges"  # a rating like 4.5 or a date: not an item id
    if header is not None:
        return "edges"  # a header names columns: LightGCN files have none
    return None


def detect_format(path: str | os.PathLike, lines: list[str] | None = None) -> str:
    """Guess the format of an interaction file (rules in the module docstring).

    Raises a ``ValueError`` naming the file for the one ambiguous case.
    """
    path = Path(path)
    lines = _read_text(path) if lines is None else lines
    if re.fullmatch(r"\s*\d+:\s*", lines[0]) and not any("::" in line for line in lines[:2000]):
        return "netflix"
    header, body, _ = _split_header(path, lines)
    fmt = _detect(path, body, header)
    if fmt is None:
        raise _ambiguous(path, len(body[0].split()))
    return fmt


def load_interactions(path: str | os.PathLike, format: str = "auto") -> pd.DataFrame:
    """Read a user's interaction file into a DataFrame.

    Returns columns ``user`` and ``item`` (int64 raw ids), plus ``rating`` and
    ``timestamp`` where the format carries them. A first line without numbers
    is a header and skipped. Raises one ``ValueError`` naming the file and line
    for a malformed or empty line, a non-integer, negative or over-int64 id, a
    non-numeric line past the first, or an empty file.
    """
    return _read_interactions(Path(path), format)[0]


def _read_interactions(path: Path, format: str, fallback: str | None = None) -> tuple[pd.DataFrame, str]:
    """:func:`load_interactions` and the format it read; ``fallback`` settles an ambiguous file."""
    _check_format(format)
    if format == "netflix":
        return read_netflix_files([path]), "netflix"
    lines = _read_text(path)
    if format == "auto" and re.fullmatch(r"\s*\d+:\s*", lines[0]) and not any("::" in line for line in lines[:2000]):
        return read_netflix_files([path]), "netflix"
    header, body, start = _split_header(path, lines)
    fmt = format
    if format == "auto":
        fmt = _detect(path, body, header) or fallback
        if fmt is None:
            raise _ambiguous(path, len(body[0].split()))
    if fmt == "netflix":  # pragma: no cover - handled above
        return read_netflix_files([path]), "netflix"
    parser = {"lightgcn": _parse_lightgcn, "edges": _parse_edges, "grouplens": _parse_grouplens}[fmt]
    try:
        return parser(path, body, start), fmt
    except ValueError as exc:
        if format == "auto" and fmt == "edges" and "expected 2 to 4 fields" in str(exc):
            raise ValueError(f"{exc} (read as an edge list, detected because a user id starts several lines "
                             "or the lines hold commas; pass format='lightgcn' for LightGCN lines)") from None
        raise


def _check_format(format: str) -> None:
    if format not in ("auto", *FORMATS):
        raise ValueError(f"format must be 'auto' or one of {', '.join(FORMATS)}; got {format!r}")


def _parse_lightgcn(path: Path, lines: list[str], start: int = 1) -> pd.DataFrame:
    tokens: list[str] = []
    lengths = np.empty(len(lines), dtype=np.int64)
    for k, line in enumerate(lines):
        fields = line.split()
        if not fields:
            raise ValueError(f"{path}:{start + k}: empty line")
        if k and not any(f.isdigit() for f in fields):
            _not_data(path, start + k, line)
        tokens.extend(fields)
        lengths[k] = len(fields)
    ends = np.cumsum(lengths)
    ids = _to_ids(tokens, path, lambda j: start + int(np.searchsorted(ends, j, side="right")), "id")
    first = np.zeros(len(ids), dtype=bool)
    first[ends[:-1]] = True
    first[0] = True
    return pd.DataFrame({"user": np.repeat(ids[first], lengths - 1), "item": ids[~first]})


def _parse_rows(path: Path, lines: list[str], sep: str | None, min_fields: int, names: list[str], start: int = 1) -> pd.DataFrame:
    cols: list[list] = [[] for _ in names]
    width = len(names)
    for k, line in enumerate(lines):
        lineno = start + k
        if not line.strip():
            raise ValueError(f"{path}:{lineno}: empty line")
        fields = [f.strip() for f in line.split(sep)] if sep else line.replace(",", " ").split()
        if len(fields) < min_fields or len(fields) > width:
            if k:
                _not_data(path, lineno, line)
            raise ValueError(
                f"{path}:{lineno}: expected {min_fields} to {width} fields "
                f"({', '.join(names)}), got {len(fields)}: {line.strip()!r}"
            )
        for j in range(width):
            cols[j].append(fields[j] if j < len(fields) else None)
    try:
        users = _to_ids(cols[0], path, lambda j: start + j, "user id")
        items = _to_ids(cols[1], path, lambda j: start + j, "item id")
    except ValueError:
        _first_bad_row(path, lines, cols, start)  # the first bad line in file order, then the same error
        raise
    frame = pd.DataFrame({"user": users, "item": items})
    for j in range(2, width):
        values = cols[j]
        if all(v is None for v in values):
            continue
        if names[j] == "rating":
            ratings = []
            for k, value in enumerate(values):
                if value is not None:
                    try:
                        value = float(value)
                    except ValueError:
                        raise ValueError(f"{path}:{start + k}: rating {value!r} is not a number") from None
                    if not np.isfinite(value):
                        raise ValueError(f"{path}:{start + k}: rating {values[k]!r} is not finite")
                ratings.append(value)
            values = ratings
        frame[names[j]] = values
    return frame


def _first_bad_row(path: Path, lines: list[str], cols: list[list], start: int) -> None:
    """Raise for the first row (in file order) that is not a data line or holds a bad id."""
    for k, (u, i) in enumerate(zip(cols[0], cols[1])):
        if k:
            _not_data(path, start + k, lines[k])
        _to_ids([u], path, lambda j: start + k, "user id")
        _to_ids([i], path, lambda j: start + k, "item id")


def _parse_edges(path: Path, lines: list[str], start: int = 1) -> pd.DataFrame:
    return _parse_rows(path, lines, None, 2, ["user", "item", "rating", "timestamp"], start)


def _parse_grouplens(path: Path, lines: list[str], start: int = 1) -> pd.DataFrame:
    frame = _parse_rows(path, lines, "::", 2, ["user", "item", "rating", "timestamp"], start)
    if "timestamp" in frame:
        frame["timestamp"] = frame["timestamp"].astype(np.int64)
    return frame


# --------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------

def write_lightgcn_file(path: Path, matrix: sp.csr_matrix, user_ids: np.ndarray, item_ids: np.ndarray) -> None:
    """Write ``user item item ...`` lines (raw ids), atomically."""
    buf = io.StringIO()
    for u in range(matrix.shape[0]):
        row = matrix.indices[matrix.indptr[u] : matrix.indptr[u + 1]]
        if len(row):
            buf.write(" ".join(map(str, [user_ids[u], *item_ids[row]])) + "\n")
    with atomic_write(path, "w") as fh:
        fh.write(buf.getvalue())
