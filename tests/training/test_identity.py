"""A run's identity (settings + component versions), re-scoring saved runs, and what a refused run leaves."""
from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from hashrec_utils import evaluation
from hashrec_utils.data import load_dataset, write_lightgcn_file
from hashrec_utils.settings import train_config
from hashrec_utils.training import LOOP_VERSION, run, run_identity
from hashrec_utils.training import runs as runs_module
from hashrec_utils.training.identity import identity_differences, parse_components, format_components
from hashrec_utils.utils import atomic_write

SMALL = {"epochs": 4, "eval_every": 2, "batch_size": 512, "lr": 0.01, "patience": 0, "dim": 16}
REPO = Path(__file__).resolve().parents[2]



@pytest.fixture
def folder(tmp_path) -> Path:
    d = load_dataset("synthetic", n_users=200, n_items=150, n_interactions=4000, seed=0, valid_fraction=0.0)
    out = tmp_path / "syn"
    out.mkdir()
    write_lightgcn_file(out / "train.txt", d.train, d.user_ids, d.item_ids)
    write_lightgcn_file(out / "test.txt", d.test, d.user_ids, d.item_ids)
    return out


def test_identity_names_the_components_a_config_uses(folder):
    from hashrec_utils.data import SPLIT_VERSION
    from hashrec_utils.hashing import ESTIMATORS, OBJECTIVES

    lgcn = run_identity(train_config("quick", str(folder), **SMALL))
    assert lgcn["components"] == {"encoder.lightgcn": 1, "loop": LOOP_VERSION, "split": SPLIT_VERSION}
    assert set(lgcn["libraries"]) == {"torch", "numpy", "numba", "faiss"} and lgcn["device"] == "cpu"
    assert lgcn["libraries"]["torch"] == ".".join(torch.__version__.split("+")[0].split(".")[:2])
    hashed = run_identity(train_config("quick", str(folder), hash_method="signswish", bits=16,
                                       hash_params={"objective": "softmax", "init": "somewhere"}, **SMALL))
    assert hashed["components"]["estimator.signswish"] == ESTIMATORS["signswish"].version
    assert hashed["components"]["objective.softmax"] == OBJECTIVES["softmax"].version
    assert {"encoder.table", "hash_layer", "hash_model", "loop", "split"} <= set(hashed["components"])
    assert "encoder.lightgcn" not in hashed["components"]  # a table fine-tuned from a trained run
    # HashGNN as published: GraphSAGE, its own objective, guided STE
    hashgnn = run_identity(train_config("quick", str(folder), model="hashgnn", hash_method="guided_ste", **SMALL))
    assert {"encoder.graphsage", "objective.hashgnn", "estimator.guided_ste"} <= set(hashgnn["components"])
    # a warm-started student (BiGeaR) carries its teacher's components as init.*
    teacher = folder.parent / "teacher"
    teacher.mkdir()
    (teacher / "config.json").write_text('{"identity": {"components": {"encoder.lightgcn_layers_weighted": 1, "loop": 1}}}')
    student = run_identity(train_config("quick", str(folder), model="lightgcn_layers_weighted", n_layers=2, bits=48,
                                        hash_method="bigear", hash_params={"objective": "bigear", "hash_layer": "identity",
                                                                           "warm_start": str(teacher)}, **SMALL))
    assert student["components"]["init.encoder.lightgcn_layers_weighted"] == 1
    assert {"encoder.lightgcn_layers_weighted", "objective.bigear", "estimator.bigear"} <= set(student["components"])
    # untrained codes: no loop, no estimator
    lsh = run_identity(train_config("quick", str(folder), hash_method="lsh", hash_params={"init": "x"}, **SMALL))
    assert lsh["components"] == {"split": SPLIT_VERSION, "untrained.lsh": 1}


def test_identity_differences_and_record_cells():
    old = {"components": {"estimator.ste": 1, "loop": 1}, "device": "cuda", "libraries": {"torch": "2.12"}}
    new = {"components": {"estimator.ste": 2, "loop": 1, "split": 1}, "device": "cpu", "libraries": {"torch": "2.13"}}
    assert identity_differences(old, new) == ["estimator.ste 1 → 2", "split (new)", "torch 2.12 → 2.13", "device cuda → cpu"]
    assert identity_differences(new, new) == []
    cell = format_components(new["components"])
    assert cell == "estimator.ste=2 loop=1 split=1" and parse_components(cell) == new["components"]
    with pytest.raises(ValueError, match="expected name=integer"):
        parse_components("loop=one")


