"""Measuring retrieval: throughput, build time, memory, and accuracy at a fixed throughput.

Timings are wall-clock (``time.perf_counter``): a sweep repeats each search and reports the median
with its spread (:func:`sweep`), a one-off figure takes the best of ``repeats``; every
index pins its own thread pool (numba's for hashrec's kernels, OpenMP's for
Faiss) to the ``threads`` it was made with, so comparisons are like for like.
Speed claims live in ``benchmarks/`` as ratios against a peer timed in the
same process, never in unit tests.

The proposal's central comparison is :func:`at_fixed_throughput`: at a
given number of queries per second, how accurate is each method?
"""
from __future__ import annotations

import time
from typing import Callable, Iterable

import numpy as np
import pandas as pd
import scipy.sparse as sp

__all__ = ["torch_reference_topk", "TorchExactIndex", "search_ids", "time_search", "time_searches", "round_robin", "take_turns",
           "latency_ms",
           "random_exclusion", "gowalla_exclusion", "recall_vs_exact", "recall_at", "sweep", "at_fixed_throughput",
           "scaling_params", "scaling_measure", "scaling", "SCALING_BINARY", "SCALING_FLOAT"]


def torch_reference_topk(queries, items, k: int, exclude=None, *, block: int = 2048, threads: int | None = None):
    """The peer of exact float search: the textbook torch formula, ``(scores, ids)`` of shape ``(nq, k)``.

    Per block of ``block`` queries: ``S = Q_b @ X.T``, excluded pairs set to
    ``-inf`` (advanced indexing), ``torch.topk(S, k)``. No tie rule, no
    padding; what :func:`hashrec_utils.retrieval.exact_topk` is timed against
    (``benchmarks/bench_exact.py``, ``experiments._tradeoff``).
    """
    import torch

    Q, X = torch.as_tensor(queries), torch.as_tensor(items)
    k = min(int(k), X.shape[0])
    old = torch.get_num_threads()
    if threads:
        torch.set_num_threads(int(threads))
    try:
        out_s, out_i = [], []
        with torch.no_grad():
            for start in range(0, len(Q), block):
                S = Q[start : start + block] @ X.T
                if exclude is not None:
                    sub = exclude[start : start + block]
                    rows = np.repeat(np.arange(sub.shape[0]), np.diff(sub.indptr))
                    S[torch.as_tensor(rows), torch.as_tensor(sub.indices.astype(np.int64))] = -torch.inf
                s, i = torch.topk(S, k, dim=1)
                out_s.append(s)
                out_i.append(i)
        return torch.cat(out_s).numpy(), torch.cat(out_i).numpy()
    finally:
        torch.set_num_threads(old)


def random_exclusion(rng, n_queries: int, n_items: int, mean: float) -> sp.csr_matrix:
    """A CSR ``(n_queries, n_items)`` with geometric per-row counts of mean ``mean``, items uniform (deduplicated)."""
    counts = np.minimum(rng.geometric(1.0 / mean, n_queries), n_items)
    rows = np.repeat(np.arange(n_queries), counts)
    cols = rng.integers(0, n_items, len(rows))
    m = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(n_queries, n_items))
    m.data[:] = 1.0
    return m


GOWALLA_SHAPE = (29_858, 40_981)


def gowalla_exclusion(rng, n_queries: int, n_items: int) -> tuple[sp.csr_matrix, str]:
    """The benchmarks' exclusion at Gowalla's shape: the real Gowalla train matrix when
    ``HASHREC_DATA_DIR`` holds it (``load_dataset("gowalla", valid_fraction=0)``), else a random CSR
    with geometric per-user counts of mean 27 (Gowalla's 810,128 train interactions over 29,858
    users). Returns the matrix and where it came from."""
    import os

    if os.environ.get("HASHREC_DATA_DIR") and (n_queries, n_items) == GOWALLA_SHAPE:
        from .data import load_dataset

        data = load_dataset("gowalla", valid_fraction=0)
        if data.train.shape == (n_queries, n_items):
            return sp.csr_matrix(data.train), "Gowalla train"
    return random_exclusion(rng, n_queries, n_items, 27.0), "random CSR, mean 27 a user"


