"""Sweeps and the fixed-throughput comparison on hand-made tables and a tiny dataset."""
from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from hashrec_utils.bench import at_fixed_throughput, recall_at, recall_vs_exact, sweep, time_search
from hashrec_utils.retrieval import make_index


def test_at_fixed_throughput_by_hand():
    df = pd.DataFrame({
        "method": ["hnsw", "hnsw", "hnsw", "hamming", "ivf"],
        "efSearch": [128, 64, 16, None, None],
        "qps": [1000.0, 5000.0, 20000.0, 50000.0, 100.0],
        "recall@20": [0.25, 0.22, 0.10, 0.18, 0.26],
    })
    out = at_fixed_throughput(df, [4000, 30000])
    assert list(out.columns[:3]) == ["target_qps", "method", "recall@20"]
    best = out.set_index(["target_qps", "method"])
    assert best.loc[(4000.0, "hnsw"), "recall@20"] == 0.22  # best at >= 4k q/s, not the slower 0.25
    assert best.loc[(4000.0, "hnsw"), "efSearch"] == 64 and best.loc[(4000.0, "hnsw"), "qps"] == 5000.0
    assert best.loc[(4000.0, "hamming"), "recall@20"] == 0.18
    assert np.isnan(best.loc[(4000.0, "ivf"), "recall@20"])  # never that fast
    assert np.isnan(best.loc[(30000.0, "hnsw"), "recall@20"])
    assert best.loc[(30000.0, "hamming"), "recall@20"] == 0.18
    # exactly at the target counts as reaching it; the metric is selectable
    assert at_fixed_throughput(df, 5000.0, metric="recall@20").set_index("method").loc["hnsw", "recall@20"] == 0.22
    only = at_fixed_throughput(df.drop(columns="recall@20").assign(recall_vs_exact=[0.9, 0.8, 0.5, 0.7, 1.0]), 5000)
    assert only.set_index("method").loc["hnsw", "recall_vs_exact"] == 0.8
    with pytest.raises(ValueError, match="no column 'ndcg@20'"):
        at_fixed_throughput(df, 10, metric="ndcg@20")


def test_recall_helpers_by_hand():
    truth = np.array([[1, 2, 3, 4], [5, 6, 7, 8]])
    ids = np.array([[4, 3, 9, 9], [5, -1, -1, -1]])
    assert recall_vs_exact(ids, truth) == pytest.approx((2 / 4 + 1 / 4) / 2)
    test = sp.csr_matrix(([1, 1, 1], ([0, 0, 2], [3, 7, 1])), shape=(3, 10))  # user 1 has no test item
    top = np.array([[3, 1, 7], [0, 1, 2], [4, 5, 6]])
    assert recall_at(top, test, k=2) == pytest.approx((1 / 2 + 0 / 1) / 2)
    assert recall_at(top, test, k=3) == pytest.approx((2 / 2 + 0) / 2)


def test_time_search_returns_best_seconds_and_ids():
    rng = np.random.default_rng(0)
    index = make_index("flat_ip", threads=1).build(rng.standard_normal((100, 4)).astype(np.float32))
    seconds, ids = time_search(index, rng.standard_normal((7, 4)).astype(np.float32), 5, repeats=2)
    assert seconds > 0 and ids.shape == (7, 5)


def test_take_turns_runs_every_search_once_a_round_in_turn():
    from hashrec_utils.bench import take_turns

    calls = []

    class Recorder:
        def __init__(self, name):
            self.name = name

        def search(self, queries, k, exclude=None):
            calls.append((self.name, queries, k, exclude))

    times = take_turns({"a": (Recorder("a"), "qa"), "b": (Recorder("b"), "qb")}, 7, repeats=3, exclude="ex")
    assert [c[0] for c in calls] == ["a", "b"] * 3
    assert all(c[1] == "q" + c[0] and c[2] == 7 and c[3] == "ex" for c in calls)
    assert set(times) == {"a", "b"} and all(len(t) == 3 and min(t) >= 0 for t in times.values())


def test_round_robin_times_each_call_in_turn():
    from hashrec_utils.bench import round_robin

    calls = []
    times = round_robin({"a": lambda: calls.append("a"), "b": lambda: (calls.append("b"), time.sleep(0.01))}, rounds=2)
    assert calls == ["a", "b", "a", "b"]
    assert list(times) == ["a", "b"] and all(len(t) == 2 for t in times.values()) and min(times["b"]) >= 0.01
    round_robin({"a": lambda: calls.append("c")}, rounds=0)
    assert calls[-1] == "c" and len(calls) == 5  # at least one round


def test_sweep_columns_and_rebuild_only_when_needed():
    rng = np.random.default_rng(0)
    items = rng.standard_normal((500, 8)).astype(np.float32)
    q = rng.standard_normal((40, 8)).astype(np.float32)
    truth = np.argsort(-(q @ items.T), axis=1)[:, :10]
    test = sp.csr_matrix((np.ones(40), (np.arange(40), truth[:, 0])), shape=(40, 500))
    built = []

    def factory(**p):
        built.append(p)
        return make_index("hnsw", threads=1, **p)

    grid = [{"M": 8, "efSearch": 16}, {"M": 8, "efSearch": 128}, {"M": 16, "efSearch": 64}]
    df = sweep(factory, grid, q, truth, items=items, test=test, method="hnsw", repeats=1)
    assert len(built) == 2  # efSearch is a search-time setting: no rebuild
    assert {"method", "M", "efSearch", "recall_vs_exact", "recall@20", "qps", "qps_plain", "build_s", "bytes_per_item"} <= set(df.columns)
    assert len(df) == 3 and (df["method"] == "hnsw").all()
    assert df.loc[1, "build_s"] == 0.0 and df.loc[0, "build_s"] > 0 and df.loc[2, "build_s"] > 0
    assert df["recall_vs_exact"].iloc[1] >= df["recall_vs_exact"].iloc[0]
    assert (df["recall@20"] > 0.5).all()  # the exact best item is the test item by construction
    assert (df["bytes_per_item"] > 8 * 4).all() and (df["qps"] > 0).all()


def test_sweep_hierarchical_and_exact_hamming():
    rng = np.random.default_rng(1)
    item_emb = rng.standard_normal((320, 8)).astype(np.float32)  # whole blocks of 32: 8 bytes per code exactly
    user_emb = rng.standard_normal((20, 8)).astype(np.float32)
    planes = rng.standard_normal((8, 64)).astype(np.float32)
    codes, qcodes = np.packbits(item_emb @ planes > 0, axis=1), np.packbits(user_emb @ planes > 0, axis=1)
    truth = np.argsort(-(user_emb @ item_emb.T), axis=1)[:, :10]
    df = sweep(lambda **p: make_index("hierarchical", threads=1, **p), [{"candidates": c} for c in (10, 50, 320)],
               (qcodes, user_emb), truth, items=(codes, item_emb), repeats=1)
    assert df["build_s"].tolist()[1:] == [0.0, 0.0] and (df["method"] == "hierarchical").all()
    assert df["recall_vs_exact"].iloc[2] == 1.0  # every item a candidate: the exact ranking
    assert df["recall_vs_exact"].is_monotonic_increasing
    assert df["bytes_per_item"].iloc[0] == 8 + 8 * 4
    ham = sweep(lambda: make_index("hamming", threads=1), [{}], qcodes, truth, items=codes, repeats=1)
    assert ham["bytes_per_item"].iloc[0] == 8.0 and 0 < ham["recall_vs_exact"].iloc[0] < 1