def test_stale_folder_is_refused_retrained_or_adopted(folder, tmp_path, capsys, monkeypatch):
    from hashrec_utils.__main__ import main

    config = train_config("quick", str(folder), **SMALL)
    out = tmp_path / "r"
    first = run(config, out, progress=False)
    saved = json.loads((out / "config.json").read_text())
    assert saved["identity"] == run_identity(config) and "code_version" not in saved
    # trained with another version of a component: refused, naming it and --retrain (the CLI too) ...
    old = {**saved, "identity": {**saved["identity"], "components": {**saved["identity"]["components"], "encoder.lightgcn": 0}}}
    (out / "config.json").write_text(json.dumps(old))
    with pytest.raises(ValueError, match="other versions \\(encoder.lightgcn 0 → 1\\): pass --retrain"):
        run(config, out, progress=False)
    cli = ["train", "--dataset", str(folder), "--profile", "quick", "--out", str(out)] + [f"--set={k}={json.dumps(v)}" for k, v in SMALL.items()]
    with pytest.raises(ValueError, match="pass --retrain"):
        main(cli)
    # ... or, with --retrain, moved aside and trained again (same seed: the same numbers)
    capsys.readouterr()
    assert main(cli + ["--retrain"]) == 0
    assert "moved aside to r.stale" in capsys.readouterr().err
    assert json.loads((tmp_path / "r.stale" / "config.json").read_text())["identity"]["components"]["encoder.lightgcn"] == 0
    again = json.loads((out / "metrics.json").read_text())
    assert {k: again[k] for k in first if "@" in k} == {k: first[k] for k in first if "@" in k}
    # written before runs carried an identity (a code_version hash, no valid block): refused ...
    metrics = json.loads((out / "metrics.json").read_text())
    legacy = {**{k: v for k, v in saved.items() if k != "identity"}, "code_version": "0123456789ab"}
    (out / "config.json").write_text(json.dumps(legacy))
    (out / "metrics.json").write_text(json.dumps({k: v for k, v in metrics.items() if k not in ("valid", "evaluation")}))
    with pytest.raises(ValueError, match="before runs carried an identity .*HASHREC_ACCEPT_UNVERSIONED=1 to adopt it"):
        run(config, out, progress=False)
    # ... unless adopted: the identity is written, and the run is re-scored from its kept weights
    monkeypatch.setenv("HASHREC_ACCEPT_UNVERSIONED", "1")
    capsys.readouterr()
    adopted = run(config, out, progress=False)
    assert "adopted a run written before runs carried an identity" in capsys.readouterr().err
    assert json.loads((out / "config.json").read_text())["identity"] == run_identity(config)
    assert adopted["valid"] == metrics["valid"] and adopted["evaluation"] == metrics["evaluation"]
    assert {k: adopted[k] for k in first if "@" in k} == {k: first[k] for k in first if "@" in k}


def test_a_new_search_mode_rescores_a_saved_run_without_training(folder, tmp_path, monkeypatch, capsys):
    """Evaluation is versioned apart from training: a mode added to evaluation re-scores a saved
    hash run from its kept weights (``model.pt``); nothing trains and the training files stay."""
    config = train_config("quick", str(folder), hash_method="ste", bits=16, **SMALL)
    out = tmp_path / "h"
    first = run(config, out, progress=False)
    assert set(first) >= {"continuous", "hamming", "hierarchical", "evaluation"}
    kept = {name: (out / name).stat().st_mtime_ns for name in ("history.csv", "checkpoint.pt", "model.pt", "config.json")}

    def reversed_hamming(a, k, exclude, candidates):
        """A new mode: the codes ranked with the query's bits flipped (the farthest items first)."""
        from hashrec_utils.retrieval import hamming_topk

        return hamming_topk(np.bitwise_not(a["user_codes"]), a["item_codes"], k, exclude)

    monkeypatch.setattr(evaluation, "HASH_SEARCH_MODES",
                        (*evaluation.HASH_SEARCH_MODES, evaluation.SearchMode("reversed", reversed_hamming)))
    monkeypatch.setattr(runs_module, "fit", lambda *a, **kw: pytest.fail("a saved run was retrained"))
    capsys.readouterr()
    again = run(config, out, progress=True)
    assert "re-scored with this code's evaluation (no training)" in capsys.readouterr().err
    assert "search.reversed" in again["evaluation"]["components"]
    for section in ("continuous", "hamming", "hierarchical"):  # the old modes score the same from the kept weights
        assert again[section] == first[section] and again["valid"][section] == first["valid"][section]
    assert again["reversed"]["recall@20"] < again["hamming"]["recall@20"]
    assert {k: again[k] for k in ("best_epoch", "kept_epoch", "kept", "epochs_run")} == \
           {k: first[k] for k in ("best_epoch", "kept_epoch", "kept", "epochs_run")}
    assert {name: (out / name).stat().st_mtime_ns for name in kept} == kept
    assert run(config, out, progress=False) == again  # scored by this evaluation now: nothing to do


