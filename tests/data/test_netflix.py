"""Netflix Prize parser and loader on hand-written files small enough to check by eye."""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from hashrec_utils.data import netflix
from hashrec_utils.data import InteractionData, load_dataset, load_interactions, split_per_user
from hashrec_utils.data.netflix import (
    CACHE_NAME,
    load_netflix,
    netflix_files,
    netflix_memory_estimate,
    read_netflix_files,
)

FILE_1 = """1:
1488844,3,2005-09-06
822109,5,2005-05-13
885013,4,2005-10-19
2:
2059652,4,2005-09-05
1488844,1,2004-02-29
"""
FILE_2 = """3:
822109,2,2000-01-01
7,5,1999-12-31
"""
# (user, item, rating) in file order
PAIRS_1 = [(1488844, 1, 3), (822109, 1, 5), (885013, 1, 4), (2059652, 2, 4), (1488844, 2, 1)]
PAIRS_2 = [(822109, 3, 2), (7, 3, 5)]


def write(folder: Path, name: str, text: str, newline: str = "\n") -> Path:
    path = folder / name
    path.write_bytes(text.replace("\n", newline).encode())
    return path


def triples(frame) -> list[tuple[int, int, int]]:
    return list(zip(frame["user"].tolist(), frame["item"].tolist(), frame["rating"].tolist()))


# --------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------

def test_tiny_file_parses_to_expected_pairs(tmp_path):
    frame = read_netflix_files([write(tmp_path, "combined_data_1.txt", FILE_1)])
    assert triples(frame) == PAIRS_1
    assert frame["user"].dtype == np.int64 and frame["item"].dtype == np.int64
    assert [str(d.date()) for d in frame["date"]] == ["2005-09-06", "2005-05-13", "2005-10-19", "2005-09-05", "2004-02-29"]


def test_multiple_files_in_order(tmp_path):
    paths = [write(tmp_path, "combined_data_1.txt", FILE_1), write(tmp_path, "combined_data_2.txt", FILE_2)]
    assert triples(read_netflix_files(paths)) == PAIRS_1 + PAIRS_2


@pytest.mark.parametrize("chunk_bytes", [7, 16, 33, 1 << 20])
def test_chunk_size_does_not_matter(tmp_path, chunk_bytes):
    """Blocks and lines split across chunks parse the same; the movie carries over."""
    path = write(tmp_path, "c.txt", FILE_1 + FILE_2)
    assert triples(read_netflix_files([path], chunk_bytes=chunk_bytes)) == PAIRS_1 + PAIRS_2


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_line_ends_trailing_blank_lines_and_no_final_newline(tmp_path, newline):
    for text in (FILE_1 + "\n\n", FILE_1.rstrip("\n"), "\ufeff" + FILE_1):
        path = write(tmp_path, "c.txt", text, newline)
        assert triples(read_netflix_files([path])) == PAIRS_1


BAD = [
    # (file text, line number of the error, words the message holds)
    ("5,3,2005-01-01\n", 1, "before any 'MovieID:' header"),
    ("\n1:\n5,3,2005-01-01\n", 1, "empty line"),
    ("1:\n5,3,2005-01-01\n\n6,3,2005-01-01\n", 3, "empty line"),
    ("1:\n5,3\n", 2, "expected 3 fields"),
    ("1:\n5,3,2005-01-01\n6,3,2005-01-01,9\n", 3, "expected 3 fields"),
    ("1:\n5,3,2005-01-01\n6;3;2005-01-01\n", 3, "expected 3 fields"),
    ("1:\n5,3,2005-01-01\n2:\nx6,3,2005-01-01\n", 4, "CustomerID 'x6' is not an integer"),
    ("1:\n5,3,2005-01-01\n6.5,3,2005-01-01\n", 3, "CustomerID '6.5' is not an integer"),
    ("1:\n,3,2005-01-01\n", 2, "CustomerID '' is not an integer"),
    ("1:\n-6,3,2005-01-01\n", 2, "CustomerID -6 is negative"),
    ("1:\n5,3,2005-01-01\nab:\n6,3,2005-01-01\n", 3, "MovieID 'ab' is not an integer"),
    ("-2:\n6,3,2005-01-01\n", 1, "MovieID -2 is negative"),
    ("1:\n5,0,2005-01-01\n", 2, "rating 0 is not in 1..5"),
    ("1:\n5,3,2005-01-01\n6,6,2005-01-01\n", 3, "rating 6 is not in 1..5"),
    ("1:\n5,-1,2005-01-01\n", 2, "rating -1 is negative"),
    ("1:\n5,4.5,2005-01-01\n", 2, "rating '4.5' is not an integer"),
    ("1:\n5,03,2005-01-01\n", 2, "rating 03 is not in 1..5"),
    ("1:\n5,3,2005/01/01\n", 2, "date '2005/01/01' is not YYYY-MM-DD"),
    ("1:\n5,3,2005-02-29\n", 2, "date '2005-02-29' is not a calendar date"),
    ("1:\n5,3,2005-13-01\n", 2, "is not a calendar date"),
]


