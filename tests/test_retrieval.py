"""Retrieval: exactness against Faiss and brute force, ties, exclusion, every index's interface, bad input."""
from __future__ import annotations

import faiss
import numpy as np
import pytest
import scipy.sparse as sp

from hashrec_utils.retrieval import (
    FaissIndex,
    HammingIndex,
    HierarchicalIndex,
    hamming_distances,
    hamming_topk,
    hierarchical_topk,
    make_index,
)


def random_codes(n, bits, seed, dup_every=0):
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 256, (n, bits // 8), dtype=np.uint8)
    if dup_every:
        codes[::dup_every] = codes[0]  # many exact duplicates: ties at every distance
    return codes


def brute_force(q, items, k, exclude=None):
    dist = hamming_distances(q, items).astype(np.int64)
    if exclude is not None:
        dist[exclude.toarray() > 0] = 10**6
    order = np.lexsort((np.tile(np.arange(len(items)), (len(q), 1)), dist), axis=1)[:, :k]
    d = np.take_along_axis(dist, order, 1)
    return np.where(d >= 10**6, -1, order), d


def test_popcount_reference_matches_python():
    a, b = random_codes(3, 64, 0), random_codes(4, 64, 1)
    d = hamming_distances(a, b)
    for i in range(3):
        for j in range(4):
            x = int.from_bytes(a[i].tobytes(), "big") ^ int.from_bytes(b[j].tobytes(), "big")
            assert d[i, j] == bin(x).count("1")


@pytest.mark.parametrize("bits", [32, 64, 72, 128, 256])
def test_distances_equal_faiss_binary_flat_and_ties_by_id(bits):
    items = random_codes(2000, bits, 1, dup_every=7)
    q = random_codes(40, bits, 2)
    q[0] = items[0]  # a query sitting on the duplicated code
    k = 25
    ids, dist = hamming_topk(q, items, k, return_distances=True)
    ref = faiss.IndexBinaryFlat(bits)
    ref.add(items)
    D, I = ref.search(q, k)
    np.testing.assert_array_equal(dist, D)  # same distances on every query
    for r in range(len(q)):
        below = D[r] < D[r, -1]  # Faiss may order ties differently, but the sets below the k-th distance agree
        for d in np.unique(D[r][below]):
            assert set(ids[r][dist[r] == d]) == set(I[r][D[r] == d])
    exp_ids, exp_d = brute_force(q, items, k)
    np.testing.assert_array_equal(ids, exp_ids)  # ties broken by smaller id, exactly
    assert (ids[0, :k] == np.arange(0, 2000, 7)[:k]).all()  # the duplicates of code 0, in id order


def test_exclusion_never_returns_excluded_and_equals_brute_force():
    items, q = random_codes(1500, 64, 3, dup_every=5), random_codes(60, 64, 4)
    exclude = sp.random(60, 1500, density=0.2, format="csr", random_state=5)
    ids = hamming_topk(q, items, 30, exclude)
    exp, _ = brute_force(q, items, 30, exclude)
    np.testing.assert_array_equal(ids, exp)
    for r in range(60):
        assert not set(ids[r]) & set(exclude[r].indices)


def test_k_larger_than_items_pads():
    items, q = random_codes(10, 64, 5), random_codes(3, 64, 6)
    exclude = sp.csr_matrix(([1.0, 1.0], ([0, 0], [2, 3])), shape=(3, 10))
    ids, dist = hamming_topk(q, items, 12, exclude, return_distances=True)
    assert (ids[0, 8:] == -1).all() and (ids[1, 10:] == -1).all() and (dist[1, 10:] == 65).all()
    assert sorted(ids[1, :10]) == list(range(10))


def test_threads_do_not_change_results():
    items, q = random_codes(5000, 64, 7, dup_every=3), random_codes(100, 64, 8)
    a = HammingIndex(64, threads=1).build(items).search(q, 40)
    b = HammingIndex(64, threads=2).build(items).search(q, 40)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


def test_hierarchical_equals_brute_force_rerank():
    rng = np.random.default_rng(9)
    items = random_codes(800, 64, 9, dup_every=4)
    q = random_codes(30, 64, 10)
    item_emb = rng.standard_normal((800, 8)).astype(np.float32)
    user_emb = rng.standard_normal((30, 8)).astype(np.float32)
    exclude = sp.random(30, 800, density=0.1, format="csr", random_state=2)
    got = hierarchical_topk(q, items, user_emb, item_emb, 10, candidates=50, exclude=exclude)
    cand, _ = brute_force(q, items, 50, exclude)
    for r in range(30):
        scores = item_emb[cand[r]] @ user_emb[r]
        order = np.lexsort((cand[r], -scores))[:10]
        np.testing.assert_array_equal(got[r], cand[r][order])
    index = HierarchicalIndex(64, candidates=50).build(items, item_emb)
    scores, ids = index.search(q, user_emb, 10, exclude)
    np.testing.assert_array_equal(ids, got)
    assert (np.diff(scores, axis=1) <= 0).all()
    assert index.memory_bytes() == items.nbytes + item_emb.nbytes


@pytest.mark.parametrize("name", FaissIndex.FLOAT)
def test_float_faiss_wrappers(name):
    rng = np.random.default_rng(11)
    items = rng.standard_normal((2000, 16)).astype(np.float32)
    q = rng.standard_normal((20, 16)).astype(np.float32)
    params = {"ivf_pq": {"nlist": 16, "m": 4, "nprobe": 16}, "ivf_flat": {"nlist": 16, "nprobe": 16}}.get(name, {})
    index = make_index(name, threads=1, **params).build(items)
    D, I = index.search(q, 10)
    assert D.shape == I.shape == (20, 10) and I.dtype == np.int64
    exact = np.argsort(-(q @ items.T), axis=1, kind="stable")[:, :10]
    overlap = np.mean([len(set(I[r]) & set(exact[r])) / 10 for r in range(20)])
    if name in ("flat_ip", "ivf_flat"):  # exact (ivf with every list probed)
        np.testing.assert_array_equal(I, exact)
        np.testing.assert_allclose(D, np.take_along_axis(q @ items.T, exact, 1), rtol=1e-5)
    else:
        assert overlap > (0.3 if name == "ivf_pq" else 0.8), overlap
    assert index.memory_bytes() > 0


@pytest.mark.parametrize("name", FaissIndex.BINARY)
def test_binary_faiss_wrappers_and_exclusion(name):
    items, q = random_codes(3000, 64, 12), random_codes(20, 64, 13)
    params = {"binary_ivf": {"nlist": 8, "nprobe": 8}}.get(name, {})
    index = make_index(name, threads=1, **params).build(items)
    exclude = sp.random(20, 3000, density=0.05, format="csr", random_state=3)
    D, I = index.search(q, 10, exclude)
    assert D.shape == I.shape == (20, 10)
    for r in range(20):
        assert not set(I[r][I[r] >= 0]) & set(exclude[r].indices)
    if name in ("binary_flat", "binary_ivf"):  # exact here (every list probed)
        _, exp_d = brute_force(q, items, 10, exclude)
        np.testing.assert_array_equal(D, exp_d)


@pytest.mark.parametrize(
    "codes, msg, exc",
    [
        (np.zeros((4, 8), np.float32), "np.uint8", TypeError),
        (np.zeros((4, 8), np.int64), "np.uint8", TypeError),
        (np.zeros((4, 4), np.uint8), "32 bits; the index has 64", ValueError),
        (np.zeros(8, np.uint8), "2-D", ValueError),
    ],
)
def test_bad_codes(codes, msg, exc):
    index = HammingIndex(64).build(random_codes(10, 64, 0))
    with pytest.raises(exc, match=msg):
        index.search(codes, 5)


def test_other_bad_input():
    with pytest.raises(RuntimeError, match="search before build"):
        HammingIndex(64).search(random_codes(2, 64, 0), 1)
    with pytest.raises(ValueError, match="k must be a positive integer"):
        HammingIndex(64).build(random_codes(10, 64, 0)).search(random_codes(2, 64, 0), 0)
    with pytest.raises(ValueError, match="multiple of 8"):
        HammingIndex(60)
    bad = np.ones((2, 16), np.float32)
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="queries contains NaN"):
        make_index("flat_ip").build(np.ones((5, 16), np.float32)).search(bad, 1)
    with pytest.raises(ValueError, match="unknown index 'annoy'"):
        make_index("annoy")
    with pytest.raises(ValueError, match="exclude must have shape"):
        hamming_topk(random_codes(2, 64, 0), random_codes(5, 64, 1), 1, sp.csr_matrix((3, 5)))
    with pytest.raises(ValueError, match="candidates .* at least k"):
        hierarchical_topk(random_codes(2, 64, 0), random_codes(5, 64, 1), np.ones((2, 4)), np.ones((5, 4)), 5, candidates=3)
