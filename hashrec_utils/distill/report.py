"""The report a user reads first: how much of the model's own ranking the codes keep, and how fast.

On users held out of distillation (their embeddings took no part in it), for each search mode of
the :class:`~.searcher.Searcher`:

* ``top{k}_share``: the share of the model's exact top-``k`` (seen items excluded) the mode returns;
* ``qps`` and ``speedup_vs_exact``: queries a second over all held-out users, against exact
  inner-product search of the same embeddings (:func:`hashrec_utils.retrieval.exact_topk`) timed in
  the same process, same exclusion;
* with a test split: ``recall@k`` of each mode beside the model's own (``exact``) and their ratio.
"""
from __future__ import annotations

import time

import numpy as np
import scipy.sparse as sp

from ..metrics import evaluate_topk
from ..retrieval import exact_topk
from .fit import top_share
from .searcher import Searcher

__all__ = ["make_report", "format_report"]


def _timed(fn, repeats: int = 3):
    """``fn()``'s result and its best wall-clock of ``repeats`` calls (the first warms the kernels)."""
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return out, best


def make_report(searcher: Searcher, user: np.ndarray, item: np.ndarray, seen: sp.csr_matrix | None = None,
                test: sp.csr_matrix | None = None, *, k: int = 20, repeats: int = 3) -> dict:
    """The report of ``searcher`` on held-out users ``user`` (their rows of ``seen`` and ``test``)."""
    exact, exact_s = _timed(lambda: exact_topk(user, item, k, seen), repeats)
    truth = exact[1]
    n = len(user)
    out = {"users": n, "k": k, "bits": searcher.bits, "bytes_per_item": searcher.bits // 8,
           "exact": {"qps": n / exact_s}}
    has_test = test is not None and test.nnz > 0
    if has_test:
        out["exact"][f"recall@{k}"] = evaluate_topk(truth, test, ks=(k,))[f"recall@{k}"]
    for mode in searcher.modes:
        (_, ids), secs = _timed(lambda: searcher.search(user, k, seen, mode), repeats)
        row = {f"top{k}_share": top_share(ids, truth), "qps": n / secs, "speedup_vs_exact": exact_s / secs}
        if has_test:
            recall = evaluate_topk(ids, test, ks=(k,))[f"recall@{k}"]
            row[f"recall@{k}"] = recall
            row[f"recall_ratio_vs_exact"] = recall / out["exact"][f"recall@{k}"] if out["exact"][f"recall@{k}"] else None
        out[mode] = row
    code_modes = [m for m in ("hamming", "asymmetric") if m in out]
    out["best_code_mode"] = max(code_modes, key=lambda m: out[m][f"top{k}_share"])
    return out


def format_report(report: dict) -> str:
    """The report as the few lines the command prints."""
    k = report["k"]
    lines = [f"{report['users']:,} held-out users (not distilled on), {report['bits']}-bit item codes "
             f"({report['bytes_per_item']} bytes an item), top-{k}:"]
    exact = report["exact"]
    recall = f", recall@{k} {exact[f'recall@{k}']:.4f}" if f"recall@{k}" in exact else ""
    lines.append(f"  {'exact':<13} share 1.0000, {exact['qps']:>10,.0f} queries/s{recall}")
    for mode in ("hamming", "asymmetric", "hierarchical"):
        if mode not in report:
            continue
        row = report[mode]
        recall = (f", recall@{k} {row[f'recall@{k}']:.4f} ({row['recall_ratio_vs_exact']:.3f}x exact)"
                  if f"recall@{k}" in row else "")
        lines.append(f"  {mode:<13} share {row[f'top{k}_share']:.4f}, {row['qps']:>10,.0f} queries/s "
                     f"({row['speedup_vs_exact']:.1f}x exact){recall}")
    lines.append(f"  best code-only mode: {report['best_code_mode']}")
    return "\n".join(lines)
