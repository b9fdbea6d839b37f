"""Data-parallel training: two gloo processes end where one process ends (same global batch, same seed)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from hashrec_utils import distributed
from hashrec_utils.data import load_dataset, write_lightgcn_file

SETTINGS = {"epochs": 4, "batch_size": 512, "lr": 0.01, "dim": 16, "eval_every": 2, "patience": 0}


def test_share_partitions_a_batch():
    assert distributed.share(10) == slice(0, 10)  # outside torchrun: everything
    assert not distributed.active() and distributed.world_size() == 1 and distributed.is_main()


def test_two_processes_equal_one_process(tmp_path):
    d = load_dataset("synthetic", n_users=300, n_items=200, n_interactions=6000, seed=0, valid_fraction=0.0)
    folder = tmp_path / "syn"
    folder.mkdir()
    write_lightgcn_file(folder / "train.txt", d.train, d.user_ids, d.item_ids)
    write_lightgcn_file(folder / "test.txt", d.test, d.user_ids, d.item_ids)
    args = ["-m", "hashrec_utils", "train", "--dataset", str(folder), "--profile", "quick", "--seed", "1"]
    args += [f"--set={k}={json.dumps(v)}" for k, v in SETTINGS.items()]
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = "1"
    one = subprocess.run([sys.executable, *args, "--out", str(tmp_path / "one")], env=env, capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29613",
                          *args, "--out", str(tmp_path / "two")], env=env, capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]
    a, b = np.load(tmp_path / "one" / "embeddings.npz"), np.load(tmp_path / "two" / "embeddings.npz")
    np.testing.assert_allclose(a["user"], b["user"], atol=1e-5)
    np.testing.assert_allclose(a["item"], b["item"], atol=1e-5)
    m1 = json.loads((tmp_path / "one" / "metrics.json").read_text())
    m2 = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert abs(m1["recall@20"] - m2["recall@20"]) < 1e-3
    # only rank 0 wrote the run folder, and it is complete
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == sorted(p.name for p in (tmp_path / "one").iterdir())
