"""The study's wiring (hashrec_utils.experiments): one protocol for every run, selection on validation, scaling rows, sweep families."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hashrec_utils.experiments import (HASH_STAGE, SAMPLED_POOL, SAMPLED_POOL_EPOCHS, SCALING_LARGE, best_estimator, hash_overrides,
                                       hash_run, retrieval_sweeps, scaling_table, summarize, variant_run, write_table)


@pytest.mark.parametrize("profile", ["quick", "default"])
def test_every_hash_run_follows_one_protocol(profile, monkeypatch, tmp_path):
    """Every table row, variant, fixed-p run and sweep validates every ``stage.eval_every`` epochs and
    keeps by ``stage.keep``, whatever its estimator; stale folders are retrained (``retrain=True``)."""
    import hashrec_utils.training.runs as train_module

    monkeypatch.setenv("HASHREC_ROOT", str(tmp_path))
    calls = []
    monkeypatch.setattr(train_module, "run", lambda config, out, **kw: calls.append({"config": config, **kw}) or {})
    stage = HASH_STAGE[profile]
    for method in (*stage.estimators, "guided_ste_sp"):
        variant_run(profile, method)
    hash_run(profile, "guided_ste", tag="fixedp", estimator={"p0": 0.5, "decay": 1.0})
    hash_run(profile, "guided_ste", tag="lam0.5", epochs=stage.sweep_epochs, objective="hashgnn", distill=0.0)
    variant_run(profile, "hashgnn")
    hashed = [c["config"] for c in calls if c["config"].hash_method]
    assert len(hashed) == len(stage.estimators) + 4
    assert {(c.eval_every, c.keep) for c in hashed} == {(stage.eval_every, stage.keep)}
    assert all(c["retrain"] for c in calls)
    assert any(c["config"].model == "lightgcn" and not c["config"].hash_method for c in calls)
    # an explicit period still wins
    hash_run(profile, "signswish", epochs=3, eval_every=1)
    assert (calls[-1]["config"].epochs, calls[-1]["config"].eval_every) == (3, 1)
    # lsh / sign train nothing: codes of the profile's LightGCN run
    hash_run(profile, "lsh", bits=32)
    assert calls[-1]["config"].epochs == 0 and calls[-1]["config"].hash_params["init"].endswith("lightgcn_ml-1m_L3_s0")


def test_best_estimator_reads_validation_not_test():
    table = pd.DataFrame({
        "estimator": ["ste", "ste", "hashnet", "hashnet", "lsh", "lightgcn (continuous)"],
        "search": ["hamming", "hierarchical", "hamming", "hierarchical", "hamming", "continuous"],
        "recall@20_mean": [0.30, 0.5, 0.20, 0.4, 0.9, 0.9],        # test says ste
        "valid_recall@20_mean": [0.10, 0.9, 0.15, 0.1, 0.9, 0.9],  # validation says hashnet (hamming rows only)
    })
    assert best_estimator(table) == "hashnet"
    # scaled codes (BGCH: α_i ⟨b_u, b_i⟩) are scored in the table but popcount indexes cannot serve them
    scaled = pd.concat([table, pd.DataFrame({"estimator": ["bgch"], "search": ["hamming"], "recall@20_mean": [0.5],
                                             "valid_recall@20_mean": [0.5]})], ignore_index=True)
    assert best_estimator(scaled) == "hashnet"
    # no validation numbers (no valid split): one clear error, not a silent test-based choice
    with pytest.raises(ValueError, match="best_estimator needs validation numbers"):
        best_estimator(table.assign(**{"valid_recall@20_mean": float("nan")}))
    with pytest.raises(ValueError, match="best_estimator needs validation numbers"):
        best_estimator(table.drop(columns="valid_recall@20_mean"))


def test_summarize_keeps_a_missing_mean_missing():
    frame = pd.DataFrame({"g": ["a", "a", "b"], "x": [1.0, 3.0, 2.0], "v": [float("nan")] * 3})
    out = summarize(frame, ["g"], ("x", "v"))
    assert out["x_mean"].tolist() == [2.0, 2.0] and out["x_std"].iloc[0] == pytest.approx(2 ** 0.5)
    assert np.isnan(out["x_std"].iloc[1])  # one seed: no spread, not "± 0"
    assert out["v_mean"].isna().all() and out["v_std"].isna().all() and out["seeds"].tolist() == [2, 1]


def test_table_runs_distil_and_large_catalogues_sample_a_pool():
    over = hash_overrides("default", "signswish", init="lgcn")["hash_params"]
    assert (over["objective"], over["n_negatives"], over["distill"], over["continuous"]) == ("softmax", 0, 1.0, "init")
    # gowalla (full): a sampled pool, SAMPLED_POOL_EPOCHS, distillation too; the sweeps can switch it off.
    # With no memory limit the pool is the one the score cap alone allows (SAMPLED_POOL); a budget
    # (here the 8 GiB a third of a 24 GiB machine gives) halves it rather than exceed it.
    over = hash_overrides("full", "signswish", dataset="gowalla", init="lgcn", budget_bytes=float("inf"))
    assert over["epochs"] == SAMPLED_POOL_EPOCHS and over["hash_params"]["n_negatives"] == SAMPLED_POOL["gowalla"]
    tight = hash_overrides("full", "signswish", dataset="gowalla", init="lgcn", budget_bytes=8 * 2**30)
    assert tight["hash_params"]["n_negatives"] == SAMPLED_POOL["gowalla"] // 2
    assert hash_overrides("full", "signswish", init="lgcn")["epochs"] == HASH_STAGE["full"].epochs  # ml-1m
    assert hash_overrides("default", "guided_ste", init="lgcn", objective="hashgnn", distill=0.0)["hash_params"]["distill"] == 0.0


def test_scaling_table_adds_only_the_benchmarks_larger_sizes(tmp_path, monkeypatch):
    monkeypatch.setenv("HASHREC_ROOT", str(tmp_path))
    measured = pd.DataFrame({"method": ["hamming", "flat_ip"], "items": [10**4, 10**4], "qps": [5.0, 1.0]})
    # no benchmark file: the notebook's rows alone
    alone = scaling_table("quick", measured)
    assert list(alone["source"]) == ["notebook 04"] * 2 and len(alone) == 2
    large = pd.DataFrame({"method": ["hamming", "hamming", "flat_ip"], "items": [10**4, 10**7, 10**7], "qps": [9.0, 0.5, 0.1]})
    write_table(large, SCALING_LARGE, "quick")
    table = scaling_table("quick", measured)
    assert len(table) == 4
    # the notebook's own 10^4 rows win over the benchmark's
    assert table[table["items"] == 10**4]["qps"].tolist() == [5.0, 1.0]
    big = table[table["items"] == 10**7]
    assert big["method"].tolist() == ["hamming", "flat_ip"] and set(big["source"]) == {"benchmarks/bench_scaling.py"}


def test_retrieval_sweeps_rejects_unknown_families():
    with pytest.raises(ValueError, match="non-empty subset"):
        retrieval_sweeps("quick", None, families=("float", "graph"))
    with pytest.raises(ValueError, match="non-empty subset"):
        retrieval_sweeps("quick", None, families=())


def test_every_row_is_a_value_whose_run_resolves_without_training(monkeypatch, tmp_path):
    """Every table row says its family and whether popcount serves it (from its recipe, not its
    label), and its run's config and folder resolve without training anything (its teacher named,
    not trained)."""
    from hashrec_utils.experiments.rows import ROWS, table_row, variant_plan

    monkeypatch.setenv("HASHREC_ROOT", str(tmp_path))
    families = {}
    for label, row in ROWS.items():
        families.setdefault(row.family, set()).add(label)
        searchable = row.popcount_searchable
        assert searchable == (row.family not in ("untrained", "continuous") and row.method not in ("bgch", "bigear"))
        if row.family in ("untrained", "continuous"):
            continue
        config, out = variant_plan("default", label)
        assert config.hash_method == row.method and config.model == row.model and not out.exists()
        assert "end_to_end" not in config.hash_params
    assert families["as published"] == {"hashgnn", "hashgnn_nr", "luo_wu", "bgch_published"}
    assert families["pairwise objective"] == {f"{e}_pairwise" for e in ("ste", "guided_ste", "hashnet", "gumbel")}
    assert not (tmp_path / "runs").exists()  # nothing trained, no folder made
    with pytest.raises(ValueError, match="unknown table row 'nope'"):
        table_row("nope")


def test_top_rows_are_the_best_popcount_rows_on_validation_at_seed_0():
    from hashrec_utils.experiments.stages import top_rows

    valid = {"ste": 0.20, "bgch": 0.30, "signswish": 0.21, "guided_ste": 0.19, "hashnet": 0.18, "luo_wu": 0.22}
    rows = [{"estimator": e, "seed": 0, "search": "hamming", "valid_recall@20": v} for e, v in valid.items()]
    rows += [{"estimator": "hashnet", "seed": 1, "search": "hamming", "valid_recall@20": 0.9},  # not seed 0
             {"estimator": "gumbel", "seed": 0, "search": "hierarchical", "valid_recall@20": 0.9},  # not Hamming
             {"estimator": "lsh", "seed": 0, "search": "hamming", "valid_recall@20": 0.9}]  # untrained
    # BGCH's scaled codes are no popcount row; luo_wu (as published) is a trained popcount row
    assert top_rows("default", rows) == ["luo_wu", "signswish", "ste"]
    assert top_rows("quick", rows) == []  # quick runs no extra seeds
    assert HASH_STAGE["default"].top_seeds == (0, 1, 2) and HASH_STAGE["default"].seeds == (0,)


def test_a_pipeline_seed_starts_from_the_teacher_of_that_seed():
    from hashrec_utils.experiments import hash_plan

    config, out = hash_plan("default", "signswish", seed=2, teacher_seed=2)
    assert out.name == "hash_lightgcn_signswish_b64_s2_t2"
    assert Path(config.hash_params["init"]).name == "lightgcn_ml-1m_L3_s2"
    config0, out0 = hash_plan("default", "signswish", seed=2)
    assert out0.name == "hash_lightgcn_signswish_b64_s2" and Path(config0.hash_params["init"]).name == "lightgcn_ml-1m_L3_s0"
