"""Settings derived from the data's size (hashrec_utils.settings): batches, pools, schedules, budget."""
from __future__ import annotations

import pytest

from hashrec_utils.settings import (MIN_POOL, SCHEDULES, DataShape, HashSettings, LightGCNSettings, batch_for_steps,
                                    distinct_users, memory_budget_bytes, parse_bytes, pool_size, score_bytes)
from hashrec_utils.settings import train_config

GiB = 1 << 30
ML1M = DataShape(6040, 3706, 717_000)        # default split: 80/20, 10 % of train as valid
GOWALLA = DataShape(29858, 40981, 810_128)   # published split, no valid
SYNTH_60K = DataShape(60_000, 60_000, 300_000)
SMALL = DataShape(5_500, 17_000, 100_000)


def test_batch_is_the_power_of_two_nearest_the_target_steps():
    assert batch_for_steps(717_000, 22) == 32768 and batch_for_steps(810_128, 22) == 32768
    assert batch_for_steps(717_000, 11) == 65536
    assert batch_for_steps(3 * 2**14, 1) == 65536            # log2(49,152) = 15.58 rounds up
    assert batch_for_steps(1000, 22) == 1024 and batch_for_steps(10**9, 1) == 65536  # clipped
    with pytest.raises(ValueError, match="need n_train > 0 and steps > 0; got 0, 22"):
        batch_for_steps(0, 22)


def test_todays_ml1m_and_gowalla_batches_are_kept():
    assert LightGCNSettings.of("default", ML1M).batch_size == 32768
    assert LightGCNSettings.of("full", GOWALLA, published=True).batch_size == 32768
    assert LightGCNSettings.of("full", ML1M).batch_size == 4096
    assert HashSettings.of("default", ML1M, budget_bytes=6 * GiB).batch_size == 65536
    assert HashSettings.of("full", GOWALLA, budget_bytes=6 * GiB).batch_size == 65536
    # from published counts, as train_config resolves them without loading the data
    assert train_config("default", "ml-1m").batch_size == 32768 and train_config("full", "gowalla").batch_size == 32768
    assert train_config("quick").batch_size == 4096 and train_config("full", "ml-1m").batch_size == 4096
    full = train_config("full", "gowalla")
    assert (full.lr, full.epochs, full.lr_schedule, full.valid_fraction) == (0.01, 450, "cosine", 0.0)


def test_distinct_users_of_a_batch_by_hand():
    # 10 users of degree 10, a batch of half the pairs: 10 · (1 − 0.5^10) = 9.99 → 10
    assert distinct_users(DataShape(10, 50, 100), 50) == 10
    # degree 1: every pair a new user, so U_b = batch
    assert distinct_users(DataShape(1000, 50, 1000), 64) == 64
    # 4 users of degree 2, batch 2 of 8: 4 · (1 − 0.75²) = 1.75 → 2
    assert distinct_users(DataShape(4, 5, 8), 2) == 2


def test_schedules_are_fractions_of_training_whatever_the_size():
    assert SCHEDULES == {"guided_ste": {"p0": 1.0, "decay": 0.95, "stages": 50},
                         "hashnet": {"beta0": 1.0, "beta_end": 10.0},
                         "gumbel": {"tau0": 1.0, "tau_min": 0.05, "decay": 0.9, "stages": 20}}
    for name in ("guided_ste", "hashnet", "gumbel", "ste"):
        small = HashSettings.of("quick", DataShape(600, 3000, 70_000), budget_bytes=GiB).schedule(name)
        large = HashSettings.of("full", SYNTH_60K, budget_bytes=6 * GiB).schedule(name)
        assert small == large == SCHEDULES.get(name, {})
    assert not any("every" in p or "gamma" in p for p in SCHEDULES.values())  # no iteration counts left


def test_small_catalogue_takes_all_items_large_one_a_bounded_pool():
    assert pool_size(ML1M, 65536, 6 * GiB) == 0
    # ml-1m all items: 6,040 × 3,706 × 4 B × 2 matrices + the teacher 6,040 × 3,706 × 4 B × 4 = 537 MB
    assert score_bytes(ML1M, 65536, 0) == 6040 * 3706 * 4 * 6
    # below that: pooled, 6,040 × M × 4 B × 10 matrices; M = 2,048 needs 495 MB, M = 4,096 ≥ n_items
    assert pool_size(ML1M, 65536, 400 * 2**20) == 1024 and pool_size(ML1M, 65536, 500 * 2**20) == 2048
    # Gowalla: 26,831 distinct users × 8,192 ≤ 2^28 scores; 16,384 would exceed the score cap
    users = distinct_users(GOWALLA, 65536)
    assert users == 26831  # 29,858 · (1 − (1 − 65,536 / 810,128)^(810,128 / 29,858))
    assert pool_size(GOWALLA, 65536, 64 * GiB) == 8192
    assert pool_size(GOWALLA, 65536, 64 * GiB, max_scores=None) == 0   # no cap, room: all items
    # the largest power of two that fits: 26,831 × M × 4 B × 10 ≤ 4 GiB → M ≤ 4,002 → 2,048
    assert pool_size(GOWALLA, 65536, 4 * GiB) == 2048 and pool_size(GOWALLA, 65536, 2 * GiB) == 1024
    assert pool_size(GOWALLA, 65536, 1) == MIN_POOL               # nothing fits: the smallest pool (check refuses)
    assert pool_size(DataShape(100, 900, 1000), 512, 1) == 0      # a catalogue smaller than any pool


