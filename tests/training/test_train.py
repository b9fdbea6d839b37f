"""Training: negatives, profiles, early stopping, determinism, kill -9 and resume, the run folder."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch

from hashrec_utils.data import load_dataset, write_lightgcn_file
from hashrec_utils.metrics import hit_matrix
from hashrec_utils.evaluation import evaluate_model
from hashrec_utils.settings import train_config
from hashrec_utils.training import NegativeSampler, TrainConfig, fit, learning_rate, run

SMALL = {"epochs": 6, "eval_every": 2, "batch_size": 512, "lr": 0.01, "patience": 0, "dim": 16}
REPO = Path(__file__).resolve().parents[2]


def synthetic_folder(tmp_path: Path) -> Path:
    """A small power-law dataset written as LightGCN split files (a user's own folder)."""
    d = load_dataset("synthetic", n_users=300, n_items=200, n_interactions=6000, seed=0, valid_fraction=0.0)
    folder = tmp_path / "syn"
    folder.mkdir(exist_ok=True)
    write_lightgcn_file(folder / "train.txt", d.train, d.user_ids, d.item_ids)
    write_lightgcn_file(folder / "test.txt", d.test, d.user_ids, d.item_ids)
    return folder



# ---- negatives ---------------------------------------------------------------

def test_negative_sampler_finds_the_only_admissible_item():
    # user u trained on every item but u % 10: its only negative is u % 10
    dense = np.ones((50, 10), dtype=np.float32)
    dense[np.arange(50), np.arange(50) % 10] = 0
    sampler = NegativeSampler(sp.csr_matrix(dense))
    users = np.repeat(np.arange(50), 20)
    neg = sampler.sample(users, np.random.default_rng(0))
    np.testing.assert_array_equal(neg, users % 10)


def test_negative_sampler_avoids_train_items_on_ml1m(ml1m):
    sampler = NegativeSampler(ml1m.train)
    users = ml1m.train.tocoo().row.astype(np.int64)
    neg = sampler.sample(users, np.random.default_rng(0))
    assert neg.shape == users.shape and neg.min() >= 0 and neg.max() < ml1m.n_items
    assert not hit_matrix(neg[:, None], ml1m.train, users=users).any()
    # uniform over the admissible items: no item is drawn far more often than chance
    counts = np.bincount(neg, minlength=ml1m.n_items)
    assert counts.max() < 3 * len(neg) / ml1m.n_items
    again = sampler.sample(users, np.random.default_rng(0))
    np.testing.assert_array_equal(neg, again)  # a seeded generator gives the same negatives


def test_negative_sampler_rejects_a_user_with_every_item():
    with pytest.raises(ValueError, match="user 1 has trained on every item: no negative exists"):
        NegativeSampler(sp.csr_matrix(np.array([[1, 0], [1, 1]], dtype=np.float32)))


# ---- settings ------------------------------------------------------------------

def test_train_config_profiles_and_errors():
    quick, default = train_config("quick"), train_config("default", "ml-1m")
    assert quick.max_users == 600 and quick.epochs <= default.epochs
    assert default.valid_fraction > 0 and default.patience > 0 and default.dim == 64 and default.n_layers == 3
    full_gowalla = train_config("full", "gowalla")
    assert full_gowalla.valid_fraction == 0.0 and full_gowalla.patience == 0
    assert train_config("default", lr=0.5).lr == 0.5
    with pytest.raises(AttributeError):
        default.lr = 1.0  # frozen
    with pytest.raises(ValueError, match="unknown TrainConfig field.*learning_rate"):
        train_config("default", learning_rate=0.1)
    with pytest.raises(ValueError, match="profile must be one of quick, default, full; got 'huge'"):
        train_config("huge")


def test_learning_rate_schedules_by_hand():
    constant = TrainConfig(lr=0.01)
    assert [learning_rate(constant, t, 100) for t in (0, 50, 99)] == [0.01, 0.01, 0.01]
    cosine = TrainConfig(lr=0.01, lr_schedule="cosine")
    assert learning_rate(cosine, 0, 100) == pytest.approx(0.01)
    assert learning_rate(cosine, 50, 100) == pytest.approx(0.005)  # half way: lr / 2
    assert learning_rate(cosine, 25, 100) == pytest.approx(0.01 * (1 + np.sqrt(0.5)) / 2)
    assert learning_rate(cosine, 100, 100) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="lr_schedule must be constant or cosine; got 'step'"):
        TrainConfig(lr_schedule="step")
    with pytest.raises(ValueError, match="need lr, batch_size, eval_every, dim > 0"):
        TrainConfig(batch_size=0)


