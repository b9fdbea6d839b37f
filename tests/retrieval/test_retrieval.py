"""Retrieval: exactness against Faiss and brute force, ties, exclusion, every index's interface, bad input."""
from __future__ import annotations

import faiss
import numpy as np
import pytest
import scipy.sparse as sp

from hashrec_utils.retrieval import (
    FAISS_INDEXES,
    ExactIndex,
    HammingIndex,
    HierarchicalIndex,
    IndexBinaryFlat,
    IndexFlatIP,
    IndexHNSWFlat,
    exact_topk,
    hamming_distances,
    hamming_topk,
    hierarchical_topk,
    make_index,
)

BITS = [32, 64, 72, 128, 256]


def random_codes(n, bits, seed, dup_every=0):
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 256, (n, bits // 8), dtype=np.uint8)
    if dup_every:
        codes[::dup_every] = codes[0]  # many exact duplicates: ties at every distance
    return codes


def unpacked_distances(q, items):
    """Hamming distances from the bits themselves: the reference that shares no code with the kernel."""
    qb, ib = np.unpackbits(q, axis=1).astype(np.int32), np.unpackbits(items, axis=1).astype(np.int32)
    return qb @ (1 - ib).T + (1 - qb) @ ib.T


def brute_force(q, items, k, exclude=None):
    """Top-k by (distance, id) with excluded items removed; ``-1`` / ``bits + 1`` padding."""
    dist = unpacked_distances(q, items).astype(np.int64)
    big = q.shape[1] * 8 + 1
    if exclude is not None:
        dist[exclude.toarray() != 0] = big
    ids = np.tile(np.arange(len(items)), (len(q), 1))
    order = np.lexsort((ids, dist), axis=1)[:, :k]
    d = np.take_along_axis(dist, order, 1)
    ids = np.where(d >= big, -1, order)
    if ids.shape[1] < k:
        ids = np.pad(ids, ((0, 0), (0, k - ids.shape[1])), constant_values=-1)
        d = np.pad(d, ((0, 0), (0, k - d.shape[1])), constant_values=big)
    return ids, d


def test_reference_distances_match_python_popcount():
    for bits in (64, 72):
        a, b = random_codes(3, bits, 0), random_codes(4, bits, 1)
        d, u = hamming_distances(a, b), unpacked_distances(a, b)
        for i in range(3):
            for j in range(4):
                x = int.from_bytes(a[i].tobytes(), "big") ^ int.from_bytes(b[j].tobytes(), "big")
                assert d[i, j] == u[i, j] == bin(x).count("1")


@pytest.mark.parametrize("bits", BITS)
def test_equals_faiss_binary_flat_and_breaks_ties_by_id(bits):
    items = random_codes(3000, bits, 1, dup_every=7)
    q = random_codes(40, bits, 2)
    q[0] = items[0]  # a query sitting on the duplicated code
    q[1] = items[5] ^ 1  # one bit away from an item
    k = 25
    D, I = HammingIndex(bits).build(items).search(q, k)
    ref = faiss.IndexBinaryFlat(bits)
    ref.add(items)
    Dr, Ir = ref.search(q, k)
    np.testing.assert_array_equal(D, Dr)  # the same distances on every query
    for r in range(len(q)):
        # Faiss orders ties its own way; below the k-th distance the sets of ids must agree.
        for d in np.unique(Dr[r][Dr[r] < Dr[r, -1]]):
            assert set(I[r][D[r] == d]) == set(Ir[r][Dr[r] == d])
    exp_i, exp_d = brute_force(q, items, k)
    np.testing.assert_array_equal(I, exp_i)  # ties broken by the smaller id, exactly
    np.testing.assert_array_equal(D, exp_d)
    np.testing.assert_array_equal(I[0], np.arange(0, 3000, 7)[:k])  # the duplicates of code 0, in id order
    assert D.dtype == np.int32 and I.dtype == np.int64


def test_many_tiles_and_ever_improving_items():
    # Items ever closer to the query: every item beats the running k-th distance,
    # so the candidate buffer fills and is compacted again and again; 40k items span several tiles.
    n, bits = 40_000, 64
    rng = np.random.default_rng(3)
    ones = 64 - (np.arange(n) * 60) // n  # popcount falls from 64 to 5 as the id grows
    bits_ = np.zeros((n, bits), np.uint8)
    for j in range(n):
        bits_[j, rng.choice(bits, ones[j], replace=False)] = 1
    items = np.packbits(bits_, axis=1)
    q = np.vstack([np.zeros((1, 8), np.uint8), random_codes(7, bits, 4)])
    D, I = HammingIndex(bits).build(items).search(q, 100)
    exp_i, exp_d = brute_force(q, items, 100)
    np.testing.assert_array_equal(I, exp_i)
    np.testing.assert_array_equal(D, exp_d)


def test_exclusion_never_returns_excluded_and_equals_brute_force():
    items, q = random_codes(1500, 64, 3, dup_every=5), random_codes(60, 64, 4)
    exclude = sp.random(60, 1500, density=0.2, format="csr", random_state=5)
    exclude.data[:] = 1.0
    D, I = HammingIndex(64).build(items).search(q, 30, exclude)
    exp_i, exp_d = brute_force(q, items, 30, exclude)
    np.testing.assert_array_equal(I, exp_i)
    np.testing.assert_array_equal(D, exp_d)
    for r in range(60):
        assert not set(I[r]) & set(exclude[r].indices)
    # unsorted column indices and a COO matrix are accepted too
    np.testing.assert_array_equal(HammingIndex(64).build(items).search(q, 30, exclude.tocoo())[1], exp_i)


def test_k_larger_than_items_pads():
    items, q = random_codes(10, 64, 5), random_codes(3, 64, 6)
    exclude = sp.csr_matrix(([1.0, 1.0], ([0, 0], [2, 3])), shape=(3, 10))
    D, I = HammingIndex(64).build(items).search(q, 12, exclude)
    assert I.shape == D.shape == (3, 12)
    assert (I[0, 8:] == -1).all() and (D[0, 8:] == 65).all() and not {2, 3} & set(I[0])
    assert (I[1, 10:] == -1).all() and sorted(I[1, :10]) == list(range(10))
    np.testing.assert_array_equal(I, brute_force(q, items, 12, exclude)[0])
    # the zero rows that fill the last block of 32 are at distance 0 from a zero query: never returned
    items45 = random_codes(45, 64, 7)
    D, I = HammingIndex(64).build(items45).search(np.zeros((2, 8), np.uint8), 50)
    assert sorted(I[0, :45]) == list(range(45)) and (I[:, 45:] == -1).all() and (D[:, 45:] == 65).all()
    # every item excluded: all padding
    D, I = HammingIndex(64).build(items).search(q[:1], 4, sp.csr_matrix(np.ones((1, 10))))
    assert (I == -1).all() and (D == 65).all()


def test_threads_do_not_change_results():
    items, q = random_codes(5000, 64, 7, dup_every=3), random_codes(100, 64, 8)
    exclude = sp.random(100, 5000, density=0.01, format="csr", random_state=1)
    a = HammingIndex(64, threads=1).build(items).search(q, 40, exclude)
    b = HammingIndex(64, threads=2).build(items).search(q, 40, exclude)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


def test_one_off_helpers():
    items, q = random_codes(300, 128, 9), random_codes(5, 128, 10)
    ids, dist = hamming_topk(q, items, 7, return_distances=True)
    exp_i, exp_d = brute_force(q, items, 7)
    np.testing.assert_array_equal(ids, exp_i)
    np.testing.assert_array_equal(dist, exp_d)
    np.testing.assert_array_equal(hamming_topk(q, items, 7), exp_i)
    # bits/8 bytes per item, the count rounded up to whole blocks of 32 items
    assert HammingIndex(128).build(items).memory_bytes() == 320 * 16
    assert HammingIndex(72).build(random_codes(300, 72, 0)).memory_bytes() == 320 * 9


def test_hierarchical_equals_brute_force_rerank():
    rng = np.random.default_rng(9)
    items = random_codes(800, 64, 9, dup_every=4)
    q = random_codes(30, 64, 10)
    item_emb = rng.standard_normal((800, 8)).astype(np.float32)
    user_emb = rng.standard_normal((30, 8)).astype(np.float32)
    exclude = sp.random(30, 800, density=0.1, format="csr", random_state=2)
    index = HierarchicalIndex(64, candidates=50).build((items, item_emb))
    scores, ids = index.search((q, user_emb), 10, exclude)
    cand, _ = brute_force(q, items, 50, exclude)
    for r in range(30):
        s = item_emb[cand[r]] @ user_emb[r]
        order = np.lexsort((cand[r], -s))[:10]
        np.testing.assert_array_equal(ids[r], cand[r][order])
        np.testing.assert_allclose(scores[r], s[order], rtol=1e-5)
    assert (np.diff(scores, axis=1) <= 0).all()
    assert index.memory_bytes() == items.nbytes + item_emb.nbytes
    np.testing.assert_array_equal(hierarchical_topk(q, items, user_emb, item_emb, 10, 50, exclude), ids)
    # fewer candidates than k: padded with -inf / -1
    s, i = HierarchicalIndex(64, candidates=50).build((items[:5], item_emb[:5])).search((q[:2], user_emb[:2]), 8)
    assert (i[:, 5:] == -1).all() and np.isneginf(s[:, 5:]).all()
    assert index.set_search_params(candidates=20).search((q, user_emb), 10)[1].shape == (30, 10)


def test_exact_faiss_wrappers_equal_brute_force():
    rng = np.random.default_rng(11)
    items = rng.standard_normal((2000, 16)).astype(np.float32)
    q = rng.standard_normal((20, 16)).astype(np.float32)
    exclude = sp.random(20, 2000, density=0.05, format="csr", random_state=3)
    scores = q @ items.T
    scores[exclude.toarray() != 0] = -np.inf
    exact = np.argsort(-scores, axis=1, kind="stable")[:, :10]
    D, I = IndexFlatIP(threads=1).build(items).search(q, 10, exclude)
    np.testing.assert_array_equal(I, exact)
    np.testing.assert_allclose(D, np.take_along_axis(scores, exact, 1), rtol=1e-5)
    codes, qc = random_codes(3000, 64, 12), random_codes(20, 64, 13)
    bexclude = sp.random(20, 3000, density=0.05, format="csr", random_state=3)
    D, I = IndexBinaryFlat(threads=1).build(codes).search(qc, 10, bexclude)
    exp_i, exp_d = brute_force(qc, codes, 10, bexclude)
    np.testing.assert_array_equal(D, exp_d)
    for r in range(20):
        assert not set(I[r]) & set(bexclude[r].indices)


PARAMS = {
    "ivf_flat": {"nlist": 16, "nprobe": 4},
    "ivf_pq": {"nlist": 16, "nprobe": 16, "m": 4},
    "nsg": {"R": 16},
    "binary_ivf": {"nlist": 8, "nprobe": 8},
    "binary_hnsw": {"M": 8},
}


@pytest.mark.parametrize("name", list(FAISS_INDEXES))
def test_every_faiss_wrapper_has_the_interface(name):
    rng = np.random.default_rng(14)
    binary = FAISS_INDEXES[name].kind == "binary"
    items = random_codes(2000, 64, 15) if binary else rng.standard_normal((2000, 16)).astype(np.float32)
    q = random_codes(25, 64, 16) if binary else rng.standard_normal((25, 16)).astype(np.float32)
    index = make_index(name, threads=1, **PARAMS.get(name, {})).build(items)
    exclude = sp.random(25, 2000, density=0.05, format="csr", random_state=4)
    D, I = index.search(q, 10, exclude)
    assert D.shape == I.shape == (25, 10) and I.dtype == np.int64
    assert I.max() < 2000
    for r in range(25):
        assert not set(I[r][I[r] >= 0]) & set(exclude[r].indices)
    valid = I >= 0
    if binary:  # distances are the true Hamming distances of the ids returned, ascending
        true = np.where(valid, np.take_along_axis(unpacked_distances(q, items), np.where(valid, I, 0), 1), 65)
        np.testing.assert_array_equal(D, true)
        assert (np.diff(D, axis=1) >= 0).all()
    else:  # scores are the inner products of the ids returned, descending
        true = np.where(valid, np.take_along_axis(q @ items.T, np.where(valid, I, 0), 1), -np.inf)
        np.testing.assert_allclose(D[valid], true[valid], rtol=1e-4, atol=1e-4 if name != "ivf_pq" else 5.0)
    assert index.memory_bytes() > 0
    assert index.metric in ("hamming", "inner_product")


def test_hnsw_mips_transform_gives_inner_products():
    rng = np.random.default_rng(17)
    items = (rng.standard_normal((1500, 8)) * rng.uniform(0.2, 3, (1500, 1))).astype(np.float32)
    q = rng.standard_normal((10, 8)).astype(np.float32)
    index = IndexHNSWFlat(mips_l2=True, efSearch=200).build(items)
    assert index.metric == "l2 (MIPS transform)"
    D, I = index.search(q, 5)
    np.testing.assert_allclose(D, np.take_along_axis(q @ items.T, I, 1), rtol=1e-3, atol=1e-3)
    exact = np.argsort(-(q @ items.T), axis=1)[:, :5]
    assert np.mean([len(set(I[r]) & set(exact[r])) for r in range(10)]) >= 4.5
    index.set_search_params(efSearch=16)
    assert index.index.hnsw.efSearch == 16


@pytest.mark.parametrize(
    "codes, msg, exc",
    [
        (np.zeros((4, 8), np.float32), "queries must be packed np.uint8", TypeError),
        (np.zeros((4, 8), np.int64), "queries must be packed np.uint8", TypeError),
        (np.zeros((4, 4), np.uint8), "queries rows have 4 bytes = 32 bits; the index has 64", ValueError),
        (np.zeros(8, np.uint8), "queries must be 2-D", ValueError),
    ],
)
def test_bad_codes(codes, msg, exc):
    index = HammingIndex(64).build(random_codes(10, 64, 0))
    with pytest.raises(exc, match=msg):
        index.search(codes, 5)


def test_other_bad_input():
    codes = random_codes(10, 64, 0)
    with pytest.raises(RuntimeError, match="search before build"):
        HammingIndex(64).search(codes, 1)
    with pytest.raises(RuntimeError, match="search before build"):
        IndexFlatIP().search(np.ones((2, 4), np.float32), 1)
    for k in (0, -3, 2.5, None):
        with pytest.raises(ValueError, match="k must be a positive integer"):
            HammingIndex(64).build(codes).search(codes, k)
    with pytest.raises(ValueError, match="bits must be a positive multiple of 8"):
        HammingIndex(60)
    with pytest.raises(TypeError, match="items must be packed np.uint8"):
        HammingIndex(64).build(codes.astype(np.int64))
    with pytest.raises(ValueError, match="threads must be a positive integer"):
        HammingIndex(64, threads=0)
    bad = np.ones((2, 16), np.float32)
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="queries contains NaN"):
        make_index("flat_ip").build(np.ones((5, 16), np.float32)).search(bad, 1)
    with pytest.raises(TypeError, match="items must be floating point"):
        make_index("flat_ip").build(np.ones((5, 16), np.int64))
    with pytest.raises(ValueError, match="unknown index 'annoy'"):
        make_index("annoy")
    with pytest.raises(ValueError, match="IndexHNSWFlat has no parameter 'ef_search'"):
        make_index("hnsw", ef_search=10)
    with pytest.raises(ValueError, match="exclude must have shape"):
        HammingIndex(64).build(codes).search(codes[:2], 1, sp.csr_matrix((3, 10)))
    with pytest.raises(TypeError, match="exclude must be a scipy sparse matrix"):
        HammingIndex(64).build(codes).search(codes[:2], 1, np.zeros((2, 10)))
    with pytest.raises(ValueError, match="candidates .* must be at least k"):
        hierarchical_topk(codes[:2], codes, np.ones((2, 4)), np.ones((10, 4)), 5, candidates=3)
    with pytest.raises(ValueError, match="item_codes has 10 rows but item_emb has 9"):
        HierarchicalIndex(64).build((codes, np.ones((9, 4))))
    with pytest.raises(ValueError, match="query_emb has dim 3; the index has 4"):
        HierarchicalIndex(64).build((codes, np.ones((10, 4)))).search((codes[:2], np.ones((2, 3))), 1)
    with pytest.raises(TypeError, match=r"items must be a pair \(codes uint8"):
        HierarchicalIndex(64).build(codes)
    with pytest.raises(TypeError, match="queries must be a pair .* of length 3"):
        HierarchicalIndex(64).build((codes, np.ones((10, 4)))).search((codes, codes, codes), 1)