def test_a_run_scored_before_asymmetric_search_gains_it_by_a_rescore(folder, tmp_path, monkeypatch):
    """A hash run saved before the asymmetric mode existed (no ``user_query`` in ``embeddings.npz``, no
    ``asymmetric`` section) is re-scored from its kept weights: it gains both, and the users' real-valued
    queries are what their codes are the signs of."""
    config = train_config("quick", str(folder), hash_method="ste", bits=16, **SMALL)
    out = tmp_path / "h"
    first = run(config, out, progress=False)
    arrays = dict(np.load(out / "embeddings.npz"))
    old = {k: v for k, v in arrays.items() if k != "user_query"}
    np.savez(out / "embeddings.npz", **old)
    metrics = json.loads((out / "metrics.json").read_text())
    metrics.pop("asymmetric")
    metrics["valid"].pop("asymmetric")
    metrics["evaluation"]["components"] = {k: v for k, v in metrics["evaluation"]["components"].items()
                                           if "asymmetric" not in k}
    (out / "metrics.json").write_text(json.dumps(metrics))
    monkeypatch.setattr(runs_module, "fit", lambda *a, **kw: pytest.fail("a saved run was retrained"))
    again = run(config, out, progress=False)
    assert again["asymmetric"] == first["asymmetric"] and again["hamming"] == first["hamming"]
    saved = np.load(out / "embeddings.npz")
    np.testing.assert_array_equal(saved["user_query"], arrays["user_query"])
    np.testing.assert_array_equal(np.packbits(saved["user_query"] >= 0, axis=1), saved["user_codes"])


@pytest.mark.parametrize("bad", [{"hash_method": "ste", "bits": 63}, {"hash_method": "lsh", "bits": 16}])
def test_a_refused_run_leaves_nothing_behind(folder, tmp_path, bad):
    """``train --bits 63`` or an untrained method without ``--init`` is refused before ``--out``
    holds anything, so the corrected command into the same folder then runs."""
    out = tmp_path / "d"
    with pytest.raises(ValueError, match="multiple of 8|init"):
        run(train_config("quick", str(folder), **bad, **SMALL), out, progress=False)
    assert not out.exists()
    fixed = run(train_config("quick", str(folder), hash_method="ste", bits=16, **SMALL), out, progress=False)
    assert fixed["hamming"]["recall@20"] > 0


@pytest.mark.parametrize("mask", [0o022, 0o077])
def test_atomic_write_honours_the_umask(tmp_path, mask):
    old = os.umask(mask)
    try:
        with atomic_write(tmp_path / "x.json", "w") as fh:
            fh.write("{}")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "x.json").stat().st_mode) == 0o666 & ~mask


def test_a_comment_in_every_module_retrains_nothing(folder, tmp_path):
    """The package copied with a comment added to every module: the same ``train`` command says
    the run is complete (identity is versions, not bytes)."""
    out = tmp_path / "r"
    cmd = [sys.executable, "-m", "hashrec_utils", "train", "--dataset", str(folder), "--profile", "quick",
           "--out", str(out)] + [f"--set={k}={json.dumps(v)}" for k, v in SMALL.items()]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(cmd, check=True, capture_output=True, env={**env, "PYTHONPATH": str(REPO)}, cwd=tmp_path)
    copy = tmp_path / "edited"
    shutil.copytree(REPO / "hashrec_utils", copy / "hashrec_utils", ignore=shutil.ignore_patterns("__pycache__"))
    modules = list((copy / "hashrec_utils").rglob("*.py"))
    for path in modules:
        path.write_text(path.read_text() + "\n# a comment that changes no number\n")
    done = subprocess.run(cmd, capture_output=True, text=True, env={**env, "PYTHONPATH": str(copy)}, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "run complete (metrics.json exists); nothing to do" in done.stdout
    assert len(modules) > 30


def test_hash_params_are_typed_and_refuse_unknown_names(folder, tmp_path):
    from hashrec_utils.__main__ import main
    from hashrec_utils.training import HashParams, TrainConfig

    config = TrainConfig(hash_method="ste", bits=16, hash_params={"objective": "softmax", "distill": 1.0,
                                                                   "estimator": {"beta": 2.0}})
    hp = config.hash_params
    assert isinstance(hp, HashParams) and hp.distill == 1.0 and hp.init is None
    assert dict(hp) == {"objective": "softmax", "estimator": {"beta": 2.0}, "distill": 1.0}
    assert hp.get("freeze", False) is False and "init" not in hp and hp["objective"] == "softmax"
    assert config.to_json()["hash_params"] == dict(hp) and TrainConfig(**config.to_json()) == config
    with pytest.raises(ValueError, match="unknown hash_params distil; known: .*distill"):
        TrainConfig(hash_params={"distil": 3.0})
    with pytest.raises(ValueError, match="unknown hash_params distil"):  # a typo on the command line too
        main(["train", "--dataset", str(folder), "--hash", "ste", "--bits", "16", "--init", str(tmp_path),
              "--profile", "quick", "--out", str(tmp_path / "x"), "--set", 'hash_params={"distil": 3.0}'])
    assert not (tmp_path / "x").exists()