def search_ids(index, queries, k: int, exclude=None) -> np.ndarray:
    """The ids ``(n_queries, k)`` of any index (a hierarchical one takes ``(codes, embeddings)`` pairs)."""
    return index.search(queries, k, exclude)[1]


def time_search(index, queries, k: int, repeats: int = 3, *, exclude=None) -> tuple[float, np.ndarray]:
    """Best-of-``repeats`` wall-clock seconds for one search of all ``queries``, and the ids it returned.

    Best-of-n rather than the mean: the minimum is the run least disturbed by
    the rest of the machine, the figure closest to what the code costs.
    """
    times, ids = time_searches(index, queries, k, repeats, exclude=exclude)
    return min(times), ids


def time_searches(index, queries, k: int, repeats: int = 5, *, exclude=None) -> tuple[list[float], np.ndarray]:
    """Wall-clock seconds of each of ``repeats`` searches of all ``queries`` (the spread an ANN
    benchmark reports: median, min, max), and the ids the last one returned."""
    times, ids = [], None
    for _ in range(max(1, int(repeats))):
        start = time.perf_counter()
        ids = search_ids(index, queries, k, exclude)
        times.append(time.perf_counter() - start)
    return times, ids


def round_robin(calls: dict, rounds: int = 5) -> dict[str, list[float]]:
    """Wall-clock seconds of each call in ``calls`` (``{name: f}``, ``f()`` run for its time), ``rounds``
    rounds in which every call runs once in turn, so a slow spell of the machine falls on all of them
    alike (what the benchmarks' peer ratios need); ``{name: [seconds, …]}``."""
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(max(1, int(rounds))):
        for name, f in calls.items():
            start = time.perf_counter()
            f()
            times[name].append(time.perf_counter() - start)
    return times


def take_turns(searches: dict, k: int, repeats: int = 5, *, exclude=None) -> dict[str, list[float]]:
    """:func:`round_robin` of searches (``{name: (index, queries)}``, each ``index.search(queries, k,
    exclude)``)."""
    return round_robin({name: (lambda index=index, queries=queries: index.search(queries, k, exclude))
                        for name, (index, queries) in searches.items()}, repeats)


def _take(queries, rows):
    """Rows of a query array, or of both halves of a ``(codes, embeddings)`` pair."""
    return tuple(q[rows] for q in queries) if isinstance(queries, tuple) else queries[rows]


def latency_ms(index, queries, k: int, n: int = 200, *, exclude=None) -> tuple[float, float]:
    """Batch-1 latency: p50 and p99 milliseconds of ``n`` single-query searches (the first ``n``
    queries, each with its own exclusion row), after one warm-up search."""
    n = min(int(n), len(queries[0]) if isinstance(queries, tuple) else len(queries))
    search_ids(index, _take(queries, slice(0, 1)), k, None if exclude is None else exclude[:1])
    times = []
    for r in range(n):
        start = time.perf_counter()
        search_ids(index, _take(queries, slice(r, r + 1)), k, None if exclude is None else exclude[r : r + 1])
        times.append(time.perf_counter() - start)
    return float(np.percentile(times, 50) * 1e3), float(np.percentile(times, 99) * 1e3)


class TorchExactIndex:
    """The torch formula (:func:`torch_reference_topk`) behind the index interface, so a sweep times it
    beside hashrec's exact search on the same data: the peer whose throughput the fixed multiples
    take when it is the faster. Padding is none (``k`` is capped at the catalogue size)."""

    name = "exact_torch"
    kind = "float"

    def __init__(self, threads: int | None = None):
        self.threads, self.items = threads, None

    def build(self, items: np.ndarray) -> "TorchExactIndex":
        self.items = np.ascontiguousarray(items, dtype=np.float32)
        return self

    def search(self, queries, k: int, exclude=None):
        return torch_reference_topk(np.ascontiguousarray(queries, dtype=np.float32), self.items, k, exclude,
                                    threads=self.threads)

    def memory_bytes(self) -> int:
        return int(self.items.nbytes)


