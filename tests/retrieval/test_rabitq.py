"""Faiss's RaBitQ family behind hashrec's interface: the same answers as Faiss itself, exclusion,
the query bits and re-ranking doing what they say, bad parameters."""
from __future__ import annotations

import faiss
import numpy as np
import pytest
import scipy.sparse as sp

from hashrec_utils.retrieval import RABITQ_INDEXES, exact_topk, make_index

SMALL = {"ivf_rabitq": {"nlist": 16, "nprobe": 4}, "ivf_rabitq_fastscan": {"nlist": 16, "nprobe": 4},
         "hnsw_rabitq": {"M": 16}}


@pytest.fixture(scope="module")
def clustered():
    """Items and queries around 40 centres in 32-d (the geometry of trained embeddings, not uniform noise)."""
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((40, 32))
    items = (centres[rng.integers(0, 40, 4000)] + 0.3 * rng.standard_normal((4000, 32))).astype(np.float32)
    queries = (centres[rng.integers(0, 40, 120)] + 0.3 * rng.standard_normal((120, 32))).astype(np.float32)
    exclude = sp.random(120, 4000, density=0.01, format="csr", random_state=1)
    return items, queries, exclude


def overlap(ids, truth):
    return np.mean([len(set(a[a >= 0]) & set(b)) / len(b) for a, b in zip(ids, truth)])


@pytest.mark.parametrize("name", ["rabitq", "rabitq_fastscan", "ivf_rabitq", "ivf_rabitq_fastscan"])
def test_equals_faiss_itself_without_exclusion(name, clustered):
    items, queries, _ = clustered
    ours = make_index(name, threads=1, qb=4, **SMALL.get(name, {})).build(items)
    d = items.shape[1]
    ip = faiss.METRIC_INNER_PRODUCT
    ref = {"rabitq": lambda: faiss.IndexRaBitQ(d, ip), "rabitq_fastscan": lambda: faiss.IndexRaBitQFastScan(d, ip),
           "ivf_rabitq": lambda: faiss.IndexIVFRaBitQ(faiss.IndexFlatIP(d), d, 16, ip),
           "ivf_rabitq_fastscan": lambda: faiss.IndexIVFRaBitQFastScan(faiss.IndexFlatIP(d), d, 16, ip)}[name]()
    ref.train(items)
    ref.add(items)
    ref.qb = 4
    if hasattr(ref, "nprobe"):
        ref.nprobe = 4
    D, I = ours.search(queries, 10)
    D_ref, I_ref = ref.search(queries, 10)
    np.testing.assert_array_equal(I, I_ref)
    np.testing.assert_allclose(D, D_ref, rtol=1e-5)


@pytest.mark.parametrize("name", list(RABITQ_INDEXES))
def test_exclusion_query_bits_and_refine(name, clustered):
    items, queries, exclude = clustered
    _, truth = exact_topk(queries, items, 10, exclude)
    index = make_index(name, threads=1, **SMALL.get(name, {})).build(items)
    D, I = index.search(queries, 10, exclude)
    for r in range(len(queries)):
        got = I[r][I[r] >= 0]
        assert not set(got) & set(exclude[r].indices) and len(set(got)) == len(got)
    coarse = overlap(index.set_search_params(qb=1).search(queries, 10, exclude)[1], truth)
    fine = overlap(index.set_search_params(qb=8).search(queries, 10, exclude)[1], truth)
    assert fine > coarse  # a 1-bit query estimates worse than an 8-bit one
    refined = make_index(name, threads=1, refine=True, k_factor=10, **SMALL.get(name, {})).build(items)
    D, I = refined.search(queries, 10, exclude)
    valid = I >= 0
    exact = np.take_along_axis(queries @ items.T, np.where(valid, I, 0), 1)
    np.testing.assert_allclose(D[valid], exact[valid], rtol=1e-4, atol=1e-4)  # re-ranked: true inner products
    assert overlap(I, truth) > max(fine, 0.85)
    assert refined.memory_bytes() > index.memory_bytes() + items.nbytes * 0.9  # the floats are stored too


def test_bad_parameters():
    with pytest.raises(ValueError, match="has no parameter 'nprobe'"):
        make_index("rabitq", nprobe=3)
    with pytest.raises(ValueError, match="not a search-time parameter"):
        make_index("ivf_rabitq").set_search_params(nlist=3)
