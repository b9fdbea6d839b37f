"""Peak memory and time of loading Netflix-shaped files, each load in a fresh process.

Writes synthetic ``combined_data_1.txt`` … ``combined_data_4.txt`` of the
Netflix Prize shape into ``--dir`` (unless the files of that size and seed
are there already): ``--ratings`` ratings, at full size 480,189 customers
with raw ids scattered over 1..2,649,429 and 17,770 movies with power-law
popularity (the most rated movie ~233k ratings, as in the real data), dates
1999-11-11..2005-12-31. Smaller ``--ratings`` scale users and movies down at
the real density. Then it loads them with
:func:`hashrec_utils.data.netflix.load_netflix` in a subprocess, first parsing the
text (cache removed), then from the ``.npz`` cache, and reads each child's
own peak resident set size (``getrusage(RUSAGE_SELF).ru_maxrss``, imports
included). The last line is the parse::

    ratings=N peak_rss_gib=X seconds=S

``--memory`` prints :func:`hashrec_utils.data.netflix.netflix_memory_estimate`
for LightGCN on the Netflix shape (480,189 users, 17,770 items, all
100,480,507 edges, then the 80% train graph); with ``--memory`` and no
``--dir`` that is all it does. Without arguments (``make bench``): a quick
check, 2M ratings in a temporary folder. ``--via load_dataset`` measures
``load_dataset("netflix", root=DIR)`` instead, which adds the valid split
``load_dataset`` carves with ``data.split_per_user``.

    python benchmarks/bench_netflix_load.py --ratings 100480507 --dir /tmp/netflix_synth
    python benchmarks/bench_netflix_load.py --ratings 2000000 --dir /tmp/netflix_small
    python benchmarks/bench_netflix_load.py --memory
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from hashrec_utils.data.netflix import CACHE_NAME, format_bytes, netflix_memory_estimate
from hashrec_utils.utils import atomic_write, read_json, write_json

FULL_RATINGS, FULL_USERS, FULL_MOVIES = 100_480_507, 480_189, 17_770
MAX_CUSTOMER_ID = 2_649_429
TOP_MOVIE_SHARE = 232_944 / FULL_USERS  # the most rated movie: ~48.5% of customers
RATING_P = np.array([0.046, 0.101, 0.287, 0.336, 0.230])  # the real 1..5 shares
FIRST_DAY, LAST_DAY = np.datetime64("1999-11-11"), np.datetime64("2005-12-31")
N_FILES = 4
MANIFEST = "synthetic.json"


def synthetic_shape(n_ratings: int) -> tuple[int, int]:
    """``(n_users, n_movies)`` for ``n_ratings`` at the real density and users/movies ratio."""
    if n_ratings <= 0:
        raise ValueError(f"--ratings must be positive; got {n_ratings}")
    movies = min(FULL_MOVIES, max(1, round(FULL_MOVIES * math.sqrt(n_ratings / FULL_RATINGS))))
    users = min(FULL_USERS, max(1, round(movies * FULL_USERS / FULL_MOVIES)), n_ratings)
    if n_ratings > users * movies // 2:
        raise ValueError(f"--ratings {n_ratings} is too dense for {users} users x {movies} movies")
    return users, movies


def _movie_counts(rng: np.random.Generator, n_ratings: int, n_movies: int, n_users: int) -> np.ndarray:
    """Ratings per movie, ``(n_movies,)`` int64, summing to ``n_ratings``, each in 1..n_users.

    Popularity ``∝ rank^-a`` over shuffled ranks, ``a`` set so the top movie
    gets the real top share (48.5% of the customers) where that is possible.
    """
    ranks = np.arange(1, n_movies + 1, dtype=np.float64)
    target = min(TOP_MOVIE_SHARE * n_users, n_ratings)  # ratings of the top movie
    lo, hi = 0.0, 4.0
    for _ in range(60):  # bisection on the exponent
        a = (lo + hi) / 2
        w = ranks**-a
        top = 1 + (n_ratings - n_movies) * w[0] / w.sum()
        lo, hi = (a, hi) if top < target else (lo, a)
    w = ranks ** -((lo + hi) / 2)
    share = (n_ratings - n_movies) * w / w.sum()
    counts = 1 + np.floor(share).astype(np.int64)
    short = n_ratings - int(counts.sum())
    counts[np.argsort(-(share - np.floor(share)), kind="stable")[:short]] += 1
    while (counts > n_users).any():  # tiny shapes only: move the excess to movies with room
        excess = int((counts - n_users).clip(0).sum())
        counts = np.minimum(counts, n_users)
        for j in np.argsort(counts, kind="stable"):
            give = min(n_users - int(counts[j]), excess)
            counts[j] += give
            excess -= give
            if excess == 0:
                break
    return rng.permutation(counts)


def _distinct(rng: np.random.Generator, n_users: int, need: int, exclude: np.ndarray) -> np.ndarray:
    """``need`` distinct user indices not in ``exclude`` (sorted), drawn with density ∝ x^-1/2."""
    chosen = np.empty(0, dtype=np.int64)
    while len(chosen) < need:
        k = int(1.5 * (need - len(chosen))) + 16
        draw = (n_users * rng.random(k) ** 2).astype(np.int64)
        chosen = np.setdiff1d(np.union1d(chosen, draw), exclude, assume_unique=True)
        if len(chosen) < need and len(chosen) + len(exclude) >= n_users:  # pragma: no cover
            raise RuntimeError("not enough users left for a movie")
    return rng.choice(chosen, need, replace=False) if len(chosen) > need else chosen


def _format_lines(customers: np.ndarray, ratings: np.ndarray, day_bytes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``CustomerID,Rating,Date\\n`` lines as one uint8 buffer, vectorised.

    ``customers``: ``(n,)`` int64; ``ratings``: ``(n,)`` 1..5; ``day_bytes``:
    ``(n, 10)`` uint8 ``YYYY-MM-DD``. Returns ``(buffer, offsets (n+1,))``.
    """
    digits = np.ones(len(customers), dtype=np.int64)
    for k in range(1, 19):
        digits += customers >= 10**k
    offsets = np.zeros(len(customers) + 1, dtype=np.int64)
    np.cumsum(digits + 14, out=offsets[1:])
    out = np.empty(int(offsets[-1]), dtype=np.uint8)
    start = offsets[:-1]
    value = customers.copy()
    for k in range(int(digits.max())):
        live = digits > k
        out[(start + digits - 1 - k)[live]] = (48 + value % 10)[live]
        value //= 10
    comma = start + digits
    out[comma] = ord(",")
    out[comma + 1] = 48 + ratings
    out[comma + 2] = ord(",")
    for j in range(10):
        out[comma + 3 + j] = day_bytes[:, j]
    out[comma + 13] = ord("\n")
    return out, offsets