def recall_vs_exact(ids: np.ndarray, truth: np.ndarray) -> float:
    """``mean_q |ids_q[:K] ∩ truth_q| / |truth_q|`` with ``K = truth.shape[1]`` (``-1`` ignored).

    How much of the exact continuous top-K an approximate search finds; a
    query whose truth is empty is left out.
    """
    ids, truth = np.asarray(ids), np.asarray(truth)
    if ids.ndim != 2 or truth.ndim != 2 or len(ids) != len(truth):
        raise ValueError(f"ids {ids.shape} and truth {truth.shape} must be 2-D with one row per query")
    k = truth.shape[1]
    # Keys q * (max id + 2) + id make one membership test for all rows at once.
    width = np.int64(max(int(ids.max(initial=0)), int(truth.max(initial=0))) + 2)
    rows = np.arange(len(ids), dtype=np.int64)[:, None]
    got = np.where(ids[:, :k] >= 0, rows * width + ids[:, :k], -1)
    hit = np.isin(rows * width + truth, got) & (truth >= 0)
    n_truth = (truth >= 0).sum(axis=1)
    keep = n_truth > 0
    return float(np.mean(hit.sum(axis=1)[keep] / n_truth[keep])) if keep.any() else float("nan")


def recall_at(ids: np.ndarray, test: sp.csr_matrix, k: int = 20) -> float:
    """Recommendation recall@k: ``mean_u |top-k_u ∩ T_u| / |T_u|`` over users with test items ``T_u``.

    Uses the project's one metric code path, :func:`hashrec_utils.metrics.evaluate_topk`,
    where it is available; otherwise the same hit count, computed here.
    """
    try:
        from .metrics import evaluate_topk
    except ImportError:  # the metrics module is optional for this file
        evaluate_topk = None
    if evaluate_topk is not None:
        return float(evaluate_topk(ids[:, :k], test, ks=(k,))[f"recall@{k}"])
    test = sp.csr_matrix(test)
    hits = np.array([np.isin(row[row >= 0], test.indices[test.indptr[u] : test.indptr[u + 1]]).sum()
                     for u, row in enumerate(ids[:, :k])])
    n_test = np.diff(test.indptr)[: len(ids)]
    keep = n_test > 0
    return float(np.mean(hits[keep] / n_test[keep]))


def _search_params(index) -> set:
    """Names of the settings an index can change without a rebuild."""
    return set(getattr(index, "SEARCH", ())) if hasattr(index, "set_search_params") else set()


