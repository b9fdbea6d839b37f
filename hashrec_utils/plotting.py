"""Figures: one seaborn style, PNG + PDF side by side, labelled axes with units.

Every figure of the study is drawn by a function here so that notebooks stay
thin and the style stays uniform.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import matplotlib.pyplot as plt
import matplotlib.ticker as mticker
import numpy as np
import pandas as pd
import seaborn as sns

from .utils import atomic_write

__all__ = ["set_style", "savefig", "degree_ccdf", "plot_degree_distribution"]


def set_style() -> None:
    """The house style: seaborn whitegrid, paper context, colour-blind palette."""
    sns.set_theme(style="whitegrid", context="paper", palette="colorblind", font_scale=1.1)
    plt.rcParams.update({"figure.dpi": 110, "savefig.dpi": 200, "savefig.bbox": "tight"})


def savefig(fig: plt.Figure, name: str, folder: str | Path) -> list[Path]:
    """Save ``fig`` as ``<folder>/<name>.png`` and ``.pdf`` (the study's: ``figures/<profile>/``,
    :func:`hashrec_utils.config.figures_dir`), atomically; return both paths."""
    folder = Path(folder)
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


# the tradeoff figures' families, in legend order, each one colour (Okabe-Ito, told apart without hue vision)
TRADEOFF_FAMILIES = ("float", "rabitq", "binary", "asymmetric", "hierarchical")
_FAMILY_COLOURS = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#882255")
_FAMILY_NAMES = {"float": "float (teacher's embeddings)", "rabitq": "RaBitQ (Faiss, on the embeddings)",
                 "binary": "binary codes (Hamming)", "asymmetric": "asymmetric (real query, binary items)",
                 "hierarchical": "hierarchical (candidates re-ranked)"}


def _family(method: str, family: str | None) -> str:
    """A method's family: the sweep's ``family`` column where it names one, else read from the method."""
    if family in TRADEOFF_FAMILIES:
        return family
    m = str(method)
    return ("hierarchical" if "hierarchical" in m else "asymmetric" if "asymmetric" in m else
            "binary" if m.startswith(("hashrec", "Faiss Binary")) else "float")


def _draw_tradeoff(ax, frame: pd.DataFrame, x: str, y: str, hue: str, exact_qps: float | None = None,
                   multiples: tuple[float, ...] = ()) -> list:
    """One axes of :func:`plot_tradeoff`; returns the legend handles (grouped by family)."""
    fam = frame["family"] if "family" in frame.columns else pd.Series(None, index=frame.index)
    family_of = pd.Series([_family(m, f) for m, f in zip(frame[hue], fam)], index=frame.index)
    palette = dict(zip(TRADEOFF_FAMILIES, _FAMILY_COLOURS))
    markers = "osD^vP*XhpH<>d8"
    handles = []
    for family in TRADEOFF_FAMILIES:
        sub = frame[family_of == family]
        if sub.empty:
            continue
        handles.append(plt.Line2D([], [], ls="none", label=f"— {_FAMILY_NAMES[family]} —"))
        for j, name in enumerate(dict.fromkeys(sub[hue])):
            group = sub[sub[hue] == name]
            style = dict(marker=markers[j % len(markers)], ms=5, color=palette[family],
                         mfc="white" if j % 2 else palette[family])
            ax.plot(group[x], group[y], ls="none", alpha=0.9, **style)  # every operating point
            own = pareto_frontier(group, x, y)  # joined along the method's own frontier
            (line,) = ax.plot(own[x], own[y], lw=1.2, alpha=0.9, label=name, **style)
            handles.append(line)
            if family == "hierarchical" and "candidates" in group:
                for _, r in group.iterrows():
                    ax.annotate(f"C={int(r['candidates'])}", (r[x], r[y]), xytext=(3, -9), textcoords="offset points",
                                fontsize=6.5, color=palette[family])
    if exact_qps:
        for m in multiples:
            ax.axvline(m * exact_qps, color="grey", lw=0.7, ls=":", zorder=0)
            ax.annotate(f"{m:g}× exact", (m * exact_qps, 1.0), xycoords=("data", "axes fraction"), xytext=(2, -10),
                        textcoords="offset points", fontsize=7, color="grey")
    front = pareto_frontier(frame, x, y)
    (line,) = ax.plot(front[x], front[y], ls="--", lw=1.0, color="black", label="Pareto frontier (all methods)")
    handles.append(line)
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(mticker.FuncFormatter(lambda v, _: f"{v:,.0f}"))
    ax.xaxis.set_minor_formatter(mticker.NullFormatter())
    ax.set_xlabel("throughput (queries per second, log scale)")
    return handles


def plot_tradeoff(frame: pd.DataFrame, x: str = "qps", y: str = "recall@20", hue: str = "method",
                  title: str | None = None, exact_qps: float | None = None,
                  multiples: tuple[float, ...] = (1, 2, 5, 10, 50)) -> plt.Figure:
    """Accuracy against throughput on one axes: one colour per family, a distinct marker per method,
    every operating point marked and the method's own frontier joined, hierarchical points labelled by
    their ``C``, the Pareto frontier over all methods dashed, the legend (grouped by family) below the axes.

    ``frame``: one row per (method, setting) with throughput ``x`` (queries/s) and accuracy ``y``; an
    optional ``family`` column (:data:`TRADEOFF_FAMILIES`) groups the methods, else their names do.
    ``exact_qps``: the fastest exact search's throughput; thin vertical lines mark ``multiples`` of it.
    """
    set_style()
    fig, ax = plt.subplots(figsize=(10.0, 8.2))
    handles = _draw_tradeoff(ax, frame, x, y, hue, exact_qps, multiples if exact_qps else ())
    ax.set_ylabel(y.replace("@", " @ ").replace("recall", "test recall"))
    ax.legend(handles=handles, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.11), frameon=False,
              ncol=3, handlelength=2.2)  # below the axes: the plot keeps the page's width
    if title:
        ax.set_title(title)
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
    fig, ax = plt.subplots(figsize=(6.2, 3.5))
    long = layers.melt(id_vars="n_layers", value_vars=["recall@20", "ndcg@20"], var_name="metric", value_name="value")
    sns.barplot(long, x="n_layers", y="value", hue="metric", ax=ax)
    epochs = f", {int(layers['epochs'].max())} epochs each" if "epochs" in layers else ""
    ax.set(xlabel="LightGCN layers L", ylabel="test metric value", title=f"Effect of depth (ml-1m{epochs})")
    sns.move_legend(ax, "upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
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


def _band(ax, frame: pd.DataFrame, x: str, y: str, label: str) -> None:
    """Mean line and ± one standard deviation band over seeds."""
    g = frame.dropna(subset=[y]).groupby(x)[y].agg(["mean", "std"]).reset_index().fillna(0.0)
    line, = ax.plot(g[x], g["mean"], label=label)
    ax.fill_between(g[x], g["mean"] - g["std"], g["mean"] + g["std"], alpha=0.25, color=line.get_color())


def plot_hashing_curves(curves: pd.DataFrame) -> plt.Figure:
    """Guided STE against STE: training loss and valid Hamming recall@20 against iteration (mean ± std over seeds)."""
    set_style()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for name, c in curves.groupby("estimator", sort=True):
        _band(axes[0], c, "iteration", "loss_hash", name)
        _band(axes[1], c, "iteration", "valid_hamming/recall@20", name)
    axes[0].set(xlabel="iteration (optimiser steps)", ylabel="hashed training loss", title="Training loss")
    axes[1].set(xlabel="iteration (optimiser steps)", ylabel="valid recall@20, Hamming search", title="Validation recall")
    for ax in axes:
        ax.legend(title="estimator")
    fig.tight_layout()
    return fig


def plot_hashing_table(table: pd.DataFrame) -> plt.Figure:
    """Test recall@20 of every estimator under each search mode (mean ± std over seeds)."""
    set_style()
    order = table[table.search == "hamming"].sort_values("recall@20_mean")["estimator"].tolist()
    order += [e for e in table["estimator"].unique() if e not in order]
    fig, ax = plt.subplots(figsize=(max(10.0, 0.62 * len(order)), 4.2))  # room for every row's label
    from .evaluation import SEARCH_NAMES

    searches = [s for s in SEARCH_NAMES if s in set(table.search)]
    width = 0.8 / len(searches)
    for j, search in enumerate(searches):
        t = table[table.search == search].set_index("estimator").reindex(order)
        xs = np.arange(len(order)) + (j - (len(searches) - 1) / 2) * width
        ax.bar(xs, t["recall@20_mean"], width, yerr=t["recall@20_std"], label=search, capsize=2)
    ax.set_xticks(np.arange(len(order)), order, rotation=35, ha="right")
    ax.set(xlabel="table row", ylabel="test recall@20", title="Every row × search mode (ml-1m, 64 bits)")
    ax.legend(title="search", loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)  # beside the bars
    fig.tight_layout()
    return fig


def plot_hashing_params(params: pd.DataFrame) -> plt.Figure:
    """Parameter analysis: recall@20 against λ, triplets per node, bits K and candidates C."""
    set_style()
    names = list(dict.fromkeys(params["parameter"]))
    fig, axes = plt.subplots(1, len(names), figsize=(3.3 * len(names), 3.3), squeeze=False)
    for ax, name in zip(axes[0], names):
        p = params[params.parameter == name]
        for search, g in p.groupby("search", sort=True):
            ax.plot(g["value"], g["recall@20"], marker="o", ms=4, label=search)
        if name in ("bits K", "candidates C"):
            ax.set_xscale("log", base=2)
        ax.set(xlabel=name, ylabel="test recall@20", title=name)
        ax.legend(title="search", fontsize=8)
    fig.tight_layout()
    return fig


def plot_retrieval_curves(df: pd.DataFrame) -> plt.Figure:
    """Recommendation recall@20 and the share of the exact continuous top-20 against throughput, every
    index (styled as :func:`plot_tradeoff`: a colour per family, a marker per method, legend below)."""
    set_style()
    fig, axes = plt.subplots(1, 2, figsize=(13, 6.6))
    handles = []
    for ax, (y, label, title) in zip(axes, (("recall@20", "test recall @ 20", "Recommendation accuracy"),
                                            ("recall_vs_exact", "share of the exact float top-20 found",
                                             "Search accuracy against exact inner product"))):
        handles = _draw_tradeoff(ax, df, "qps", y, "method")
        ax.set(ylabel=label, title=title)
    fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=4, fontsize=8, frameon=False)
    fig.tight_layout()
    return fig


def plot_scaling(scale: pd.DataFrame) -> plt.Figure:
    """The sampled catalogues: per size, the share of the exact float top-k found against throughput
    (every method's operating points, styled as :func:`plot_tradeoff`), and memory per item against size."""
    set_style()
    sizes = sorted(scale["items"].unique())
    k = int(scale["k"].iloc[0]) if "k" in scale and scale["k"].notna().any() else 20
    cols = 2
    rows = -(-(len(sizes) + 1) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(12, 5.0 * rows), squeeze=False)
    flat = axes.ravel()
    handles = []
    for ax, n in zip(flat, sizes):
        handles = _draw_tradeoff(ax, scale[scale["items"] == n], "qps", "recall_vs_exact", "method")
        ax.set(title=f"{int(n):,} items", ylabel=f"share of the exact float top-{k} found", ylim=(0, 1.02))
    for ax in flat[len(sizes) + 1:]:
        ax.set_visible(False)
    mem = flat[len(sizes)]
    palette = dict(zip(TRADEOFF_FAMILIES, _FAMILY_COLOURS))
    for method, g in scale.groupby("method", sort=False):
        family = _family(method, g["family"].iloc[0] if "family" in g else None)
        g = g.groupby("items")["bytes_per_item"].first()
        mem.loglog(g.index, g.values, marker="o", ms=4, color=palette[family], label=method)
        mem.annotate(method, (g.index[-1], g.values[-1]), xytext=(-4, 3), textcoords="offset points", fontsize=6.5,
                     ha="right", color=palette[family])
    mem.set(xlabel="items in the catalogue", ylabel="index bytes per item (log)", title="Memory")
    fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=4, fontsize=8, frameon=False)
    fig.tight_layout()
    return fig


