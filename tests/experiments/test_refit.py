"""Refit on all of train: stop_epoch follows the chosen run's schedule; the refit plan's settings and errors."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from hashrec_utils.data import load_dataset
from hashrec_utils.experiments.refit import refit_config, refit_plan, refit_run
from hashrec_utils.models import LightGCN
from hashrec_utils.settings import train_config
from hashrec_utils.training import TrainConfig, fit, run

from ..training.conftest import one_thread  # noqa: F401  (autouse: tiny graphs train on one thread)
from ..training.test_train import SMALL, synthetic_folder


def _fit(config, data):
    torch.manual_seed(0)
    return fit(LightGCN(data.n_users, data.n_items, dim=16), data, config, progress=False)


def test_stop_epoch_is_the_full_schedules_epoch_not_a_shorter_schedule():
    data = load_dataset("synthetic", n_users=200, n_items=150, n_interactions=4000, seed=0, valid_fraction=0.0)
    base = TrainConfig(dataset="synthetic", dim=16, lr=0.05, lr_schedule="cosine", batch_size=512, epochs=6,
                       eval_every=1, patience=0, reg=0.0, valid_fraction=0.0, device="cpu")
    full = _fit(base, data)
    stopped = _fit(TrainConfig(**{**base.to_json(), "stop_epoch": 4}), data)
    short = _fit(TrainConfig(**{**base.to_json(), "epochs": 4}), data)
    # the stopped run is epoch 4 of the 6-epoch cosine schedule: its losses are the full run's first four
    assert stopped.history["epoch"].tolist() == [1, 2, 3, 4] and stopped.kept_epoch == 4
    np.testing.assert_array_equal(stopped.history["loss"].to_numpy(), full.history["loss"].to_numpy()[:4])
    # a 4-epoch run decays its learning rate faster, so it differs after its first step
    assert not np.array_equal(short.history["loss"].to_numpy()[1:], stopped.history["loss"].to_numpy()[1:])


def test_stop_epoch_outside_the_schedule_is_refused():
    with pytest.raises(ValueError, match="stop_epoch must lie in 1..epochs \\(6\\); got 7"):
        TrainConfig(epochs=6, stop_epoch=7)
    with pytest.raises(ValueError, match="stop_epoch"):
        TrainConfig(epochs=6, stop_epoch=0)


def test_refit_config_keeps_every_choice_and_swaps_the_teacher():
    config = TrainConfig(dataset="ml-1m", epochs=40, lr=0.3, batch_size=65536, valid_fraction=0.1, hash_method="signswish",
                         hash_params={"init": "runs/full/lgcn_v10", "n_negatives": 4096, "distill": 3.0})
    refit = refit_config(config, 38, init="runs/full/lgcn_v10_refit")
    assert refit.valid_fraction == 0.0 and refit.stop_epoch == 38 and refit.epochs == 40
    assert refit.hash_params["init"] == "runs/full/lgcn_v10_refit"
    assert (refit.lr, refit.batch_size, refit.hash_params["n_negatives"], refit.hash_params["distill"]) == (0.3, 65536, 4096, 3.0)
    assert refit_config(config, 40, init="t").stop_epoch is None  # the last epoch: the whole schedule
    with pytest.raises(ValueError, match="needs init="):
        refit_config(config, 38)
    with pytest.raises(ValueError, match="kept_epoch must lie in 1..40"):
        refit_config(config, 41, init="t")
    with pytest.raises(ValueError, match="starts from no teacher"):
        refit_config(TrainConfig(epochs=5), 5, init="t")


def test_refit_run_trains_on_all_of_train_to_the_kept_epoch(tmp_path):
    folder = synthetic_folder(tmp_path)
    carve = train_config("quick", str(folder), **{**SMALL, "valid_fraction": 0.2, "epochs": 6, "eval_every": 1})
    metrics = run(carve, tmp_path / "lgcn", progress=False)
    refit_metrics, out = refit_run(tmp_path / "lgcn")
    assert out == tmp_path / "lgcn_refit"
    assert refit_metrics["valid"] is None and refit_metrics["kept_epoch"] == metrics["kept_epoch"]
    config = refit_plan(tmp_path / "lgcn")[0]
    assert config.valid_fraction == 0.0 and (config.stop_epoch or config.epochs) == metrics["kept_epoch"]
    with pytest.raises(ValueError, match="nothing to refit"):
        refit_plan(out)
    with pytest.raises(FileNotFoundError, match="no metrics.json"):
        refit_plan(tmp_path / "absent")
