"""The item-scale power is chosen on validation (hashrec_utils.item_scale): where item norms
carry the held-out interactions the scale byte wins and a power > 0 is chosen; where every norm is
equal all powers tie and the unscaled search (p = 0, no byte) is kept."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import scipy.sparse as sp

from hashrec_utils.item_scale import item_scale_metrics
from hashrec_utils.hashing import pack_codes


def _split(popularity, n_users, per_user, rng):
    p = popularity / popularity.sum()
    rows, cols = [], []
    for u in range(n_users):
        items = rng.choice(len(p), per_user, replace=False, p=p)
        rows += [u] * per_user
        cols += items.tolist()
    return sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(n_users, len(p)))


def _run(tmp_path, norms, rng, n_users=300, bits=16):
    n_items = len(norms)
    item = rng.standard_normal((n_items, bits)).astype(np.float32)
    item *= (norms / np.linalg.norm(item, axis=1))[:, None]
    np.savez(tmp_path / "embeddings.npz", user_query=rng.standard_normal((n_users, bits)).astype(np.float32),
             item_codes=pack_codes(item), item=item)
    train, valid, test = (_split(norms**3, n_users, 4, rng) for _ in range(3))
    return SimpleNamespace(train=train, valid=valid, test=test, train_full=(train + valid).tocsr())


def test_norms_that_carry_the_interactions_are_chosen(tmp_path):
    rng = np.random.default_rng(0)
    norms = np.exp(rng.normal(0, 1, 400))
    data = _run(tmp_path, norms, rng)
    m = item_scale_metrics(tmp_path, data=data)
    assert m["power"] > 0 and m["valid_recall@20"][m["powers"].index(m["power"])] > m["valid_recall@20"][0] + 0.05
    assert m["test"]["recall@20"] > m["test_unscaled"]["recall@20"] + 0.05
    assert m["bytes_per_item"] > 2 and m["scale_error"] < 0.02


def test_equal_norms_keep_the_unscaled_search(tmp_path):
    rng = np.random.default_rng(1)
    data = _run(tmp_path, np.ones(400), rng)
    m = item_scale_metrics(tmp_path, data=data)
    assert len(set(m["valid_recall@20"])) == 1 and m["power"] == 0.0
    assert m["test"] == m["test_unscaled"] and m["bytes_per_item"] == 2.0
