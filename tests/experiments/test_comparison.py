"""Notebook 07's comparison (hashrec_utils.experiments.comparison): runs on a validation carve-out
of a published split, metrics at k = 100 from a run's saved arrays, selection on validation only,
and the published numbers placed beside the row that runs the same method."""
from __future__ import annotations

from dataclasses import replace
import json

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from hashrec_utils.data import InteractionData
from hashrec_utils.experiments import comparison, runs
from hashrec_utils.experiments import rows as table_rows
from hashrec_utils.experiments.comparison import comparison_best_row, comparison_metrics, comparison_top_rows, comparison_view
from hashrec_utils.experiments.runs import hash_overrides, valid_tag
from hashrec_utils.metrics import evaluate_topk
from hashrec_utils.report import PUBLISHED
from hashrec_utils.hashing import pack_codes


def test_valid_tag_names_the_carve_out():
    assert valid_tag(None) == ""
    assert valid_tag(0.1) == "_v10"
    assert valid_tag(0.25) == "_v25"


def test_hash_overrides_on_a_carve_out_train_on_it_from_the_teacher_trained_on_it(monkeypatch, tmp_path):
    """A published split (no validation by default outside quick) with valid_fraction: the run carves
    it, and its init is the LightGCN run on the same carve-out, never the one trained on all of train.
    Resolving the settings trains nothing: the init is named, and trained by the run that needs it."""
    asked = []

    def fake_lightgcn(profile, dataset="ml-1m", *, progress=True, valid_fraction=None, **kw):
        asked.append(valid_fraction)
        return {}, tmp_path / f"lightgcn_{dataset}{valid_tag(valid_fraction)}"

    monkeypatch.setattr(runs, "lightgcn_run", fake_lightgcn)
    carved = hash_overrides("full", "signswish", dataset="gowalla", valid_fraction=0.1)
    assert carved["valid_fraction"] == 0.1
    assert carved["hash_params"]["init"].endswith("lightgcn_gowalla_L3_s0_v10")
    plain = hash_overrides("full", "signswish", dataset="gowalla")
    assert "valid_fraction" not in plain and plain["hash_params"]["init"].endswith("lightgcn_gowalla_L3_s0")
    assert carved["hash_params"]["init"] == str(runs.default_init("full", "gowalla", 0.1))
    assert asked == []  # nothing trained
    runs.train_default_init("full", "gowalla", carved, 0.1)
    runs.train_default_init("full", "gowalla", {"hash_params": {"init": "elsewhere"}}, 0.1)  # the caller's own init
    assert asked == [0.1]
    # the end-to-end published rows carve it too (no init: they train their own encoder)
    e2e = hash_overrides("full", "bgch", dataset="gowalla", end_to_end=True, valid_fraction=0.1)
    assert e2e["valid_fraction"] == 0.1 and "init" not in e2e["hash_params"]


def _toy_data() -> InteractionData:
    rng = np.random.default_rng(0)
    n_users, n_items = 40, 150
    dense = rng.random((n_users, n_items))
    train = sp.csr_matrix((dense < 0.05).astype(np.float32))
    valid = sp.csr_matrix(((dense >= 0.05) & (dense < 0.07)).astype(np.float32))
    test = sp.csr_matrix(((dense >= 0.07) & (dense < 0.10)).astype(np.float32))
    return InteractionData("toy", n_users, n_items, train, valid, test, np.arange(n_users), np.arange(n_items))