def write_synthetic_netflix(folder: str | os.PathLike, n_ratings: int, seed: int = 0, progress: bool = True) -> list[Path]:
    """Write Netflix-shaped ``combined_data_1..4.txt`` into ``folder``; skip if already there.

    Each movie's customers are distinct; every one of the ``n_users``
    customers rates at least one movie. Files are written atomically, then a
    ``synthetic.json`` records ``n_ratings`` and ``seed``.
    """
    from tqdm.auto import tqdm

    folder = Path(folder)
    paths = [folder / f"combined_data_{j + 1}.txt" for j in range(N_FILES)]
    spec = {"ratings": int(n_ratings), "seed": int(seed), "files": N_FILES}
    if (folder / MANIFEST).is_file() and all(p.is_file() for p in paths):
        if read_json(folder / MANIFEST) == spec:
            return paths
    n_users, n_movies = synthetic_shape(n_ratings)
    rng = np.random.default_rng(seed)
    raw_ids = rng.permutation(np.sort(rng.choice(MAX_CUSTOMER_ID, n_users, replace=False) + 1))  # index -> raw id
    counts = _movie_counts(rng, n_ratings, n_movies, n_users)
    # Every user at least once: n_users distinct rating slots go to a permutation of all users.
    slots = np.sort(rng.choice(n_ratings, n_users, replace=False))
    forced = np.bincount(np.searchsorted(np.cumsum(counts), slots, side="right"), minlength=n_movies)
    cover = rng.permutation(n_users)
    cover_at = np.concatenate([[0], np.cumsum(forced)])
    days = np.arange(FIRST_DAY, LAST_DAY + 1)
    day_table = days.astype("S10").view(np.uint8).reshape(len(days), 10)
    file_of = np.minimum((np.cumsum(counts) - counts) * N_FILES // n_ratings, N_FILES - 1)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MANIFEST).unlink(missing_ok=True)
    bar = tqdm(total=n_ratings, unit=" ratings", unit_scale=True, desc="synthetic netflix", disable=not progress)
    batch = 1 << 22
    for j, path in enumerate(paths):
        movies = np.flatnonzero(file_of == j)
        with atomic_write(path, "wb") as fh:
            pos = 0
            while pos < len(movies):
                group = movies[pos : pos + max(1, int(np.searchsorted(np.cumsum(counts[movies[pos:]]), batch)))]
                pos += len(group)
                users = []
                for m in group:
                    mine = np.sort(cover[cover_at[m] : cover_at[m + 1]])
                    users.append(np.concatenate([mine, _distinct(rng, n_users, int(counts[m] - forced[m]), mine)]))
                users = np.concatenate(users)
                n = len(users)
                ratings = rng.choice(5, n, p=RATING_P) + 1
                day = (len(days) * (1 - rng.random(n) ** 2)).astype(np.int64)  # more ratings later on
                buf, offsets = _format_lines(raw_ids[users], ratings, day_table[day])
                at = np.concatenate([[0], np.cumsum(counts[group])])
                for k, m in enumerate(group):
                    fh.write(f"{m + 1}:\n".encode())
                    fh.write(buf[offsets[at[k]] : offsets[at[k + 1]]].tobytes())
                bar.update(n)
    bar.close()
    write_json(folder / MANIFEST, spec)
    return paths


def _child(folder: str, via: str) -> None:
    """Runs in the fresh process: load, then print one JSON line."""
    import resource

    start = time.perf_counter()
    if via == "load_dataset":
        from hashrec_utils.data import load_dataset

        data = load_dataset("netflix", root=folder, seed=0)
    else:
        from hashrec_utils.data.netflix import load_netflix

        data = load_netflix(folder, seed=0, progress=False)
    seconds = time.perf_counter() - start
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({
        "ratings": data.n_interactions, "users": data.n_users, "items": data.n_items,
        "train": int(data.train.nnz), "valid": int(data.valid.nnz), "test": int(data.test.nnz),
        "seconds": seconds, "peak_rss_gib": peak_kib / 2**20,
    }))


