"""Where a study of a user's dataset writes, and its figures and PDF report (:mod:`hashrec_utils.study`).

``results/<name>/``, ``figures/<name>/``, ``runs/<name>/`` and ``report/study-<name>.pdf`` under
:func:`~hashrec_utils.config.repo_root` (:func:`study_paths`); :func:`study_figures` draws the two
figures from the study's table; :func:`build_study_report` compiles ``report/study.typ``, which
reads the study's JSON files.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .config import repo_root
from .plotting import savefig, set_style
from .utils import atomic_write

__all__ = ["StudyPaths", "study_paths", "study_figures", "build_study_report"]


@dataclass(frozen=True)
class StudyPaths:
    results: Path
    figures: Path
    runs: Path
    report: Path


def study_paths(name: str) -> StudyPaths:
    """Where a study of dataset ``name`` writes, under :func:`~hashrec_utils.config.repo_root`."""
    root = repo_root()
    return StudyPaths(root / "results" / name, root / "figures" / name, root / "runs" / name,
                      root / "report" / f"study-{name}.pdf")


def study_figures(table: pd.DataFrame, name: str, folder: Path, bits: int) -> list[Path]:
    """``study_tradeoff`` (recall@20 against queries per second, one point per search) and
    ``study_ratio`` (each search's recall@20 as a fraction of exact search's), PNG + PDF in ``folder``."""
    import matplotlib.pyplot as plt
    import seaborn as sns


    set_style()
    colours = dict(zip(("continuous", "hamming", "hierarchical"), sns.color_palette("colorblind", 3)))
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    for _, row in table.iterrows():
        ax.scatter(row["queries_per_s"], row["recall@20"], s=48, color=colours[row["search"]], zorder=3)
        ax.annotate(row["label"], (row["queries_per_s"], row["recall@20"]), xytext=(5, 4),
                    textcoords="offset points", fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("throughput (queries per second, log scale; 2 threads)")
    ax.set_ylabel("test recall @ 20")
    ax.set_title(f"{name}: accuracy against speed ({bits}-bit codes)")
    ax.margins(x=0.25, y=0.15)
    fig.tight_layout()
    paths = savefig(fig, "study_tradeoff", folder=folder)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6.4, 3.4))
    labels = [lab.replace(" (", "\n(") for lab in table["label"]]
    ax.bar(labels, table["ratio_vs_exact"], color=[colours[s] for s in table["search"]])
    ax.axhline(1.0, color="black", lw=0.8, ls="--", zorder=0)
    for x, r in enumerate(table["ratio_vs_exact"]):
        ax.text(x, r / 2, f"{r:.2f}", ha="center", va="center", fontsize=9, color="white", weight="bold")
    ax.set_ylim(0, max(1.0, float(table["ratio_vs_exact"].max())) * 1.08)
    ax.set_ylabel("recall @ 20 as a fraction\nof exact search's")
    ax.set_xlabel("search")
    ax.set_title(f"{name}: accuracy kept by each search")
    fig.tight_layout()
    paths += savefig(fig, "study_ratio", folder=folder)
    plt.close(fig)
    return paths


def build_study_report(name: str, output: str | Path | None = None) -> Path:
    """Compile ``report/study.typ`` for the study of ``name`` (its results and figures under
    :func:`~hashrec_utils.config.repo_root`); returns the PDF path (written atomically)."""
    import typst

    source = Path(__file__).resolve().parent.parent / "report" / "study.typ"
    if not source.is_file():  # an installed package: the checkout's report/ folder
        source = repo_root() / "report" / "study.typ"
    output = Path(output) if output is not None else study_paths(name).report
    # the source is passed as bytes: repo_root() (HASHREC_ROOT) need not hold report/study.typ
    pdf = typst.compile(source.read_bytes(), root=str(repo_root()), sys_inputs={"name": name}, timestamp=0)
    with atomic_write(output, "wb") as fh:
        fh.write(pdf)
    return output
