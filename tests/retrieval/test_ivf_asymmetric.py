"""The inverted-file asymmetric index (queries on which the scan's quantisation is exact, as for the
full scan's tests): a full probe equals the float reference scan, a partial probe
returns the reference restricted to the visited cells, the re-rank equals exact float search when it
sees every item, exclusion, ties, padding, bad input."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from hashrec_utils.retrieval import IVFAsymmetricIndex, asymmetric_scores, exact_topk, make_index
from .test_asymmetric import grid_queries


def clustered(n, d, bits, seed, dup_every=0):
    """Items in a few clusters (so the coarse stage has structure); codes the signs of a projection."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(8, d))
    emb = (centres[rng.integers(8, size=n)] + 0.3 * rng.normal(size=(n, d))).astype(np.float32)
    codes = np.packbits(emb @ rng.normal(size=(d, bits)) > 0, axis=1)
    if dup_every:
        codes[::dup_every] = codes[0]  # equal codes: ties at the same score
    return codes, emb


def reference(scores, k, allowed=None, exclude=None):
    """Top-k by ``scores`` descending, ties by smaller id, over ``allowed`` items minus ``exclude``."""
    s = scores.astype(np.float64).copy()
    if allowed is not None:
        s[~allowed] = -np.inf
    if exclude is not None:
        s[exclude.toarray() != 0] = -np.inf
    ids = np.broadcast_to(np.arange(s.shape[1]), s.shape)
    order = np.lexsort((ids, -s), axis=1)[:, :k]
    return np.where(np.isneginf(np.take_along_axis(s, order, 1)), -1, order)


@pytest.mark.parametrize("bits", [8, 64, 128])
def test_full_probe_equals_the_reference_scan(bits):
    codes, emb = clustered(700, 16, bits, bits, dup_every=7)
    q = grid_queries(300, bits, 2)  # more queries than a parallel task holds (_CHUNK): several tasks
    q_emb = np.random.default_rng(3).normal(size=(300, 16)).astype(np.float32)
    index = IVFAsymmetricIndex(bits, nlist=10, nprobe=10).build((codes, emb))
    scores, ids = index.search((q, q_emb), 25)
    np.testing.assert_array_equal(ids, reference(asymmetric_scores(q, codes), 25))
    np.testing.assert_allclose(scores, np.take_along_axis(asymmetric_scores(q, codes), ids, 1), rtol=1e-6, atol=1e-4)


def test_partial_probe_is_the_reference_over_the_visited_cells():
    codes, emb = clustered(900, 16, 64, 4)
    q = grid_queries(30, 64, 5)
    q_emb = np.random.default_rng(6).normal(size=(30, 16)).astype(np.float32)
    index = IVFAsymmetricIndex(64, nlist=12, nprobe=3).build((codes, emb))
    _, ids = index.search((q, q_emb), 20)
    cell = index.cells
    for c in range(12):  # each list's block-padded slots hold exactly its items
        slots = index.list_ids[index.blk_ptr[c] * 32 : index.blk_ptr[c + 1] * 32]
        assert sorted(slots[slots >= 0].tolist()) == np.flatnonzero(cell == c).tolist()
    visited = np.argsort(-(q_emb @ index.centroids.T), axis=1, kind="stable")[:, :3]
    allowed = (cell[None, :, None] == visited[:, None, :]).any(axis=2)
    np.testing.assert_array_equal(ids, reference(asymmetric_scores(q, codes), 20, allowed))
    # every item sits in exactly one list, each list holds the items nearest (inner product) its centroid
    assert sorted(index.list_ids[index.list_ids >= 0].tolist()) == list(range(len(emb)))
    np.testing.assert_array_equal(cell, np.argmax(emb @ index.centroids.T, axis=1))


def test_rerank_over_every_item_is_exact_float_search_and_excludes():
    codes, emb = clustered(600, 16, 64, 7)
    q = grid_queries(260, 64, 8)
    q_emb = np.random.default_rng(9).normal(size=(260, 16)).astype(np.float32)
    rng = np.random.default_rng(10)
    exclude = sp.random(260, 600, density=0.05, format="csr", random_state=rng)
    index = make_index("ivf_asymmetric", bits=64, nlist=8, nprobe=8, candidates=600).build((codes, emb))
    scores, ids = index.search((q, q_emb), 20, exclude)
    ref_scores, ref_ids = exact_topk(q_emb, emb, 20, exclude)
    np.testing.assert_array_equal(ids, ref_ids)
    np.testing.assert_allclose(scores, ref_scores, rtol=1e-5)
    # code-only with exclusion: the reference minus the excluded items
    index.set_search_params(candidates=None)
    _, ids = index.search((q, q_emb), 20, exclude)
    np.testing.assert_array_equal(ids, reference(asymmetric_scores(q, codes), 20, exclude=exclude))
    assert not any(exclude[r, i] for r in range(260) for i in ids[r] if i >= 0)


def test_more_probes_and_candidates_never_lose_recall_and_padding():
    codes, emb = clustered(2000, 16, 64, 11)
    q = np.random.default_rng(12).normal(size=(50, 64)).astype(np.float32)
    q_emb = np.random.default_rng(13).normal(size=(50, 16)).astype(np.float32)
    truth = exact_topk(q_emb, emb, 10)[1]
    index = IVFAsymmetricIndex(64, nlist=20).build((codes, emb))
    found = []
    index.set_search_params(candidates=2000)
    for nprobe in (1, 4, 20):
        index.set_search_params(nprobe=nprobe)  # candidates stay
        ids = index.search((q, q_emb), 10)[1]
        found.append(np.mean([len(set(a) & set(b)) for a, b in zip(ids, truth)]))
    assert found[0] <= found[1] <= found[2] == 10
    # a cell smaller than k: padding with -1 / -inf, never a repeated id
    tiny = IVFAsymmetricIndex(64, nlist=20, nprobe=1).build((codes, emb))
    scores, ids = tiny.search((q, q_emb), 1500)
    assert (ids == -1).any() and np.isneginf(scores[ids == -1]).all()
    for row in ids:
        real = row[row >= 0]
        assert len(set(real.tolist())) == len(real)


def test_bad_input_gets_one_clear_error():
    codes, emb = clustered(100, 8, 64, 14)
    with pytest.raises(ValueError, match="nlist"):
        make_index("ivf_asymmetric", bits=64, nprobe=2)
    with pytest.raises(ValueError, match="must not exceed the number of items"):
        IVFAsymmetricIndex(64, nlist=200).build((codes, emb))
    with pytest.raises(ValueError, match="item_emb has 99"):
        IVFAsymmetricIndex(64, nlist=4).build((codes, emb[:99]))
    index = IVFAsymmetricIndex(64, nlist=4)
    with pytest.raises(RuntimeError, match="before build"):
        index.search((np.zeros((1, 64), np.float32), np.zeros((1, 8), np.float32)), 5)
    index.build((codes, emb))
    with pytest.raises(ValueError, match="queries has dim 32"):
        index.search((np.zeros((1, 32), np.float32), np.zeros((1, 8), np.float32)), 5)
    with pytest.raises(ValueError, match="NaN"):
        index.search((np.full((1, 64), np.nan, np.float32), np.zeros((1, 8), np.float32)), 5)
    with pytest.raises(TypeError, match="pair"):
        index.search(np.zeros((1, 64), np.float32), 5)