# ---- exact float search ------------------------------------------------------


def float_brute_force(q, items, k, exclude=None):
    """Top-k by (score descending, id ascending), excluded items removed; ``-1`` / ``-inf`` padding (float64 scores)."""
    scores = q.astype(np.float64) @ items.astype(np.float64).T
    if exclude is not None:
        scores[exclude.toarray() != 0] = -np.inf
    ids = np.tile(np.arange(len(items)), (len(q), 1))
    order = np.lexsort((ids, -scores), axis=1)[:, :k]
    s = np.take_along_axis(scores, order, 1)
    ids = np.where(np.isneginf(s), -1, order)
    if ids.shape[1] < k:
        ids = np.pad(ids, ((0, 0), (0, k - ids.shape[1])), constant_values=-1)
        s = np.pad(s, ((0, 0), (0, k - s.shape[1])), constant_values=-np.inf)
    return s, ids


@pytest.mark.parametrize("n, nq, k, memory_mb", [(3706, 50, 20, 256), (20_011, 40, 10, 1), (1000, 33, 7, 1), (40, 5, 50, 256)])
def test_exact_topk_equals_brute_force_with_ties_and_exclusion(n, nq, k, memory_mb):
    rng = np.random.default_rng(n)
    # Small integer vectors: exact float arithmetic and many tied scores, at the k-th place too.
    q = rng.integers(-2, 3, (nq, 4)).astype(np.float32)
    items = rng.integers(-2, 3, (n, 4)).astype(np.float32)
    exclude = sp.random(nq, n, density=0.1, format="csr", random_state=1)
    for ex in (None, exclude):
        scores, ids = exact_topk(q, items, k, ex, memory_mb=memory_mb)
        exp_s, exp_i = float_brute_force(q, items, k, ex)
        np.testing.assert_array_equal(ids, exp_i)
        np.testing.assert_array_equal(scores, exp_s.astype(np.float32))
        assert scores.dtype == np.float32 and ids.dtype == np.int64
    # every item excluded for one query: all padding
    s, i = exact_topk(q[:2], items[:10], 3, sp.csr_matrix(np.r_[np.ones((1, 10)), np.zeros((1, 10))]))
    assert (i[0] == -1).all() and np.isneginf(s[0]).all() and (i[1] >= 0).all()


