"""A scale byte an item for asymmetric search, its power chosen on validation.

Asymmetric search scores ``⟨a_u, b_i⟩``: the item's ±1 code keeps its direction and drops its
magnitude. Where the teacher's item norms carry the ranking (sparse data: a LightGCN trained on few
interactions a user, whose item norms track popularity) that loses most of the teacher's recall.
The scaled scan (:class:`~hashrec_utils.retrieval.ScaledAsymmetricIndex`) scores
``‖e_i‖^p · ⟨a_u, b_i⟩`` from one more byte an item, with ``e_i`` the item's continuous embedding
the hash run holds (its teacher's) and the power ``p`` chosen on validation from :data:`POWERS`
(``p = 0``: plain asymmetric search, unquantised queries), so a dataset where magnitudes do not help
keeps ``p = 0``. Test is read once, at the chosen power.

:func:`item_scale` does it for a hash run's arrays; every hash run with a validation split writes its
result to ``item_scale.json`` beside ``metrics.json`` (:func:`hashrec_utils.training.runs.run`; a file
of its own, so the evaluation's identity and every ``metrics.json`` number stay as they were);
:func:`item_scale_metrics` reads a run folder (runs trained before it), ``scripts/item_scale.py``
several, writing ``results/<profile>/item_scale_<name>.json``.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

__all__ = ["POWERS", "item_scale", "item_scale_metrics", "FILE"]

FILE = "item_scale.json"

POWERS = (0.0, 0.25, 0.5, 0.75, 1.0)


def item_scale(arrays: dict, data, powers: tuple[float, ...] = POWERS, *, ks: tuple[int, ...] = (20, 50, 100),
               threads: int | None = None) -> dict:
    """For a hash run's ``arrays`` (``user_query``, ``item_codes``, ``item``): validation recall@20 (train
    items excluded) of the scaled scan at each power, the chosen power (the best on validation; ties
    to the smaller), and the test metrics (train and validation items excluded) at it and at ``p = 0``.
    Needs a validation split."""
    from .metrics import evaluate_topk
    from .retrieval import ScaledAsymmetricIndex

    if data.valid.nnz == 0:
        raise ValueError("the item scale is chosen on validation, and this data has no validation split")
    missing = [k for k in ("user_query", "item_codes", "item") if k not in arrays]
    if missing:
        raise ValueError(f"the scaled scan needs the arrays {', '.join(missing)}: not a hash run whose users are "
                         f"scored asymmetrically")
    query, codes, item = arrays["user_query"], arrays["item_codes"], arrays["item"]
    norm = np.linalg.norm(np.asarray(item, dtype=np.float64), axis=1)
    norm = np.maximum(norm, norm[norm > 0].min() if (norm > 0).any() else 1.0)  # a zero vector: the smallest norm
    valid_users = np.flatnonzero(np.diff(data.valid.indptr))
    valid, indexes = [], {}
    for p in powers:
        index = ScaledAsymmetricIndex(codes.shape[1] * 8, threads).build((codes, norm**p))
        ids = index.search(query[valid_users], 20, data.train[valid_users])[1]
        valid.append(evaluate_topk(ids, data.valid[valid_users], ks=(20,))["recall@20"])
        indexes[p] = index
    best = powers[int(np.argmax(valid))]

    def test(p):
        ids = indexes[p].search(query, max(ks), data.train_full)[1]
        return {k: v for k, v in evaluate_topk(ids, data.test, ks=ks).items() if "@" in k}

    unscaled = test(0.0) if 0.0 in indexes else None
    return {"powers": list(powers), "valid_recall@20": valid, "power": best,
            "test": unscaled if best == 0.0 else test(best), "test_unscaled": unscaled,
            # p = 0 needs no scale byte: plain asymmetric search of the codes
            "bytes_per_item": indexes[best].memory_bytes() / len(codes) if best else float(codes.shape[1]),
            "scale_error": indexes[best].scale_error() if best else 0.0}


def item_scale_metrics(run: str | os.PathLike, powers: tuple[float, ...] = POWERS, *, data=None,
                       ks: tuple[int, ...] = (20, 50, 100), threads: int | None = None) -> dict:
    """:func:`item_scale` of hash run folder ``run`` (its ``embeddings.npz``; its data from its
    ``config.json`` unless ``data`` is given), with the run's name."""
    from .training.runs import load_run_data, run_config

    run = Path(run)
    data = load_run_data(run_config(run)) if data is None else data
    with np.load(run / "embeddings.npz") as npz:
        arrays = {k: npz[k] for k in ("user_query", "item_codes", "item") if k in npz.files}
    return {"run": run.name, **item_scale(arrays, data, powers, ks=ks, threads=threads)}
