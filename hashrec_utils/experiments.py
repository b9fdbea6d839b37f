"""Study stages that the notebooks call: each loads, computes, writes results, returns tables.

A stage writes its numbers to ``results/<profile>/`` (atomic CSV/JSON, the
files the report reads) and its figures to ``figures/<profile>/``; the
notebook only shows what the stage returns.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .config import get_profile, results_dir
from .data import InteractionData, dataset_stats, load_dataset, subset_users
from .utils import atomic_write, write_json

__all__ = ["load_profile_datasets", "write_table", "data_prep"]


def write_table(frame: pd.DataFrame, name: str, profile: str) -> Path:
    """Write ``results/<profile>/<name>.csv`` and ``.json`` (records) atomically."""
    folder = results_dir(profile)
    path = folder / f"{name}.csv"
    with atomic_write(path, "w") as fh:
        frame.to_csv(fh, index=False)
    write_json(folder / f"{name}.json", frame.to_dict(orient="records"))
    return path


def load_profile_datasets(profile: str, *, valid_fraction: float = 0.1, seed: int = 0) -> list[InteractionData]:
    """The datasets of a profile, sliced to ``max_users`` in ``quick``."""
    prof = get_profile(profile)
    return [
        subset_users(load_dataset(name, valid_fraction=valid_fraction, seed=seed), prof.max_users)
        for name in prof.datasets
    ]


def data_prep(profile: str) -> tuple[pd.DataFrame, list[InteractionData]]:
    """Statistics of each dataset of the profile (published splits, no valid carved).

    Writes ``results/<profile>/data_stats.{csv,json}`` and the log-log degree
    figure ``figures/<profile>/degree_distribution.{png,pdf}``.
    """
    from .plotting import plot_degree_distribution, savefig

    datasets = load_profile_datasets(profile, valid_fraction=0.0)
    stats = pd.DataFrame([dataset_stats(d) for d in datasets])
    write_table(stats, "data_stats", profile)
    fig = plot_degree_distribution(datasets)
    savefig(fig, "degree_distribution", profile)
    return stats, datasets


# --------------------------------------------------------------------------
# 02 · LightGCN baseline
# --------------------------------------------------------------------------

LAYER_SWEEP = {"quick": (1, 2, 3), "default": (1, 2, 3, 4), "full": (1, 2, 3, 4)}


def lightgcn_run(profile: str, dataset: str = "ml-1m", seed: int = 0, n_layers: int = 3, progress: bool = True) -> tuple[dict, Path]:
    """Train (or reuse) the LightGCN run of a profile; returns ``(metrics, run folder)``."""
    from .config import runs_dir
    from .train import run

    out = runs_dir(profile) / f"lightgcn_{dataset}_L{n_layers}_s{seed}"
    overrides = {} if n_layers == 3 else {"n_layers": n_layers}
    metrics = run(dataset, model="lightgcn", profile=profile, seed=seed, out=out, overrides=overrides, progress=progress)
    return metrics, out


def lightgcn_stage(profile: str) -> dict[str, pd.DataFrame]:
    """Notebook 02: the baseline on every dataset of the profile, the layer sweep, recall by user degree.

    Writes ``results/<profile>/lightgcn_{metrics,history,layers,degree}`` and the
    figures ``lightgcn_training``, ``lightgcn_layers``, ``lightgcn_degree``.
    """
    from .metrics import degree_buckets, evaluate_by_group, rank_topk
    from .plotting import plot_lightgcn_degree, plot_lightgcn_layers, plot_lightgcn_training, savefig
    from .train import load_run_data, train_config

    rows, histories = [], []
    for dataset in get_profile(profile).datasets:
        metrics, out = lightgcn_run(profile, dataset)
        rows.append({"dataset": dataset, **metrics})
        history = pd.read_csv(out / "history.csv")
        history.insert(0, "dataset", dataset)
        histories.append(history)
    table = pd.DataFrame(rows)
    history = pd.concat(histories, ignore_index=True)
    write_table(table, "lightgcn_metrics", profile)
    write_table(history, "lightgcn_history", profile)

    layer_rows = []
    for n_layers in LAYER_SWEEP[profile]:
        metrics, _ = lightgcn_run(profile, "ml-1m", n_layers=n_layers)
        layer_rows.append({"n_layers": n_layers, **{k: metrics[k] for k in ("recall@20", "ndcg@20", "train_seconds", "best_epoch")}})
    layers = pd.DataFrame(layer_rows)
    write_table(layers, "lightgcn_layers", profile)

    # recall@20 by user-degree quartile, ml-1m main run
    _, out = lightgcn_run(profile, "ml-1m", progress=False)
    data = load_run_data(train_config(profile, "ml-1m"))
    emb = np.load(out / "embeddings.npz")
    top = rank_topk(emb["user"], emb["item"], 20, exclude=data.train_full)
    bucket, labels = degree_buckets(data.train_full, 4)
    degree = pd.DataFrame(evaluate_by_group(top, data.test, bucket, labels, ks=(20,)))
    write_table(degree, "lightgcn_degree", profile)

    savefig(plot_lightgcn_training(history), "lightgcn_training", profile)
    savefig(plot_lightgcn_layers(layers), "lightgcn_layers", profile)
    savefig(plot_lightgcn_degree(degree), "lightgcn_degree", profile)
    return {"metrics": table, "history": history, "layers": layers, "degree": degree}
