"""Additive item codes (hashing.additive) and their asymmetric index (retrieval.additive), held to Faiss's
residual quantizer and to a float reference."""
from __future__ import annotations

import faiss
import numpy as np
import pytest
import scipy.sparse as sp

from hashrec_utils.hashing.additive import fit_additive_code
from hashrec_utils.retrieval.additive import AdditiveCodeIndex, additive_scores


def low_rank(n_users=300, n_items=2000, dim=16, seed=0):
    """A low-rank model whose items have popularity-like norms (a long tail), as trained embeddings do."""
    rng = np.random.default_rng(seed)
    basis = rng.standard_normal((6, dim))
    item = (rng.standard_normal((n_items, 6)) @ basis + 0.3 * rng.standard_normal((n_items, dim)))
    item *= rng.lognormal(0.0, 0.5, (n_items, 1))
    user = rng.standard_normal((n_users, 6)) @ basis
    return user.astype(np.float32), item.astype(np.float32)


@pytest.fixture(scope="module")
def coded():
    user, item = low_rank()
    return user, item, fit_additive_code(item, 32, beam=1, seed=0)


def test_codes_are_faiss_residual_quantizers_and_search_matches_its_index(coded):
    user, item, code = coded
    ref = faiss.IndexResidualQuantizer(item.shape[1], 4, 8, faiss.METRIC_INNER_PRODUCT)
    ref.rq.max_beam_size, ref.rq.cp.seed = 1, 0
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    ref.train(item)
    ref.add(item)
    faiss.omp_set_num_threads(threads)
    assert np.array_equal(faiss.vector_to_array(ref.codes).reshape(len(item), -1)[:, :4], code.codes)
    d_ref, i_ref = ref.search(user, 10)
    scores, ids = AdditiveCodeIndex().build((code.codes, code.codebooks)).search(user, 10)
    np.testing.assert_allclose(scores, d_ref, rtol=1e-4, atol=1e-4)
    assert (ids == i_ref).mean() > 0.99  # equal up to float ties between Faiss's sums and ours


def test_search_is_the_reference_ranking_with_exclusion(coded):
    user, item, code = coded
    rng = np.random.default_rng(3)
    seen = sp.random(len(user), len(item), density=0.02, format="csr", random_state=4)
    scores, ids = AdditiveCodeIndex(threads=2).build((code.codes, code.codebooks)).search(user, 15, seen)
    ref = additive_scores(user, code.codes, code.codebooks)
    ref[seen.nonzero()] = -np.inf
    want = np.argsort(-ref, axis=1, kind="stable")[:, :15]
    assert (ids == want).mean() > 0.999
    np.testing.assert_allclose(scores, np.take_along_axis(ref, ids, 1), rtol=1e-5, atol=1e-4)
    assert not seen[np.arange(len(user))[:, None], ids].toarray().any()
    u = int(rng.integers(len(user)))  # the reference is the decoded items' inner product
    np.testing.assert_allclose(additive_scores(user[u:u + 1], code.codes, code.codebooks)[0],
                               code.decode().astype(np.float64) @ user[u], rtol=1e-5, atol=1e-4)


def test_more_bytes_keep_more_of_the_inner_product_ranking():
    user, item = low_rank()
    exact = np.argsort(-(user @ item.T), axis=1)[:, :20]

    def share(bits):
        code = fit_additive_code(item, bits, seed=0)
        ids = AdditiveCodeIndex().build((code.codes, code.codebooks)).search(user, 20)[1]
        return np.mean([len(np.intersect1d(a, b)) / 20 for a, b in zip(ids, exact)])

    low, high = share(16), share(48)
    assert 0.3 < low < high and high > 0.8


def test_a_catalogue_of_at_most_256_items_is_coded_exactly():
    user, item = low_rank(n_items=200)
    code = fit_additive_code(item, 64)
    assert np.array_equal(code.decode(), item) and code.codes.shape == (200, 8)
    ids = AdditiveCodeIndex().build((code.codes, code.codebooks)).search(user, 5)[1]
    assert np.array_equal(ids, np.argsort(-(user.astype(np.float64) @ item.T), axis=1, kind="stable")[:, :5])


def test_bad_input_gets_one_clear_error(coded):
    user, item, code = coded
    with pytest.raises(ValueError, match="bits must be a positive multiple of 8; got 12"):
        fit_additive_code(item, 12)
    with pytest.raises(ValueError, match="NaN or infinite"):
        fit_additive_code(np.full((300, 4), np.nan, np.float32))
    with pytest.raises(ValueError, match="beam must be a positive integer"):
        fit_additive_code(item, 32, beam=0)
    index = AdditiveCodeIndex()
    with pytest.raises(RuntimeError, match="search before build"):
        index.search(user, 5)
    with pytest.raises(ValueError, match="codebooks must have shape \\(M, 256, d\\) with M = 4"):
        index.build((code.codes, code.codebooks[:3]))
    with pytest.raises(ValueError, match="codes must be a non-empty 2-D np.uint8"):
        index.build((code.codes.astype(np.int64), code.codebooks))
    index.build((code.codes, code.codebooks))
    with pytest.raises(ValueError, match="queries has dim 8; the index has 16"):
        index.search(user[:, :8], 5)
    with pytest.raises(ValueError, match="queries contains NaN"):
        index.search(np.full_like(user, np.nan), 5)
    with pytest.raises(ValueError, match="k must be a positive integer"):
        index.search(user, 0)