def test_comparison_metrics_rank_the_saved_arrays_exclude_the_right_items_and_cache(tmp_path):
    data = _toy_data()
    rng = np.random.default_rng(1)
    u, i = rng.normal(size=(data.n_users, 8)).astype(np.float32), rng.normal(size=(data.n_items, 8)).astype(np.float32)
    np.savez(tmp_path / "embeddings.npz", user=u, item=i, user_codes=pack_codes(u), item_codes=pack_codes(i))
    (tmp_path / "metrics.json").write_text("{}")
    got = comparison_metrics(tmp_path, data, (20, 100), 100)
    assert set(got["test"]) == {"continuous", "hamming", "hierarchical"}
    # reference: the inner-product ranking by numpy, train + valid excluded at test, train at valid
    scores = u @ i.T
    for split, target, exclude in (("test", data.test, data.train_full), ("valid", data.valid, data.train)):
        s = scores.copy()
        s[exclude.toarray() > 0] = -np.inf
        top = np.argsort(-s, axis=1, kind="stable")[:, :100]
        ref = evaluate_topk(top, target, ks=(20, 100))
        for key in ("recall@20", "recall@100", "ndcg@100"):
            assert got[split]["continuous"][key] == pytest.approx(ref[key], abs=1e-6)
    # C = 100 candidates at k = 100: hierarchical re-ranks exactly the Hamming top-100
    assert got["test"]["hierarchical"]["recall@100"] == pytest.approx(got["test"]["hamming"]["recall@100"])
    # cached under the same key; another key recomputes
    cache = tmp_path / "comparison_metrics.json"
    saved = json.loads(cache.read_text())
    saved["test"]["hamming"]["recall@20"] = 0.5
    cache.write_text(json.dumps(saved))
    assert comparison_metrics(tmp_path, data, (20, 100), 100)["test"]["hamming"]["recall@20"] == 0.5
    again = comparison_metrics(tmp_path, data, (20, 50), 100)
    assert again["key"]["ks"] == [20, 50] and again["test"]["hamming"]["recall@20"] == got["test"]["hamming"]["recall@20"]


def _table(valid: dict, test: dict) -> pd.DataFrame:
    rows = []
    for row, v in valid.items():
        family = table_rows.row_family(row)
        rows.append({"dataset": "gowalla", "row": row, "family": family, "bits": 64, "search": "hamming", "seeds": 1,
                     "valid_recall@50_mean": v, **{f"{m}_mean": test[row] for m in ("recall@50", "recall@100", "ndcg@50", "ndcg@100")},
                     **{f"{m}_std": 0.0 for m in ("recall@50", "recall@100", "ndcg@50", "ndcg@100")}})
    return pd.DataFrame(rows)


def test_best_row_is_chosen_on_validation_among_hashrec_rows_whose_codes_popcount_serves():
    valid = {"signswish": 0.20, "guided_ste": 0.22, "bgch": 0.30, "luo_wu": 0.40}
    test = {"signswish": 0.30, "guided_ste": 0.10, "bgch": 0.50, "luo_wu": 0.60}  # ordered against validation
    table = _table(valid, test)
    # luo_wu is a published row, bgch's scaled codes are not popcount-searchable
    assert comparison_best_row(table) == "guided_ste"
    with pytest.raises(ValueError, match="validation"):
        comparison_best_row(table.assign(**{"valid_recall@50_mean": np.nan}))


def test_top_rows_are_every_published_recipe_and_hashrecs_best_on_validation():
    valid = {"signswish": 0.20, "guided_ste": 0.22, "bigear": 0.25, "ste": 0.19, "luo_wu": 0.10, "hashgnn": 0.05,
             "ste_pairwise": 0.30}
    test = {"signswish": 0.30, "guided_ste": 0.10, "bigear": 0.05, "ste": 0.40, "luo_wu": 0.2, "hashgnn": 0.1,
            "ste_pairwise": 0.1}  # ordered against validation
    table = _table(valid, test)
    # scaled codes (bigear) count among hashrec's rows; a pairwise row is neither published nor hashrec's objective
    assert comparison_top_rows(table, 2) == ["guided_ste", "bigear", "luo_wu", "hashgnn"]
    assert comparison_top_rows(table, 3) == ["signswish", "guided_ste", "bigear", "luo_wu", "hashgnn"]
    assert comparison_top_rows(table, 0) == ["luo_wu", "hashgnn"]
    # a row without a validation number is never among the best
    blind = table.copy()
    blind.loc[blind.row == "bigear", "valid_recall@50_mean"] = np.nan
    assert comparison_top_rows(blind, 2) == ["signswish", "guided_ste", "luo_wu", "hashgnn"]


