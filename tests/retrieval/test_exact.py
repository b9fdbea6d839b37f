"""Exact float search (:func:`exact_topk`): the tiled GEMM + threshold scan against brute force, Faiss and torch.

Exactness is held to a plain-NumPy reference (float64 scores, ``lexsort`` by
score descending then id) on small integer-valued embeddings, where every
summation order gives the same float and ties are everywhere; random float
cases are held to Faiss ``IndexFlatIP`` and the torch formula.
"""
from __future__ import annotations

import numba
import numpy as np
import pytest
import scipy.sparse as sp
import torch

import hashrec_utils.retrieval.exact as exact_mod
from hashrec_utils.bench import torch_reference_topk
from hashrec_utils.retrieval import IndexFlatIP, exact_topk


def brute_force(q, items, k, exclude=None):
    """Top-k by (score descending, id ascending), excluded removed, ``-1`` / ``-inf`` padding."""
    scores = np.asarray(q, np.float64) @ np.asarray(items, np.float64).T
    if exclude is not None:
        scores[exclude.toarray() != 0] = -np.inf
    ids = np.broadcast_to(np.arange(len(items)), scores.shape)
    order = np.lexsort((ids, -scores), axis=1)[:, :k]
    s = np.take_along_axis(scores, order, 1)
    i = np.where(np.isneginf(s), -1, order)
    pad = k - i.shape[1]
    return (np.pad(s, ((0, 0), (0, pad)), constant_values=-np.inf).astype(np.float32),
            np.pad(i, ((0, 0), (0, pad)), constant_values=-1))


def integer_case(nq, n, d, seed, lo=-2, hi=3):
    rng = np.random.default_rng(seed)
    return (rng.integers(lo, hi, (nq, d)).astype(np.float32), rng.integers(lo, hi, (n, d)).astype(np.float32))


@pytest.mark.parametrize("n, nq, d, k, memory_mb", [
    (5000, 300, 4, 20, 1),    # several item chunks (L = 1,024) and query blocks (b = 256)
    (2049, 70, 3, 64, 1),     # a last chunk of one item
    (999, 13, 5, 1, 256),     # k = 1, one tile
    (130, 9, 2, 200, 256),    # k > n: padding
    (3000, 40, 4, 700, 1),    # large k: deep heaps, ties at the k-th place
])
def test_equals_brute_force_on_ties(n, nq, d, k, memory_mb):
    q, items = integer_case(nq, n, d, seed=n + k)
    exclude = sp.random(nq, n, density=0.2, format="csr", random_state=k)
    for ex in (None, exclude):
        s, i = exact_topk(q, items, k, ex, memory_mb=memory_mb)
        exp_s, exp_i = brute_force(q, items, k, ex)
        np.testing.assert_array_equal(i, exp_i)
        np.testing.assert_array_equal(s, exp_s)
        assert s.dtype == np.float32 and i.dtype == np.int64 and s.shape == i.shape == (nq, k)


