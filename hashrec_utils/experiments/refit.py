"""Refit on all of train: a final model retrained once every choice is made.

A run of the study trains on a validation carve-out (10 % of each user's train items) so that its
settings and its kept epoch can be chosen without test. Those choices made, the *refit* trains the
same settings on all of train — the data every published number was trained on — and stops at
the kept epoch of the same schedule (:attr:`~hashrec_utils.training.TrainConfig.stop_epoch`: the
learning-rate and estimator schedules still span the run's ``epochs``, so epoch ``k`` of the refit
is epoch ``k`` of the chosen run on more data). Nothing is chosen on the refit: it has no
validation split, and test is read once, by its ``metrics.json``.

A hash run's refit starts from the refit of its teacher (``init``), so no row of a refit table
learns from a model that saw less data than it. The refit of ``runs/<p>/<name>`` is
``runs/<p>/<name>_refit``; a carve-out run must be complete (its ``kept_epoch`` is the choice).
"""
from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pandas as pd

from ..training import TrainConfig

__all__ = ["REFIT_SUFFIX", "CARVE_OUT", "REFIT", "refit_name", "refit_folder", "refit_config", "refit_plan",
           "refit_run", "refit_summary"]

REFIT_SUFFIX = "_refit"
# The protocols of a comparison row: trained on the carve-out (every choice made there), or refit on
# all of train with those choices fixed
CARVE_OUT, REFIT = "carve-out", "refit"


def refit_name(folder: str | os.PathLike) -> str:
    """The folder name of the refit of run ``folder`` (``<name>_refit``)."""
    return Path(folder).name + REFIT_SUFFIX


def refit_folder(folder: str | os.PathLike) -> Path:
    """Where the refit of run ``folder`` trains: beside it, :func:`refit_name`."""
    return Path(folder).with_name(refit_name(folder))


def refit_config(config: TrainConfig, kept_epoch: int, *, init: str | os.PathLike | None = None) -> TrainConfig:
    """``config`` trained on all of train (``valid_fraction`` 0), stopping at ``kept_epoch`` of its
    schedule (no ``stop_epoch`` when that is the last); every other setting (batch, pool,
    learning rate, schedules) as chosen. ``init``: the refit teacher a hash run starts from, in
    place of its carve-out teacher (required for a run that has one)."""
    if not 1 <= int(kept_epoch) <= config.epochs:
        raise ValueError(f"kept_epoch must lie in 1..{config.epochs} (the run's epochs); got {kept_epoch}")
    params = dict(config.hash_params)
    if params.get("init") is not None:
        if init is None:
            raise ValueError(f"the run starts from {params['init']}: its refit needs init= (the refit of that teacher)")
        params["init"] = str(init)
    elif init is not None:
        raise ValueError("init= given, but the run starts from no teacher (hash_params has no init)")
    return replace(config, valid_fraction=0.0, stop_epoch=None if kept_epoch == config.epochs else int(kept_epoch),
                   hash_params=params)


def refit_plan(folder: str | os.PathLike, *, init: str | os.PathLike | None = None) -> tuple[TrainConfig, Path]:
    """``(config, refit folder)`` of a complete carve-out run ``folder``, resolved without training."""
    from ..training.runs import run_config
    from ..utils import read_json

    folder = Path(folder)
    if not (folder / "metrics.json").exists():
        raise FileNotFoundError(f"{folder}: no metrics.json; a refit needs the complete carve-out run (its kept epoch)")
    config = run_config(folder)
    if config.valid_fraction <= 0:
        raise ValueError(f"{folder} trained on all of train (valid_fraction {config.valid_fraction}): nothing to refit")
    kept = read_json(folder / "metrics.json").get("kept_epoch")
    if not kept:
        raise ValueError(f"{folder}: metrics.json has no kept_epoch (an untrained method: nothing to refit)")
    return refit_config(config, int(kept), init=init), refit_folder(folder)


def refit_run(folder: str | os.PathLike, *, init: str | os.PathLike | None = None,
              progress: bool = False) -> tuple[dict, Path]:
    """Train (or reuse, or resume) the refit of ``folder`` (:func:`refit_plan`); ``(metrics, refit folder)``."""
    from ..training.runs import run

    config, out = refit_plan(folder, init=init)
    return run(config, out, progress=progress, retrain=True), out


def refit_summary(table: pd.DataFrame, runs: pd.DataFrame, best: str) -> dict:
    """A comparison summary's ``refit`` block: the teacher's and the best row's numbers refit on all of
    train (``teacher``, ``best_<search>_<metric>``, the best row's ``seeds``), from the comparison's
    ``table`` and ``runs`` (column ``protocol``); ``{}`` where nothing was refit."""
    refit = table[table.protocol == REFIT]
    mine = refit[(refit.row == best) & (refit.search == "hamming")]
    teacher = runs[(runs.protocol == REFIT) & (runs.row == "lightgcn (continuous)")]
    if mine.empty or teacher.empty:
        return {}
    metrics = ("recall@50", "recall@100", "ndcg@50", "ndcg@100")
    return {"refit": {
        "rule": ("the carve-out's choices (settings, kept epoch) fixed, retrained on all of train; the hash rows start "
                 "from the teacher's refit; no validation, test read once"),
        "teacher": {k: float(teacher[k].iloc[0]) for k in ("recall@20", "recall@50", "recall@100", "ndcg@50", "ndcg@100")},
        "seeds": int(mine["seeds"].iloc[0]),
        **{f"best_{s}_{m}": float(refit[(refit.row == best) & (refit.search == s)][f"{m}_mean"].iloc[0])
           for s in ("hamming", "hierarchical") for m in metrics},
        **{f"best_hamming_{m}_std": float(mine[f"{m}_std"].iloc[0]) for m in metrics},
    }}
