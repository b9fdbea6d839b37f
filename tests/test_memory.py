"""Peak-memory estimates and the check that refuses a run before any work (hashrec_utils.memory)."""
from __future__ import annotations

import pytest

from hashrec_utils.data import load_dataset, write_lightgcn_file
from hashrec_utils.memory import BASELINE_BYTES, EVAL_BLOCK_BYTES, MemoryBudgetError, check_memory, estimate_peak_bytes
from hashrec_utils.settings import DataShape, HashSettings
from hashrec_utils.settings import train_config
from hashrec_utils.training import TrainConfig, run

GiB = 1 << 30


def hash_config(batch: int, pool: int, **params) -> TrainConfig:
    hp = {"objective": "softmax", "n_negatives": pool, "cont_weight": 0.0, "continuous": "init", "distill": 1.0,
          "init": "lgcn", **params}
    return TrainConfig(dataset="synthetic", hash_method="signswish", batch_size=batch, dim=64, hash_params=hp)


def test_estimate_breakdown_by_hand():
    shape = DataShape(1000, 500, 20_000)
    est = estimate_peak_bytes(hash_config(4096, 0), shape)
    # 4,096 pairs of users of degree 20: 1000 · (1 − (1 − 4096/20000)^20) = 989.9 → 990 distinct users
    assert est["distinct_users"] == 990
    assert est["scores"] == 990 * 500 * 4 * 2             # the fused all-items softmax: 2 matrices
    assert est["teacher"] == 1000 * 500 * 4 * 4            # the frozen teacher's softmax, built once
    assert est["embeddings"] == 1500 * 64 * 4 * 5          # table, gradient, Adam × 2, initial copy
    assert est["data"] == 20_000 * 48 + 40_000 * 40
    assert est["evaluation"] == min(EVAL_BLOCK_BYTES, 3 * 1000 * 500 * 4) and est["baseline"] == BASELINE_BYTES
    assert est["total"] == sum(est[k] for k in ("baseline", "data", "embeddings", "scores", "teacher", "evaluation"))
    pooled = estimate_peak_bytes(hash_config(4096, 128), shape)
    assert pooled["teacher"] == 0 and pooled["scores"] == 990 * 128 * 4 * 10  # teacher scored on the pool
    # LightGCN end to end: 4 + 2 (L + 1) copies of the embeddings, no score matrix beyond the batch
    plain = estimate_peak_bytes(TrainConfig(batch_size=2048, dim=64, n_layers=3), shape)
    assert plain["embeddings"] == 1500 * 64 * 4 * 12 and plain["teacher"] == 0


def test_check_memory_passes_what_fits_and_refuses_what_cannot_with_the_smallest_pool():
    shape = DataShape(60_000, 60_000, 300_000)
    chosen = HashSettings.of("default", shape, budget_bytes=6 * GiB)
    assert check_memory(hash_config(chosen.batch_size, chosen.n_negatives), shape, budget=6 * GiB)["total"] <= 6 * GiB
    # all items on this catalogue: the teacher cache alone is 60 k × 60 k × 16 B = 57.6 GB
    with pytest.raises(MemoryBudgetError, match=r"estimated peak memory 6\d\.\d\d GiB .*teacher 53\.64 GiB.* exceeds "
                       r"the memory budget 6\.00 GiB; change --set batch_size=N below 32768 .*hash_params n_negatives "
                       r"\(now 0 = all items.*HASHREC_MEMORY_BUDGET"):
        check_memory(hash_config(chosen.batch_size, 0), shape, budget=6 * GiB)
    # even the smallest pool cannot fit 200 MiB: refused, not OOM-killed
    smallest = HashSettings.of("default", shape, budget_bytes=200 << 20)
    assert smallest.n_negatives == 1024
    with pytest.raises(MemoryError, match=r"exceeds the memory budget 200 MiB.*n_negatives \(now 1024; at least 1024\)"):
        check_memory(hash_config(smallest.batch_size, smallest.n_negatives), shape, budget=200 << 20)


def test_a_refused_run_writes_nothing(tmp_path, monkeypatch):
    d = load_dataset("synthetic", n_users=300, n_items=200, n_interactions=6000, seed=0, valid_fraction=0.0)
    folder = tmp_path / "syn"
    folder.mkdir()
    write_lightgcn_file(folder / "train.txt", d.train, d.user_ids, d.item_ids)
    write_lightgcn_file(folder / "test.txt", d.test, d.user_ids, d.item_ids)
    monkeypatch.setenv("HASHREC_MEMORY_BUDGET", "100MiB")  # below the interpreter's own baseline
    with pytest.raises(MemoryBudgetError, match="exceeds the memory budget 100 MiB"):
        run(train_config("quick", str(folder), epochs=1), tmp_path / "r", progress=False)
    assert not (tmp_path / "r").exists()  # no half-written folder, not even config.json


def test_budget_is_fixed_per_machine_but_a_busy_machine_refuses(monkeypatch):
    import hashrec_utils.memory as memory
    import hashrec_utils.settings as settings

    monkeypatch.delenv("HASHREC_MEMORY_BUDGET", raising=False)
    monkeypatch.setattr(settings, "total_bytes", lambda: 24 * GiB)
    monkeypatch.setattr(settings, "available_bytes", lambda: 1 * GiB)  # busy now: does not change the plan
    assert settings.memory_budget_bytes() == 8 * GiB
    shape = DataShape(6040, 3706, 717_000)
    config = hash_config(65536, 0)
    est = estimate_peak_bytes(config, shape)["total"]
    assert GiB < est < 12 * GiB
    monkeypatch.setattr(memory, "memory_budget_bytes", lambda: 12 * GiB)
    monkeypatch.setattr(memory, "available_bytes", lambda: 1 * GiB)
    with pytest.raises(MemoryBudgetError, match=r"fits the budget 12\.00 GiB but only 1\.00 GiB is available now"):
        check_memory(config, shape)
    monkeypatch.setattr(memory, "available_bytes", lambda: 20 * GiB)
    assert check_memory(config, shape)["total"] == est


def test_layers_side_by_side_count_their_concatenation_and_bigears_teacher_lists():
    shape = DataShape(1000, 500, 20_000)
    bgch = dict(hash_method="bgch", bits=192, batch_size=2048, dim=64, n_layers=2,
                hash_params={"objective": "bgch", "hash_layer": "fixed_nobias", "n_negatives": 1})
    one = estimate_peak_bytes(TrainConfig(model="lightgcn", **bgch), shape)
    side = estimate_peak_bytes(TrainConfig(model="lightgcn_layers", **bgch), shape)
    # 4 + 2 (L + 1) copies of the table, plus the (N, 3 · 64) concatenation and its gradient
    assert one["embeddings"] == 1500 * 64 * 4 * 10
    assert side["embeddings"] == 1500 * 64 * 4 * 10 + 1500 * 64 * 3 * 4 * 2
    assert side["scores"] == 2048 * (64 * 3 + 192) * 4 * 8 and one["scores"] == 2048 * (64 + 192) * 4 * 8
    bigear = estimate_peak_bytes(TrainConfig(model="lightgcn_layers_weighted", hash_method="bigear", bits=192,
                                             batch_size=2048, dim=64, n_layers=2,
                                             hash_params={"objective": "bigear", "hash_layer": "identity",
                                                          "warm_start": "teacher"}), shape)
    assert bigear["teacher"] == 1000 * 3 * 100 * 8  # the teacher's top 100 items a user on each of 3 layers
