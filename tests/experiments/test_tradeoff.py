"""The fixed-throughput study's pieces on hand-made tables: float multiples of the fastest exact
search, the latency points, the headline sentence, IVF/PQ sizes from the catalogue, the sweep's
repeated timings and both protocols."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from hashrec_utils.bench import TorchExactIndex, sweep
from hashrec_utils.experiments import fixed_throughput, headline, ivf_nlist, latency_table, pq_nbits
from hashrec_utils.retrieval import make_index


def points():
    return pd.DataFrame({
        "method": ["Exact float (GEMM)", "HNSW", "HNSW", "HNSW", "hashrec Hamming", "hashrec hierarchical",
                   "hashrec hierarchical"],
        "efSearch": [None, 128, 64, 16, None, None, None],
        "candidates": [None, None, None, None, None, 20, 200],
        "qps": [1000.0, 900.0, 1600.0, 5000.0, 20000.0, 3100.0, 1400.0],
        "recall@20": [0.20, 0.199, 0.19, 0.15, 0.17, 0.17, 0.1996],
        "latency_p50_ms": [1.0, 0.5, 0.4, 0.2, 0.1, 0.3, 0.6],
    }).assign(recall_ratio=lambda d: d["recall@20"] / 0.20)


def test_fixed_throughput_keeps_fractional_multiples():
    fixed = fixed_throughput(points(), 1000.0, (1, 1.5, 3, 50)).set_index(["multiple_of_exact", "method"])
    assert fixed.loc[(1.5, "HNSW"), "recall@20"] == 0.19  # efSearch 64 at 1,600 q/s: >= 1,500
    assert fixed.loc[(1.5, "hashrec hierarchical"), "recall@20"] == 0.17  # C=200 (1,400 q/s) is too slow
    assert fixed.loc[(1.0, "hashrec hierarchical"), "candidates"] == 200
    assert fixed.loc[(3.0, "hashrec Hamming"), "recall@20"] == 0.17
    assert np.isnan(fixed.loc[(50.0, "HNSW"), "recall@20"])
    assert fixed.index.get_level_values(0).dtype == float


def test_fixed_throughput_lists_methods_in_the_sweeps_order():
    frame = points()
    frame.loc[frame.method == "HNSW", "method"] = "Z-HNSW"  # alphabetically last, second in the sweep
    fixed = fixed_throughput(frame, 1000.0, (1, 2))
    assert list(dict.fromkeys(fixed["method"])) == ["Exact float (GEMM)", "Z-HNSW", "hashrec Hamming",
                                                   "hashrec hierarchical"]
    assert list(fixed["multiple_of_exact"][:2]) == [1.0, 2.0]


def test_latency_table_picks_the_points_nearest_each_target():
    lat = latency_table(points()).set_index(["method", "target_recall_ratio"])
    assert lat.loc[("HNSW", 0.95), "efSearch"] == 64  # ratio 0.95 exactly
    assert lat.loc[("HNSW", 0.99), "efSearch"] == 128  # 0.995 is nearer 0.99 than 0.95
    assert lat.loc[("hashrec hierarchical", 0.99), "candidates"] == 200


def test_headline_names_the_largest_multiple_where_hashrec_keeps_097():
    fixed = fixed_throughput(points(), 1000.0, (1, 1.5, 3)).assign(recall_ratio=lambda d: d["recall@20"] / 0.20)
    text = headline("ml-1m", fixed, 1000.0, "Exact float (GEMM)")
    assert "at 1×" in text and "hashrec hierarchical" in text and "0.998×" in text and "HNSW" in text
    worse = fixed.assign(recall_ratio=fixed["recall_ratio"] * 0.5)
    assert "below 0.97× at every multiple" in headline("ml-1m", worse, 1000.0, "Exact float (GEMM)")


@pytest.mark.parametrize("n", [500, 3706, 40981, 10**6])
def test_ivf_and_pq_sizes_give_every_centroid_39_training_points(n):
    assert 1 <= ivf_nlist(n) <= 256 and ivf_nlist(n) * 39 <= n
    assert 1 <= pq_nbits(n) <= 8 and 2 ** pq_nbits(n) * 39 <= n
    assert pq_nbits(10**6) == 8 and ivf_nlist(3706) == 95 and pq_nbits(3706) == 6


def test_sweep_repeats_timings_and_measures_both_protocols():
    rng = np.random.default_rng(0)
    items = rng.standard_normal((300, 8)).astype(np.float32)
    q = rng.standard_normal((30, 8)).astype(np.float32)
    exclude = sp.random(30, 300, density=0.05, format="csr", random_state=1)
    plain = np.argsort(-(q @ items.T), axis=1, kind="stable")[:, :10]
    masked = np.where(exclude.toarray() != 0, -np.inf, q @ items.T)
    truth = np.argsort(-masked, axis=1, kind="stable")[:, :10]
    df = sweep(lambda **p: TorchExactIndex(1), [{}], q, truth, items=items, exclude=exclude, repeats=4,
               truth_plain=plain, latency_queries=5, method="torch")
    row = df.iloc[0]
    assert row["repeats"] == 4 and row["qps_min"] <= row["qps"] <= row["qps_max"]
    assert row["recall_vs_exact"] == 1.0 and row["recall_vs_exact_plain"] == 1.0
    assert 0 < row["latency_p50_ms"] <= row["latency_p99_ms"]
    ivf = sweep(lambda **p: make_index("ivf_flat", threads=1, **p), [{"nlist": 4, "nprobe": 1}], q, truth,
                items=items, exclude=exclude, repeats=2, truth_plain=plain)
    assert ivf.iloc[0]["recall_vs_exact_plain"] < 1.0  # one of four cells misses neighbours


def test_sweep_times_a_subset_but_scores_every_query():
    rng = np.random.default_rng(2)
    items = rng.standard_normal((400, 8)).astype(np.float32)
    q = rng.standard_normal((50, 8)).astype(np.float32)
    exclude = sp.random(50, 400, density=0.05, format="csr", random_state=3)
    masked = np.where(exclude.toarray() != 0, -np.inf, q @ items.T)
    truth = np.argsort(-masked, axis=1, kind="stable")[:, :10]
    plain = np.argsort(-(q @ items.T), axis=1, kind="stable")[:, :10]
    truth[40:] = plain[40:]  # queries past the timed ones: only a search with their own exclusion rows matches
    args = dict(items=items, exclude=exclude, repeats=3, truth_plain=plain, method="ivf")
    factory = lambda **p: make_index("ivf_flat", threads=1, **p)  # noqa: E731
    whole = sweep(factory, [{"nlist": 4, "nprobe": 4}], q, truth, **args).iloc[0]
    part = sweep(factory, [{"nlist": 4, "nprobe": 4}], q, truth, timing_queries=10, **args).iloc[0]
    assert part["timed_queries"] == 10 and whole["timed_queries"] == 50 and part["repeats"] == 3
    # accuracy from every query in both: rows 40-49 miss their excluded-item neighbours alike
    assert part["recall_vs_exact"] == whole["recall_vs_exact"] < 1.0
    assert part["recall_vs_exact_plain"] == whole["recall_vs_exact_plain"] == 1.0


def test_the_speed_study_searches_the_comparisons_refits_where_its_result_is_the_refit(monkeypatch, tmp_path):
    """retrieval_setup(refit=True): the teacher's refit and the codes' refit (started from the teacher's
    refit) on all of train's split; comparison_refit reads whether the comparison's result is the refit."""
    import json

    from hashrec_utils.hashing.codes import pack_codes
    from hashrec_utils.data import InteractionData
    from hashrec_utils.experiments import refit as refit_module
    from hashrec_utils.experiments import speed, tradeoff
    import hashrec_utils.training.runs as train_runs

    rng = np.random.default_rng(0)
    n_users, n_items, dim = 30, 80, 8
    dense = rng.random((n_users, n_items))
    toy = InteractionData("toy", n_users, n_items, sp.csr_matrix((dense < 0.1).astype(np.float32)),
                          sp.csr_matrix((n_users, n_items), dtype=np.float32),
                          sp.csr_matrix(((dense >= 0.1) & (dense < 0.15)).astype(np.float32)),
                          np.arange(n_users), np.arange(n_items))

    def folder(name):
        out = tmp_path / name
        out.mkdir(exist_ok=True)
        u, i = rng.normal(size=(n_users, dim)).astype(np.float32), rng.normal(size=(n_items, dim)).astype(np.float32)
        np.savez(out / "embeddings.npz", user=u, item=i, user_codes=pack_codes(u), item_codes=pack_codes(i), user_query=u)
        return out

    calls, loaded = [], []
    monkeypatch.setattr(speed, "lightgcn_run", lambda *a, **kw: ({}, folder("teacher")))
    monkeypatch.setattr(speed, "variant_run", lambda *a, **kw: ({}, folder("codes")))

    def fake_refit(run, init=None, progress=False):
        calls.append((run.name, None if init is None else init.name))
        return {}, folder(run.name + "_refit")

    monkeypatch.setattr(refit_module, "refit_run", fake_refit)
    monkeypatch.setattr(train_runs, "load_run_data", lambda config: loaded.append(config.valid_fraction) or toy)
    setup = speed.retrieval_setup("full", "signswish", dataset="gowalla", valid_fraction=0.1, refit=True)
    assert calls == [("teacher", None), ("codes", "teacher_refit")] and loaded == [0.0]
    assert (setup.teacher_run, setup.codes_run) == ("teacher_refit", "codes_refit")
    plain = speed.retrieval_setup("full", "signswish", dataset="gowalla", valid_fraction=0.1)
    assert (plain.teacher_run, plain.codes_run) == ("teacher", "codes") and loaded[-1] == 0.1
    with pytest.raises(ValueError, match="valid_fraction is None"):
        speed.retrieval_setup("full", "signswish", dataset="gowalla", refit=True)

    monkeypatch.setenv("HASHREC_ROOT", str(tmp_path))
    results = tmp_path / "results" / "full"
    results.mkdir(parents=True)
    assert not tradeoff.comparison_refit("full", "gowalla")  # no comparison yet
    (results / "comparison_summary.json").write_text(json.dumps({"gowalla": {"best_row": "signswish", "refit": {}}}))
    assert not tradeoff.comparison_refit("full", "gowalla")  # nothing was refit
    (results / "comparison_summary.json").write_text(json.dumps({"gowalla": {"best_row": "signswish",
                                                                             "refit": {"seeds": 3}}}))
    assert tradeoff.comparison_refit("full", "gowalla") and not tradeoff.comparison_refit("full", "ml-1m")