def test_view_puts_each_published_number_beside_the_row_that_runs_its_method():
    table = _table({"signswish": 0.2, "luo_wu": 0.1, "bgch_published": 0.1}, {"signswish": 0.25, "luo_wu": 0.2, "bgch_published": 0.15})
    view = comparison_view(table, comparison.published_rows("gowalla"))
    luo = view[view.row == "luo_wu"].iloc[0]
    assert luo["pub_recall@50"] == pytest.approx(0.23082) and luo["recall@50"] == pytest.approx(0.2)
    assert np.isnan(view[view.row == "signswish"].iloc[0]["pub_recall@50"])  # hashrec's own recipe: no paper
    # HashRec (not identified in the abstract) and HashGNN (not in this table) stay as published-only rows
    only = set(view[view.family == "published"].row)
    assert {"HashRec (published only)", "HashGNN (published only)"} <= only
    assert all(r["dataset"] == "gowalla" for r in PUBLISHED)


def test_view_says_how_each_rows_settings_were_chosen_from_the_summary():
    table = _table({"signswish": 0.2, "luo_wu": 0.1, "gumbel": 0.1}, {"signswish": 0.25, "luo_wu": 0.2, "gumbel": 0.15})
    summary = {"gowalla": {"settings": {"signswish": {"lr_factor": 1.0, "length_factor": 4.0}, "luo_wu": "base",
                                        "gumbel": "base"}}}
    view = comparison_view(table, comparison.published_rows("gowalla"), summary=summary).set_index("row")
    assert view.loc["signswish", "settings"] == "grid winner"
    assert view.loc["gumbel", "settings"] == view.loc["luo_wu", "settings"] == "base (not tuned)"
    assert "settings" not in comparison_view(table, comparison.published_rows("gowalla"))


def test_committed_view_marks_exactly_the_rows_the_grid_did_not_tune():
    got = comparison.comparison_stage("default")  # the full profile's committed results
    view = comparison_view(got["table"], got["published"], summary=got["summary"])
    refit = view[view.protocol == "refit"].set_index("row")  # the final models on all of train, beside
    assert refit.loc["lightgcn (continuous)", "settings"] == "teacher (profile settings)"
    mine = view[(view.family != "published") & (view.protocol != "refit")].set_index("row")
    untuned = {r for r, p in got["summary"]["gowalla"]["settings"].items() if p == "base"}
    assert set(mine.index[mine.settings == "base (not tuned)"]) == untuned
    assert mine.loc["lsh", "settings"] == mine.loc["sign (post-hoc)", "settings"] == "none (untrained)"
    assert mine.loc["lightgcn (continuous)", "settings"] == "teacher (profile settings)"


def test_every_published_row_of_the_seed_table_is_recorded_with_its_four_numbers():
    seed = [r for r in PUBLISHED if r["source"].startswith("Luo & Wu")]
    assert {r["method"] for r in seed} == {"smooth recall + SignSwish", "BGCH", "HashGNN", "HashRec"}
    for r in seed:
        assert all(0 < r[m] < 1 for m in ("recall@50", "recall@100", "ndcg@50", "ndcg@100"))
        assert r["recall@50"] < r["recall@100"] and r["ndcg@50"] < r["ndcg@100"]
        assert "code length" in r["protocol"]
        assert r["row"] is None or r["row"] in table_rows.EXTRA_VARIANTS


def test_default_profile_trains_no_comparison_and_reads_the_full_one(monkeypatch, tmp_path):
    monkeypatch.setenv("HASHREC_ROOT", str(tmp_path))
    assert comparison.COMPARISON["default"].datasets == () and comparison.COMPARISON["default"].source == "full"
    empty = comparison.comparison_stage("default")
    assert empty["table"].empty and empty["summary"] == {}


def test_compare_cli_refuses_unknown_rows_and_a_profile_without_its_own_table(capsys):
    from hashrec_utils.__main__ import main

    with pytest.raises(ValueError, match="--rows: not rows of the full comparison: nope"):
        main(["compare", "--profile", "full", "--rows", "signswish", "nope"])
    with pytest.raises(ValueError, match="the default profile trains no comparison"):
        main(["compare", "--profile", "default"])
    # a part without any hashrec-objective row is refused before anything trains (it has no best row)
    with pytest.raises(ValueError, match="rows hashgnn bgch_published: .* none is listed; add one, e.g. --rows signswish"):
        main(["compare", "--profile", "full", "--rows", "hashgnn", "bgch_published"])


