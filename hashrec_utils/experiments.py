"""Study stages that the notebooks call: each loads, computes, writes results, returns tables.

A stage writes its numbers to ``results/<profile>/`` (atomic CSV/JSON, the
files the report reads) and its figures to ``figures/<profile>/``; the
notebook only shows what the stage returns.
"""
from __future__ import annotations

from pathlib import Path

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