def test_every_item_entering_the_heap_and_ties_across_chunks():
    """Scores increasing with the id (each item enters the heap) and blocks of equal scores split by the chunks."""
    n = 6000
    items = np.c_[np.arange(n) // 7, np.ones(n)].astype(np.float32)  # 7 items per score value
    q = np.array([[1, 0], [-1, 0], [0, 1], [1, 5]], np.float32)
    for k in (1, 20, 100):
        s, i = exact_topk(q, items, k, memory_mb=1)
        exp_s, exp_i = brute_force(q, items, k)
        np.testing.assert_array_equal(i, exp_i)
        np.testing.assert_array_equal(s, exp_s)
    assert (exact_topk(q[2:3], items, 5)[1] == np.arange(5)).all()  # all equal: the smallest ids


def test_exclusion_of_the_best_items_and_of_everything():
    n = 4100
    q, items = integer_case(6, n, 3, seed=5)
    best = brute_force(q, items, 300)[1]
    rows = np.repeat(np.arange(6), 300)
    exclude = sp.lil_matrix(sp.csr_matrix((np.ones(rows.size), (rows, best.ravel())), shape=(6, n)))
    exclude[5] = 1  # query 5: everything excluded
    exclude = exclude.tocsr()
    s, i = exact_topk(q, items, 10, exclude, memory_mb=1)
    exp_s, exp_i = brute_force(q, items, 10, exclude)
    np.testing.assert_array_equal(i, exp_i)
    np.testing.assert_array_equal(s, exp_s)
    assert (i[5] == -1).all() and np.isneginf(s[5]).all()
    assert not any(np.isin(i[r], best[r]).any() for r in range(5))


def test_float64_queries_and_torch_inputs():
    q, items = integer_case(20, 1500, 4, seed=9)
    exp_s, exp_i = brute_force(q, items, 15)
    for qq, xx in ((q.astype(np.float64), items), (torch.from_numpy(q), torch.from_numpy(items).double()),
                   (q.astype(np.float16), items)):
        s, i = exact_topk(qq, xx, 15, memory_mb=1)
        np.testing.assert_array_equal(i, exp_i)
        np.testing.assert_array_equal(s, exp_s)


def test_equals_faiss_flat_ip_at_1e5_items():
    rng = np.random.default_rng(0)
    items = rng.standard_normal((100_000, 32), dtype=np.float32)
    q = rng.standard_normal((60, 32), dtype=np.float32)
    s, i = exact_topk(q, items, 25, threads=2)
    fs, fi = IndexFlatIP(threads=2).build(items).search(q, 25)
    np.testing.assert_array_equal(np.sort(i, 1), np.sort(fi, 1))
    np.testing.assert_allclose(s, fs, rtol=1e-5, atol=1e-5)
    assert (np.diff(s, axis=1) <= 0).all()


def test_equals_the_torch_formula_with_exclusion():
    rng = np.random.default_rng(1)
    U = rng.standard_normal((700, 64), dtype=np.float32)
    V = rng.standard_normal((3706, 64), dtype=np.float32)
    train = sp.random(700, 3706, density=0.05, format="csr", random_state=2)
    s, i = exact_topk(U, V, 20, train, threads=2)
    ts, ti = torch_reference_topk(U, V, 20, train, threads=2)
    order = np.lexsort((ti, -ts), axis=1)  # the formula has no tie rule (row 268 holds an exact float32 tie)
    np.testing.assert_array_equal(i, np.take_along_axis(ti, order, 1))
    np.testing.assert_array_equal(s, np.take_along_axis(ts, order, 1))


def test_both_gemms_and_thread_counts_agree(monkeypatch):
    """The oneDNN GEMM and torch.mm, 1 and 2 threads: the same ids; exact scores on integer data."""
    rng = np.random.default_rng(4)
    U = rng.standard_normal((300, 64), dtype=np.float32)
    V = rng.standard_normal((20_000, 64), dtype=np.float32)
    qi, xi = integer_case(300, 20_000, 6, seed=4)
    runs = {}
    for gemm in (exact_mod._onednn, exact_mod._mm):
        monkeypatch.setitem(exact_mod._GEMM, "float32", gemm)
        for threads in (1, 2):
            runs[gemm.__name__, threads] = (exact_topk(U, V, 30, threads=threads), exact_topk(qi, xi, 30, threads=threads))
    ref = runs["_mm", 1]
    for (float_run, int_run) in runs.values():
        np.testing.assert_array_equal(float_run[1], ref[0][1])
        np.testing.assert_allclose(float_run[0], ref[0][0], rtol=1e-6)
        np.testing.assert_array_equal(int_run[1], ref[1][1])
        np.testing.assert_array_equal(int_run[0], ref[1][0])
    np.testing.assert_array_equal(ref[1][1], brute_force(qi, xi, 30)[1])


def test_gemm_choice_and_thread_pools_restored():
    assert exact_mod._gemm(torch.float64) is exact_mod._mm
    assert exact_mod._gemm(torch.float32) is (exact_mod._onednn if torch.backends.mkldnn.is_available() else exact_mod._mm)
    old = torch.get_num_threads(), numba.get_num_threads()
    q, items = integer_case(5, 100, 3, seed=1)
    exact_topk(q, items, 3, threads=1)
    assert (torch.get_num_threads(), numba.get_num_threads()) == old


@pytest.mark.parametrize("nq, n, memory_mb, tile", [
    (2000, 1_000_000, 256, (256, 8192)), (6040, 3706, 256, (565, 3706)), (10, 3706, 256, (10, 3706)),
    (300, 5000, 1, (256, 1024)), (3, 10**7, 1, (3, 87381)),
])
def test_tiles_fit_the_budget(nq, n, memory_mb, tile):
    b, L = exact_mod._tiles(nq, n, 4, memory_mb)
    assert (b, L) == tile and b * L * 4 <= min(memory_mb << 20, exact_mod._TILE_BYTES)


def test_empty_inputs_and_bad_arguments():
    q, items = integer_case(4, 10, 3, seed=2)
    s, i = exact_topk(q[:0], items, 3)
    assert s.shape == i.shape == (0, 3)
    s, i = exact_topk(q, items[:0], 3)
    assert (i == -1).all() and np.isneginf(s).all()
    with pytest.raises(ValueError, match="k must be a positive integer"):
        exact_topk(q, items, 0)
    with pytest.raises(ValueError, match="threads must be a positive integer"):
        exact_topk(q, items, 2, threads=0)
    with pytest.raises(ValueError, match="exclude must have shape"):
        exact_topk(q, items, 2, sp.csr_matrix((3, 10)))
    with pytest.raises(ValueError, match="queries contains NaN"):
        exact_topk(np.full((1, 3), np.nan), items, 2)

