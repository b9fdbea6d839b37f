"""Figures: one seaborn style, PNG + PDF side by side, labelled axes with units.

Every figure of the study is drawn by a function here so that notebooks stay
thin and the style stays uniform.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from .config import figures_dir
from .utils import atomic_write

__all__ = ["set_style", "savefig", "degree_ccdf", "plot_degree_distribution"]


def set_style() -> None:
    """The house style: seaborn whitegrid, paper context, colour-blind palette."""
    sns.set_theme(style="whitegrid", context="paper", palette="colorblind", font_scale=1.1)
    plt.rcParams.update({"figure.dpi": 110, "savefig.dpi": 200, "savefig.bbox": "tight"})


def savefig(fig: plt.Figure, name: str, profile: str = "default", folder: str | Path | None = None) -> list[Path]:
    """Save ``fig`` as ``figures/<profile>/<name>.png`` and ``.pdf``, atomically; return both paths."""
    folder = Path(folder) if folder is not None else figures_dir(profile)
    paths = []
    for ext in ("png", "pdf"):
        path = folder / f"{name}.{ext}"
        with atomic_write(path, "wb") as fh:
            # A fixed creation date keeps the PDF byte-identical across runs.
            meta = {"CreationDate": None} if ext == "pdf" else {"Software": None}
            fig.savefig(fh, format=ext, metadata=meta)
        paths.append(path)
    return paths


def degree_ccdf(degrees: np.ndarray) -> pd.DataFrame:
    """Complementary CDF of node degrees: columns ``degree`` and ``fraction``
    (share of nodes with degree ≥ ``degree``), over nodes with degree ≥ 1.

    The CCDF is the usual picture of a heavy tail: a power law is a straight
    line on log-log axes, and unlike a histogram it needs no binning.
    """
    degrees = np.asarray(degrees, dtype=np.int64)
    degrees = degrees[degrees > 0]
    values, counts = np.unique(degrees, return_counts=True)
    at_least = counts[::-1].cumsum()[::-1]
    return pd.DataFrame({"degree": values, "fraction": at_least / len(degrees)})


def plot_degree_distribution(datasets: Iterable) -> plt.Figure:
    """Log-log degree distributions (CCDF) of users and items, one panel each.

    ``datasets``: :class:`~hashrec_utils.data.InteractionData` objects; all
    interactions (train + valid + test) count.
    """
    set_style()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for data in datasets:
        full = (data.train + data.valid + data.test).tocsr()
        for ax, deg in zip(axes, (np.diff(full.indptr), np.diff(full.tocsc().indptr))):
            cc = degree_ccdf(deg)
            ax.loglog(cc["degree"], cc["fraction"], lw=1.8, label=data.name)
    for ax, who in zip(axes, ("users", "items")):
        ax.set_xlabel(f"{who[:-1]} degree d (interactions)")
        ax.set_ylabel(f"fraction of {who} with degree ≥ d")
        ax.set_title(who.capitalize())
        ax.legend(title="dataset")
    fig.tight_layout()
    return fig


def pareto_frontier(frame: pd.DataFrame, x: str = "qps", y: str = "recall@20") -> pd.DataFrame:
    """The rows no other row beats on both ``x`` and ``y`` (larger is better on both),
    sorted by ``x`` ascending. Ties on ``x`` keep the higher ``y``.
    """
    ordered = frame.sort_values([x, y], ascending=[False, False])
    best = -np.inf
    keep = []
    for idx, value in zip(ordered.index, ordered[y].to_numpy()):
        if value > best:
            keep.append(idx)
            best = value
    return frame.loc[keep].sort_values(x)


def plot_tradeoff(frame: pd.DataFrame, x: str = "qps", y: str = "recall@20", hue: str = "method",
                  title: str | None = None) -> plt.Figure:
    """Accuracy against throughput, one curve per method, the Pareto frontier dashed.

    ``frame``: one row per (method, setting) with throughput ``x`` in queries
    per second and accuracy ``y``.
    """
    set_style()
    fig, ax = plt.subplots(figsize=(7.2, 4.4))
    for name, group in frame.groupby(hue, sort=True):
        group = group.sort_values(x)
        ax.plot(group[x], group[y], marker="o", ms=4, lw=1.4, label=name)
    front = pareto_frontier(frame, x, y)
    ax.plot(front[x], front[y], ls="--", lw=1.0, color="black", label="Pareto frontier")
    ax.set_xscale("log")
    ax.set_xlabel("throughput (queries per second, log scale)")
    ax.set_ylabel(y.replace("@", " @ "))
    if title:
        ax.set_title(title)
    ax.legend(fontsize=8, ncol=2, title=hue)
    fig.tight_layout()
    return fig


def plot_lightgcn_training(history: pd.DataFrame) -> plt.Figure:
    """Training loss and valid recall@20 against epoch, and valid recall@20 against wall-clock seconds."""
    set_style()
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.5))
    for dataset, h in history.groupby("dataset", sort=False):
        axes[0].plot(h["epoch"], h["loss"], label=dataset)
        if "valid_recall@20" in h and h["valid_recall@20"].notna().any():
            v = h.dropna(subset=["valid_recall@20"])
            axes[1].plot(v["epoch"], v["valid_recall@20"], marker="o", ms=3, label=dataset)
            axes[2].plot(v["seconds"], v["valid_recall@20"], marker="o", ms=3, label=dataset)
    axes[0].set(xlabel="epoch", ylabel="training loss (BPR + L2)", title="Loss")
    axes[1].set(xlabel="epoch", ylabel="valid recall@20", title="Validation recall")
    axes[2].set(xlabel="training time (s, wall-clock)", ylabel="valid recall@20", title="Time to accuracy")
    for ax in axes:
        ax.legend(title="dataset")
    fig.tight_layout()
    return fig


def plot_lightgcn_layers(layers: pd.DataFrame) -> plt.Figure:
    """Test recall@20 and NDCG@20 against the number of propagation layers."""
    set_style()
    fig, ax = plt.subplots(figsize=(5.2, 3.5))
    long = layers.melt(id_vars="n_layers", value_vars=["recall@20", "ndcg@20"], var_name="metric", value_name="value")
    sns.barplot(long, x="n_layers", y="value", hue="metric", ax=ax)
    ax.set(xlabel="LightGCN layers L", ylabel="test metric value", title="Effect of depth (ml-1m)")
    fig.tight_layout()
    return fig


def plot_lightgcn_degree(degree: pd.DataFrame) -> plt.Figure:
    """Test recall@20 by user-degree quartile."""
    set_style()
    fig, ax = plt.subplots(figsize=(5.2, 3.5))
    sns.barplot(degree, x="group", y="recall@20", ax=ax, color=sns.color_palette()[0])
    for patch, users in zip(ax.patches, degree["users"]):
        ax.annotate(f"{users} users", (patch.get_x() + patch.get_width() / 2, patch.get_height()),
                    ha="center", va="bottom", fontsize=8)
    ax.set(xlabel="user train degree (interactions, quartile range)", ylabel="test recall@20",
           title="Recall by user activity (ml-1m)")
    fig.tight_layout()
    return fig