# ---- the loop ------------------------------------------------------------------

def test_early_stopping_keeps_the_best_weights():
    torch.manual_seed(0)
    data = load_dataset("synthetic", n_users=300, n_items=200, n_interactions=6000, seed=0, valid_fraction=0.2)
    from hashrec_utils.models import LightGCN

    config = TrainConfig(dataset="synthetic", dim=16, lr=0.05, batch_size=256, epochs=40, eval_every=1,
                         patience=2, reg=0.0, device="cpu")
    result = fit(LightGCN(data.n_users, data.n_items, dim=16), data, config, progress=False)
    recalls = result.history["valid_recall@20"].to_numpy()
    assert len(recalls) < config.epochs  # stopped early ...
    assert np.argmax(recalls) == len(recalls) - 1 - config.patience  # ... `patience` evaluations after the best
    assert result.best_epoch == int(np.argmax(recalls)) + 1
    final = evaluate_model(result.model, result.graph, data.valid, data.train, ks=(20,))
    assert final["recall@20"] == recalls.max()  # the model holds the best weights, not the last


def test_same_seed_same_numbers_and_run_folder(tmp_path):
    folder = synthetic_folder(tmp_path)
    a = run(train_config("quick", str(folder), seed=3, **SMALL), tmp_path / "a", progress=False)
    b = run(train_config("quick", str(folder), seed=3, **SMALL), tmp_path / "b", progress=False)
    c = run(train_config("quick", str(folder), seed=4, **SMALL), tmp_path / "c", progress=False)
    keys = [k for k in a if "@" in k]
    assert {k: a[k] for k in keys} == {k: b[k] for k in keys}
    assert {k: a[k] for k in keys} != {k: c[k] for k in keys}
    out = tmp_path / "a"
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt", "config.json", "embeddings.npz", "history.csv", "metrics.json", "model.pt"]
    config = json.loads((out / "config.json").read_text())
    assert config["seed"] == 3 and config["lr"] == 0.01 and config["dataset"] == str(folder)
    history = pd.read_csv(out / "history.csv")
    assert {"epoch", "loss", "valid_recall@20", "seconds"} <= set(history.columns)
    assert history["epoch"].tolist() == list(range(1, 7))
    assert history["valid_recall@20"].notna().sum() == 3
    assert history["seconds"].is_monotonic_increasing
    emb = np.load(out / "embeddings.npz")
    assert emb["user"].shape == (300, 16) and emb["user"].dtype == np.float32 and emb["item"].dtype == np.float32
    assert {f"{m}@{k}" for m in ("recall", "ndcg", "precision", "hit") for k in (10, 20, 50)} <= set(a)
    assert a["recall@20"] > 0.05  # learned something beyond chance on a power-law set


def test_checkpoint_holds_everything_a_resume_needs(tmp_path):
    folder = synthetic_folder(tmp_path)
    run(train_config("quick", str(folder), **{**SMALL, "epochs": 2}), tmp_path / "r", progress=False)
    saved = torch.load(tmp_path / "r" / "checkpoint.pt", weights_only=True)
    assert {"model", "optimizer", "rng", "epoch", "history", "best_state", "best_metric", "step"} <= set(saved)
    assert {"torch", "numpy", "python"} <= set(saved["rng"])
    assert saved["epoch"] == 2 and len(saved["history"]) == 2
    assert saved["optimizer"]["state"]  # Adam moments travel with the weights
    assert not list((tmp_path / "r").glob("*.tmp"))


def test_complete_run_is_not_redone_and_other_config_refused(tmp_path, capsys):
    folder = synthetic_folder(tmp_path)
    first = run(train_config("quick", str(folder), **SMALL), tmp_path / "r", progress=False)
    mtime = (tmp_path / "r" / "metrics.json").stat().st_mtime_ns
    again = run(train_config("quick", str(folder), **SMALL), tmp_path / "r", progress=True)
    assert again == first and (tmp_path / "r" / "metrics.json").stat().st_mtime_ns == mtime
    assert "run complete" in capsys.readouterr().out
    # a folder written before a TrainConfig field existed: the field counts at its default
    saved = json.loads((tmp_path / "r" / "config.json").read_text())
    del saved["lr_schedule"]
    (tmp_path / "r" / "config.json").write_text(json.dumps(saved))
    assert run(train_config("quick", str(folder), **SMALL), tmp_path / "r", progress=False) == first
    with pytest.raises(ValueError, match="holds a different run .*lr"):
        run(train_config("quick", str(folder), **{**SMALL, "lr": 0.1}), tmp_path / "r", progress=False)


