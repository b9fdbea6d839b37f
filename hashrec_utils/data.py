"""Datasets: parse, validate, compact ids, split.

Every dataset arrives as an :class:`InteractionData`: binary CSR matrices
(users x items) for ``train``, ``valid`` and ``test`` over compact ids
``0..n_users-1`` and ``0..n_items-1``, plus the raw ids they came from.

Where a named dataset is looked for, in order:

1. ``root/<name>/`` (default root: :func:`default_root`), processed split
   files ``train.txt`` / ``test.txt``;
2. the offline mirror named by the environment variable ``HASHREC_DATA_DIR``
   (``$HASHREC_DATA_DIR/<name>/train.txt`` and ``test.txt``), split used as is;
3. the official source, downloaded into ``root/<name>/`` with a progress bar,
   checked (the MD5 GroupLens publishes beside its zip; the interaction
   counts the LightGCN paper publishes for its splits) and moved into place
   atomically.

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

import hashlib
import io
import os
import re
import shutil
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .utils import atomic_write

__all__ = [
    "InteractionData",
    "DATASETS",
    "load_dataset",
    "load_interactions",
    "load_split_folder",
    "from_pairs",
    "split_per_user",
    "synthetic_interactions",
    "dataset_stats",
    "subset_users",
    "default_root",
    "dataset_folder",
    "item_titles",
    "detect_format",
    "FORMATS",
]

FORMATS = ("lightgcn", "edges", "grouplens", "netflix")

_LIGHTGCN_RAW = "https://raw.githubusercontent.com/gusye1234/LightGCN-PyTorch/master/data"


@dataclass(frozen=True)
class Source:
    """Where a named dataset comes from and how a download is checked."""

    kind: str  # "grouplens-zip" | "lightgcn-split" | "netflix" | "synthetic"
    urls: tuple[str, ...] = ()
    md5_url: str | None = None
    counts: tuple[int, int, int] | None = None  # users, items, interactions (published)


DATASETS: dict[str, Source] = {
    "ml-1m": Source(
        "grouplens-zip",
        ("https://files.grouplens.org/datasets/movielens/ml-1m.zip",),
        md5_url="https://files.grouplens.org/datasets/movielens/ml-1m.zip.md5",
        counts=(6040, 3706, 1000209),
    ),
    "gowalla": Source(
        "lightgcn-split",
        (f"{_LIGHTGCN_RAW}/gowalla/train.txt", f"{_LIGHTGCN_RAW}/gowalla/test.txt"),
        counts=(29858, 40981, 1027370),
    ),
    "yelp2018": Source(
        "lightgcn-split",
        (f"{_LIGHTGCN_RAW}/yelp2018/train.txt", f"{_LIGHTGCN_RAW}/yelp2018/test.txt"),
        counts=(31668, 38048, 1561406),
    ),
    "amazon-book": Source(
        "lightgcn-split",
        (f"{_LIGHTGCN_RAW}/amazon-book/train.txt", f"{_LIGHTGCN_RAW}/amazon-book/test.txt"),
        counts=(52643, 91599, 2984108),
    ),
    "netflix": Source("netflix", counts=(480189, 17770, 100480507)),
    "synthetic": Source("synthetic"),
}


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


def default_root() -> Path:
    """``$HASHREC_DATA_ROOT`` if set, else ``data/`` of this repository."""
    env = os.environ.get("HASHREC_DATA_ROOT")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent / "data"


# --------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------

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
        from .netflix import read_netflix_files

        return read_netflix_files([path]), "netflix"
    lines = _read_text(path)
    if format == "auto" and re.fullmatch(r"\s*\d+:\s*", lines[0]) and not any("::" in line for line in lines[:2000]):
        from .netflix import read_netflix_files

        return read_netflix_files([path]), "netflix"
    header, body, start = _split_header(path, lines)
    fmt = format
    if format == "auto":
        fmt = _detect(path, body, header) or fallback
        if fmt is None:
            raise _ambiguous(path, len(body[0].split()))
    if fmt == "netflix":  # pragma: no cover - handled above
        from .netflix import read_netflix_files

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


def load_split_folder(folder: str | os.PathLike, name: str | None = None, format: str = "auto") -> InteractionData:
    """Read a folder holding ``train`` and ``test`` files (and optionally ``valid``).

    File names tried, for each of ``train``, ``test``, ``valid``: ``train.txt``,
    ``train.csv``, ``train.tsv``, ``train.dat``, ``train.inter``, ``train``, then
    RecBole's ``NAME.train.inter``. ``format`` applies to every file; with
    ``"auto"`` each file is detected on its own, and a test or valid file that is
    ambiguous alone (one line per user of 3-4 integer tokens) is read in the
    format detected for the train file.
    """
    folder = Path(folder)
    _check_format(format)

    def find(stem: str) -> Path | None:
        for suffix in (".txt", ".csv", ".tsv", ".dat", ".inter", ""):
            candidate = folder / f"{stem}{suffix}"
            if candidate.is_file():
                return candidate
        recbole = sorted(p for p in folder.glob(f"*.{stem}.inter") if p.is_file())
        if len(recbole) > 1:
            raise ValueError(f"{folder}: several {stem} files ({', '.join(p.name for p in recbole)}); keep one")
        return recbole[0] if recbole else None

    train_path, test_path, valid_path = find("train"), find("test"), find("valid")
    if train_path is None or test_path is None:
        raise ValueError(
            f"{folder}: a dataset folder needs a train and a test file "
            "(train.txt / train.csv / train.tsv / train.inter / NAME.train.inter, likewise test)"
        )
    train, fmt = _read_interactions(train_path, format)
    test = _read_interactions(test_path, format, fallback=fmt)[0]
    valid = _read_interactions(valid_path, format, fallback=fmt)[0] if valid_path else None
    return from_pairs(name or folder.name, train, test, valid, sources=(str(train_path), str(test_path)))


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
# Named datasets
# --------------------------------------------------------------------------

def load_dataset(
    name_or_folder: str | os.PathLike,
    root: str | os.PathLike | None = None,
    *,
    valid_fraction: float = 0.1,
    seed: int = 0,
    download: bool = True,
    n_users: int = 1000,
    n_items: int = 500,
    n_interactions: int = 20000,
    format: str = "auto",
) -> InteractionData:
    """Load a named dataset or a folder of split files as :class:`InteractionData`.

    ``valid`` is carved per user from train with ``seed`` (``valid_fraction``
    of each user's train items); ``valid_fraction=0`` keeps a published split
    intact (``valid`` empty). ``n_users``, ``n_items``, ``n_interactions``
    size the ``synthetic`` dataset. See the module docstring for the lookup
    order of named datasets.

    ``format``: the format of the split files (``"auto"`` or one of
    :data:`FORMATS`). A folder's files are detected with ``"auto"``; a named
    dataset's ``train.txt`` / ``test.txt`` are LightGCN lines unless ``format``
    says otherwise (``netflix`` takes only ``"auto"`` or ``"netflix"``,
    ``synthetic`` only ``"auto"``).
    """
    if not 0.0 <= valid_fraction < 1.0:
        raise ValueError(f"valid_fraction must be in [0, 1); got {valid_fraction}")
    _check_format(format)
    key = str(name_or_folder)
    if key not in DATASETS:
        folder = Path(key)
        if folder.is_dir():
            return _with_valid(load_split_folder(folder, format=format), valid_fraction, seed)
        raise ValueError(
            f"unknown dataset {key!r}: give one of {', '.join(DATASETS)} or a folder holding train/test files"
        )
    source = DATASETS[key]
    if format != "auto" and (source.kind == "synthetic" or (source.kind == "netflix") != (format == "netflix")):
        raise ValueError(f"format={format!r} does not apply to the {key} dataset (give format='auto')")
    split_format = "lightgcn" if format == "auto" else format
    if source.kind == "synthetic":
        frame = synthetic_interactions(n_users, n_items, n_interactions, seed=seed)
        data = _split_frame(key, frame, 0.2, seed)
        return _with_valid(data, valid_fraction, seed)
    root_dir = Path(root) if root is not None else default_root()
    if source.kind == "netflix":
        from .netflix import load_netflix

        for folder in [*_candidate_folders(key, root_dir), root_dir]:
            if any(folder.glob("combined_data_*.txt")):
                return _with_valid(load_netflix(folder, seed=seed), valid_fraction, seed)
        raise ValueError(
            f"netflix: no combined_data_*.txt under {root_dir / key}, {root_dir} or $HASHREC_DATA_DIR/netflix; "
            "the Netflix Prize files are not distributed any more: put them in a folder and pass root=FOLDER"
        )
    found = dataset_folder(key, root_dir)
    if found is not None:
        return _with_valid(load_split_folder(found, name=key, format=split_format), valid_fraction, seed)
    if not download:
        raise ValueError(f"{key}: not found under {root_dir} or $HASHREC_DATA_DIR, and download=False")
    target = root_dir / key
    _download_dataset(key, source, target, seed)  # writes LightGCN lines whatever ``format`` says
    return _with_valid(load_split_folder(target, name=key, format="lightgcn"), valid_fraction, seed)


def dataset_folder(name_or_folder: str | os.PathLike, root: str | os.PathLike | None = None) -> Path | None:
    """The folder :func:`load_dataset` reads the split files of ``name_or_folder`` from.

    A folder: itself. A named split dataset: the first of ``root/<name>/`` and
    ``$HASHREC_DATA_DIR/<name>/`` holding ``train.txt`` and ``test.txt``; ``None``
    when neither does (not downloaded yet), for ``synthetic`` and for ``netflix``.
    """
    key = str(name_or_folder)
    if key not in DATASETS:
        return Path(key) if Path(key).is_dir() else None
    if DATASETS[key].kind in ("synthetic", "netflix"):
        return None
    root_dir = Path(root) if root is not None else default_root()
    for folder in _candidate_folders(key, root_dir):
        if (folder / "train.txt").is_file() and (folder / "test.txt").is_file():
            return folder
    return None


def item_titles(data: InteractionData, folder: str | os.PathLike | None) -> dict[int, str] | None:
    """Titles of ``data``'s items from a GroupLens ``movies.dat`` beside the dataset, else ``None``.

    Looks for ``folder/movies.dat``, then ``movies.dat`` in the folder above
    (``data/ml-1m/`` or ``data/``); lines ``MovieID::Title::Genres``, latin-1.
    Returns ``{raw item id: title}`` for every id in ``data.item_ids`` (the ids the
    split files carry), or ``None`` when there is no such file or it does not name
    every item (ids that are not MovieLens movie ids, such as the offline
    mirror's 0-based ids, are not given titles they do not have). A malformed
    line is a ``ValueError`` naming file and line.
    """
    path = _titles_file(folder)
    if path is None:
        return None
    titles: dict[int, str] = {}
    with open(path, "r", encoding="latin-1") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            parts = line.rstrip("\r\n").split("::")
            if len(parts) < 2 or not parts[0].strip().isdigit():
                raise ValueError(f"{path}:{lineno}: expected MovieID::Title::Genres, got {line.strip()!r}")
            titles[int(parts[0])] = parts[1].strip()
    ids = [int(i) for i in data.item_ids]
    if not ids or any(i not in titles for i in ids):
        return None
    return {i: titles[i] for i in ids}


def _titles_file(folder: str | os.PathLike | None) -> Path | None:
    if folder is None:
        return None
    folder = Path(folder)
    for candidate in (folder / "movies.dat", folder.parent / "movies.dat"):
        if candidate.is_file():
            return candidate
    return None


def _candidate_folders(name: str, root: Path) -> list[Path]:
    folders = [root / name]
    mirror = os.environ.get("HASHREC_DATA_DIR")
    if mirror:
        folders.append(Path(mirror) / name)
    return folders


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
# Downloads
# --------------------------------------------------------------------------

def _fetch(url: str, dest: Path) -> None:
    """Download ``url`` to ``dest`` with a tqdm bar; atomic; checks the length."""
    from tqdm.auto import tqdm

    try:
        response = urllib.request.urlopen(url, timeout=60)
    except (urllib.error.URLError, OSError) as exc:
        raise ConnectionError(
            f"cannot download {url} ({exc}). Offline? Point the environment variable "
            "HASHREC_DATA_DIR at a mirror folder (see README) or put the files under data/."
        ) from None
    expected = int(response.headers.get("Content-Length") or 0)
    got = 0
    with response, atomic_write(dest, "wb") as out, tqdm(
        total=expected or None, unit="B", unit_scale=True, desc=dest.name
    ) as bar:
        while chunk := response.read(1 << 20):
            out.write(chunk)
            got += len(chunk)
            bar.update(len(chunk))
        if expected and got != expected:
            raise ValueError(f"{url}: truncated download ({got} of {expected} bytes)")


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _download_dataset(name: str, source: Source, target: Path, seed: int) -> None:
    staging = target.with_name(f".{target.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        if source.kind == "grouplens-zip":
            archive = staging / "ml-1m.zip"
            _fetch(source.urls[0], archive)
            if source.md5_url:
                md5_file = staging / "ml-1m.zip.md5"
                _fetch(source.md5_url, md5_file)
                expected = md5_file.read_text().split()[-1 if "=" in md5_file.read_text() else 0].strip()
                if _md5(archive) != expected.lower():
                    raise ValueError(f"{archive}: checksum mismatch (md5 {_md5(archive)}, published {expected})")
                md5_file.unlink()
            _grouplens_zip_to_split(archive, staging, seed)
            archive.unlink()
        elif source.kind == "lightgcn-split":
            for url in source.urls:
                _fetch(url, staging / url.rsplit("/", 1)[1])
        data = load_split_folder(staging, name=name, format="lightgcn")
        if source.counts:
            got = (data.n_users, data.n_items, data.n_interactions)
            if got != source.counts:
                raise ValueError(
                    f"{name}: downloaded files have {got[0]} users, {got[1]} items, {got[2]} "
                    f"interactions; published {source.counts}: corrupt or truncated download"
                )
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def read_grouplens_zip(archive: Path) -> pd.DataFrame:
    """``ratings.dat`` inside a GroupLens zip, as :func:`load_interactions` reads it."""
    try:
        with zipfile.ZipFile(archive) as zf:
            member = next((n for n in zf.namelist() if n.endswith("ratings.dat")), None)
            if member is None:
                raise ValueError(f"{archive}: no ratings.dat in the archive")
            text = zf.read(member).decode("latin-1")
    except zipfile.BadZipFile as exc:
        raise ValueError(f"{archive}: truncated or corrupt zip archive ({exc})") from None
    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise ValueError(f"{archive}: ratings.dat is empty")
    return _parse_grouplens(archive / member, lines)


def _grouplens_zip_to_split(archive: Path, folder: Path, seed: int) -> None:
    """Every rating an implicit interaction; 80/20 split per user with ``seed``."""
    frame = read_grouplens_zip(archive)
    data = _split_frame("ml-1m", frame, 0.2, seed)
    for part, matrix in (("train", data.train), ("test", data.test)):
        write_lightgcn_file(folder / f"{part}.txt", matrix, data.user_ids, data.item_ids)
    with zipfile.ZipFile(archive) as zf:  # the titles, for the explorer (item_titles)
        member = next((n for n in zf.namelist() if n.endswith("movies.dat")), None)
        if member is not None:
            with atomic_write(folder / "movies.dat", "wb") as fh:
                fh.write(zf.read(member))


def write_lightgcn_file(path: Path, matrix: sp.csr_matrix, user_ids: np.ndarray, item_ids: np.ndarray) -> None:
    """Write ``user item item ...`` lines (raw ids), atomically."""
    buf = io.StringIO()
    for u in range(matrix.shape[0]):
        row = matrix.indices[matrix.indptr[u] : matrix.indptr[u + 1]]
        if len(row):
            buf.write(" ".join(map(str, [user_ids[u], *item_ids[row]])) + "\n")
    with atomic_write(path, "w") as fh:
        fh.write(buf.getvalue())


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
