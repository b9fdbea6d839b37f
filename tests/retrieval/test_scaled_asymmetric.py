"""The scaled asymmetric scan (hashrec_utils.retrieval.scaled_asymmetric) against its float reference:
equal ids (ties by the smaller id) where the sums are exact in float32, scores to float32 rounding
otherwise, exclusion, padding, the scale byte's stated error, and bad input named."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from hashrec_utils.retrieval import ScaledAsymmetricIndex, exact_topk, make_index
from hashrec_utils.retrieval.scaled_asymmetric import encode_scales, scaled_asymmetric_scores


def _codes(n, bits, seed):
    return np.random.default_rng(seed).integers(0, 256, (n, bits // 8), dtype=np.uint8)


def _reference(queries, codes, scales, k, exclude=None):
    signs = np.unpackbits(codes, axis=1).astype(np.float64) * 2 - 1
    return exact_topk(np.asarray(queries, np.float64), signs * scales[:, None], k, exclude)


def test_exact_sums_rank_exactly_as_the_reference_ties_included():
    """Integer queries and scales 1/2 and 2 (the log grid's ends, decoded to those exact float32 values):
    every sum and product is exact, so ids (ties by the smaller id, many here) and scores equal the
    float64 reference's exactly."""
    rng = np.random.default_rng(0)
    codes = _codes(700, 32, 1)
    scales = 2.0 ** (2 * rng.integers(0, 2, 700) - 1)
    queries = rng.integers(-3, 4, (40, 32)).astype(np.float32)
    index = make_index("scaled_asymmetric", bits=32).build((codes, scales))
    np.testing.assert_allclose(index.scales, scales, rtol=1e-6)  # powers of two on a log grid: decoded exactly
    ex = sp.random(40, 700, density=0.05, format="csr", random_state=3)
    for exclude in (None, ex):
        s, i = index.search(queries, 25, exclude)
        rs, ri = _reference(queries, codes, index.scales.astype(np.float64), 25, exclude)
        assert np.array_equal(i, ri)
        np.testing.assert_array_equal(s, rs.astype(np.float32))
    assert not ex[np.arange(40)[:, None], i].toarray().any()


def test_real_valued_queries_and_scales_match_the_reference_to_rounding():
    rng = np.random.default_rng(5)
    codes = _codes(2000, 64, 6)
    scales = np.exp(rng.normal(0, 1, 2000))
    queries = rng.standard_normal((30, 64)).astype(np.float32)
    index = ScaledAsymmetricIndex(64).build((codes, scales))
    assert np.max(np.abs(index.scales / scales - 1)) <= index.scale_error() * (1 + 1e-5)
    s, i = index.search(queries, 20)
    ref = scaled_asymmetric_scores(queries, codes, index.scales)
    np.testing.assert_allclose(s, np.take_along_axis(ref, i, 1), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(s, -np.sort(-ref, 1)[:, :20], rtol=1e-5, atol=1e-4)
    assert index.memory_bytes() == 2000 * 9 + 16


def test_fewer_admissible_items_than_k_are_padded():
    codes, scales = _codes(5, 8, 2), np.ones(5)
    ex = sp.csr_matrix(np.array([[1, 1, 1, 0, 0]], np.float32))
    s, i = ScaledAsymmetricIndex(8).build((codes, scales)).search(np.ones((1, 8), np.float32), 4, ex)
    assert sorted(i[0, :2].tolist()) == [3, 4] and i[0, 2:].tolist() == [-1, -1] and np.isneginf(s[0, 2:]).all()


def test_bad_input_is_named():
    codes = _codes(4, 16, 0)
    with pytest.raises(ValueError, match=r"scales must be finite and > 0; scales\[2\] = 0.0"):
        encode_scales([1.0, 2.0, 0.0, 1.0])
    with pytest.raises(ValueError, match="codes has 4 rows but scales has 3"):
        ScaledAsymmetricIndex(16).build((codes, np.ones(3)))
    with pytest.raises(TypeError, match=r"items must be the pair \(codes"):
        ScaledAsymmetricIndex(16).build(codes)
    with pytest.raises(RuntimeError, match="search before build"):
        ScaledAsymmetricIndex(16).search(np.ones((1, 16), np.float32), 1)
    with pytest.raises(ValueError, match="queries has dim 8; the index has 16"):
        ScaledAsymmetricIndex(16).build((codes, np.ones(4))).search(np.ones((1, 8), np.float32), 1)