def test_exact_topk_equals_the_old_rank_topk_on_ml1m_shape():
    import torch

    from hashrec_utils.metrics import _topk_smaller_id_on_ties

    rng = np.random.default_rng(0)
    n_users, n_items = 6040, 3706
    U = rng.standard_normal((n_users, 64), dtype=np.float32)
    V = rng.standard_normal((n_items, 64), dtype=np.float32)
    train = sp.random(n_users, n_items, density=0.04, format="csr", random_state=0)
    # the ranking rank_topk used before it delegated to exact_topk
    S = torch.from_numpy(U) @ torch.from_numpy(V).T
    rows = np.repeat(np.arange(n_users), np.diff(train.indptr))
    S[torch.as_tensor(rows), torch.as_tensor(train.indices.astype(np.int64))] = -torch.inf
    ts, ti = _topk_smaller_id_on_ties(S, 20)
    ts, ti = ts.numpy(), ti.numpy()
    order = np.lexsort((ti, -ts), axis=-1)
    old = np.take_along_axis(ti, order, 1)
    scores, ids = exact_topk(U, V, 20, train, threads=2)
    np.testing.assert_array_equal(ids, old)
    np.testing.assert_array_equal(scores, np.take_along_axis(ts, order, 1))


def test_exact_index_interface():
    rng = np.random.default_rng(3)
    items = rng.standard_normal((500, 8)).astype(np.float32)
    q = rng.standard_normal((9, 8)).astype(np.float32)
    exclude = sp.random(9, 500, density=0.05, format="csr", random_state=3)
    index = make_index("exact", threads=1).build(items)
    assert isinstance(index, ExactIndex) and index.name == "exact" and index.kind == "float"
    D, I = index.search(q, 10, exclude)
    np.testing.assert_array_equal(I, exact_topk(q, items, 10, exclude)[1])
    np.testing.assert_array_equal(I, IndexFlatIP(threads=1).build(items).search(q, 10, exclude)[1])
    assert index.memory_bytes() == items.nbytes
    with pytest.raises(RuntimeError, match="search before build"):
        ExactIndex().search(q, 1)
    with pytest.raises(ValueError, match="queries has dim 4; the index has 8"):
        index.search(q[:, :4], 1)
    with pytest.raises(ValueError, match="exact takes memory_mb"):
        make_index("exact", nprobe=3)
    with pytest.raises(ValueError, match="queries have dim 3 but items have dim 8"):
        exact_topk(q[:, :3], items, 2)