def test_bits_figure_has_both_searches_labelled_axes_and_the_memory_axis():
    from hashrec_utils.plotting import plot_comparison_bits

    bits = pd.DataFrame([{"bits": b, "search": s, "recall@20": r, "recall@50": 2 * r}
                         for b, r in ((32, 0.1), (64, 0.12), (768, 0.15)) for s in ("hamming", "hierarchical")])
    fig = plot_comparison_bits(bits, {"recall@20": 0.2, "recall@50": 0.4})
    ax = fig.axes[0]
    assert ax.get_xlabel() == "code length K (bits)" and ax.get_ylabel() == "test recall@20"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["hamming search", "hierarchical search",
                                                                    "continuous (64-d float)"]
    top = [a for a in ax.child_axes if a.get_xlabel() == "code memory per item"]
    assert top and [t.get_text() for t in top[0].get_xticklabels()] == ["4 B", "8 B", "96 B"]
    # the best published recall@50 of the dataset, drawn on its panel only
    from hashrec_utils.experiments.comparison import _best_published

    best = _best_published("gowalla")
    assert best == {"recall@50": ("smooth recall + SignSwish (published, bits not stated)", 0.23082)}
    fig = plot_comparison_bits(bits, None, best)
    assert [t.get_text() for t in fig.axes[1].get_legend().get_texts()][-1] == "smooth recall + SignSwish (published, bits not stated)"
    assert fig.axes[0].get_legend().get_texts()[-1].get_text() == "hierarchical search"


def test_scaled_codes_are_ranked_with_their_scales_as_their_model_ranks_them(tmp_path):
    """BGCH / BiGeaR runs save item_scales: the comparison ranks by α_i ⟨b_u, b_i⟩ (the model's own
    evaluation, hashing.scaled_code_topk), not by plain Hamming distance."""
    from hashrec_utils.hashing import scaled_code_topk

    data = _toy_data()
    rng = np.random.default_rng(2)
    u, i = rng.normal(size=(data.n_users, 16)).astype(np.float32), rng.normal(size=(data.n_items, 16)).astype(np.float32)
    scales = rng.uniform(0.01, 3.0, size=data.n_items).astype(np.float32)
    np.savez(tmp_path / "embeddings.npz", user=u, item=i, user_codes=pack_codes(u), item_codes=pack_codes(i),
             item_scales=scales, user_scales=np.ones(data.n_users, np.float32))
    (tmp_path / "metrics.json").write_text("{}")
    got = comparison_metrics(tmp_path, data, (20, 50), 100)
    assert got["key"]["scoring"] == "scaled codes"
    ham, hier = scaled_code_topk(pack_codes(u), pack_codes(i), scales, 50, data.train_full, candidates=100, user_emb=u, item_emb=i)
    assert got["test"]["hamming"] == pytest.approx(evaluate_topk(ham, data.test, ks=(20, 50)))
    assert got["test"]["hierarchical"] == pytest.approx(evaluate_topk(hier, data.test, ks=(20, 50)))
    # the scales change the order here: plain Hamming would give other numbers
    from hashrec_utils.retrieval import hamming_topk

    plain = evaluate_topk(hamming_topk(pack_codes(u), pack_codes(i), 50, data.train_full), data.test, ks=(20, 50))
    assert plain != got["test"]["hamming"]


def test_the_bits_sweep_runs_the_tuned_settings_with_one_schedule_cap_for_every_length():
    from hashrec_utils.experiments.comparison import COMPARISON, sweep_point
    from hashrec_utils.experiments.rows import GridPoint

    tuned = GridPoint(1.0, 8.0, {"beta": 10.0})
    assert sweep_point(tuned, 2.0) == GridPoint(1.0, 2.0, {"beta": 10.0})  # only the length is capped
    assert sweep_point(tuned, None) == tuned and sweep_point(GridPoint(0.3, 1.0), 2.0) == GridPoint(0.3, 1.0)
    assert COMPARISON["full"].sweep_length_factor == 2.0 and COMPARISON["quick"].sweep_length_factor is None


