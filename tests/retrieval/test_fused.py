"""fused_hierarchical_topk against today's two-step hierarchical_topk and a hand case."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from hashrec_utils.retrieval.fused import fused_hierarchical_topk
from hashrec_utils.retrieval import hamming_distances, hamming_topk, hierarchical_topk
from hashrec_utils.retrieval.kernel import hamming_candidates

SCANS = ("hamming", "single")


def _data(seed, nq, n, bits, d, integer=True):
    """Random codes (few bits: many Hamming ties) and embeddings; small integers make score ties exact too."""
    rng = np.random.default_rng(seed)
    qc = rng.integers(0, 256, (nq, bits // 8), dtype=np.uint8)
    ic = rng.integers(0, 256, (n, bits // 8), dtype=np.uint8)
    if integer:
        qe = rng.integers(-2, 3, (nq, d)).astype(np.float32)
        ie = rng.integers(-2, 3, (n, d)).astype(np.float32)
    else:
        qe = rng.standard_normal((nq, d), dtype=np.float32)
        ie = rng.standard_normal((n, d), dtype=np.float32)
    return qc, ic, qe, ie


def _reference_scores(ids, qe, ie):
    s = np.einsum("qd,qkd->qk", qe, ie[np.maximum(ids, 0)]).astype(np.float32)
    s[ids < 0] = -np.inf
    return s


@pytest.mark.parametrize("scan", SCANS)
@pytest.mark.parametrize("bits,d,k,C", [(8, 6, 5, 20), (16, 8, 10, 40), (24, 4, 3, 3), (64, 16, 20, 100), (128, 8, 7, 30)])
@pytest.mark.parametrize("excluded", [False, True])
def test_equals_unfused_with_ties(scan, bits, d, k, C, excluded):
    qc, ic, qe, ie = _data(bits + d, 70, 600, bits, d)
    exclude = sp.random(70, 600, density=0.3, random_state=bits, format="csr") if excluded else None
    want = hierarchical_topk(qc, ic, qe, ie, k, C, exclude, threads=2)
    scores, ids = fused_hierarchical_topk(qc, ic, qe, ie, k, C, exclude, threads=2, scan=scan)
    assert ids.dtype == np.int64 and scores.dtype == np.float32 and ids.shape == scores.shape == (70, k)
    np.testing.assert_array_equal(ids, want)
    np.testing.assert_array_equal(scores, _reference_scores(ids, qe, ie))  # integer sums: exact in any order
    if excluded:
        assert not exclude[np.repeat(np.arange(70), k)[ids.ravel() >= 0], ids.ravel()[ids.ravel() >= 0]].any()


@pytest.mark.parametrize("scan", SCANS)
def test_equals_unfused_gaussian(scan):
    qc, ic, qe, ie = _data(1, 200, 2000, 64, 32, integer=False)
    exclude = sp.random(200, 2000, density=0.05, random_state=2, format="csr")
    want = hierarchical_topk(qc, ic, qe, ie, 20, 100, exclude, threads=2)
    scores, ids = fused_hierarchical_topk(qc, ic, qe, ie, 20, 100, exclude, threads=1, scan=scan)
    np.testing.assert_array_equal(ids, want)
    np.testing.assert_allclose(scores, _reference_scores(ids, qe, ie), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("scan", SCANS)
def test_padding_when_fewer_admissible_than_k(scan):
    qc, ic, qe, ie = _data(3, 12, 9, 16, 4)
    exclude = sp.csr_matrix(np.eye(12, 9, dtype=np.float32) + np.eye(12, 9, k=1, dtype=np.float32))
    exclude = sp.csr_matrix(np.vstack([np.ones((1, 9), np.float32), exclude[1:].toarray()]))  # query 0: none
    want = hierarchical_topk(qc, ic, qe, ie, 8, 8, exclude)
    scores, ids = fused_hierarchical_topk(qc, ic, qe, ie, 8, 8, exclude, scan=scan)
    np.testing.assert_array_equal(ids, want)
    assert (ids[0] == -1).all() and np.isneginf(scores[0]).all()
    admissible = 9 - np.diff(exclude.indptr)
    np.testing.assert_array_equal((ids >= 0).sum(1), np.minimum(admissible, 8))
    # candidates > items: every admissible item is a candidate
    _, ids = fused_hierarchical_topk(qc, ic, qe, ie, 12, 50, None, scan=scan)
    assert ((ids >= 0).sum(1) == 9).all() and (ids[:, 9:] == -1).all()


@pytest.mark.parametrize("scan", SCANS)
def test_hand_case(scan):
    """8-bit codes. Query 0b00000000; items' distances 0, 1, 1, 1, 8 -> C = 3 candidates: items 0, 1, 2
    (item 3 loses the tie at distance 1 to the smaller ids). Scores <e_q, e_i> with e_q = (1, 0):
    item 0 -> 1, item 1 -> 5, item 2 -> 5, item 3 -> 9 (not a candidate), item 4 -> 9 (too far).
    Top 2: item 1 (5, the smaller id of the tie), item 2 (5)."""
    qc = np.array([[0b00000000]], np.uint8)
    ic = np.array([[0], [0b1000_0000], [0b0000_0001], [0b0001_0000], [0xFF]], np.uint8)
    qe = np.array([[1.0, 0.0]], np.float32)
    ie = np.array([[1, 0], [5, 1], [5, -1], [9, 0], [9, 9]], np.float32)
    scores, ids = fused_hierarchical_topk(qc, ic, qe, ie, 2, 3, scan=scan)
    assert ids.tolist() == [[1, 2]] and scores.tolist() == [[5.0, 5.0]]
    scores, ids = fused_hierarchical_topk(qc, ic, qe, ie, 3, 3, sp.csr_matrix(([1.0], ([0], [1])), shape=(1, 5)),
                                          scan=scan)
    assert ids.tolist() == [[3, 2, 0]] and scores.tolist() == [[9.0, 5.0, 1.0]]  # item 1 out: item 3 enters


def test_threads_do_not_change_results_and_are_restored():
    import numba

    qc, ic, qe, ie = _data(5, 300, 500, 16, 8)
    before = numba.get_num_threads()
    for scan in SCANS:
        one = fused_hierarchical_topk(qc, ic, qe, ie, 10, 30, threads=1, scan=scan)
        two = fused_hierarchical_topk(qc, ic, qe, ie, 10, 30, threads=2, scan=scan)
        assert numba.get_num_threads() == before
        np.testing.assert_array_equal(one[1], two[1])
        np.testing.assert_array_equal(one[0], two[0])


def test_errors_name_the_argument():
    qc, ic, qe, ie = _data(0, 4, 10, 16, 4)
    call = fused_hierarchical_topk
    with pytest.raises(TypeError, match="query_codes must be packed np.uint8"):
        call(qc.astype(np.int64), ic, qe, ie, 2, 5)
    with pytest.raises(ValueError, match="item_codes must be 2-D"):
        call(qc, ic[:, 0], qe, ie, 2, 5)
    with pytest.raises(ValueError, match="item_codes rows have 1 bytes but query_codes rows have 2"):
        call(qc, ic[:, :1], qe, ie, 2, 5)
    with pytest.raises(TypeError, match="item_emb must be np.float32; got dtype float64"):
        call(qc, ic, qe, ie.astype(np.float64), 2, 5)
    with pytest.raises(ValueError, match="query_emb has dim 3 but item_emb has dim 4"):
        call(qc, ic, qe[:, :3], ie, 2, 5)
    with pytest.raises(ValueError, match="query_emb has 3 rows but query_codes has 4"):
        call(qc, ic, qe[:3], ie, 2, 5)
    with pytest.raises(ValueError, match="item_emb has 9 rows but item_codes has 10"):
        call(qc, ic, qe, ie[:9], 2, 5)
    with pytest.raises(ValueError, match="k must be a positive integer; got 0"):
        call(qc, ic, qe, ie, 0, 5)
    with pytest.raises(ValueError, match=r"candidates \(2\) must be at least k \(3\)"):
        call(qc, ic, qe, ie, 3, 2)
    with pytest.raises(ValueError, match=r"exclude must have shape \(4, 10\)"):
        call(qc, ic, qe, ie, 2, 5, sp.csr_matrix((4, 9)))
    with pytest.raises(TypeError, match="exclude must be a scipy sparse matrix"):
        call(qc, ic, qe, ie, 2, 5, np.zeros((4, 10)))
    with pytest.raises(ValueError, match="scan must be 'hamming' or 'single'"):
        call(qc, ic, qe, ie, 2, 5, scan="fast")


@pytest.mark.parametrize("bits,c", [(8, 1), (8, 40), (16, 33), (64, 100), (264, 20)])
@pytest.mark.parametrize("excluded", [False, True])
def test_candidates_are_the_topk_set_in_id_order(bits, c, excluded):
    """hamming_candidates row = hamming_topk's ids sorted ascending (few bits: many ties at the c-th distance),
    and both equal a brute-force (distance, id) ranking; 264 bits exercises the saturated byte sums."""
    qc, ic, _, _ = _data(bits, 40, 700, bits, 2)
    exclude = sp.random(40, 700, density=0.2, random_state=bits, format="csr") if excluded else None
    cand = hamming_candidates(qc, ic, c, exclude, threads=2)
    assert cand.dtype == np.int64 and cand.shape == (40, c)
    ranked = hamming_topk(qc, ic, c, exclude, threads=1)
    np.testing.assert_array_equal(cand, np.sort(ranked, axis=1))
    d = hamming_distances(qc, ic).astype(np.int64)
    if excluded:
        d[exclude.toarray() != 0] = 10**6
    brute = np.sort(np.argsort(d * 1000 + np.arange(700), axis=1, kind="stable")[:, :c], axis=1)
    np.testing.assert_array_equal(cand, brute)


def test_candidates_hand_case_and_padding():
    """8-bit codes, query 0: distances 0, 1, 1, 1, 8 -> c = 3: items 0, 1, 2 (item 3 loses the tie at 1);
    item 1 excluded -> 0, 2, 3; c = 6 > 4 admissible -> the four, then -1."""
    qc = np.array([[0]], np.uint8)
    ic = np.array([[0], [0b1000_0000], [0b0000_0001], [0b0001_0000], [0xFF]], np.uint8)
    assert hamming_candidates(qc, ic, 3).tolist() == [[0, 1, 2]]
    ex = sp.csr_matrix(([1.0], ([0], [1])), shape=(1, 5))
    assert hamming_candidates(qc, ic, 3, ex).tolist() == [[0, 2, 3]]
    assert hamming_candidates(qc, ic, 6, ex).tolist() == [[0, 2, 3, 4, -1, -1]]
    with pytest.raises(ValueError, match="c must be a positive integer; got 0"):
        hamming_candidates(qc, ic, 0)


@pytest.mark.parametrize("excluded", [False, True])
def test_topk_when_the_first_cut_off_guess_is_too_tight(excluded):
    """The kernel's first cut-off is a guess from the first 512 items (the distance within which they hold
    21 items here, for k = 30 of 3,000): items 0..20 equal the query, so the guess is distance 0 although only
    21 items in all are that close; the query must be scanned again from the safe cut-off. The rest of the
    items sit at distances 1..8 in an order that leaves many ties at the 30th distance."""
    rng = np.random.default_rng(7)
    n = 3000
    ic = np.zeros((n, 2), np.uint8)
    far = rng.integers(1, 9, n)  # item j at distance far[j] from query 0: its low far[j] bits set
    far[:21] = 0
    bits = ((1 << far) - 1).astype(np.uint16)
    ic[:, 0], ic[:, 1] = bits >> 8, bits & 255
    qc = np.zeros((3, 2), np.uint8)
    qc[1] = [0, 1]  # query 1: distance far[j] +- 1; query 2: far from everything near 0
    qc[2] = [255, 0]
    exclude = sp.random(3, n, density=0.1, random_state=3, format="csr") if excluded else None
    d = hamming_distances(qc, ic).astype(np.int64)
    if excluded:
        d[exclude.toarray() != 0] = 10**6
    want = np.argsort(d * 10_000 + np.arange(n), axis=1, kind="stable")[:, :30]
    np.testing.assert_array_equal(hamming_topk(qc, ic, 30, exclude), want)
    np.testing.assert_array_equal(hamming_candidates(qc, ic, 30, exclude), np.sort(want, axis=1))
