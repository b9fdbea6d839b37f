"""Build the PDF report with Typst (no TeX): ``report/report.typ`` → PDF.

The Typst source reads every number from ``results/<profile>/`` with
``json()`` / ``csv()``. Typst cannot ask whether a file exists, so before
compiling we write ``results/<profile>/manifest.json`` listing the results
files present; the report shows a section's tables only when its files are
listed, and says plainly which stages have not been run yet.
"""
from __future__ import annotations

from pathlib import Path

from .config import check_profile, repo_root, results_dir
from .utils import atomic_write, read_json, write_json

__all__ = ["report_path", "write_manifest", "build_report", "PUBLISHED"]

# Numbers published by the papers in shared/papers (and the LightGCN paper), for the
# report's comparison section and notebook 07. Gowalla, the LightGCN paper's split. ``row``: the
# hashrec table row that runs the same method (None: not run here).
_LUO_WU = "Luo & Wu (AAAI student abstract), table"
# Their protocol, as far as the sources say: the abstract states neither the code length nor how the
# epoch was chosen; BGCH's and BiGeaR's official code evaluate on the test split every few epochs and
# keep the best, with one sign bit per dimension per layer (a 256-d, 3-layer model: 768 bits) and a
# float scale per layer.
_LUO_WU_PROTOCOL = "code length not stated; epoch selection not stated"
PUBLISHED = [
    {"source": "LightGCN (He et al., SIGIR 2020), Table 4", "method": "LightGCN", "dataset": "gowalla",
     "recall@20": 0.1830, "ndcg@20": 0.1554, "bits": None, "protocol": "64-d float embeddings"},
    {"source": _LUO_WU, "method": "smooth recall + SignSwish", "dataset": "gowalla", "row": "luo_wu",
     "recall@50": 0.23082, "recall@100": 0.31396, "ndcg@50": 0.15109, "ndcg@100": 0.17424,
     "bits": None, "protocol": _LUO_WU_PROTOCOL},
    {"source": _LUO_WU, "method": "BGCH", "dataset": "gowalla", "row": "bgch_published",
     "recall@50": 0.19160, "recall@100": 0.26590, "ndcg@50": 0.12740, "ndcg@100": 0.14840,
     "bits": None, "protocol": _LUO_WU_PROTOCOL + " (official code: a sign bit per dimension per layer, best test epoch)"},
    {"source": _LUO_WU, "method": "HashGNN", "dataset": "gowalla", "row": "hashgnn",
     "recall@50": 0.09481, "recall@100": 0.15110, "ndcg@50": 0.05112, "ndcg@100": 0.06649,
     "bits": None, "protocol": _LUO_WU_PROTOCOL},
    {"source": _LUO_WU, "method": "HashRec", "dataset": "gowalla", "row": None,
     "recall@50": 0.12060, "recall@100": 0.18930, "ndcg@50": 0.06160, "ndcg@100": 0.08100,
     "bits": None, "protocol": _LUO_WU_PROTOCOL + "; method not identified further in the abstract"},
]


def report_path(profile: str) -> Path:
    """``report/report.pdf`` for ``default``, ``report/report-<profile>.pdf`` otherwise."""
    suffix = "" if check_profile(profile) == "default" else f"-{profile}"
    return repo_root() / "report" / f"report{suffix}.pdf"


def write_manifest(profile: str) -> dict:
    folder = results_dir(profile)
    files = sorted(p.name for p in folder.glob("*") if p.suffix in (".json", ".csv") and p.name != "manifest.json")
    figures = repo_root() / "figures" / profile
    # runs outside make all (the full profile's Gowalla runs, `python -m hashrec_utils collect`)
    full_runs = results_dir("full") / "runs.json"
    manifest = {
        "profile": profile,
        "results": files,
        "figures": sorted(p.stem for p in figures.glob("*.png")) if figures.is_dir() else [],
        "full_runs": "/results/full/runs.json" if full_runs.exists() else None,
        "comparison": comparison_files(profile),
        "tradeoff": tradeoff_files(profile),
        "scaling": scaling_files(profile),
    }
    write_json(folder / "manifest.json", manifest)
    return manifest