def test_run_names_are_the_folders_the_runs_train_into(monkeypatch, tmp_path):
    """variant_run_name / hash_run_name / lightgcn_run_name name, without training, the folder each
    run function trains into, at the tuned winner, a given grid point and the untrained rows."""
    import hashrec_utils.training.runs as train
    from hashrec_utils.experiments.rows import GridPoint, variant_run, variant_run_name
    from hashrec_utils.experiments.runs import hash_run, hash_run_name, lightgcn_run, lightgcn_run_name

    monkeypatch.setenv("HASHREC_ROOT", str(tmp_path))
    monkeypatch.setattr(train, "run", lambda config, out, **kw: {"out": out})
    assert lightgcn_run("full", "gowalla", valid_fraction=0.1)[1].name == lightgcn_run_name("gowalla", valid_fraction=0.1)
    assert lightgcn_run("default", "ml-1m", n_layers=2)[1].name == lightgcn_run_name("ml-1m", n_layers=2)
    for label in ("signswish", "bgch_published", "luo_wu", "hashnet_pairwise", "hashgnn"):
        for point in (None, GridPoint(0.3, 2.0, {"beta": 5.0}, {"distill": 3.0})):
            for seed, bits in ((0, 64), (2, 128)):
                _, out = variant_run("full", label, seed=seed, bits=bits, dataset="gowalla", valid_fraction=0.1,
                                     point=point)
                assert out.name == variant_run_name("full", label, seed=seed, bits=bits, dataset="gowalla",
                                                    valid_fraction=0.1, point=point)
                assert out.parent == tmp_path / "runs" / "full"
    _, out = hash_run("full", "lsh", dataset="gowalla", valid_fraction=0.1)
    assert out.name == hash_run_name("lsh", dataset="gowalla", valid_fraction=0.1) == "hash_gowalla_v10_lightgcn_lsh_b64_s0"
    assert hash_run_name("sign", bits=64) == "hash_lightgcn_sign_b64_s0"


def _committed_copy(tmp_path, row: str, seed: int):
    """The full profile's committed comparison record under tmp_path, without the rows of ``row``'s
    run of ``seed``; returns (that run's name, the record's runs, its table, its summary)."""
    from hashrec_utils.config import repo_root

    src, dst = repo_root() / "results" / "full", tmp_path / "results" / "full"
    dst.mkdir(parents=True)
    for name in ("comparison_runs.csv", "comparison_bits.csv", "comparison_summary.json"):
        (dst / name).write_bytes((src / name).read_bytes())
    runs_csv = pd.read_csv(dst / "comparison_runs.csv")
    drop = runs_csv[(runs_csv.row == row) & (runs_csv.seed == seed)]["run"].iloc[0]
    runs_csv[runs_csv["run"] != drop].to_csv(dst / "comparison_runs.csv", index=False)
    summary = json.loads((src / "comparison_summary.json").read_text())["gowalla"]
    return drop, pd.read_csv(src / "comparison_runs.csv"), pd.read_csv(src / "comparison_table.csv"), summary