def plot_train_scaling(frame: pd.DataFrame) -> plt.Figure:
    """LightGCN step time and peak memory against interactions (log-log); 2-process points marked."""
    set_style()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for procs, g in frame.groupby("processes", sort=True):
        g = g.sort_values("interactions")
        threads = int(g["threads_per_process"].iloc[0])
        label = f"{procs} process{'es' if procs > 1 else ''} × {threads} thread{'s' if threads > 1 else ''}"
        style = dict(marker="o" if procs == 1 else "s", linestyle="-" if procs == 1 else "none", label=label)
        axes[0].loglog(g["interactions"], g["step_s"], **style)
        axes[1].loglog(g["interactions"], g["peak_rss_gib"], **style)
    axes[0].set(xlabel="train interactions (synthetic, power-law)", ylabel="seconds per training step",
                title="Step time (3 layers, 64-d, batch 8,192)")
    axes[1].set(xlabel="train interactions (synthetic, power-law)", ylabel="peak resident memory (GiB)",
                title="Peak memory of one process")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_published_curves(curves: pd.DataFrame) -> plt.Figure:
    """The published methods trained end to end: validation recall@20 (Hamming and continuous search)
    against the epoch, one line per method, so a reader sees each one reach its plateau."""
    set_style()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharey=False)
    for name, c in curves.groupby("estimator", sort=True):
        for ax, col in zip(axes, ("valid_hamming/recall@20", "valid_continuous/recall@20")):
            c2 = c.dropna(subset=[col]) if col in c else c.iloc[:0]
            ax.plot(c2["epoch"], c2[col], marker="o", markersize=3, label=name)
    axes[0].set(xlabel="epoch", ylabel="valid recall@20, Hamming search", title="Codes")
    axes[1].set(xlabel="epoch", ylabel="valid recall@20, continuous", title="Continuous embeddings")
    for ax in axes:
        ax.legend(title="method (as published)", fontsize=8)
    fig.tight_layout()
    return fig