def comparison_files(profile: str) -> dict | None:
    """Where the report reads notebook 07's comparison: this profile's results, else the ``full``
    profile's (``make all`` in ``default`` trains no Gowalla table); ``None`` where neither ran.
    Paths are relative to the repository (Typst's root); ``figures``: ``{dataset: png path}``;
    ``tuning``: that profile's validation grid (every dataset's points), ``None`` where it has none;
    ``published_budget``: BGCH's and BiGeaR's official steps one at a time, ``None`` where not run;
    ``teacher_size``: ``{dataset: path}`` of the teacher-size records (empty where none was made)."""
    for source in dict.fromkeys((profile, "full")):
        folder = results_dir(source)
        if (folder / "comparison_table.json").exists() and (folder / "comparison_summary.json").exists():
            figs = repo_root() / "figures" / source
            tuning = folder / "tuning.json"
            return {"profile": source, **{name: f"/results/{source}/comparison_{name}.json" for name in ("table", "summary", "bits")},
                    "tuning": f"/results/{source}/tuning.json" if tuning.exists() else None,
                    "asymmetric": f"/results/{source}/comparison_asymmetric.json"
                    if (folder / "comparison_asymmetric.json").exists() else None,
                    # BGCH's and BiGeaR's official steps, one at a time (scripts/published_budget.py)
                    "published_budget": f"/results/{source}/published_budget.json"
                    if (folder / "published_budget.json").exists() else None,
                    # the teacher's size chosen on validation (teacher-size), per dataset
                    "teacher_size": {p.stem.removeprefix("teacher_size_"): f"/results/{source}/{p.name}"
                                     for p in sorted(folder.glob("teacher_size_*.json"))},
                    "figures": {p.stem.removeprefix("comparison_bits_"): f"/figures/{source}/{p.name}"
                                for p in sorted(figs.glob("comparison_bits_*.png"))}}
    return None


TRADEOFF_DATASETS = (("ml-1m", ""), ("gowalla", "_gowalla"))


def tradeoff_files(profile: str) -> dict:
    """Per dataset, where the report reads notebook 05's tradeoff: this profile's results for a dataset
    it sweeps (``tradeoff_datasets``), else the ``full`` profile's committed ones (Gowalla in
    ``default``, which trains no Gowalla model: the tradeoff searches the comparison's). Only
    records of this protocol count (a summary naming its ``multiples``); paths relative to the
    repository: ``summary``, ``fixed``, ``fixed_plain``, ``latency`` (those present), ``figure``."""
    from .profiles import get_profile

    out = {}
    for dataset, suffix in TRADEOFF_DATASETS:
        sources = (profile,) if dataset in get_profile(profile).tradeoff_datasets else ("full",)
        for source in sources:
            folder = results_dir(source)
            summary = folder / f"tradeoff_summary{suffix}.json"
            if not summary.exists() or "multiples" not in read_json(summary):
                continue
            files = {name: f"/results/{source}/tradeoff_{name}{suffix}.json"
                     for name in ("summary", "fixed", "fixed_plain", "latency")
                     if (folder / f"tradeoff_{name}{suffix}.json").exists()}
            figure = repo_root() / "figures" / source / f"tradeoff{suffix}.png"
            out[dataset] = {"profile": source, **files,
                            "figure": f"/figures/{source}/{figure.name}" if figure.exists() else None}
    return out


def scaling_files(profile: str) -> dict | None:
    """Where the report reads the sampled catalogues: those fitted to Gowalla's trained items (the largest
    real catalogue; this profile's, else the ``full`` profile's committed ones), else this profile's
    ml-1m ones (notebook 04); ``None`` where none ran. Paths relative to the repository."""
    for source, suffix in dict.fromkeys(((profile, "_gowalla"), ("full", "_gowalla"), (profile, ""))):
        folder = results_dir(source)
        summary, table = folder / f"retrieval_scaling_summary{suffix}.json", folder / f"retrieval_scaling{suffix}.json"
        record = read_json(summary) if summary.exists() and table.exists() else {}
        if "operating_points" in record:
            figure = repo_root() / "figures" / source / f"retrieval_scaling{suffix}.png"
            return {"profile": source, "dataset": record.get("dataset", "ml-1m"),
                    "summary": f"/results/{source}/{summary.name}", "table": f"/results/{source}/{table.name}",
                    "figure": f"/figures/{source}/{figure.name}" if figure.exists() else None}
    return None


def build_report(profile: str = "default", output: str | Path | None = None) -> Path:
    """Compile ``report/report.typ`` for ``profile``; returns the PDF path (written atomically)."""
    import typst

    root = repo_root()
    write_json(repo_root() / "results" / "published.json", PUBLISHED)
    write_manifest(profile)
    output = Path(output) if output is not None else report_path(profile)
    # A fixed timestamp keeps the PDF identical when the results are.
    pdf = typst.compile(
        str(root / "report" / "report.typ"),
        root=str(root),
        sys_inputs={"profile": profile},
        timestamp=0,
    )
    with atomic_write(output, "wb") as fh:
        fh.write(pdf)
    return output
