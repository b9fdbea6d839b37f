"""The committed report: rendered from the committed ``results/default/``, every table's numbers in its text."""
from __future__ import annotations

import json
import re

import pytest

from hashrec_utils.config import repo_root
from hashrec_utils.report import build_report

RESULTS = repo_root() / "results" / "default"
pytestmark = pytest.mark.skipif(not (RESULTS / "lightgcn_metrics.json").exists(),
                                reason="no committed default results (run make all)")


def typst_str(x: float, digits: int = 4) -> str:
    """What the report's ``fmt`` prints: ``str(calc.round(x, digits))``."""
    r = round(float(x), digits)
    return str(int(r)) if r == int(r) else repr(r)


def load(name: str):
    return json.loads((RESULTS / name).read_text())


@pytest.fixture(scope="module")
def text(tmp_path_factory) -> str:
    from pypdf import PdfReader

    pdf = build_report("default", tmp_path_factory.mktemp("report") / "report.pdf")
    reader = PdfReader(pdf)
    assert len(reader.pages) >= 6
    return re.sub(r"\s+", " ", " ".join(page.extract_text() for page in reader.pages))


def test_every_section_is_there_and_none_is_missing(text):
    for heading in ("Abstract", "Method", "LightGCN", "Hash layer", "Losses", "Experimental set-up", "Results",
                    "Estimators and search modes", "Guided STE against STE", "Parameter analysis", "Faiss baselines",
                    "Accuracy at a fixed throughput", "Scaling", "Comparison with published numbers", "Limitations"):
        assert heading in text, heading
    assert "Not yet run" not in text  # every section filled from results


def test_lightgcn_and_data_tables(text):
    for row in load("lightgcn_metrics.json"):
        for key in ("recall@20", "ndcg@20", "recall@50"):
            assert typst_str(row[key]) in text, (row["dataset"], key)
    for row in load("lightgcn_layers.json"):
        assert typst_str(row["recall@20"]) in text
    for row in load("data_stats.json"):
        assert f"{row['interactions']:,}" in text


def test_estimator_table(text):
    for row in load("hashing_table.json"):
        if row["estimator"] == "lightgcn (continuous)":
            continue
        assert typst_str(row["recall@20_mean"]) in text, (row["estimator"], row["search"])
        if row["search"] != "continuous":
            assert typst_str(row["recall@20_vs_lightgcn"], 3) in text, (row["estimator"], row["search"])


def fixed_str(x: float, digits: int = 3) -> str:
    """What the report's ``fixed`` prints: exactly ``digits`` decimals."""
    return f"{round(float(x), digits):.{digits}f}"


def test_fixed_throughput_and_faiss_tables(text):
    summary = load("tradeoff_summary.json")
    assert summary["headline"].split(",")[0] in text and summary["teacher_run"] in text and summary["codes_run"] in text
    for row in load("tradeoff_fixed.json"):
        if row["recall@20"] is not None:
            assert fixed_str(row["recall_ratio"]) in text, (row["method"], row["multiple_of_exact"])
    for row in load("tradeoff_fixed_plain.json"):
        if row["recall_vs_exact_plain"] is not None:
            assert fixed_str(row["recall_vs_exact_plain"]) in text, (row["method"], row["multiple_of_exact"])
    for row in load("tradeoff_latency.json"):
        assert typst_str(row["latency_p50_ms"], 2) in text, row["method"]
    for row in load("retrieval_build.json"):
        assert typst_str(row["best_recall"]) in text, row["method"]


def test_sampled_catalogue_section(text):
    from hashrec_utils.report import scaling_files

    files = scaling_files("default")  # Gowalla's catalogues (full's record) where committed, else ml-1m's
    summary = json.loads((repo_root() / files["summary"].lstrip("/")).read_text())
    assert summary["codes_run"] in text
    top = max(int(n) for n in summary["sizes"])
    assert f"{top:,}" in text
    assert typst_str(summary["sizes"][str(top)]["near_duplicate_share"]["share"]) in text
    assert summary["sizes"][str(top)]["near_duplicate_share"]["share"] <= 0.05


def test_comparison_section_reads_the_committed_gowalla_table(text):
    """The published-numbers comparison quotes notebook 07's table (this profile's, else the full
    profile's committed one) and names what it has not run yet."""
    from hashrec_utils.report import comparison_files

    files = comparison_files("default")
    if files is None:
        pytest.skip("no comparison results committed")
    summary = json.loads((repo_root() / files["summary"].lstrip("/")).read_text())
    for dataset, s in summary.items():
        assert typst_str(s["best_hamming_recall@50"]) in text and typst_str(s["best_hierarchical_recall@50"]) in text
        if any(s["pending"].get(k) for k in ("rows", "bits", "top_rows_seeds")):
            assert "Pending (the" in text


def test_published_budget_table_prints_every_recorded_step(text):
    """BGCH's and BiGeaR's official steps (scripts/published_budget.py) appear with their test numbers."""
    from hashrec_utils.report import comparison_files

    files = comparison_files("default")
    if files is None or files.get("published_budget") is None:
        pytest.skip("no published-budget record committed")
    record = json.loads((repo_root() / files["published_budget"].lstrip("/")).read_text())
    assert "official steps, one at a time" in text
    for v in record["variants"].values():
        for m in ("recall@50", "ndcg@100"):
            assert fixed_str(v["hamming"][m], 4) in text, (v["variant"], m)
