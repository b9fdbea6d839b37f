"""Sweeps and the fixed-throughput comparison on hand-made and tiny real tables."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from hashrec_utils.bench import at_fixed_throughput, recall_vs_exact, sweep
from hashrec_utils.retrieval import make_index


def test_at_fixed_throughput_by_hand():
    df = pd.DataFrame({
        "method": ["hnsw", "hnsw", "hnsw", "hamming", "ivf"],
        "qps": [1000.0, 5000.0, 20000.0, 50000.0, 100.0],
        "recall@20": [0.25, 0.22, 0.10, 0.18, 0.26],
    })
    out = at_fixed_throughput(df, [4000, 30000]).set_index(["target_qps", "method"])["recall@20"]
    assert out[(4000.0, "hnsw")] == 0.22  # best at or above 4k q/s, not the slow 0.25
    assert out[(4000.0, "hamming")] == 0.18
    assert np.isnan(out[(4000.0, "ivf")])  # never that fast
    assert np.isnan(out[(30000.0, "hnsw")]) and out[(30000.0, "hamming")] == 0.18


def test_recall_vs_exact_by_hand():
    truth = np.array([[1, 2, 3, 4], [5, 6, 7, 8]])
    ids = np.array([[4, 3, 9, 9], [5, -1, -1, -1]])
    assert recall_vs_exact(ids, truth) == pytest.approx((2 / 4 + 1 / 4) / 2)


def test_sweep_columns_and_rebuild_only_when_needed():
    rng = np.random.default_rng(0)
    items = rng.standard_normal((500, 8)).astype(np.float32)
    q = rng.standard_normal((40, 8)).astype(np.float32)
    truth = np.argsort(-(q @ items.T), axis=1)[:, :20]
    test = sp.csr_matrix((np.ones(40), (np.arange(40), truth[:, 0])), shape=(40, 500))
    built = []

    def factory(**p):
        built.append(p)
        return make_index("hnsw", threads=1, **p)

    df = sweep(factory, [{"M": 8, "ef_search": 16}, {"M": 8, "ef_search": 128}, {"M": 16, "ef_search": 64}],
               q, truth, items=items, k=20, test=test, method="hnsw")
    assert len(built) == 2  # ef_search is a search-time setting: no rebuild
    assert {"method", "M", "ef_search", "recall_vs_exact", "qps", "build_s", "bytes_per_item", "recall@20", "ndcg@20"} <= set(df.columns)
    assert df.loc[1, "build_s"] == 0.0 and df.loc[0, "build_s"] > 0
    assert df["recall_vs_exact"].iloc[1] >= df["recall_vs_exact"].iloc[0]
    assert (df["recall@20"] > 0.5).all()  # the exact best item is in the test set by construction