def sweep(
    index_factory: Callable[..., object],
    params: Iterable[dict],
    queries,
    truth: np.ndarray,
    *,
    items,
    k: int | None = None,
    test: sp.csr_matrix | None = None,
    rec_k: int = 20,
    exclude: sp.csr_matrix | None = None,
    repeats: int = 5,
    method: str | None = None,
    truth_plain: np.ndarray | None = None,
    latency_queries: int = 0,
    timing_queries: int | None = None,
) -> pd.DataFrame:
    """Build and search one index family over a grid of settings; one row per setting.

    ``index_factory(**p)`` makes an index for each ``p`` in ``params``; it is
    built on ``items`` (``(codes, embeddings)`` pairs for a hierarchical
    index, and ``queries`` alike) and rebuilt only when a build-time setting
    changes: settings the index lists as search-time (its ``SEARCH``) go
    through ``set_search_params``.

    ``truth``: ``(n_queries, K)`` exact continuous top-K ids (train items
    excluded as in ``exclude``); the search returns ``max(K, rec_k)`` ids.

    Columns: ``method``, the params, ``recall_vs_exact`` (share of the exact
    top-K found), ``recall@{rec_k}`` against ``test`` when given (CSR users
    x items, held-out interactions), ``qps`` (queries per second end to end
    with ``exclude``: the recommender's figure) and ``qps_plain`` (the same
    depth without exclusion: the ANN-benchmarks convention), both best of
    ``repeats``, ``build_s`` (seconds; 0 when the index was reused),
    ``bytes_per_item`` (``memory_bytes() / n_items``).

    Timings: each search runs ``repeats`` times; ``qps`` and ``qps_plain`` are the medians,
    ``qps_min``/``qps_max`` the spread of ``qps``, ``repeats`` the count. ``truth_plain``: the exact
    top-K without exclusion, for ``recall_vs_exact_plain`` of the plain search (the ANN protocol
    side by side with the recommender's). ``latency_queries``: batch-1 ``latency_p50_ms`` and
    ``latency_p99_ms`` over that many single-query searches (:func:`latency_ms`; 0: not measured).
    ``timing_queries``: time the repeats on the first that many queries only (column
    ``timed_queries``; the accuracy columns still come from one search of every query, each protocol) —
    on a large user set (Gowalla's 29,858) five repeats of every query would cost most of the sweep.
    """
    truth = np.asarray(truth)
    k = int(k or truth.shape[1])
    depth = max(k, rec_k) if test is not None else k
    n_items = len(items[0]) if isinstance(items, tuple) else len(items)
    n_queries = len(queries[0]) if isinstance(queries, tuple) else len(queries)
    rows, index, built_with = [], None, None
    for p in params:
        p = dict(p)
        changed = {key for key in set(p) | set(built_with or {}) if p.get(key) != (built_with or {}).get(key)}
        build_s = 0.0
        if index is None or not changed <= _search_params(index):
            index = index_factory(**p)
            start = time.perf_counter()
            index.build(items)
            build_s = time.perf_counter() - start
        elif changed:
            index.set_search_params(**{key: p[key] for key in changed})
        built_with = p
        if timing_queries is not None and timing_queries < n_queries:
            timed = slice(0, int(timing_queries))
            sub_ex = None if exclude is None else exclude[timed]
            ids = search_ids(index, queries, depth, exclude)
            plain_ids = search_ids(index, queries, depth) if exclude is not None else ids
            times, _ = time_searches(index, _take(queries, timed), depth, repeats, exclude=sub_ex)
            plain = time_searches(index, _take(queries, timed), depth, repeats)[0] if exclude is not None else times
            n_timed = int(timing_queries)
        else:
            times, ids = time_searches(index, queries, depth, repeats, exclude=exclude)
            plain, plain_ids = time_searches(index, queries, depth, repeats) if exclude is not None else (times, ids)
            n_timed = len(ids)
        row = {"method": method or getattr(index, "name", None) or type(index).__name__, **p,
               "recall_vs_exact": recall_vs_exact(ids[:, :k], truth[:, :k]),
               "qps": n_timed / float(np.median(times)), "qps_min": n_timed / max(times),
               "qps_max": n_timed / min(times), "qps_plain": n_timed / float(np.median(plain)),
               "repeats": len(times), "timed_queries": n_timed, "build_s": build_s,
               "bytes_per_item": index.memory_bytes() / n_items}
        if truth_plain is not None:
            row["recall_vs_exact_plain"] = recall_vs_exact(plain_ids[:, :k], np.asarray(truth_plain)[:, :k])
        if test is not None:
            row[f"recall@{rec_k}"] = recall_at(ids, test, rec_k)
        if latency_queries:
            row["latency_p50_ms"], row["latency_p99_ms"] = latency_ms(index, queries, depth, latency_queries,
                                                                      exclude=exclude)
        rows.append(row)
    return pd.DataFrame(rows)


def at_fixed_throughput(df: pd.DataFrame, qps: float | Iterable[float], *, metric: str | None = None,
                        method: str = "method") -> pd.DataFrame:
    """The best ``metric`` each method reaches at a throughput of at least ``qps`` queries per second.

    ``metric`` defaults to ``recall@20`` when ``df`` has it, else
    ``recall_vs_exact``. One row per (target qps, method): the target, the
    best value, and the rest of the winning row (its ``qps`` and settings);
    a method that never reaches the target gets NaN.
    """
    if metric is None:
        metric = "recall@20" if "recall@20" in df.columns else "recall_vs_exact"
    for col in (metric, "qps", method):
        if col not in df.columns:
            raise ValueError(f"df has no column {col!r}; it has {', '.join(map(str, df.columns))}")
    targets = [qps] if np.isscalar(qps) else list(qps)
    rows = []
    for target in targets:
        for name, group in df.groupby(method, sort=True):
            fast = group[(group["qps"] >= target) & group[metric].notna()]
            if len(fast):
                best = fast.loc[fast[metric].idxmax()].to_dict()
            else:
                best = {col: np.nan for col in df.columns}
                best[method] = name
            rows.append({"target_qps": float(target), **best})
    out = pd.DataFrame(rows)
    return out[["target_qps", method, metric] + [c for c in out.columns if c not in ("target_qps", method, metric)]]


