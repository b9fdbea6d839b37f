"""The test split chooses nothing: the study's selection path run twice on a real slice (quick
profile: the first 600 users of ml-1m), once with the test labels poisoned, makes the same choices."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from tests.conftest import requires_mirror

ESTIMATORS = ("ste", "signswish")


def _selection_path(root: Path, monkeypatch, poison: bool) -> dict:
    """LightGCN, one row's tuning grid and its winner, two hash estimators, sign and LSH, the
    table and the best estimator, then the bits-sweep run of the chosen one: everything a run or a choice decides, per run folder."""
    import hashrec_utils.training.runs as train_module
    from hashrec_utils import experiments, profiles
    from hashrec_utils.experiments import rows as rows_module, tuning

    monkeypatch.setenv("HASHREC_ROOT", str(root))
    quick = profiles.get_profile("quick")
    monkeypatch.setitem(profiles._BY_NAME, "quick", replace(quick, hash=replace(
        quick.hash, estimators=ESTIMATORS, variants=(), seeds=(0,), epochs=3, eval_every=1)))
    load = train_module.load_run_data

    def relabelled(config):
        """The run's data with its test items relabelled: by a random permutation (poison) or by the
        identity (clean). Both passes do the same work, so the only difference is the test labels."""
        data = load(config)
        perm = np.random.default_rng(123).permutation(data.n_items) if poison else np.arange(data.n_items)
        test = sp.csr_matrix(data.test[:, perm])
        test.sort_indices()
        return replace(data, test=test)

    monkeypatch.setattr(train_module, "load_run_data", relabelled)
    # each pass starts on one thread: searches reset torch's intra-op threads (faiss / numba pinning),
    # and float sums differ in the last bit across thread counts; within a pass both do the same steps
    torch.set_num_threads(1)
    lightgcn, _ = experiments.lightgcn_run("quick", "ml-1m", progress=False)
    # the hyper-parameters: the tuning grid of one row (lr × 2), its winner read by the table's run
    monkeypatch.setattr(rows_module, "TUNED_FILE", root / "tuned.json")
    monkeypatch.setitem(profiles._BY_NAME, "quick", replace(profiles.get_profile("quick"), tuning=tuning.TuningGrid(
        lr_factors=(1.0, 0.3), length_factors=(1.0,))))
    tuning.tune("quick", ("ste",), progress=False)
    runs, table, _ = experiments._estimator_table("quick", lightgcn)
    best = experiments.best_estimator(table)
    experiments.variant_run("quick", best, bits=32)
    folders = {}
    for folder in sorted((root / "runs" / "quick").iterdir()):
        metrics = json.loads((folder / "metrics.json").read_text())
        emb = np.load(folder / "embeddings.npz")
        folders[folder.name] = {"metrics": metrics, "arrays": {k: emb[k] for k in emb.files}}
    return {"best": best, "folders": folders, "valid_table": table["valid_recall@20_mean"].tolist(),
            "winners": json.loads((root / "tuned.json").read_text())}


def _test_numbers(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if k != "valid" and (isinstance(v, dict) or "@" in k)}


@requires_mirror
def test_poisoned_test_labels_change_no_choice(tmp_path, monkeypatch):
    threads = torch.get_num_threads()
    try:
        clean = _selection_path(tmp_path / "clean", monkeypatch, poison=False)
        monkeypatch.undo()
        poisoned = _selection_path(tmp_path / "poisoned", monkeypatch, poison=True)
    finally:
        torch.set_num_threads(threads)
    assert clean["best"] == poisoned["best"] and clean["best"] in ESTIMATORS
    assert clean["valid_table"] == poisoned["valid_table"]
    assert clean["winners"] == poisoned["winners"] and set(clean["winners"]["quick"]["ml-1m"]) == {"ste"}
    names = set(clean["folders"])
    assert names == set(poisoned["folders"])
    ste = "hash_lightgcn_ste_b64_s0" + ("_lr0.3" if clean["winners"]["quick"]["ml-1m"]["ste"]["lr_factor"] != 1.0 else "")
    bits_run = f"hash_lightgcn_{clean['best']}_b32_s0" + (ste[len("hash_lightgcn_ste_b64_s0"):] if clean["best"] == "ste" else "")
    assert {"lightgcn_ml-1m_L3_s0", "hash_lightgcn_ste_b64_s0", "hash_lightgcn_ste_b64_s0_lr0.3", ste,
            "hash_lightgcn_signswish_b64_s0", "hash_lightgcn_lsh_b64_s0", "hash_lightgcn_sign_b64_s0", bits_run} == names
    test_changed = 0
    for name in sorted(names):
        a, b = clean["folders"][name], poisoned["folders"][name]
        for key in ("best_epoch", "kept_epoch", "kept", "valid"):
            assert a["metrics"][key] == b["metrics"][key], (name, key)
        assert a["metrics"]["valid"] is not None
        assert a["arrays"].keys() == b["arrays"].keys()
        for key in a["arrays"]:  # the kept weights: embeddings and codes bit for bit
            np.testing.assert_array_equal(a["arrays"][key], b["arrays"][key], err_msg=f"{name}: {key}")
        test_changed += _test_numbers(a["metrics"]) != _test_numbers(b["metrics"])
    assert test_changed == len(names)  # the poison reached every run's test numbers, and nothing else
