"""Metrics against rankings scored by hand, and rank_topk against brute force."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from hashrec_utils.metrics import degree_buckets, evaluate_by_group, evaluate_topk, hit_matrix, rank_topk

L2, L3, L4 = 1.0, np.log2(3.0), 2.0  # log2(rank + 2) for ranks 0, 1, 2


def _csr(rows: list[list[int]], n_items: int) -> sp.csr_matrix:
    r = [u for u, items in enumerate(rows) for _ in items]
    c = [i for items in rows for i in items]
    return sp.csr_matrix((np.ones(len(r), np.float32), (r, c)), shape=(len(rows), n_items))


# user 0: test {1, 3}; user 1: test {0}; user 2: no test item (left out of averages)
TEST = _csr([[1, 3], [0], []], 6)
TOPK = np.array([[3, 0, 1, 5], [2, 4, 0, -1], [0, 1, 2, 3]])


def test_hit_matrix_marks_hits_and_ignores_padding():
    expected = np.array([[1, 0, 1, 0], [0, 0, 1, 0], [0, 0, 0, 0]], dtype=bool)
    np.testing.assert_array_equal(hit_matrix(TOPK, TEST), expected)


def test_metrics_at_2_by_hand():
    m = evaluate_topk(TOPK, TEST, ks=[2])
    # user 0: hits [1, 0]; user 1: hits [0, 0]
    assert m["recall@2"] == pytest.approx((1 / 2 + 0) / 2)
    assert m["precision@2"] == pytest.approx((1 / 2 + 0) / 2)
    assert m["hit@2"] == pytest.approx(0.5)
    ndcg_u0 = (1 / L2) / (1 / L2 + 1 / L3)
    assert m["ndcg@2"] == pytest.approx(ndcg_u0 / 2)


def test_metrics_at_4_by_hand_user_with_fewer_test_items_than_k():
    m = evaluate_topk(TOPK, TEST, ks=[4])
    # user 0: hits at ranks 0 and 2 of 2 test items; user 1: hit at rank 2 of 1
    assert m["recall@4"] == pytest.approx(1.0)
    assert m["precision@4"] == pytest.approx((2 / 4 + 1 / 4) / 2)
    assert m["hit@4"] == pytest.approx(1.0)
    ndcg_u0 = (1 / L2 + 1 / L4) / (1 / L2 + 1 / L3)  # ideal DCG over min(|T|, K) = 2
    ndcg_u1 = (1 / L4) / (1 / L2)
    assert m["ndcg@4"] == pytest.approx((ndcg_u0 + ndcg_u1) / 2)


def test_k_larger_than_the_list():
    m = evaluate_topk(TOPK, TEST, ks=[10])
    assert m["recall@10"] == pytest.approx(1.0)
    assert m["precision@10"] == pytest.approx((2 / 10 + 1 / 10) / 2)  # still divided by K
    ndcg_u0 = (1 / L2 + 1 / L4) / (1 / L2 + 1 / L3)
    assert m["ndcg@10"] == pytest.approx((ndcg_u0 + 0.5) / 2)


def test_keys_and_users_argument():
    m = evaluate_topk(TOPK, TEST)
    assert set(m) == {f"{n}@{k}" for n in ("recall", "ndcg", "precision", "hit") for k in (10, 20, 50)}
    # rows may map to arbitrary users: only user 1's list, scored alone
    m1 = evaluate_topk(TOPK[1:2], TEST, ks=[4], users=np.array([1]))
    assert m1["recall@4"] == 1.0 and m1["ndcg@4"] == pytest.approx(0.5)


def test_perfect_ranking_scores_one():
    topk = np.array([[1, 3, 0], [0, 1, 2]])
    m = evaluate_topk(topk, TEST[:2], ks=[2])
    assert m["ndcg@2"] == pytest.approx(1.0) and m["recall@2"] == pytest.approx(1.0)


@pytest.mark.parametrize(
    "topk, ks, exc, msg",
    [
        (np.array([1, 2]), (1,), ValueError, "2-D"),
        (np.array([[0.5, 1.0]] * 3), (1,), TypeError, "integer"),
        (np.array([[9, 1]] * 3), (1,), ValueError, "out of range"),
        (TOPK, (0,), ValueError, "positive"),
    ],
)
def test_bad_input(topk, ks, exc, msg):
    with pytest.raises(exc, match=msg):
        evaluate_topk(topk, TEST, ks=ks)


def test_no_user_with_test_items():
    with pytest.raises(ValueError, match="no user"):
        evaluate_topk(TOPK[2:], TEST[2:], ks=[1])


# ---- rank_topk ----------------------------------------------------------------

def _brute_force(U, V, k, exclude):
    scores = U @ V.T
    scores[exclude.toarray() > 0] = -np.inf
    # sort by score descending, then by id ascending
    order = np.lexsort((np.tile(np.arange(V.shape[0]), (U.shape[0], 1)), -scores), axis=1)
    ids = order[:, :k]
    return np.where(np.isneginf(np.take_along_axis(scores, ids, 1)), -1, ids)


def test_rank_topk_equals_brute_force_with_exclusion_and_small_batches():
    rng = np.random.default_rng(0)
    U = rng.standard_normal((37, 8)).astype(np.float32)
    V = rng.standard_normal((23, 8)).astype(np.float32)
    exclude = sp.random(37, 23, density=0.3, random_state=1, format="csr")
    got = rank_topk(U, V, 5, exclude=exclude, batch_size=4)
    np.testing.assert_array_equal(got, _brute_force(U, V, 5, exclude))


def test_rank_topk_ties_smaller_id_first_and_padding():
    U = np.ones((2, 1), np.float32)
    V = np.array([[1.0], [2.0], [1.0], [2.0]], np.float32)
    exclude = _csr([[], [0, 1, 2]], 4)
    ids, scores = rank_topk(U, V, 3, exclude=exclude, return_scores=True)
    np.testing.assert_array_equal(ids, [[1, 3, 0], [3, -1, -1]])
    assert np.isneginf(scores[1, 1:]).all()


@pytest.mark.parametrize(
    "U, V, k, exc, msg",
    [
        (np.ones((2, 3), np.float32), np.ones((4, 2), np.float32), 1, ValueError, "dim"),
        (np.ones(3, np.float32), np.ones((4, 3), np.float32), 1, ValueError, "2-D"),
        (np.array([[np.nan, 0.0]], np.float32), np.ones((4, 2), np.float32), 1, ValueError, "NaN"),
        (np.ones((2, 2), np.int64), np.ones((4, 2), np.float32), 1, TypeError, "floating"),
        (np.ones((2, 2), np.float32), np.ones((4, 2), np.float32), 0, ValueError, "positive"),
    ],
)
def test_rank_topk_bad_input(U, V, k, exc, msg):
    with pytest.raises(exc, match=msg):
        rank_topk(U, V, k)


def test_rank_topk_exclude_shape_checked():
    with pytest.raises(ValueError, match="exclude must have shape"):
        rank_topk(np.ones((2, 2), np.float32), np.ones((4, 2), np.float32), 1, exclude=sp.csr_matrix((3, 4)))


def test_rank_topk_never_returns_a_train_item_on_ml1m(ml1m):
    rng = np.random.default_rng(0)
    # popularity-like scores push the most-rated (often already seen) items up
    pop = np.asarray(ml1m.train.sum(axis=0)).ravel().astype(np.float32)
    U = np.abs(rng.standard_normal((ml1m.n_users, 4))).astype(np.float32)
    V = np.column_stack([pop, rng.standard_normal((ml1m.n_items, 3))]).astype(np.float32)
    top = rank_topk(U, V, 50, exclude=ml1m.train)
    assert top.shape == (ml1m.n_users, 50) and (top >= 0).all()
    assert not hit_matrix(top, ml1m.train).any()
    # and the top items are what a popularity ranking predicts for held-out data
    assert evaluate_topk(top, ml1m.test, ks=[20])["recall@20"] > 0.05


def test_degree_buckets_and_group_metrics():
    train = _csr([[0], [0, 1], [0, 1, 2], [0, 1, 2, 3]], 6)
    bucket, labels = degree_buckets(train, n_buckets=2)
    # quantiles of degrees 1..4: 1, 2.5 -> 2 (rounded half to even), 4
    assert labels == ["1–1", "2–4"]
    np.testing.assert_array_equal(bucket, [0, 1, 1, 1])
    test = _csr([[5], [5], [4], []], 6)
    topk = np.array([[5, 4], [4, 3], [4, 5], [5, 4]])
    rows = evaluate_by_group(topk, test, bucket, labels, ks=[1])
    assert [r["group"] for r in rows] == labels
    assert rows[0]["users"] == 1 and rows[0]["recall@1"] == 1.0
    # bucket 1: user 1 misses at rank 0, user 2 hits; user 3 has no test item
    assert rows[1]["users"] == 2 and rows[1]["recall@1"] == pytest.approx(0.5)
