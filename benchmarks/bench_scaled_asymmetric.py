"""Asymmetric search with a scale byte an item: its speed against the plain asymmetric scan and Faiss RaBitQ.

Gowalla's shape by default: 29,858 queries x 40,981 items, 64-d N(0, 1) embeddings with log-normal
item norms; item codes ``np.packbits(item >= 0)``, the queries the users' real-valued vectors,
``k = 20``, train items excluded (the real Gowalla train matrix when ``HASHREC_DATA_DIR`` holds it,
else a random CSR: :func:`hashrec_utils.bench.gowalla_exclusion`). One process, numba's and Faiss's
pools pinned to ``--threads``. Compared, at the same ``k`` with the same exclusion:

* ``scaled``: :class:`~hashrec_utils.retrieval.ScaledAsymmetricIndex` (``‖e_i‖ ⟨q, b_i⟩``, 9 bytes an item);
* ``asymmetric``: :class:`~hashrec_utils.retrieval.AsymmetricIndex` (the integer-table scan, 8 bytes, no scale);
* ``rabitq`` and ``rabitq_fastscan``: Faiss's ``IndexRaBitQ`` / ``IndexRaBitQFastScan`` on the item
  embeddings (``qb = 8``: the setting the study's RaBitQ rows use), which keep each norm in float factors.

Before timing, the scaled ids are checked against the float reference on a sample of queries.
The searches take turns, ``--repeats`` rounds, medians reported. Last line:
``speedup_vs_rabitq=S qps_ratio_vs_asymmetric=R``.

    python benchmarks/bench_scaled_asymmetric.py --queries 5000 --repeats 3
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np

from hashrec_utils.bench import gowalla_exclusion, take_turns
from hashrec_utils.retrieval import AsymmetricIndex, ScaledAsymmetricIndex, make_index
from hashrec_utils.retrieval.scaled_asymmetric import scaled_asymmetric_scores


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--queries", type=int, default=29_858)
    parser.add_argument("--items", type=int, default=40_981)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--qb", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    exclude, source = gowalla_exclusion(rng, args.queries, args.items)
    user = rng.standard_normal((args.queries, args.dim), dtype=np.float32)
    item = rng.standard_normal((args.items, args.dim), dtype=np.float32)
    item *= np.exp(rng.normal(0, 0.5, args.items)).astype(np.float32)[:, None]
    codes, norms = np.packbits(item >= 0, axis=1), np.linalg.norm(item, axis=1)
    print(f"shape: {args.queries} queries x {args.items} items, {args.dim} bits, k={args.k}, threads={args.threads}; "
          f"exclusion: {source}, {exclude.nnz} entries")
    indexes = {"scaled": (ScaledAsymmetricIndex(args.dim, args.threads).build((codes, norms)), user),
               "asymmetric": (AsymmetricIndex(args.dim, args.threads).build(codes), user),
               "rabitq": (make_index("rabitq", threads=args.threads, qb=args.qb).build(item), user),
               "rabitq_fastscan": (make_index("rabitq_fastscan", threads=args.threads, qb=args.qb).build(item), user)}
    for index, q in indexes.values():  # load the cached kernels (or compile them) before timing
        index.search(q[:64], args.k, exclude[:64])
    rows = np.arange(min(300, args.queries))
    scores, ids = indexes["scaled"][0].search(user[rows], args.k, exclude[rows])
    ref = scaled_asymmetric_scores(user[rows], codes, indexes["scaled"][0].scales)
    ref[exclude[rows].toarray() != 0] = -np.inf
    err = float(np.max(np.abs(scores - np.take_along_axis(ref, ids, 1)) / (np.abs(ref).max(1, keepdims=True) + 1e-12)))
    ok = err < 1e-5 and np.allclose(scores, -np.sort(-ref, 1)[:, :args.k], rtol=1e-5, atol=1e-5)
    print(f"reference check on {len(rows)} queries: relative score error max {err:.2e} ({'ok' if ok else 'FAILED'})")

    times = take_turns(indexes, args.k, args.repeats, exclude=exclude)
    qps = {name: args.queries / float(np.median(t)) for name, t in times.items()}
    for name, (index, _) in indexes.items():
        print(f"{name:>16}: {qps[name]:>10,.0f} q/s (median of {len(times[name])})  "
              f"{index.memory_bytes() / args.items:6.1f} bytes/item")
    print(f"load average {', '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
    if not ok:
        print("scaled ids fail the reference check: speed of a wrong answer not reported", file=sys.stderr)
        sys.exit(1)
    s = qps["scaled"] / max(qps["rabitq"], qps["rabitq_fastscan"])
    r = qps["scaled"] / qps["asymmetric"]
    print(f"speedup_vs_rabitq={s:.2f} qps_ratio_vs_asymmetric={r:.2f}")
    return {"qps": qps, "speedup_vs_rabitq": s, "qps_ratio_vs_asymmetric": r}


if __name__ == "__main__":
    main()
