"""Evaluation: a trained model's (or saved run's) arrays, searched in each mode and scored.

One code path for every model and every saved run: :func:`model_arrays` takes what search
needs from a model (``user``, ``item`` embeddings; a hash model adds packed ``user_codes``,
``item_codes``, the users' real-valued hash-layer outputs ``user_query`` and its
``extra_arrays``, e.g. BGCH's per-row code scales) — the same arrays ``embeddings.npz`` holds — and :func:`evaluate_arrays` searches them in each
:class:`SearchMode` and scores the top-k against held-out interactions
(:func:`hashrec_utils.metrics.evaluate_topk`, excluded items never recommended).

Search modes of a hash run (:data:`HASH_SEARCH_MODES`, each a section of ``metrics.json``):

``continuous``    exact inner product ``⟨e_u, e_i⟩`` of the continuous embeddings;
``hamming``       the codes, ``⟨b_u, b_i⟩`` by popcount (scaled codes, BGCH/BiGeaR:
                  ``α_i ⟨b_u, b_i⟩``, as their official ``get_scores`` ranks);
``hierarchical``  the top-``C`` of the ``hamming`` ranking re-ranked by ``⟨e_u, e_i⟩``;
``asymmetric``    the user's real-valued hash-layer output ``a_u`` against the item codes,
                  ``⟨a_u, b_i⟩`` (:class:`~hashrec_utils.retrieval.AsymmetricIndex`; scaled codes
                  ``α_i ⟨a_u, b_i⟩``): binary items, real-valued users, the items' bytes unchanged.

A model without codes is ranked by the inner product alone (flat metrics, no sections).

Evaluation is versioned apart from training (:func:`evaluation_components`, written to
``metrics.json`` as ``evaluation``): a new or changed mode re-scores saved runs from their kept
weights (:func:`hashrec_utils.training.runs.run`) without retraining them. Bump
:data:`METRICS_VERSION` when a metric's formula changes, a mode's ``version`` when what it
returns changes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import scipy.sparse as sp
import torch

from .metrics import evaluate_topk, rank_topk

__all__ = ["METRICS_VERSION", "SearchMode", "HASH_SEARCH_MODES", "SEARCH_NAMES", "model_arrays", "evaluate_arrays", "evaluate_model",
           "evaluation_components"]

KS = (10, 20, 50)
# the metrics' formulas (hit matrix, recall, NDCG, precision, hit rate) and the exclusion rule
METRICS_VERSION = 1


@dataclass(frozen=True)
class SearchMode:
    """One way of searching a hash run's arrays: ``topk(arrays, k, exclude, candidates) -> ids (n_users, k)``.

    ``version``: bump it when what ``topk`` returns changes; saved runs are then re-scored.
    ``kernels``: the retrieval kernels it calls (:data:`~hashrec_utils.retrieval.KERNEL_VERSIONS`), whose
    versions join the evaluation's identity. ``needs``: the arrays it reads; a run without them
    (say, codes made without a hash layer) has no section for this mode.
    """

    name: str
    topk: Callable[[dict, int, sp.csr_matrix | None, int], np.ndarray]
    version: int = 1
    kernels: tuple[str, ...] = ()
    needs: tuple[str, ...] = ("user_codes", "item_codes")


def _continuous(a: dict, k: int, exclude, candidates: int) -> np.ndarray:
    from .retrieval import continuous_topk

    return continuous_topk(a["user"], a["item"], k, exclude)


def _hamming(a: dict, k: int, exclude, candidates: int) -> np.ndarray:
    from .hashing import scaled_code_topk
    from .retrieval import hamming_topk

    if "item_scales" in a:
        return scaled_code_topk(a["user_codes"], a["item_codes"], a["item_scales"], k, exclude,
                                user_scales=a.get("user_scales"))
    return hamming_topk(a["user_codes"], a["item_codes"], k, exclude)


def _hierarchical(a: dict, k: int, exclude, candidates: int) -> np.ndarray:
    from .hashing import scaled_code_topk
    from .retrieval import hierarchical_topk

    c = max(candidates, k)
    if "item_scales" in a:
        return scaled_code_topk(a["user_codes"], a["item_codes"], a["item_scales"], k, exclude, candidates=c,
                                user_emb=a["user"], item_emb=a["item"], user_scales=a.get("user_scales"))[1]
    return hierarchical_topk(a["user_codes"], a["item_codes"], a["user"], a["item"], k, c, exclude)


def _asymmetric(a: dict, k: int, exclude, candidates: int) -> np.ndarray:
    from .hashing import dequantize
    from .retrieval import asymmetric_topk, continuous_topk

    if "item_scales" in a:  # scaled codes: <a_u, α_i b_i> (a scale per layer: Σ_l <a_u^l, α_i^l b_i^l>), by float search
        return continuous_topk(a["user_query"], dequantize(a["item_codes"], a["item_scales"], np.float32), k, exclude)
    return asymmetric_topk(a["user_query"], a["item_codes"], k, exclude)


HASH_SEARCH_MODES = (SearchMode("continuous", _continuous, kernels=("exact",), needs=("user", "item")),
                     SearchMode("hamming", _hamming, kernels=("exact", "hamming")),
                     SearchMode("hierarchical", _hierarchical, kernels=("exact", "hamming", "hierarchical", "fused")),
                     SearchMode("asymmetric", _asymmetric, kernels=("exact", "asymmetric"),
                                needs=("user_query", "item_codes")))


# the modes' names in the order tables and figures show them
SEARCH_NAMES = tuple(m.name for m in HASH_SEARCH_MODES)


def evaluation_components(modes=None) -> dict[str, int]:
    """The versions that decide a run's metrics given its arrays: the metrics, each search mode
    (``modes``, default :data:`HASH_SEARCH_MODES`) and the retrieval kernels they call
    (``{component: version}``, sorted)."""
    from .retrieval import KERNEL_VERSIONS

    modes = HASH_SEARCH_MODES if modes is None else modes
    out = {"metrics": METRICS_VERSION}
    out.update({f"kernel.{name}": KERNEL_VERSIONS[name] for m in modes for name in m.kernels})
    out.update({f"search.{m.name}": m.version for m in modes})
    return dict(sorted(out.items()))


def model_arrays(model: torch.nn.Module, graph) -> dict[str, np.ndarray]:
    """What search needs of ``model`` (and ``embeddings.npz`` holds): float32 ``user``, ``item``
    from ``model.embeddings(graph)``; with ``packed_codes(graph)`` the packed ``user_codes``,
    ``item_codes``; with ``query_vectors(graph)`` the float32 ``user_query``; with ``extra_arrays(graph)`` those too (they may not overwrite the others)."""
    with torch.no_grad():
        users, items = model.embeddings(graph)
        arrays = {"user": users.detach().float().cpu().numpy(), "item": items.detach().float().cpu().numpy()}
        if hasattr(model, "packed_codes"):
            arrays["user_codes"], arrays["item_codes"] = model.packed_codes(graph)
        if hasattr(model, "query_vectors"):
            arrays["user_query"] = np.asarray(model.query_vectors(graph), np.float32)
        if hasattr(model, "extra_arrays"):
            extra = {k: np.asarray(v.detach().cpu() if isinstance(v, torch.Tensor) else v)
                     for k, v in model.extra_arrays(graph).items()}
            clash = set(extra) & set(arrays)
            if clash:
                raise ValueError(f"extra_arrays of {type(model).__name__} may not overwrite {sorted(clash)}")
            arrays.update(extra)
    return arrays


def evaluate_arrays(arrays: dict, target: sp.csr_matrix, exclude: sp.csr_matrix, ks=KS, candidates: int = 100,
                    modes=None) -> dict:
    """Metrics of saved arrays (:func:`model_arrays`' keys) on ``target``, ``exclude`` never recommended.

    With ``user_codes``/``item_codes``: a section per search mode of ``modes`` (default
    :data:`HASH_SEARCH_MODES`; C of hierarchical search: ``max(candidates, k)``); else the flat
    metrics of the inner-product ranking.
    """
    modes = HASH_SEARCH_MODES if modes is None else modes
    k = max(ks)
    if "user_codes" not in arrays:
        return evaluate_topk(rank_topk(arrays["user"], arrays["item"], k, exclude=exclude), target, ks)
    a = {key: np.ascontiguousarray(v, dtype=np.float32) if key in ("user", "item", "user_query") else v
         for key, v in arrays.items()}
    return {mode.name: evaluate_topk(mode.topk(a, k, exclude, candidates), target, ks) for mode in modes
            if all(key in a for key in mode.needs)}


def evaluate_model(model, graph, target: sp.csr_matrix, exclude: sp.csr_matrix, ks=KS) -> dict:
    """Metrics of ``model`` on ``target``, ``exclude`` never recommended: :func:`evaluate_arrays`
    of :func:`model_arrays` (C of hierarchical search: the model's ``candidates``, else 100)."""
    model.eval()
    try:
        return evaluate_arrays(model_arrays(model, graph), target, exclude, ks, getattr(model, "candidates", 100))
    finally:
        model.train()