@pytest.mark.parametrize("refit_seeds", [None, (0,)])
def test_reuse_committed_trains_only_the_runs_the_record_lacks_and_keeps_its_numbers(monkeypatch, tmp_path, refit_seeds):
    """compare --reuse-committed on the real committed Gowalla record: with one run's rows taken out
    of it (and no run folder on disk), that run trains and every other is read from the record, so
    every row whose runs were all recorded keeps its committed mean and std to the last digit."""
    from hashrec_utils.experiments.committed import CommittedRuns

    drop, record, table, recorded = _committed_copy(tmp_path, "luo_wu", 1)
    monkeypatch.setenv("HASHREC_ROOT", str(tmp_path))
    trained = []

    def fake_variant(profile, label, *, seed=0, bits=64, dataset="ml-1m", valid_fraction=None, point=None, **kw):
        out = tmp_path / "runs" / profile / table_rows.variant_run_name(profile, label, seed=seed, bits=bits, dataset=dataset,
                                                                  valid_fraction=valid_fraction, point=point)
        trained.append(out.name)
        return {"train_seconds": 7.0}, out

    def refuse(*a, **kw):
        raise AssertionError("a recorded run was trained")

    fixed = {s: {"recall@20": .1, "ndcg@20": .1, "recall@50": .2, "ndcg@50": .15, "recall@100": .3, "ndcg@100": .2}
             for s in ("continuous", "hamming", "hierarchical")}
    def fake_refit(folder, init=None):
        from hashrec_utils.experiments.refit import refit_folder

        out = refit_folder(folder)
        trained.append(out.name)
        return {"train_seconds": 9.0}, out

    monkeypatch.setattr(comparison, "variant_run", fake_variant)
    monkeypatch.setattr(comparison, "refit_run", fake_refit)
    monkeypatch.setattr(comparison, "lightgcn_run", refuse)
    monkeypatch.setattr(comparison, "hash_run", refuse)
    monkeypatch.setattr(comparison, "comparison_metrics", lambda out, *a: {"test": fixed, "valid": fixed})
    import hashrec_utils.training.runs as train
    monkeypatch.setattr(train, "load_run_data", lambda config: _toy_data())

    lacking = CommittedRuns.read("full")  # the record before the stage writes its own
    stage = replace(comparison.COMPARISON["full"], refit_seeds=refit_seeds)
    out = comparison.comparison_stage("full", stage, reuse_committed=True)
    summary = out["summary"]["gowalla"]
    assert drop in trained
    assert all(lacking.rows("runs", "gowalla", name, label) is None
               for name in trained for label in comparison.COMPARISON["full"].rows)
    assert set(summary["reused_committed"]).isdisjoint(trained) and len(summary["reused_committed"]) > 20
    assert summary["train_seconds"][drop] == 7.0
    assert summary["lightgcn_train_seconds"] == recorded["lightgcn_train_seconds"] > 0  # the record's teacher
    new = out["table"][out["table"].protocol == "carve-out"].set_index(["row", "search"])
    # the best row and the teacher refit on all of train (the record holds no refit yet: both trained here)
    refit = out["runs"][out["runs"].protocol == "refit"]
    assert set(refit.row) == {"lightgcn (continuous)", summary["best_row"]} and refit.run.str.endswith("_refit").all()
    best_refits = refit[refit.row == summary["best_row"]]
    hamming = best_refits[best_refits.search == "hamming"]
    assert summary["refit"]["best_hamming_recall@50"] == pytest.approx(hamming["recall@50"].mean())
    # the refits the record holds are read from it (the teacher's and seed 0's), the others trained
    assert set(refit.run) - set(trained) <= set(summary["reused_committed"])
    assert "lightgcn_gowalla_L3_s0_v10_refit" in summary["reused_committed"]
    if refit_seeds is None:
        assert summary["refit"]["seeds"] == 3 and "seed" not in " ".join(summary["pending"]["refit"])
    else:  # the seeds left out are pending, by name
        assert summary["refit"]["seeds"] == 1 and set(best_refits.seed) == {0}
        assert {f"{summary['best_row']} seed 1", f"{summary['best_row']} seed 2"} <= set(summary["pending"]["refit"])
    retrained_rows = set(out["runs"][out["runs"].run.isin(trained)].row)
    assert "luo_wu" in retrained_rows
    for _, old in table[~table.row.isin(retrained_rows) & (table.get("protocol", "carve-out") != "refit")].iterrows():
        got = new.loc[(old["row"], old["search"])]
        for col in ("recall@50_mean", "recall@50_std", "ndcg@100_mean", "valid_recall@50_mean"):
            assert got[col] == old[col] or (np.isnan(got[col]) and np.isnan(old[col])), (old["row"], col)
    # the reused rows are the record's own, per seed
    kept = out["runs"][~out["runs"].run.isin(trained)].drop(columns="dataset")
    mine = record[record.run.isin(kept.run)].drop(columns="dataset")
    key = ["run", "row", "search"]
    pd.testing.assert_frame_equal(kept.sort_values(key).reset_index(drop=True)[mine.columns],
                                  mine.sort_values(key).reset_index(drop=True), check_dtype=False)


