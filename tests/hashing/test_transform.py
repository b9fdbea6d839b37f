"""Transform coding (hashrec_utils.hashing.transform): the greedy allocation by hand, exact codes where the
items take as many values as the levels, the estimate's error falling with bits, the asymmetric scan
ranking its codes as the float reference does, and a real model (PureSVD of MovieLens-1M) where it
beats Faiss's RaBitQ at half the bytes."""
from __future__ import annotations

import numpy as np
import pytest

from hashrec_utils.hashing import pack_codes
from hashrec_utils.hashing.transform import allocate_bits, fit_levels, fit_transform_code
from hashrec_utils.retrieval import AsymmetricIndex, exact_topk


def test_allocation_gives_each_bit_to_the_largest_distortion():
    # distortions 16, 4, 1: bit 1 -> axis 0 (16 -> 4); bit 2: tie 4 = 4 -> axis 0 (-> 1); bit 3 -> axis 1
    assert allocate_bits([16.0, 4.0, 1.0], 3).tolist() == [2, 1, 0]
    assert allocate_bits([100.0, 1.0], 4, max_per_axis=2).tolist() == [2, 2]  # the cap moves bits on
    assert allocate_bits([0.0, 0.0], 2).tolist() == [2, 0]  # equal distortions: the lower axis
    with pytest.raises(ValueError, match=r"bits must be in 1\.\.4 \(2 axes, at most 2 bits each\); got 5"):
        allocate_bits([1.0, 1.0], 5, max_per_axis=2)
    with pytest.raises(ValueError, match="variances must be a non-empty 1-D array of finite values >= 0"):
        allocate_bits([1.0, -1.0], 1)


def test_levels_reproduce_values_that_sit_on_them():
    x = np.array([-3.0, -1.0, 1.0, 3.0] * 5) + 10.0
    w, o, signs = fit_levels(x, 2)
    assert signs.dtype == np.int8 and signs.shape == (20, 2)
    np.testing.assert_allclose(signs @ w + o, x, atol=1e-9)
    # one bit on uniform values: Lloyd's two levels are the halves' means, ±0.5 on [-1, 1]
    u = np.linspace(-1, 1, 2001)
    w, o, signs = fit_levels(u, 1)
    assert abs(w[0]) == pytest.approx(0.5, abs=2e-3) and o == pytest.approx(0.0, abs=1e-3)


def test_codes_are_exact_where_the_items_take_as_many_values_as_their_levels():
    """Users with second moment ∝ I and items on a 2 × 2 grid of its principal axes (variances 9 and 1):
    the allocation is [3, 1], each axis' values are levels, so ⟨a_u, s_i⟩ − ⟨e_u, e_i⟩ is the same for
    every item of a user (the constant no ranking sees)."""
    user = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0], [0.6, 0.8]])
    user = np.vstack([user[:4]] * 3)  # second moment exactly I / 2
    grid = np.array([[x, y] for x in (-3.0, 3.0) for y in (-1.0, 1.0)] * 4) + np.array([0.5, -2.0])
    code = fit_transform_code(user, grid, bits=4)
    assert code.allocation.tolist() == [3, 1] and code.codes.shape == (16, 4) and code.weight.shape == (4, 2)
    probe = np.random.default_rng(0).standard_normal((7, 2))
    gap = code.query(probe).astype(np.float64) @ code.codes.T - probe @ grid.T
    np.testing.assert_allclose(gap - gap[:, :1], 0.0, atol=1e-4)


def _score_error(user, item, code):
    est = code.query(user).astype(np.float64) @ code.codes.T
    true = user @ item.T
    gap = est - true
    return np.mean((gap - gap.mean(1, keepdims=True)) ** 2) / np.var(true)


def test_the_estimate_improves_with_bits_and_the_scan_ranks_as_the_float_reference():
    rng = np.random.default_rng(3)
    mix = rng.standard_normal((16, 16)) * np.logspace(0, -1.5, 16)  # a decaying spectrum, like a trained model
    user, item = rng.standard_normal((300, 16)) @ mix, rng.standard_normal((500, 16)) @ mix
    errors = [_score_error(user, item, fit_transform_code(user, item, bits)) for bits in (16, 32, 64)]
    assert errors[0] > errors[1] > errors[2] and errors[2] < 0.05
    code = fit_transform_code(user, item, 32)
    assert code.allocation.sum() == 32 and code.allocation[0] >= code.allocation[-1]
    q = code.query(user[:50])
    scores, ids = AsymmetricIndex(32).build(pack_codes(code.codes)).search(q, 10)
    ref = q @ code.codes.T.astype(np.float32)
    # the scan quantises the query's lookup tables (bounded error): its top-10 holds the reference's
    # top-5 and its scores are within 2 % of the score range
    top_ref = np.argsort(-ref, axis=1, kind="stable")[:, :5]
    assert np.mean([len(np.intersect1d(a, b)) / 5 for a, b in zip(ids, top_ref)]) > 0.95
    span = ref.max(1) - ref.min(1)
    assert np.max(np.abs(scores - np.take_along_axis(ref, ids, 1)) / span[:, None]) < 0.02


def test_bad_input_is_named():
    u, i = np.ones((4, 3)), np.ones((5, 2))
    with pytest.raises(ValueError, match=r"same dim; got \(4, 3\) and \(5, 2\)"):
        fit_transform_code(u, i, 8)
    with pytest.raises(ValueError, match="must be finite"):
        fit_transform_code(np.full((4, 2), np.nan), np.ones((5, 2)), 8)
    with pytest.raises(ValueError, match=r"weight must be \(5,\)"):
        fit_transform_code(np.ones((4, 2)), np.ones((5, 2)), 8, weight=np.ones(4))


def test_on_puresvd_it_beats_rabitq_at_half_the_bytes(ml1m):
    """A real model: rank-64 PureSVD of MovieLens-1M's training matrix. 64-bit transform codes (8 bytes an
    item) find more of its exact top-20 (train items excluded) than Faiss's IndexRaBitQ (64 bits + its
    float factors, 16 bytes) built on the same item embeddings."""
    import scipy.sparse.linalg as sla

    from hashrec_utils.distill.fit import top_share
    from hashrec_utils.retrieval import make_index

    train = ml1m.train_full.astype(np.float64)
    u, s, vt = sla.svds(train, k=64, v0=np.full(min(train.shape), 1 / np.sqrt(min(train.shape))))
    user, item = (u * np.sqrt(s)).astype(np.float32), (vt.T * np.sqrt(s)).astype(np.float32)
    users = np.arange(0, ml1m.n_users, 5)
    seen = ml1m.train_full[users]
    truth = exact_topk(user[users], item, 20, seen)[1]
    code = fit_transform_code(user, item, 64)
    ours = top_share(AsymmetricIndex(64).build(pack_codes(code.codes)).search(code.query(user[users]), 20, seen)[1], truth)
    rabitq = make_index("rabitq", qb=8).build(item)
    theirs = top_share(rabitq.search(user[users], 20, seen)[1], truth)
    assert rabitq.memory_bytes() / len(item) > 2 * 64 / 8 - 1
    assert ours > theirs + 0.03, (ours, theirs)