def test_kill_9_then_resume_ends_with_the_uninterrupted_metrics(tmp_path, capsys):
    """A real SIGKILL from outside, at whatever point the CLI run has reached once a checkpoint exists.

    The killed run is a subprocess (``python -m hashrec_utils train``); the resume and the
    uninterrupted reference run in this process, on one thread like the subprocess.
    """
    folder = synthetic_folder(tmp_path)
    settings = {**SMALL, "epochs": 8, "batch_size": 256, "lr_schedule": "cosine"}  # the schedule resumes too
    args = [sys.executable, "-m", "hashrec_utils", "train", "--dataset", str(folder), "--profile", "quick",
            "--seed", "1", "--device", "cpu", "--out", str(tmp_path / "killed")]
    args += [f"--set={k}={json.dumps(v)}" for k, v in settings.items()]
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    killed_dir = tmp_path / "killed"
    proc = subprocess.Popen(args, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not (killed_dir / "checkpoint.pt").exists():
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline, "no checkpoint within 120 s"
        time.sleep(0.002)
    os.kill(proc.pid, signal.SIGKILL)  # kill -9
    assert proc.wait(timeout=60) == -signal.SIGKILL
    proc.stderr.close()
    done = torch.load(killed_dir / "checkpoint.pt", weights_only=True)["epoch"]
    assert 1 <= done < settings["epochs"] and not (killed_dir / "metrics.json").exists()  # killed mid-run
    assert not list(killed_dir.glob("*.tmp")) and not list(killed_dir.glob(".*.tmp"))  # nothing half-written

    config = train_config("quick", str(folder), seed=1, device="cpu", **settings)
    capsys.readouterr()
    m_resumed = run(config, killed_dir, progress=True)
    assert f"resumed from epoch {done}" in capsys.readouterr().err  # it did resume, not start over
    m_whole = run(config, tmp_path / "whole", progress=False)
    assert {k: v for k, v in m_resumed.items() if "@" in k} == {k: v for k, v in m_whole.items() if "@" in k}
    h_resumed = pd.read_csv(killed_dir / "history.csv")
    h_whole = pd.read_csv(tmp_path / "whole" / "history.csv")
    assert len(h_resumed) == len(h_whole) == settings["epochs"]
    np.testing.assert_array_equal(h_resumed["loss"].to_numpy(), h_whole["loss"].to_numpy())
    np.testing.assert_array_equal(np.load(killed_dir / "embeddings.npz")["item"], np.load(tmp_path / "whole" / "embeddings.npz")["item"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_run_on_cuda(tmp_path):
    folder = synthetic_folder(tmp_path)
    metrics = run(train_config("quick", str(folder), device="cuda", **SMALL), tmp_path / "gpu", progress=False)
    assert metrics["recall@20"] > 0.05


def test_cli_hash_run_starts_from_a_lightgcn_run_and_writes_three_sections(tmp_path, capsys, monkeypatch):
    """``train --hash ste --init DIR``: the study's hash settings on the given LightGCN run; ``collect``
    records both runs for the report."""
    from hashrec_utils.__main__ import main

    folder = synthetic_folder(tmp_path)
    base = tmp_path / "lgcn"
    assert main(["train", "--dataset", str(folder), "--profile", "quick", "--out", str(base), "--set", "epochs=2"]) == 0
    out = tmp_path / "hash"
    assert main(["train", "--dataset", str(folder), "--hash", "ste", "--bits", "32", "--init", str(base),
                 "--profile", "quick", "--out", str(out), "--set", "epochs=2"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) >= {"continuous", "hamming", "hierarchical"}
    config = json.loads((out / "config.json").read_text())
    assert config["hash_params"]["init"] == str(base) and config["hash_params"]["objective"] == "softmax"
    assert config["epochs"] == 2 and config["bits"] == 32
    # continuous search re-ranks with the LightGCN embeddings it started from, untouched
    assert metrics["continuous"]["recall@20"] == pytest.approx(json.loads((base / "metrics.json").read_text())["recall@20"])
    emb = np.load(out / "embeddings.npz")
    assert emb["user_codes"].dtype == np.uint8 and emb["user_codes"].shape[1] == 4
    # the scale byte's power, chosen on validation, beside metrics.json; p = 0 is the asymmetric section
    scaled = json.loads((out / "item_scale.json").read_text())
    assert scaled["powers"][0] == 0.0 and len(scaled["valid_recall@20"]) == len(scaled["powers"])
    assert scaled["valid_recall@20"][scaled["powers"].index(scaled["power"])] == max(scaled["valid_recall@20"])
    assert scaled["test_unscaled"]["recall@20"] == pytest.approx(metrics["asymmetric"]["recall@20"], abs=0.02)
    assert not (base / "item_scale.json").exists()  # a continuous run has no codes to scale
    from hashrec_utils.training.runs import run_config

    assert run_config(out).to_json() == {k: v for k, v in config.items() if k not in ("identity", "code_version")}
    with pytest.raises(ValueError, match="--init applies to hash runs"):
        main(["train", "--dataset", str(folder), "--init", str(base), "--out", str(tmp_path / "x")])

    monkeypatch.setenv("HASHREC_ROOT", str(tmp_path / "repo"))
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    (unfinished / "config.json").write_text("{}")
    with pytest.raises(ValueError, match="unfinished: not a finished run"):
        main(["collect", str(base), str(unfinished), "--profile", "quick"])
    assert not (tmp_path / "repo" / "results" / "quick" / "runs.json").exists()
    assert main(["collect", str(base), "--profile", "quick"]) == 0
    assert main(["collect", str(out), str(base), "--profile", "quick"]) == 0  # merged by name, not repeated
    rows = json.loads((tmp_path / "repo" / "results" / "quick" / "runs.json").read_text())
    assert [r["run"] for r in rows] == ["hash", "lgcn"]
    hashed, lgcn = rows
    assert hashed["hash_method"] == "ste" and hashed["bits"] == 32 and lgcn["hash_method"] is None
    assert hashed["distill"] == config["hash_params"]["distill"] == 1.0 and lgcn["distill"] is None
    assert hashed["metrics"]["hamming"] == metrics["hamming"]
    assert lgcn["metrics"]["recall@20"] == json.loads((base / "metrics.json").read_text())["recall@20"]
    assert lgcn["train_seconds"] > 0 and lgcn["epochs"] == 2


# ---- the protocol: which weights, validation numbers, code identity ---------------------------------

def test_keep_best_valid_against_last_on_one_training():
    """The same training (same seed, same history) ends with the best validation epoch's weights
    under ``best_valid`` and with the last epoch's under ``last``."""
    from hashrec_utils.models import LightGCN

    data = load_dataset("synthetic", n_users=300, n_items=200, n_interactions=6000, seed=0, valid_fraction=0.2)
    results = {}
    for keep in ("best_valid", "last"):
        torch.manual_seed(0)
        config = TrainConfig(dataset="synthetic", dim=16, lr=0.2, batch_size=256, epochs=12, eval_every=1,
                             patience=0, reg=0.0, device="cpu", keep=keep)
        results[keep] = fit(LightGCN(data.n_users, data.n_items, dim=16), data, config, progress=False)
    best, last = results["best_valid"], results["last"]
    pd.testing.assert_frame_equal(best.history.drop(columns="seconds"), last.history.drop(columns="seconds"))
    recalls = best.history["valid_recall@20"].to_numpy()
    assert best.best_epoch == last.best_epoch == int(np.argmax(recalls)) + 1  # chosen on validation either way
    assert best.best_epoch < 12  # this lr overshoots: the best epoch is not the last, so the rules differ
    assert (best.kept, best.kept_epoch) == ("best_valid", best.best_epoch)
    assert (last.kept, last.kept_epoch) == ("last", 12)
    final = {k: evaluate_model(r.model, r.graph, data.valid, data.train, ks=(20,))["recall@20"] for k, r in results.items()}
    assert final == {"best_valid": recalls.max(), "last": recalls[-1]}
    with pytest.raises(ValueError, match="keep must be best_valid or last; got 'first'"):
        TrainConfig(keep="first")


def test_metrics_json_has_the_kept_models_valid_block(tmp_path):
    folder = synthetic_folder(tmp_path)
    m = run(train_config("quick", str(folder), **SMALL), tmp_path / "r", progress=False)
    history = pd.read_csv(tmp_path / "r" / "history.csv")
    assert m["kept"] == "best_valid" and m["kept_epoch"] == m["best_epoch"]
    assert m["best_epoch"] == int(history.loc[history["valid_recall@20"].idxmax(), "epoch"])
    # the valid block is the kept model on the validation split: its recall@20 is the best logged one
    assert set(m["valid"]) >= {f"recall@{k}" for k in (10, 20, 50)}
    assert m["valid"]["recall@20"] == history["valid_recall@20"].max()
    last = run(train_config("quick", str(folder), **{**SMALL, "keep": "last"}), tmp_path / "l", progress=False)
    assert last["kept"] == "last" and last["kept_epoch"] == 6 and last["valid"]["recall@20"] == history["valid_recall@20"].iloc[-1]
    # no valid split (Gowalla's published one): best_valid falls back to the last epoch and says so
    none = run(train_config("quick", str(folder), **{**SMALL, "valid_fraction": 0.0}), tmp_path / "n", progress=False)
    assert none["kept"] == "last (no validation split)" and none["valid"] is None and none["best_epoch"] == 6


def test_cli_lsh_and_sign_make_codes_from_the_init_run(tmp_path):
    """``train --hash lsh|sign --init DIR`` trains nothing: codes of DIR's embeddings, evaluated like a hash model."""
    from hashrec_utils.__main__ import main
    from hashrec_utils.hashing import lsh_codes, pack_codes
    from hashrec_utils.metrics import evaluate_topk
    from hashrec_utils.retrieval import hamming_topk, hierarchical_topk
    from hashrec_utils.training import load_run_data

    folder = synthetic_folder(tmp_path)
    base = tmp_path / "lgcn"
    assert main(["train", "--dataset", str(folder), "--profile", "quick", "--out", str(base), "--set", "epochs=2"]) == 0
    lgcn = np.load(base / "embeddings.npz")
    for method, bits, reference in (("lsh", 32, lsh_codes(lgcn["user"], lgcn["item"], 32, 5)),
                                    ("sign", 64, (pack_codes(lgcn["user"]), pack_codes(lgcn["item"])))):
        out = tmp_path / method
        assert main(["train", "--dataset", str(folder), "--hash", method, "--bits", str(bits), "--seed", "5",
                     "--init", str(base), "--profile", "quick", "--out", str(out)]) == 0
        assert sorted(p.name for p in out.iterdir()) == ["config.json", "embeddings.npz", "metrics.json"]
        emb = np.load(out / "embeddings.npz")
        np.testing.assert_array_equal(emb["user_codes"], reference[0])
        np.testing.assert_array_equal(emb["item_codes"], reference[1])
        np.testing.assert_array_equal(emb["user"], lgcn["user"])
        m = json.loads((out / "metrics.json").read_text())
        assert m["train_seconds"] == 0 and m["kept"] == "untrained"
        data = load_run_data(TrainConfig(**{k: v for k, v in json.loads((out / "config.json").read_text()).items() if k != "identity"}))
        for split, target, exclude in (("test", data.test, data.train_full), ("valid", data.valid, data.train)):
            got = m if split == "test" else m["valid"]
            assert got["hamming"] == evaluate_topk(hamming_topk(*reference, 50, exclude), target, (10, 20, 50))
            assert got["hierarchical"] == evaluate_topk(hierarchical_topk(*reference, lgcn["user"], lgcn["item"], 50, 100, exclude),
                                                        target, (10, 20, 50))
        assert m["continuous"] == pytest.approx({k: v for k, v in json.loads((base / "metrics.json").read_text()).items() if "@" in k})
    with pytest.raises(ValueError, match="bits must be 64; got 32"):
        main(["train", "--dataset", str(folder), "--hash", "sign", "--bits", "32", "--init", str(base),
              "--profile", "quick", "--out", str(tmp_path / "bad")])


def test_fit_tells_the_model_its_steps_and_run_saves_its_extra_arrays(tmp_path, monkeypatch):
    import hashrec_utils.training.runs as train_module
    from hashrec_utils.models import LightGCN

    told = []

    class Recording(LightGCN):
        def set_total_steps(self, total):
            told.append(total)

        def extra_arrays(self, graph):
            return {"row_scale": torch.arange(3.0)}

    monkeypatch.setattr(train_module, "build_model", lambda config, data: Recording(data.n_users, data.n_items, dim=config.dim))
    folder = synthetic_folder(tmp_path)
    run(train_config("quick", str(folder), **{**SMALL, "epochs": 2}), tmp_path / "r", progress=False)
    data = train_module.load_run_data(train_config("quick", str(folder), **{**SMALL, "epochs": 2}))
    assert told == [2 * -(-data.train.nnz // SMALL["batch_size"])]
    np.testing.assert_array_equal(np.load(tmp_path / "r" / "embeddings.npz")["row_scale"], [0.0, 1.0, 2.0])
