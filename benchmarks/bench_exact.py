"""Exact float search: hashrec's exact_topk against the torch formula and Faiss IndexFlatIP.

Two cases, one process, every method pinned to ``--threads`` threads (torch's
pool for exact_topk and the torch formula, OpenMP's for Faiss), the methods
taking turns for ``--repeats`` rounds, each keeping its best round:

* ``ml-1m``: MovieLens-1M's real shape and train exclusion
  (``load_dataset("ml-1m")``), random N(0, 1) ``--dim``-d float32 embeddings
  for users and items, ``k = --k``; exact_topk with exclusion against the torch
  formula (:func:`hashrec_utils.bench.torch_reference_topk`: ``U @ I.T`` in user
  blocks of 2,048, excluded set to ``-inf``, ``torch.topk``).
* ``synthetic``: ``--items`` random items x ``--queries`` queries, no
  exclusion, against the torch formula and Faiss ``IndexFlatIP`` at plain k.

Before timing, exact_topk's ids are checked against the torch formula's
(as sets per row: the formula has no tie rule). The last line is
``speedup_vs_torch=X speedup_vs_faiss_flat=Y`` with
``X = min over both cases of torch_time / exact_time`` and
``Y = min over the cases Faiss runs in (synthetic) of faiss_flat_time / exact_time``.

    python benchmarks/bench_exact.py --threads 2
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

from hashrec_utils.bench import torch_reference_topk
from hashrec_utils.retrieval import IndexFlatIP, exact_topk


def _race(methods: dict, repeats: int) -> tuple[dict, dict]:
    """Best-of-``repeats`` seconds of each zero-argument callable, taking turns; and their last results."""
    best, out = dict.fromkeys(methods, float("inf")), {}
    for _ in range(max(1, repeats)):
        for name, fn in methods.items():
            start = time.perf_counter()
            out[name] = fn()
            best[name] = min(best[name], time.perf_counter() - start)
    return best, out


def _same_sets(a: np.ndarray, b: np.ndarray) -> float:
    return float((np.sort(a, 1) == np.sort(b, 1)).all(axis=1).mean())


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    from hashrec_utils.data import load_dataset

    rng = np.random.default_rng(args.seed)
    t, k = args.threads, args.k
    data = load_dataset("ml-1m", valid_fraction=0.0)
    train = data.train.tocsr()
    U = rng.standard_normal((train.shape[0], args.dim), dtype=np.float32)
    V = rng.standard_normal((train.shape[1], args.dim), dtype=np.float32)
    ml, out = _race({"exact_topk": lambda: exact_topk(U, V, k, train, threads=t)[1],
                     "torch_formula": lambda: torch_reference_topk(U, V, k, train, threads=t)[1]}, args.repeats)
    agree = _same_sets(out["exact_topk"], out["torch_formula"])
    print(f"ml-1m {train.shape[0]} users x {train.shape[1]} items, {train.nnz} excluded, k={k}: "
          + "  ".join(f"{m} {s * 1e3:.1f} ms" for m, s in ml.items()) + f"  (same id sets on {agree:.1%} of rows)",
          flush=True)

    X = rng.standard_normal((args.items, args.dim), dtype=np.float32)
    Q = rng.standard_normal((args.queries, args.dim), dtype=np.float32)
    flat = IndexFlatIP(threads=t).build(X)
    syn, out = _race({"exact_topk": lambda: exact_topk(Q, X, k, threads=t)[1],
                      "torch_formula": lambda: torch_reference_topk(Q, X, k, threads=t)[1],
                      "faiss_flat_ip": lambda: flat.search(Q, k)[1]}, args.repeats)
    agree = min(_same_sets(out["exact_topk"], out["torch_formula"]), _same_sets(out["exact_topk"], out["faiss_flat_ip"]))
    print(f"synthetic {args.queries} queries x {args.items} items, no exclusion, k={k}: "
          + "  ".join(f"{m} {s:.3f} s" for m, s in syn.items()) + f"  (same id sets on {agree:.1%} of rows)", flush=True)
    if agree < 0.99:
        sys.exit("exact_topk disagrees with its peers")
    x = min(ml["torch_formula"] / ml["exact_topk"], syn["torch_formula"] / syn["exact_topk"])
    y = syn["faiss_flat_ip"] / syn["exact_topk"]
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    import torch

    from hashrec_utils.retrieval.exact import _gemm

    gemm = {"_onednn": "oneDNN inner product", "_mm": "torch.mm"}[_gemm(torch.float32).__name__]
    print(f"threads={t} dim={args.dim} repeats={args.repeats}; exact_topk's float32 GEMM: {gemm}; "
          f"load average {load} on {os.cpu_count()} CPUs")
    print(f"speedup_vs_torch={x:.2f} speedup_vs_faiss_flat={y:.2f}")
    return {"speedup_vs_torch": x, "speedup_vs_faiss_flat": y, "ml-1m": ml, "synthetic": syn}


if __name__ == "__main__":
    main()