@pytest.mark.parametrize("text,line,words", BAD)
@pytest.mark.parametrize("chunk_bytes", [16, 1 << 20])
def test_malformed_line_names_file_and_line(tmp_path, text, line, words, chunk_bytes):
    path = write(tmp_path, "combined_data_9.txt", text)
    with pytest.raises(ValueError) as err:
        read_netflix_files([path], chunk_bytes=chunk_bytes)
    assert str(err.value).startswith(f"{path}:{line}: ")
    assert words in str(err.value)


def test_first_bad_line_is_reported_and_counting_goes_across_files(tmp_path):
    good = write(tmp_path, "combined_data_1.txt", FILE_1)
    bad = write(tmp_path, "combined_data_2.txt", "3:\n5,3,2005-01-01\n6,9,2005-01-01\n7,3\n")
    with pytest.raises(ValueError, match=rf"^{bad}:3: rating 9 is not in 1\.\.5$"):
        read_netflix_files([good, bad])
    # each file restarts the MovieID context: a header-less second file is an error
    orphan = write(tmp_path, "combined_data_3.txt", "8,3,2005-01-01\n")
    with pytest.raises(ValueError, match=rf"^{orphan}:1: .*before any 'MovieID:' header"):
        read_netflix_files([good, orphan])


@pytest.mark.parametrize("text", ["", "\n\n\n", "1:\n2:\n"])
def test_empty_file(tmp_path, text):
    path = write(tmp_path, "combined_data_1.txt", text)
    with pytest.raises(ValueError, match=rf"^{path}: empty file, no ratings"):
        read_netflix_files([path])
    with pytest.raises(ValueError, match="empty file"):
        load_netflix(tmp_path)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(ValueError, match="no such file"):
        read_netflix_files([tmp_path / "nope.txt"])
    with pytest.raises(ValueError, match=r"no combined_data_\*\.txt"):
        load_netflix(tmp_path)


def test_load_interactions_detects_netflix(tmp_path):
    path = write(tmp_path, "ratings.txt", FILE_1)
    assert triples(load_interactions(path)) == PAIRS_1
    assert triples(load_interactions(path, format="netflix")) == PAIRS_1
    bad = write(tmp_path, "bad.txt", "1:\n5,3,2005-01-01\n6,7,2005-01-01\n")
    with pytest.raises(ValueError, match=rf"^{bad}:3: rating 7"):
        load_interactions(bad)


# --------------------------------------------------------------------------
# load_netflix: compact ids, split, cache
# --------------------------------------------------------------------------

def dense_pairs(data: InteractionData, matrix: sp.csr_matrix) -> set[tuple[int, int]]:
    coo = matrix.tocoo()
    return set(zip(data.user_ids[coo.row].tolist(), data.item_ids[coo.col].tolist()))


