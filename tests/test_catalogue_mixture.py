"""The sampled catalogue: its items follow the mixture fitted to a trained model's, codes through the
hash layer, distinct items, the near-duplicate share measured against a brute-force count."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hashrec_utils.catalogue import operating_points
from hashrec_utils.catalogue_mixture import fit_item_mixture, near_duplicate_share


def trained_like(n=600, d=8, bits=16, seed=0):
    """Items in 6 clusters, a table close to the embeddings (as a fine-tuned table is), a random hash layer."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((6, d)) * 3
    emb = (centres[rng.integers(0, 6, n)] + rng.standard_normal((n, d))).astype(np.float32)
    table = (emb + 0.1 * rng.standard_normal((n, d))).astype(np.float32)
    return emb, table, rng.standard_normal((bits, d)).astype(np.float32), rng.standard_normal(bits).astype(np.float32)


def test_samples_keep_the_items_geometry_and_code_through_the_hash_layer():
    emb, table, w, b = trained_like()
    mix = fit_item_mixture(emb, table, w, b, items_per_component=50)
    assert mix.components == 12 and np.isclose(mix.weights.sum(), 1.0)
    new, codes = mix.sample(20_000, seed=3, chunk=4096)
    assert new.shape == (20_000, 8) and codes.shape == (20_000, 2) and codes.dtype == np.uint8
    np.testing.assert_allclose(new.mean(0), emb.mean(0), atol=0.1)
    np.testing.assert_allclose(new.std(0), emb.std(0), rtol=0.1)
    assert len(np.unique(new, axis=0)) == len(new)  # distinct items
    # the codes follow the sampled items as trained codes follow theirs: sign(W t + b), t close to e
    agree = np.unpackbits(codes, axis=1) == (new @ w.T + b >= 0)
    assert agree.mean() > 0.9
    again, codes2 = mix.sample(20_000, seed=3, chunk=4096)
    np.testing.assert_array_equal(again, new)
    np.testing.assert_array_equal(codes2, codes)
    with pytest.raises(ValueError, match="n_items must be"):
        mix.sample(-1)
    with pytest.raises(ValueError, match="shrinkage"):
        fit_item_mixture(emb, table, w, b, shrinkage=2.0)
    with pytest.raises(ValueError, match="one shape"):
        fit_item_mixture(emb, table[:5], w, b)


def test_near_duplicate_share_equals_a_brute_force_count():
    emb, table, w, b = trained_like(n=300)
    rng = np.random.default_rng(1)
    cat = np.vstack([emb, emb[:150] + 1e-3 * rng.standard_normal((150, 8))]).astype(np.float32)  # 150 near-copies
    got = near_duplicate_share(emb, cat, sample=len(cat), seed=0)
    d_real = np.sqrt(((emb[:, None] - emb[None]) ** 2).sum(-1))
    np.fill_diagonal(d_real, np.inf)
    threshold = np.percentile(d_real.min(1), 1)
    d_cat = np.sqrt(((cat[:, None] - cat[None]) ** 2).sum(-1))
    np.fill_diagonal(d_cat, np.inf)
    assert got["threshold"] == pytest.approx(threshold, rel=1e-4)
    assert got["share"] == pytest.approx(np.mean(d_cat.min(1) < threshold), abs=1e-9)
    assert got["share"] >= 300 / 450 - 0.01  # each copy and its original are near-duplicates


def test_operating_points_pick_the_fastest_setting_reaching_each_target():
    rows = pd.DataFrame({"items": [10] * 4, "method": ["a", "a", "a", "b"], "qps": [100.0, 50.0, 10.0, 1000.0],
                         "recall_vs_exact": [0.85, 0.92, 0.99, 0.5]})
    got = {(r["method"], r["target"]): r["qps"] for r in operating_points(rows)}
    assert got[("a", 0.9)] == 50.0 and got[("a", 0.95)] == 10.0 and np.isnan(got[("b", 0.9)])