SCALING_BINARY = ("hamming", "binary_flat", "binary_ivf", "binary_multihash", "binary_hnsw")
SCALING_FLOAT = ("flat_ip", "ivf_flat", "ivf_pq", "hnsw", "nsg")
_GRAPH = ("binary_hnsw", "hnsw", "nsg")


def scaling_params(method: str, n_items: int) -> dict:
    """Common settings: IVF with ``nlist ~ sqrt(n)`` cells, 1/32 of them probed (at least 4)."""
    nlist = int(np.clip(np.sqrt(n_items), 16, 8192))
    nprobe = max(4, nlist // 32)
    return {
        "binary_ivf": {"nlist": nlist, "nprobe": nprobe},
        "binary_multihash": {"nhash": 4, "b": 16, "nflip": 1},
        "binary_hnsw": {"M": 16, "efSearch": 64},
        "ivf_flat": {"nlist": nlist, "nprobe": nprobe},
        "ivf_pq": {"nlist": nlist, "nprobe": nprobe, "m": 16},
        "hnsw": {"M": 32, "efSearch": 64},
        "nsg": {"R": 32, "search_L": 64},
    }.get(method, {})


def scaling_measure(n_items: int, methods, *, n_queries: int, bits: int, dim: int, k: int, threads: int,
            repeats: int, graph_max_items: int, seed: int = 0, verbose: bool = True) -> list[dict]:
    """One row per method at ``n_items`` items."""
    rng = np.random.default_rng(seed)
    data = {}
    if any(m in SCALING_BINARY for m in methods):
        data["binary"] = (rng.integers(0, 256, (n_items, bits // 8), dtype=np.uint8),
                          rng.integers(0, 256, (n_queries, bits // 8), dtype=np.uint8))
    if any(m in SCALING_FLOAT for m in methods):
        data["float"] = (rng.standard_normal((n_items, dim), dtype=np.float32),
                         rng.standard_normal((n_queries, dim), dtype=np.float32))
    rows = []
    for method in methods:
        if method in _GRAPH and n_items > graph_max_items:
            if verbose:
                print(f"{n_items:>11,} {method:>17}: skipped (graph build; --graph-max-items {graph_max_items:,})", flush=True)
            continue
        items, queries = data["binary" if method in SCALING_BINARY else "float"]
        params = scaling_params(method, n_items)
        from .retrieval import make_index

        index = make_index(method, bits=bits, threads=threads, **params)
        start = time.perf_counter()
        index.build(items)
        build_s = time.perf_counter() - start
        index.search(queries[: min(64, n_queries)], k)  # warm-up (numba loads its cached kernel)
        seconds, _ = time_search(index, queries, k, repeats)
        rows.append({"method": method, "items": n_items, "qps": n_queries / seconds, "build_s": build_s,
                     "bytes_per_item": index.memory_bytes() / n_items, "threads": threads, "k": k,
                     "params": " ".join(f"{key}={value}" for key, value in params.items())})
        if verbose:
            print(f"{n_items:>11,} {method:>17}: {rows[-1]['qps']:12,.0f} q/s  {rows[-1]['bytes_per_item']:8.1f} B/item"
                  f"  build {build_s:7.1f} s", flush=True)
        del index
    return rows


def scaling(sizes, methods=None, *, n_queries: int = 1000, bits: int = 64, dim: int = 64, k: int = 50, threads: int = 2,
            repeats: int = 2, graph_max_items: int = 100_000, verbose: bool = True) -> pd.DataFrame:
    """:func:`scaling_measure` at each size: queries per second, build seconds, bytes per item (synthetic data)."""
    methods = list(methods or [m for m in SCALING_BINARY + SCALING_FLOAT if m != "nsg"])
    rows = []
    for n in sizes:
        rows += scaling_measure(n, methods, n_queries=n_queries, bits=bits, dim=dim, k=k, threads=threads,
                                repeats=repeats, graph_max_items=graph_max_items, verbose=verbose)
    return pd.DataFrame(rows)