def test_the_committed_records_three_seed_rows_are_the_ones_validation_chooses(monkeypatch, tmp_path):
    """The full profile's top rows are chosen on the seed-0 validation numbers, not listed by hand:
    rebuilt from the whole committed record (nothing trains), the rows the rule picks are exactly
    those the record ran over every seed."""
    from hashrec_utils.config import repo_root

    _committed_copy(tmp_path, "luo_wu", 1)
    src = repo_root() / "results" / "full" / "comparison_runs.csv"
    (tmp_path / "results" / "full" / "comparison_runs.csv").write_bytes(src.read_bytes())  # the whole record
    monkeypatch.setenv("HASHREC_ROOT", str(tmp_path))

    def refuse(*a, **kw):
        raise AssertionError("a recorded run was trained")

    for name in ("variant_run", "lightgcn_run", "hash_run", "comparison_metrics"):
        monkeypatch.setattr(comparison, name, refuse)
    import hashrec_utils.training.runs as train
    monkeypatch.setattr(train, "load_run_data", lambda config: _toy_data())
    # the selection alone (the refits, read from the record where it holds them, are another test's)
    stage = replace(comparison.COMPARISON["full"], refit="none")
    out = comparison.comparison_stage("full", stage, reuse_committed=True)
    summary = out["summary"]["gowalla"]
    recorded = pd.read_csv(src)
    multi = set(recorded.groupby("row").seed.nunique().loc[lambda n: n > 1].index)
    assert set(summary["top_rows"]) == multi and summary["pending"]["top_rows_seeds"] == []
    assert {"luo_wu", "bgch_published", "hashgnn"} <= multi  # every published recipe
    assert "seed 0" in summary["top_rows_rule"]


def test_reuse_committed_without_a_record_says_which_file_is_missing(monkeypatch, tmp_path):
    from hashrec_utils.experiments.committed import CommittedRuns

    monkeypatch.setenv("HASHREC_ROOT", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"missing: .*results/full/comparison_runs.csv"):
        CommittedRuns.read("full")
    (tmp_path / "results" / "full").mkdir(parents=True)
    for name in ("comparison_runs.csv", "comparison_bits.csv"):
        (tmp_path / "results" / "full" / name).write_text("row,seed\nx,0\n")
    (tmp_path / "results" / "full" / "comparison_summary.json").write_text("{}")
    with pytest.raises(ValueError, match=r"comparison_runs.csv: no column dataset, run, search; not a comparison record"):
        CommittedRuns.read("full")


def test_a_recorded_run_is_reused_only_with_this_codes_identity(monkeypatch):
    """``checked_rows``: a record row whose identity is the planned run's passes; one written by
    another version of a component is refused naming it; one written before identities is refused
    unless HASHREC_ACCEPT_UNVERSIONED=1 adopts it (stamped with this code's identity)."""
    from hashrec_utils.experiments.committed import IDENTITY_COLUMNS, checked_rows, identity_cells
    from hashrec_utils.experiments.rows import variant_plan

    config, _ = variant_plan("full", "signswish", dataset="gowalla", valid_fraction=0.1)
    cells = identity_cells(config)
    assert "estimator.signswish=1" in cells["components"] and "search.hamming=1" in cells["components"]
    assert "init.encoder.lightgcn" not in cells["components"]  # the teacher's own row carries its identity
    row = {"row": "signswish", "recall@50": 0.2, **cells}
    assert checked_rows([row], config, "here") == [row]
    older = {**row, "components": cells["components"].replace("estimator.signswish=1", "estimator.signswish=0")}
    with pytest.raises(ValueError, match=r"here: recorded by other versions \(estimator.signswish 0 → 1\)"):
        checked_rows([older], config, "here")
    other_torch = {**row, "libraries": cells["libraries"].replace("torch=", "torch=1.")}
    with pytest.raises(ValueError, match="recorded by other versions \\(torch 1\\."):
        checked_rows([other_torch], config, "here")
    legacy = {k: v for k, v in row.items() if k not in IDENTITY_COLUMNS}
    monkeypatch.delenv("HASHREC_ACCEPT_UNVERSIONED", raising=False)
    with pytest.raises(ValueError, match="before recorded rows carried an identity.*HASHREC_ACCEPT_UNVERSIONED=1"):
        checked_rows([legacy], config, "here")
    monkeypatch.setenv("HASHREC_ACCEPT_UNVERSIONED", "1")
    assert checked_rows([legacy], config, "here") == [{**legacy, **cells}]