def plot_comparison_bits(bits: pd.DataFrame, continuous: dict | None = None,
                         published: dict | None = None) -> plt.Figure:
    """Recall@20 and recall@50 against the code length (Hamming and hierarchical search, log₂ x axis),
    one panel per metric; the top axis gives each item's memory (``bits / 8`` bytes of code).
    ``continuous``: ``{"recall@20": …, "recall@50": …}`` of the continuous model, drawn dashed;
    ``published``: ``{metric: (label, value)}``, a published number drawn dotted (its code length unstated)."""
    set_style()
    metrics = ("recall@20", "recall@50")
    fig, axes = plt.subplots(1, len(metrics), figsize=(9.5, 3.6), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        for search, group in bits.groupby("search", sort=False):
            g = group.groupby("bits", as_index=False)[metric].mean().sort_values("bits")
            ax.plot(g["bits"], g[metric], marker="o", label=f"{search} search")
        if continuous and metric in continuous:
            ax.axhline(continuous[metric], ls="--", color="0.4", label="continuous (64-d float)")
        if published and metric in published:
            label, value = published[metric]
            ax.axhline(value, ls=":", color="C3", label=label)
            ax.legend(loc="lower right", fontsize=8)
        ax.set_xscale("log", base=2)
        ticks = sorted(bits["bits"].unique())
        ax.set_xticks(ticks)
        ax.xaxis.set_major_formatter(mticker.FixedFormatter([str(t) for t in ticks]))
        ax.xaxis.set_minor_formatter(mticker.NullFormatter())
        ax.set_xlabel("code length K (bits)")
        ax.set_ylabel(f"test {metric}")
        top = ax.secondary_xaxis("top")
        top.set_xticks(ticks)
        top.xaxis.set_major_formatter(mticker.FixedFormatter([f"{t // 8} B" for t in ticks]))
        top.xaxis.set_minor_formatter(mticker.NullFormatter())
        top.set_xlabel("code memory per item")
    axes[0][0].legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return fig
