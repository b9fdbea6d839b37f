"""Measuring retrieval: throughput, build time, memory, and accuracy at a fixed throughput.

Timings are wall-clock (``time.perf_counter``), best of ``repeats``, with the
thread count of hashrec's kernel and of Faiss set equal (``threads``). Speed
claims live in ``benchmarks/`` as ratios against a peer timed in the same
process, never in unit tests.
"""
from __future__ import annotations

import time
from typing import Callable, Iterable

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .metrics import evaluate_topk

__all__ = ["time_search", "recall_vs_exact", "sweep", "at_fixed_throughput", "search_ids", "scaling"]


def search_ids(index, queries, k: int, exclude=None, query_emb=None) -> np.ndarray:
    """Ids from any index; the hierarchical index also takes the continuous queries."""
    if getattr(index, "kind", "") == "hierarchical":
        return index.search(queries, query_emb, k, exclude)[1]
    return index.search(queries, k, exclude)[1]


def time_search(index, queries, k: int, *, repeats: int = 3, exclude=None, query_emb=None) -> tuple[float, np.ndarray]:
    """Best-of-``repeats`` seconds for one search of all ``queries``, and the ids it returned."""
    best, ids = float("inf"), None
    for _ in range(max(1, repeats)):
        t = time.perf_counter()
        ids = search_ids(index, queries, k, exclude, query_emb)
        best = min(best, time.perf_counter() - t)
    return best, ids


def recall_vs_exact(ids: np.ndarray, truth: np.ndarray) -> float:
    """Mean over queries of ``|ids_q ∩ truth_q| / |truth_q|`` (``-1`` padding ignored): how much of
    the exact continuous top-K an approximate search finds."""
    k = truth.shape[1]
    hits = [len(set(a[a >= 0]) & set(t[t >= 0])) / max(1, (t >= 0).sum()) for a, t in zip(ids[:, :k], truth)]
    return float(np.mean(hits))


def sweep(
    index_factory: Callable[..., object],
    params: Iterable[dict],
    queries,
    truth: np.ndarray,
    *,
    items=None,
    k: int = 20,
    test: sp.csr_matrix | None = None,
    exclude: sp.csr_matrix | None = None,
    query_emb=None,
    item_emb=None,
    repeats: int = 3,
    method: str | None = None,
    rebuild_on: tuple[str, ...] = ("M", "nlist", "m", "R", "nhash", "b", "ef_construction", "candidates"),
) -> pd.DataFrame:
    """Build and search an index over a grid of settings; one row per setting.

    ``index_factory(**p)`` makes an index; it is built on ``items`` (and
    ``item_emb`` for hierarchical indexes), rebuilt only when a build-time
    setting in ``rebuild_on`` changes (search-time ones go through
    ``set_search_params``). Columns: the params, ``method``,
    ``recall_vs_exact`` (share of the exact continuous top-``k`` found,
    ``truth``), ``recall@20`` / ``ndcg@20`` against ``test`` (when given,
    ``exclude`` removed), ``qps``, ``build_s``, ``bytes_per_item``.
    """
    rows, index, built_key = [], None, None
    for p in params:
        p = dict(p)
        key = tuple(sorted((k_, v) for k_, v in p.items() if k_ in rebuild_on))
        build_s = 0.0
        if index is None or key != built_key or not hasattr(index, "set_search_params"):
            index = index_factory(**p)
            t = time.perf_counter()
            if getattr(index, "kind", "") == "hierarchical":
                index.build(items, item_emb)
            else:
                index.build(items)
            build_s = time.perf_counter() - t
            built_key = key
        else:
            index.set_search_params(**{k_: v for k_, v in p.items() if k_ not in rebuild_on})
        seconds, ids = time_search(index, queries, k, repeats=repeats, exclude=exclude, query_emb=query_emb)
        row = {"method": method or type(index).__name__, **p, "recall_vs_exact": recall_vs_exact(ids, truth),
               "qps": len(ids) / seconds, "build_s": build_s, "bytes_per_item": index.memory_bytes() / _n_items(items)}
        if test is not None:
            m = evaluate_topk(ids, test, ks=(20,))
            row.update({"recall@20": m["recall@20"], "ndcg@20": m["ndcg@20"]})
        rows.append(row)
    return pd.DataFrame(rows)


def _n_items(items) -> int:
    return len(items)


def at_fixed_throughput(df: pd.DataFrame, qps: float | Iterable[float], *, metric: str = "recall@20",
                        method: str = "method") -> pd.DataFrame:
    """The best ``metric`` each method reaches at a throughput of at least ``qps``.

    The proposal's central comparison: at the same queries per second, how
    accurate is each method? A method that never reaches the throughput gets
    NaN. One row per (method, target qps).
    """
    targets = [qps] if np.isscalar(qps) else list(qps)
    rows = []
    for target in targets:
        for name, group in df.groupby(method, sort=True):
            fast = group[group["qps"] >= target]
            best = fast.loc[fast[metric].idxmax()] if len(fast) else None
            rows.append({method: name, "target_qps": float(target),
                         metric: float(best[metric]) if best is not None else np.nan,
                         "qps": float(best["qps"]) if best is not None else np.nan})
    return pd.DataFrame(rows)


def scaling(sizes: Iterable[int], *, n_queries: int = 1000, bits: int = 64, dim: int = 64, k: int = 50,
            threads: int = 2, skip_graph_above: int = 1_000_000, seed: int = 0, verbose: bool = True) -> pd.DataFrame:
    """Queries per second, build seconds and bytes per item of each index family against the number of items.

    Synthetic data per size (random 64-bit codes, Gaussian 64-d vectors): hashrec
    Hamming, Faiss BinaryFlat, FlatIP, HNSW (M=32, efSearch=64; skipped above
    ``skip_graph_above`` items, where its build takes too long) and IVF-PQ.
    """
    from .retrieval import make_index

    rows = []
    for n_items in sizes:
        rng = np.random.default_rng(seed)
        codes = rng.integers(0, 256, (n_items, bits // 8), dtype=np.uint8)
        qcodes = rng.integers(0, 256, (n_queries, bits // 8), dtype=np.uint8)
        vecs = rng.standard_normal((n_items, dim), dtype=np.float32)
        qvecs = rng.standard_normal((n_queries, dim), dtype=np.float32)
        nlist = int(max(16, min(4096, 4 * np.sqrt(n_items))))
        specs = [
            ("hashrec hamming", "hamming", {}, codes, qcodes),
            ("faiss binary_flat", "binary_flat", {}, codes, qcodes),
            ("faiss flat_ip", "flat_ip", {}, vecs, qvecs),
            ("faiss hnsw", "hnsw", {"M": 32, "ef_search": 64}, vecs, qvecs),
            ("faiss ivf_pq", "ivf_pq", {"nlist": nlist, "nprobe": 16, "m": 16}, vecs, qvecs),
        ]
        for label, name, params, items, queries in specs:
            if name == "hnsw" and n_items > skip_graph_above:
                continue
            index = make_index(name, bits=bits, threads=threads, **params)
            t = time.perf_counter()
            index.build(items)
            build = time.perf_counter() - t
            seconds, _ = time_search(index, queries, k, repeats=2)
            rows.append({"method": label, "items": n_items, "qps": n_queries / seconds, "build_s": build,
                         "bytes_per_item": index.memory_bytes() / n_items})
            if verbose:
                print(f"{n_items:>10,} {label:>18}: {rows[-1]['qps']:10,.0f} q/s  {rows[-1]['bytes_per_item']:7.1f} B/item", flush=True)
    return pd.DataFrame(rows)
