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
from .utils import atomic_write, write_json

__all__ = ["report_path", "write_manifest", "build_report", "PUBLISHED"]

# Numbers published by the papers in shared/papers (and the LightGCN paper), for the
# report's comparison section. Gowalla, the LightGCN paper's split, 64-bit codes.
PUBLISHED = [
    {"source": "LightGCN (He et al., SIGIR 2020), Table 4", "method": "LightGCN", "dataset": "gowalla",
     "recall@20": 0.1830, "ndcg@20": 0.1554},
    {"source": "Luo & Wu (AAAI student abstract), table", "method": "smooth recall + SignSwish", "dataset": "gowalla",
     "recall@50": 0.23082, "ndcg@50": 0.15109},
    {"source": "Luo & Wu (AAAI student abstract), table", "method": "BGCH", "dataset": "gowalla",
     "recall@50": 0.19160, "ndcg@50": 0.12740},
    {"source": "Luo & Wu (AAAI student abstract), table", "method": "HashGNN", "dataset": "gowalla",
     "recall@50": 0.09481, "ndcg@50": 0.05112},
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
    }
    write_json(folder / "manifest.json", manifest)
    return manifest


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