def test_the_oom_killed_shape_and_a_60k_catalogue_are_pooled_under_6_gib():
    for shape in (DataShape(52_000, 57_000, 285_000), SYNTH_60K):
        chosen = HashSettings.of("default", shape, budget_bytes=6 * GiB)
        assert chosen.pooled and MIN_POOL <= chosen.n_negatives < shape.n_items
        assert score_bytes(shape, chosen.batch_size, chosen.n_negatives) <= 6 * GiB
        assert score_bytes(shape, chosen.batch_size, 0) > 6 * GiB  # the all-items path (teacher cache) would not fit
    assert HashSettings.of("default", SYNTH_60K, budget_bytes=6 * GiB) == HashSettings(32768, 4096)
    assert HashSettings.of("default", SMALL, budget_bytes=6 * GiB) == HashSettings(8192, 0)


def test_memory_budget_from_the_environment(monkeypatch):
    monkeypatch.setenv("HASHREC_MEMORY_BUDGET", "6GiB")
    assert memory_budget_bytes() == 6 * GiB
    monkeypatch.setenv("HASHREC_MEMORY_BUDGET", "1500000")
    assert memory_budget_bytes() == 1_500_000
    assert parse_bytes("512MB") == 512 * 10**6 and parse_bytes("0.5 GiB") == GiB // 2
    monkeypatch.setenv("HASHREC_MEMORY_BUDGET", "lots")
    with pytest.raises(ValueError, match="HASHREC_MEMORY_BUDGET must be a positive number of bytes.*got 'lots'"):
        memory_budget_bytes()
    monkeypatch.delenv("HASHREC_MEMORY_BUDGET")
    half = memory_budget_bytes()
    assert 0 < half and memory_budget_bytes(0.25) <= half


def test_shape_rejects_nonsense():
    with pytest.raises(ValueError, match="DataShape.n_items must be a positive int; got 0"):
        DataShape(5, 0, 10)


def test_derived_hash_settings_fit_the_budget_the_guard_checks(capsys):
    """Issue 32, item 6: a 52,204 x 57,289 catalogue (the public dataset a new user tried) on an 8 GiB-class
    budget. Sizing the pool from the score matrices alone chose 8,192 items, which check_memory (embeddings,
    data and evaluation added) refused at 9.06 GiB; the derived settings now fit the guard's own estimate,
    and the log names the batch and pool the budget chose."""
    from hashrec_utils.memory import check_memory, estimate_peak_bytes
    from hashrec_utils.training import TrainConfig

    shape, budget = DataShape(52_204, 57_289, 280_000), int(7.86 * GiB)

    def config(chosen):
        hp = {"objective": "softmax", "n_negatives": chosen.n_negatives, "cont_weight": 0.0, "continuous": "init",
              "distill": 1.0, "init": "lgcn"}
        return TrainConfig(dataset="synthetic", hash_method="signswish", batch_size=chosen.batch_size, hash_params=hp)

    old_pool = pool_size(shape, 32768, budget)
    assert old_pool == 8192  # what the score matrices alone allowed
    assert estimate_peak_bytes(config(HashSettings(32768, old_pool)), shape)["total"] > budget  # refused before
    chosen = HashSettings.of("default", shape, budget_bytes=budget)
    assert (chosen.batch_size, chosen.n_negatives) == (32768, 4096)
    assert check_memory(config(chosen), shape, budget=budget)["total"] <= budget
    err = capsys.readouterr().err
    assert "batch_size 32,768 and pool 4,096 items chosen to fit the memory budget 7.86 GiB" in err
    # a small budget: the pool cannot shrink below 1,024, so the batch halves until it fits
    small = HashSettings.of("default", shape, budget_bytes=2 * GiB)
    assert small.n_negatives == MIN_POOL and small.batch_size < 32768
    assert check_memory(config(small), shape, budget=2 * GiB)["total"] <= 2 * GiB
    assert f"batch_size {small.batch_size:,} and pool 1,024 items" in capsys.readouterr().err


def test_settings_that_fit_are_unchanged_and_say_nothing(capsys):
    """Runs the guard accepted keep their settings (and so their numbers): no note, no log line."""
    for shape, profile in ((ML1M, "default"), (GOWALLA, "full"), (SYNTH_60K, "default")):
        chosen = HashSettings.of(profile, shape, budget_bytes=6 * GiB)
        batch = batch_for_steps(shape.n_train, 11)
        assert (chosen.batch_size, chosen.n_negatives) == (batch, pool_size(shape, batch, 6 * GiB))
        assert chosen.note == ""
    assert capsys.readouterr().err == ""