def random_netflix_folder(folder: Path, seed: int = 0, n_movies: int = 6, n_users: int = 40) -> set[tuple[int, int]]:
    """Netflix files with scattered raw ids over two files; returns the (user, item) pairs."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    raw_users = rng.choice(3_000_000, n_users, replace=False)
    pairs, texts = set(), ["", ""]
    for j, movie in enumerate(sorted(rng.choice(20000, n_movies, replace=False) + 1)):
        users = rng.choice(raw_users, rng.integers(1, n_users), replace=False)
        texts[j * 2 // n_movies] += f"{movie}:\n" + "".join(f"{u},{rng.integers(1, 6)},2005-01-0{1 + k % 9}\n" for k, u in enumerate(users))
        pairs |= {(int(u), int(movie)) for u in users}
    for k, text in enumerate(texts):
        write(folder, f"combined_data_{k + 1}.txt", text)
    return pairs


def test_load_netflix_compact_ids_and_disjoint_split(tmp_path):
    pairs = random_netflix_folder(tmp_path)
    data = load_netflix(tmp_path, seed=3)
    assert isinstance(data, InteractionData) and data.name == "netflix"
    assert list(data.user_ids) == sorted({u for u, _ in pairs})
    assert list(data.item_ids) == sorted({i for _, i in pairs})
    assert (data.n_users, data.n_items) == (len(data.user_ids), len(data.item_ids))
    for m in (data.train, data.valid, data.test):
        assert m.shape == (data.n_users, data.n_items) and m.dtype == np.float32 and m.has_sorted_indices
        assert m.indices.dtype == np.int32 and (m.data == 1).all()
    assert data.valid.nnz == 0
    train, test = dense_pairs(data, data.train), dense_pairs(data, data.test)
    assert train | test == pairs and not train & test
    degree = np.diff((data.train + data.test).indptr)
    expect = np.minimum(np.rint(degree * 0.2), np.maximum(degree - 1, 0))
    assert (np.diff(data.test.indptr) == expect).all()
    assert data.n_interactions == len(pairs)
    # reproducible with the seed, different with another, and the same split data.split_per_user makes
    again = load_netflix(tmp_path, seed=3, cache=False)
    assert (again.test != data.test).nnz == 0 and (again.train != data.train).nnz == 0
    assert (load_netflix(tmp_path, seed=4).test != data.test).nnz > 0
    kept, held = split_per_user(data.train + data.test, 0.2, 3)
    assert (kept != data.train).nnz == 0 and (held != data.test).nnz == 0


def test_out_of_order_blocks_duplicates_and_huge_ids(tmp_path):
    big = 3_000_000_000  # past int32 and past the lookup table: the np.unique route
    write(tmp_path, "combined_data_1.txt", f"5:\n10,1,2005-01-01\n{big},2,2005-01-01\n2:\n10,3,2005-01-01\n")
    write(tmp_path, "combined_data_2.txt", "5:\n10,4,2005-01-02\n2:\n11,5,2005-01-01\n")  # (10, 5) twice
    data = load_netflix(tmp_path, cache=False)
    assert list(data.user_ids) == [10, 11, big] and list(data.item_ids) == [2, 5]
    full = data.train + data.test
    assert full.nnz == 4 and full.max() == 1
    assert dense_pairs(data, full) == {(10, 5), (big, 5), (10, 2), (11, 2)}


def test_cache_round_trip_and_invalidation(tmp_path, monkeypatch):
    random_netflix_folder(tmp_path, seed=1)
    first = load_netflix(tmp_path, seed=0)
    assert (tmp_path / CACHE_NAME).is_file()
    calls = []
    real_build = netflix._build_matrix

    def counting_build(*args, **kwargs):
        calls.append(1)
        return real_build(*args, **kwargs)

    monkeypatch.setattr(netflix, "_build_matrix", counting_build)
    second = load_netflix(tmp_path, seed=0)
    assert calls == []  # read from the cache
    for a, b in ((first.train, second.train), (first.test, second.test)):
        assert (a != b).nnz == 0 and a.shape == b.shape
    assert (first.user_ids == second.user_ids).all() and (first.item_ids == second.item_ids).all()
    # touching a source file (new mtime) invalidates the cache
    source = netflix_files(tmp_path)[0]
    stat = source.stat()
    os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    third = load_netflix(tmp_path, seed=0)
    assert calls == [1] and (third.test != first.test).nnz == 0
    load_netflix(tmp_path, seed=0)
    assert calls == [1]  # the rewritten cache holds again
    # new ratings: size changes, the cache is rebuilt and holds them
    with open(source, "a") as fh:
        fh.write("99999:\n123,3,2005-01-01\n")
    fourth = load_netflix(tmp_path, seed=0)
    assert calls == [1, 1] and 99999 in fourth.item_ids and 123 in fourth.user_ids
    # a corrupt cache warns and is rebuilt
    (tmp_path / CACHE_NAME).write_bytes(b"not a zip")
    with pytest.warns(UserWarning, match="unreadable cache"):
        fifth = load_netflix(tmp_path, seed=0)
    assert fifth.n_interactions == fourth.n_interactions


def test_unwritable_cache_warns_and_loads(tmp_path, monkeypatch):
    pairs = random_netflix_folder(tmp_path, seed=5)

    def read_only(path, mode="wb"):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(netflix, "atomic_write", read_only)
    with pytest.warns(UserWarning, match="cannot write the cache"):
        data = load_netflix(tmp_path)
    assert data.n_interactions == len(pairs) and not (tmp_path / CACHE_NAME).exists()


def test_load_dataset_netflix_carves_valid(tmp_path):
    pairs = random_netflix_folder(tmp_path / "netflix", seed=2, n_movies=30, n_users=60)
    data = load_dataset("netflix", root=tmp_path, seed=0, valid_fraction=0.1)
    assert data.n_interactions == len(pairs) and data.valid.nnz > 0
    assert dense_pairs(data, data.train) | dense_pairs(data, data.valid) | dense_pairs(data, data.test) == pairs


def _reference_split(matrix, fraction, seed):
    """The plain global-sort formulation of the per-user split (one lexsort over all keys)."""
    rng = np.random.default_rng(seed)
    degree = np.diff(matrix.indptr)
    n_out = np.minimum(np.rint(degree * fraction).astype(np.int64), np.maximum(degree - 1, 0))
    keys = rng.random(matrix.nnz)
    rows = np.repeat(np.arange(matrix.shape[0]), degree)
    order = np.lexsort((keys, rows))
    rank = np.empty(matrix.nnz, dtype=np.int64)
    rank[order] = np.arange(matrix.nnz) - np.repeat(matrix.indptr[:-1], degree)
    out = rank < np.repeat(n_out, degree)
    return rows[~out], matrix.indices[~out], rows[out], matrix.indices[out]


@pytest.mark.parametrize("fraction", [0.2, 0.5])
def test_batched_split_equals_a_global_sort(fraction):
    rng = np.random.default_rng(7)
    dense = rng.random((1500, 60)) < rng.random((1500, 1)) * 0.5  # degrees from 0 to ~30
    matrix = sp.csr_matrix(dense.astype(np.float32))
    matrix.sort_indices()
    kr, kc, hr, hc = _reference_split(matrix, fraction, 11)
    for batch in (1, 97, 1 << 22):  # one row at a time, several batches, one batch of 1,024 rows
        kept, held = split_per_user(matrix, fraction, 11, batch_nnz=batch)
        for m, (r, c) in ((kept, (kr, kc)), (held, (hr, hc))):
            coo = m.tocoo()
            assert (coo.row == r).all() and (coo.col == c).all() and m.dtype == np.float32


# --------------------------------------------------------------------------
# Memory estimate and the benchmark's generator
# --------------------------------------------------------------------------

def test_memory_estimate_by_hand():
    est = netflix_memory_estimate(2, 3, 4, dim=2)
    nodes, nnz, table = 5, 8, 5 * 2 * 4
    assert est["n_nodes"] == nodes and est["adjacency_nnz"] == nnz
    assert est["adjacency_csr_int32"] == 4 * nnz + 4 * nnz + 8 * (nodes + 1) == 112
    assert est["adjacency_csr_int64"] == 4 * nnz + 8 * nnz + 8 * (nodes + 1) == 144
    assert est["embeddings"] == table and est["adam_state"] == 2 * table and est["propagation"] == 3 * table
    assert est["total_csr_int32"] == 112 + 7 * table  # E, grad, 2 Adam, 3 layers
    full = netflix_memory_estimate(480_189, 17_770, 100_480_507)
    assert full["adjacency_csr_int32"] == 8 * 200_961_014 + 8 * 497_960
    with pytest.raises(ValueError, match="n_edges must be positive"):
        netflix_memory_estimate(2, 3, 0)


def load_bench():
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_netflix_load.py"
    spec = importlib.util.spec_from_file_location("bench_netflix_load", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_synthetic_files_from_the_benchmark_load_with_the_right_count(tmp_path):
    bench = load_bench()
    paths = bench.write_synthetic_netflix(tmp_path, 30_000, seed=0, progress=False)
    assert [p.name for p in paths] == [f"combined_data_{k}.txt" for k in (1, 2, 3, 4)]
    assert paths[0].read_text().startswith(tuple(f"{m}:\n" for m in range(1, 100)))
    data = load_netflix(tmp_path, seed=0)
    n_users, n_movies = bench.synthetic_shape(30_000)
    assert data.n_interactions == 30_000
    assert (data.n_users, data.n_items) == (n_users, n_movies)  # every customer and movie rated
    assert data.user_ids.max() <= bench.MAX_CUSTOMER_ID
    mtime = paths[0].stat().st_mtime_ns
    bench.write_synthetic_netflix(tmp_path, 30_000, seed=0, progress=False)  # already there: kept
    assert paths[0].stat().st_mtime_ns == mtime
    frame = read_netflix_files(paths)
    assert len(frame) == 30_000 and frame["rating"].between(1, 5).all()
