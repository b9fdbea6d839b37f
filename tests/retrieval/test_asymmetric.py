"""Asymmetric search: rankings equal the float reference where the query quantisation is exact,
bounded error otherwise, exclusion, ties, padding, threads, bad input."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from hashrec_utils.retrieval import AsymmetricIndex, asymmetric_scores, asymmetric_topk, make_index
from hashrec_utils.retrieval.asymmetric import LEVELS, quantise_queries


def codes_of(n, bits, seed, dup_every=0):
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 256, (n, bits // 8), dtype=np.uint8)
    if dup_every:
        codes[::dup_every] = codes[0]  # exact duplicates: ties at the same score
    return codes


def grid_queries(nq, bits, seed):
    """Queries on which the quantisation is exact: ``h / 2`` with integer ``h``, the widest group's
    ``sum |h_j|`` exactly 127 and every other group's at most 127 (so the step is 1)."""
    rng = np.random.default_rng(seed)
    h = rng.integers(-31, 32, (nq, bits)).astype(float)
    groups = h.reshape(nq, bits // 4, 4)
    for q in range(nq):
        for g in range(bits // 4):
            while np.abs(groups[q, g]).sum() > LEVELS:
                j = rng.integers(4)
                groups[q, g, j] -= np.sign(groups[q, g, j])
    g0 = rng.integers(bits // 4, size=nq)
    groups[np.arange(nq), g0] = [50, -40, 30, 7]  # sum |h| = 127 in one group per query
    return groups.reshape(nq, bits) / 2


def reference(queries, codes, k, exclude=None):
    """Top-k by float ``<q, b>`` descending, ties by smaller id, excluded removed, ``-1`` / ``-inf`` padding."""
    s = asymmetric_scores(queries, codes)
    if exclude is not None:
        s[exclude.toarray() != 0] = -np.inf
    ids = np.broadcast_to(np.arange(len(codes)), s.shape)
    order = np.lexsort((ids, -s), axis=1)[:, :k]
    top = np.take_along_axis(s, order, 1)
    order = np.where(np.isneginf(top), -1, order)
    if order.shape[1] < k:
        pad = ((0, 0), (0, k - order.shape[1]))
        order, top = np.pad(order, pad, constant_values=-1), np.pad(top, pad, constant_values=-np.inf)
    return order, top


def test_reference_is_the_inner_product_with_signs():
    codes = np.packbits(np.array([[1, 0, 1, 1, 0, 0, 0, 1]], bool), axis=1)
    q = np.arange(1, 9, dtype=np.float32)[None]
    # +1 -2 +3 +4 -5 -6 -7 +8 = -4
    assert asymmetric_scores(q, codes)[0, 0] == -4


@pytest.mark.parametrize("bits", [8, 64, 72, 256])
def test_rankings_equal_the_float_reference_where_quantisation_is_exact(bits):
    codes = codes_of(3000, bits, 1, dup_every=7)
    q = grid_queries(37, bits, 2)
    _, step, _, bound = quantise_queries(q)
    assert np.allclose(step, 1.0)
    exclude = sp.random(37, 3000, density=0.02, format="csr", random_state=3)
    for k in (1, 20, 100):
        scores, ids = AsymmetricIndex(bits).build(codes).search(q, k, exclude)
        want_ids, want_scores = reference(q, codes, k, exclude)
        np.testing.assert_array_equal(ids, want_ids)
        np.testing.assert_allclose(scores, want_scores, atol=1e-4)


def test_quantisation_error_stays_within_its_bound_on_gaussian_queries():
    rng = np.random.default_rng(0)
    codes = codes_of(2000, 64, 4)
    q = rng.standard_normal((50, 64))
    index = AsymmetricIndex(64).build(codes)
    err = index.quantisation_error(q, codes)
    assert 0 < err["max_abs"] <= err["bound"]
    assert err["relative"] < 0.05
    scores, ids = index.search(q, 20)
    exact = np.take_along_axis(asymmetric_scores(q, codes), ids, 1)
    _, _, _, bound = quantise_queries(q)
    assert (np.abs(scores - exact) <= bound[:, None] + 1e-5).all()
    # an item can only be displaced by one whose float score is within twice the bound
    want, want_scores = reference(q, codes, 20)
    kth = want_scores[:, -1]
    assert (exact >= kth[:, None] - 2 * bound[:, None] - 1e-6).all()


def test_exclusion_padding_and_k_beyond_items():
    codes = codes_of(40, 64, 5)
    q = grid_queries(9, 64, 6)
    exclude = sp.csr_matrix(np.random.default_rng(7).random((9, 40)) < 0.5)
    ids, scores = asymmetric_topk(q, codes, 50, exclude, return_scores=True)
    want_ids, want_scores = reference(q, codes, 50, exclude)
    np.testing.assert_array_equal(ids, want_ids)
    assert np.isneginf(scores[ids < 0]).all()
    for row, ex in zip(ids, exclude.toarray()):
        assert not ex[row[row >= 0]].any()


def test_threads_and_batch_sizes_do_not_change_results():
    codes = codes_of(5000, 128, 8)
    q = np.random.default_rng(9).standard_normal((45, 128)).astype(np.float32)
    base = AsymmetricIndex(128, threads=1).build(codes).search(q, 30)
    for threads in (2, None):
        np.testing.assert_array_equal(AsymmetricIndex(128, threads=threads).build(codes).search(q, 30)[1], base[1])
    one = np.concatenate([AsymmetricIndex(128).build(codes).search(q[i:i + 1], 30)[1] for i in range(len(q))])
    np.testing.assert_array_equal(one, base[1])


def test_make_index_and_memory():
    index = make_index("asymmetric", bits=64).build(codes_of(100, 64, 1))
    assert isinstance(index, AsymmetricIndex)
    assert index.memory_bytes() == 128 * 8  # blocks of 32 items
    with pytest.raises(ValueError, match="no parameters"):
        make_index("asymmetric", bits=64, candidates=3)


def test_bad_input():
    index = AsymmetricIndex(64)
    with pytest.raises(RuntimeError, match="before build"):
        index.search(np.zeros((1, 64)), 5)
    with pytest.raises(ValueError, match="multiple of 8"):
        AsymmetricIndex(60)
    with pytest.raises(ValueError, match="at most 2048"):
        AsymmetricIndex(4096)
    index.build(codes_of(10, 64, 0))
    with pytest.raises(ValueError, match="has dim 32; the index has 64"):
        index.search(np.zeros((2, 32)), 5)
    with pytest.raises(TypeError, match="floating point"):
        index.search(np.zeros((2, 64), np.int64), 5)
    with pytest.raises(ValueError, match="NaN"):
        index.search(np.full((2, 64), np.nan), 5)
    with pytest.raises(ValueError, match="k must be a positive integer"):
        index.search(np.zeros((2, 64)), 0)
    with pytest.raises(ValueError, match="exclude must have shape"):
        index.search(np.zeros((2, 64)), 3, sp.csr_matrix((3, 10)))
    with pytest.raises(TypeError, match="packed np.uint8"):
        AsymmetricIndex(64).build(np.zeros((3, 8), np.int32))


def test_hierarchical_over_asymmetric_candidates_reranks_the_asymmetric_top_c():
    rng = np.random.default_rng(11)
    codes = codes_of(1500, 64, 12)
    item_emb = rng.standard_normal((1500, 16)).astype(np.float32)
    q = grid_queries(30, 64, 13)
    user_emb = rng.standard_normal((30, 16)).astype(np.float32)
    exclude = sp.random(30, 1500, density=0.02, format="csr", random_state=14)
    index = make_index("hierarchical", bits=64, candidates=60, source="asymmetric").build((codes, item_emb))
    scores, ids = index.search((q, user_emb), 10, exclude)
    cand, _ = reference(q, codes, 60, exclude)
    for r in range(30):
        s = item_emb[cand[r]] @ user_emb[r]
        want = cand[r][np.lexsort((cand[r], -s))][:10]
        np.testing.assert_array_equal(ids[r], want)
    with pytest.raises(ValueError, match="source must be"):
        make_index("hierarchical", bits=64, source="faiss")


def test_the_quantisation_kernel_equals_its_numpy_formula():
    """quantise_queries (numba, a query a task) against _quantise_reference (NumPy): the same integer
    tables and steps bit for bit (the kernel's ids depend on them), offsets to float64 rounding, for
    queries of very different scales, a zero query and K = 8 .. 256."""
    from hashrec_utils.retrieval.asymmetric import _quantise_reference, quantise_queries

    rng = np.random.default_rng(11)
    for bits in (8, 64, 256):
        q = (rng.standard_normal((300, bits)) * np.logspace(-4, 3, 300)[:, None]).astype(np.float32)
        q[7] = 0.0
        got, want = quantise_queries(q), _quantise_reference(q)
        assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1])
        np.testing.assert_allclose(got[2], want[2], rtol=1e-12, atol=0)
        np.testing.assert_array_equal(got[3], want[3])
