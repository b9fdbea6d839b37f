"""Plot helpers: the Pareto frontier on a hand-made table, files written as PNG + PDF."""
from __future__ import annotations

import numpy as np
import pandas as pd

from hashrec_utils.plotting import degree_ccdf, pareto_frontier, plot_tradeoff, savefig


def test_pareto_frontier_by_hand():
    df = pd.DataFrame({
        "method": ["a", "b", "c", "d", "e"],
        "qps": [100.0, 200.0, 150.0, 400.0, 400.0],
        "recall@20": [0.30, 0.25, 0.20, 0.10, 0.12],
    })
    front = pareto_frontier(df)
    # c is beaten by b (faster and better); d ties e on qps with lower recall
    assert front["method"].tolist() == ["a", "b", "e"]


def test_degree_ccdf_by_hand():
    cc = degree_ccdf(np.array([0, 1, 1, 2, 5]))
    assert cc["degree"].tolist() == [1, 2, 5]
    np.testing.assert_allclose(cc["fraction"], [1.0, 0.5, 0.25])


def test_savefig_writes_png_and_pdf(tmp_path):
    df = pd.DataFrame({"method": ["a", "a", "b"], "qps": [10.0, 100.0, 50.0], "recall@20": [0.3, 0.2, 0.25]})
    paths = savefig(plot_tradeoff(df), "tradeoff", folder=tmp_path)
    assert [p.name for p in paths] == ["tradeoff.png", "tradeoff.pdf"]
    assert paths[0].read_bytes()[:4] == b"\x89PNG" and paths[1].read_bytes()[:4] == b"%PDF"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tradeoff.pdf", "tradeoff.png"]  # no temp files left
