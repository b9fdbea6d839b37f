"""Training: negatives, determinism, kill -9 and resume, the run folder contract."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hashrec_utils.data import load_dataset
from hashrec_utils.metrics import hit_matrix
from hashrec_utils.train import NegativeSampler, TrainConfig, run, train_config

SMALL = {"epochs": 6, "eval_every": 2, "batch_size": 512, "lr": 0.01, "patience": 0, "dim": 16}


def synthetic_folder(tmp_path: Path) -> Path:
    """A small power-law dataset written as LightGCN split files (a user's own folder)."""
    d = load_dataset("synthetic", n_users=300, n_items=200, n_interactions=6000, seed=0, valid_fraction=0.0)
    folder = tmp_path / "syn"
    folder.mkdir()
    from hashrec_utils.data import write_lightgcn_file

    write_lightgcn_file(folder / "train.txt", d.train, d.user_ids, d.item_ids)
    write_lightgcn_file(folder / "test.txt", d.test, d.user_ids, d.item_ids)
    return folder


def test_negative_sampler_avoids_train_items_on_ml1m(ml1m):
    sampler = NegativeSampler(ml1m.train)
    coo = ml1m.train.tocoo()
    users = coo.row.astype(np.int64)
    neg = sampler.sample(users, np.random.default_rng(0))
    assert neg.shape == users.shape and neg.min() >= 0 and neg.max() < ml1m.n_items
    assert not hit_matrix(neg[:, None], ml1m.train, users=users).any()
    # uniform over the admissible items: no item is drawn far more often than chance
    counts = np.bincount(neg, minlength=ml1m.n_items)
    assert counts.max() < 3 * len(neg) / ml1m.n_items


def test_negative_sampler_rejects_a_user_with_every_item():
    import scipy.sparse as sp

    with pytest.raises(ValueError, match="user 1 has trained on every item"):
        NegativeSampler(sp.csr_matrix(np.array([[1, 0], [1, 1]], dtype=np.float32)))


def test_train_config_profiles_and_errors():
    assert train_config("quick").max_users == 600
    full_gowalla = train_config("full", "gowalla")
    assert full_gowalla.valid_fraction == 0.0 and full_gowalla.patience == 0
    assert train_config("default", lr=0.5).lr == 0.5
    with pytest.raises(ValueError, match="unknown TrainConfig field.*learning_rate"):
        train_config("default", learning_rate=0.1)
    with pytest.raises(ValueError, match="profile must be one of quick, default, full"):
        train_config("huge")


def test_same_seed_same_numbers_and_run_folder(tmp_path):
    folder = synthetic_folder(tmp_path)
    a = run(str(folder), profile="quick", seed=3, out=tmp_path / "a", overrides=SMALL, progress=False)
    b = run(str(folder), profile="quick", seed=3, out=tmp_path / "b", overrides=SMALL, progress=False)
    c = run(str(folder), profile="quick", seed=4, out=tmp_path / "c", overrides=SMALL, progress=False)
    keys = [k for k in a if "@" in k]
    assert {k: a[k] for k in keys} == {k: b[k] for k in keys}
    assert {k: a[k] for k in keys} != {k: c[k] for k in keys}
    out = tmp_path / "a"
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt", "config.json", "embeddings.npz", "history.csv", "metrics.json"]
    history = pd.read_csv(out / "history.csv")
    assert {"epoch", "loss", "valid_recall@20", "seconds"} <= set(history.columns)
    assert history["epoch"].tolist() == list(range(1, 7))
    assert history["valid_recall@20"].notna().sum() == 3
    emb = np.load(out / "embeddings.npz")
    assert emb["user"].shape == (300, 16) and emb["user"].dtype == np.float32
    assert {f"{m}@{k}" for m in ("recall", "ndcg", "precision", "hit") for k in (10, 20, 50)} <= set(a)
    assert a["recall@20"] > 0.05  # learned something beyond chance on a power-law set


def test_complete_run_is_not_redone_and_other_config_refused(tmp_path, capsys):
    folder = synthetic_folder(tmp_path)
    first = run(str(folder), profile="quick", out=tmp_path / "r", overrides=SMALL, progress=False)
    mtime = (tmp_path / "r" / "metrics.json").stat().st_mtime_ns
    again = run(str(folder), profile="quick", out=tmp_path / "r", overrides=SMALL, progress=True)
    assert again == first and (tmp_path / "r" / "metrics.json").stat().st_mtime_ns == mtime
    assert "run complete" in capsys.readouterr().out
    with pytest.raises(ValueError, match="holds a different run .*lr"):
        run(str(folder), profile="quick", out=tmp_path / "r", overrides={**SMALL, "lr": 0.1}, progress=False)


def test_kill_9_then_resume_ends_with_the_uninterrupted_metrics(tmp_path):
    folder = synthetic_folder(tmp_path)
    args = [sys.executable, "-m", "hashrec_utils", "train", "--dataset", str(folder), "--profile", "quick",
            "--seed", "1"] + [f"--set={k}={json.dumps(v)}" for k, v in SMALL.items()]
    env = dict(os.environ, HASHREC_KILL_AFTER_EPOCH="3")
    killed = subprocess.run(args + ["--out", str(tmp_path / "killed")], env=env, capture_output=True, text=True, timeout=300)
    assert killed.returncode == -9, killed.stderr  # SIGKILL, as kill -9
    assert not (tmp_path / "killed" / "metrics.json").exists()
    assert (tmp_path / "killed" / "checkpoint.pt").exists()
    assert not list((tmp_path / "killed").glob("*.tmp"))  # nothing half-written
    env.pop("HASHREC_KILL_AFTER_EPOCH")
    resumed = subprocess.run(args + ["--out", str(tmp_path / "killed")], env=env, capture_output=True, text=True, timeout=300)
    whole = subprocess.run(args + ["--out", str(tmp_path / "whole")], env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0 and whole.returncode == 0, resumed.stderr + whole.stderr
    m_resumed = json.loads((tmp_path / "killed" / "metrics.json").read_text())
    m_whole = json.loads((tmp_path / "whole" / "metrics.json").read_text())
    for key in m_whole:
        if "@" in key:
            assert m_resumed[key] == m_whole[key], key
    h_resumed = pd.read_csv(tmp_path / "killed" / "history.csv")
    h_whole = pd.read_csv(tmp_path / "whole" / "history.csv")
    np.testing.assert_array_equal(h_resumed["loss"].to_numpy(), h_whole["loss"].to_numpy())
