"""The study's wiring (hashrec_utils.experiments): which runs validate when, scaling rows, sweep families."""
from __future__ import annotations

import pandas as pd
import pytest

from hashrec_utils.experiments import (HASH_STAGE, SAMPLED_POOL, SAMPLED_POOL_EPOCHS, SCALING_LARGE, hash_overrides, retrieval_sweeps,
                                       scaling_table, write_table)


@pytest.mark.parametrize("profile", ["quick", "default"])
def test_only_the_plotted_estimators_validate_during_training(profile):
    stage = HASH_STAGE[profile]
    # ste / guided STE (and its two-stage form) feed the curves: validated every stage.eval_every epochs
    for method in ("ste", "guided_ste"):
        assert hash_overrides(profile, method, init="lgcn")["eval_every"] == stage.eval_every
    # every other run validates once, after its last epoch
    for method in ("signswish", "bgch", "hashnet", "gumbel"):
        over = hash_overrides(profile, method, init="lgcn")
        assert over["eval_every"] == over["epochs"] == stage.epochs
    over = hash_overrides(profile, "guided_ste", model="hashgnn")
    assert over["eval_every"] == over["epochs"] == stage.hashgnn_epochs
    # an explicit period wins; the table runs keep their init and objective
    over = hash_overrides(profile, "signswish", init="lgcn", epochs=3, eval_every=1)
    assert (over["epochs"], over["eval_every"]) == (3, 1)
    assert over["hash_params"]["init"] == "lgcn" and over["hash_params"]["objective"] == "softmax"


def test_table_runs_distil_and_large_catalogues_sample_a_pool():
    over = hash_overrides("default", "signswish", init="lgcn")["hash_params"]
    assert (over["objective"], over["n_negatives"], over["distill"], over["continuous"]) == ("softmax", 0, 1.0, "init")
    # gowalla (full): a sampled pool, SAMPLED_POOL_EPOCHS, distillation too; the sweeps can switch it off
    over = hash_overrides("full", "signswish", dataset="gowalla", init="lgcn")
    assert over["epochs"] == SAMPLED_POOL_EPOCHS and over["hash_params"]["n_negatives"] == SAMPLED_POOL["gowalla"]
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