def measure(folder: Path, via: str = "load_netflix") -> dict:
    """Load ``folder`` in a subprocess; its counts, seconds and peak RSS."""
    cmd = [sys.executable, __file__, "--child", str(folder), "--via", via]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"the loading process failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def print_memory(n_users: int, n_items: int, n_edges: int, dim: int) -> None:
    est = netflix_memory_estimate(n_users, n_items, n_edges, dim)
    print(f"LightGCN memory estimate: {n_users} users, {n_items} items, {n_edges} edges, dim {dim}")
    for key, value in est.items():
        shown = value if key in ("n_nodes", "adjacency_nnz") else f"{value:>14,d} B  {format_bytes(value)}"
        print(f"  {key:<22} {shown}")


def main(argv: list[str] | None = None) -> dict | None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ratings", type=int, default=2_000_000, help=f"{FULL_RATINGS} for the full shape")
    parser.add_argument("--dir", type=Path, default=None,
                        help="where the synthetic files go, not in the repo (default: a folder in the temp dir)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--memory", action="store_true", help="print the LightGCN memory estimate")
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--via", choices=("load_netflix", "load_dataset"), default="load_netflix",
                        help="load_dataset adds the valid split load_dataset carves (data.split_per_user)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        _child(args.child, args.via)
        return None
    if args.memory:
        print_memory(FULL_USERS, FULL_MOVIES, FULL_RATINGS, args.dim)
        print_memory(FULL_USERS, FULL_MOVIES, round(0.8 * FULL_RATINGS), args.dim)  # the train graph
        if args.dir is None:
            return None
    try:
        synthetic_shape(args.ratings)  # a clear error before any work
    except ValueError as exc:
        parser.error(str(exc))
    if args.dir is None:
        args.dir = Path(tempfile.gettempdir()) / f"hashrec_netflix_synth_{args.ratings}"
    t = time.perf_counter()
    write_synthetic_netflix(args.dir, args.ratings, args.seed)
    size = sum(p.stat().st_size for p in args.dir.glob("combined_data_*.txt"))
    print(f"files: {args.dir} {size / 2**30:.2f} GiB ({time.perf_counter() - t:.1f} s to write or find)")
    (args.dir / CACHE_NAME).unlink(missing_ok=True)
    parsed = measure(args.dir, args.via)
    cached = measure(args.dir, args.via)
    for label, r in (("parse", parsed), ("cache", cached)):
        print(f"{label}: via={args.via} users={r['users']} items={r['items']} train={r['train']} valid={r['valid']} "
              f"test={r['test']} peak_rss_gib={r['peak_rss_gib']:.3f} seconds={r['seconds']:.1f}")
    if parsed["ratings"] != args.ratings:
        raise RuntimeError(f"loaded {parsed['ratings']} ratings, wrote {args.ratings}")
    print(f"ratings={parsed['ratings']} peak_rss_gib={parsed['peak_rss_gib']:.3f} seconds={parsed['seconds']:.1f}")
    return parsed


if __name__ == "__main__":
    main()