PREFIX_CONSISTENT = ("flat_ip", "ivf_flat", "ivf_pq", "binary_flat", "binary_ivf", "binary_multihash")


@pytest.mark.parametrize("name", list(FAISS_INDEXES))
def test_faiss_exclusion_per_query_depth_on_ml1m(name, ml1m):
    """Exclusion equals the index's own ranking at depth k + |exclude_q| with the excluded ids removed."""
    rng = np.random.default_rng(21)
    users = np.arange(0, ml1m.n_users, 60)  # ~100 users with their real train items
    exclude = ml1m.train[users]
    n, k = ml1m.n_items, 10
    binary = FAISS_INDEXES[name].kind == "binary"
    items = random_codes(n, 64, 22) if binary else rng.standard_normal((n, 16)).astype(np.float32)
    q = random_codes(len(users), 64, 23) if binary else rng.standard_normal((len(users), 16)).astype(np.float32)
    index = make_index(name, threads=1, **PARAMS.get(name, {})).build(items)
    D, I = index.search(q, k, exclude)
    for r in range(len(users)):
        got = I[r][I[r] >= 0]
        assert not set(got) & set(exclude[r].indices) and len(set(got)) == len(got)
        if name in PREFIX_CONSISTENT:
            _, ref = index.search(q[r : r + 1], k + exclude[r].nnz)
            ref = ref[0][(ref[0] >= 0) & ~np.isin(ref[0], exclude[r].indices)][:k]
            np.testing.assert_array_equal(got, ref)