def test_asymmetric_rows_score_the_best_rows_runs_and_the_trained_row_every_seed(monkeypatch, tmp_path):
    """The comparison's asymmetric rows: each run's saved arrays scored by Hamming and asymmetric search
    (held to the plain float reference ``<user_query, b_i>``), a row per (label, search) with n seeds."""
    from hashrec_utils.experiments import asymmetric_rows as asym
    from hashrec_utils.retrieval import asymmetric_scores
    from hashrec_utils.training import runs as training_runs

    monkeypatch.setenv("HASHREC_ROOT", str(tmp_path))
    data = _toy_data()
    with pytest.raises(ValueError, match="best row"):
        asym.asymmetric_rows("full", "gowalla")
    (tmp_path / "results" / "full").mkdir(parents=True)
    (tmp_path / "results" / "full" / "comparison_summary.json").write_text(json.dumps({"gowalla": {"best_row": "signswish"}}))
    made = {}

    def fake_variant_run(profile, label, *, seed=0, dataset="ml-1m", valid_fraction=None, point=None, **kw):
        rng = np.random.default_rng(100 * seed + len(label))
        out = tmp_path / "runs" / f"{label}_s{seed}"
        out.mkdir(parents=True, exist_ok=True)
        q = rng.normal(size=(data.n_users, 64)).astype(np.float32)
        i = rng.normal(size=(data.n_items, 64)).astype(np.float32)
        np.savez(out / "embeddings.npz", user=q, item=i, user_codes=pack_codes(q), item_codes=pack_codes(i), user_query=q)
        (out / "metrics.json").write_text("{}")
        made[(label, seed)] = (q, pack_codes(i), point)
        return {}, out

    monkeypatch.setattr(asym, "variant_run", fake_variant_run)
    monkeypatch.setattr(asym, "tuned_point", lambda profile, label, dataset: "the best row's point")
    monkeypatch.setattr(training_runs, "load_run_data", lambda config: data)
    out = asym.asymmetric_rows("full", "gowalla", seeds=(0, 1))
    table = out["table"].set_index(["row", "search"])
    assert set(table.index) == {(r, s) for r in ("signswish", "signswish_asym") for s in ("hamming", "asymmetric")}
    assert (table["seeds"] == 2).all()
    # the trained row runs at the best row's tuned point; the best row at its own (None: its winner)
    assert made[("signswish_asym", 0)][2] == "the best row's point" and made[("signswish", 1)][2] is None
    # seed 0's asymmetric recall@50 against the float reference ranking, every train item excluded
    q, codes, _ = made[("signswish", 0)]
    s = asymmetric_scores(q, codes)
    s[data.train_full.toarray() > 0] = -np.inf
    ref = evaluate_topk(np.argsort(-s, axis=1, kind="stable")[:, :100], data.test, ks=(50,))["recall@50"]
    runs_ = out["runs"]
    got = runs_[(runs_.row == "signswish") & (runs_.search == "asymmetric") & (runs_.seed == 0)]
    assert got["recall@50"].iloc[0] == pytest.approx(ref, abs=0.02)  # the scan's 4-bit tables: near ties may swap
    assert (tmp_path / "results" / "full" / "comparison_asymmetric.csv").exists()


def test_own_budget_steps_missing_from_the_record_are_pending(monkeypatch, tmp_path):
    """BGCH and BiGeaR at their official budgets: a step is pending until published_budget.json holds
    its seed-0 run on that dataset (a record of another dataset holds none of this one's)."""
    from hashrec_utils.experiments.comparison import COMPARISON, own_budget_pending

    steps = COMPARISON["full"].own_budget_steps
    assert steps == ("bgch_own_budget", "bigear_own_budget")
    monkeypatch.setenv("HASHREC_ROOT", str(tmp_path))
    assert own_budget_pending("full", "gowalla", steps) == list(steps)  # no record at all
    folder = tmp_path / "results" / "full"
    folder.mkdir(parents=True)
    record = {"dataset": "gowalla", "variants": {"bgch_own_budget_s0": {"bits": 768}, "bigear_layers_s0": {"bits": 192}}}
    (folder / "published_budget.json").write_text(json.dumps(record))
    assert own_budget_pending("full", "gowalla", steps) == ["bigear_own_budget"]
    assert own_budget_pending("full", "yelp2018", steps) == list(steps)
