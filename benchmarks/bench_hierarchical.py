"""Hierarchical search speed: the fused kernel against today's two-step hierarchical_topk and the plain Hamming scan.

Gowalla's shape by default: 29,858 queries x 40,981 items, 64-d N(0, 1)
embeddings, 64-bit codes ``np.packbits(emb >= 0)`` of the first 64
dimensions (``--bits`` others: a random Gaussian projection), ``k = 20``,
numba pinned to ``--threads``. Exclusion: the real Gowalla train matrix when
``HASHREC_DATA_DIR`` is set (``load_dataset("gowalla", valid_fraction=0)``),
else a random CSR with geometric per-user counts of mean 27 (Gowalla's
810,128 train interactions over 29,858 users). The searches take turns,
``--repeats`` rounds, each keeping its best, so a burst of load elsewhere hits
them alike. Before the ratios, the fused ids are checked against the
unfused ones on every query at every C, and ``hamming_candidates`` (the
fused path's scan, timed as ``candidates c=100``) against ``hamming_topk``'s
ids in id order.

Prints one line per case and, last, at ``C = 100``:
``speedup_vs_unfused=X qps_ratio_vs_hamming=R`` with ``X`` = unfused time /
fused time and ``R`` = fused q/s / Hamming-scan q/s.

    python benchmarks/bench_hierarchical.py
    python benchmarks/bench_hierarchical.py --queries 5000 --threads 2
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from hashrec_utils.bench import gowalla_exclusion
from hashrec_utils.retrieval.fused import fused_hierarchical_topk
from hashrec_utils.retrieval import hamming_topk, hierarchical_topk
from hashrec_utils.retrieval.kernel import hamming_candidates


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--queries", type=int, default=29_858)
    parser.add_argument("--items", type=int, default=40_981)
    parser.add_argument("--bits", type=int, default=64)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--candidates", type=int, nargs="+", default=[50, 100, 200])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if 100 not in args.candidates:
        parser.error("--candidates must include 100 (the case of the last line)")

    rng = np.random.default_rng(args.seed)
    exclude, source = gowalla_exclusion(rng, args.queries, args.items)
    user = rng.standard_normal((args.queries, args.dim), dtype=np.float32)
    item = rng.standard_normal((args.items, args.dim), dtype=np.float32)
    proj = np.eye(args.dim, args.bits, dtype=np.float32) if args.bits <= args.dim else \
        rng.standard_normal((args.dim, args.bits), dtype=np.float32)
    ucodes, icodes = np.packbits(user @ proj >= 0, axis=1), np.packbits(item @ proj >= 0, axis=1)
    print(f"shape: {args.queries} queries x {args.items} items, {args.bits} bits, d={args.dim}, k={args.k}, "
          f"threads={args.threads}; exclusion: {source}, {exclude.nnz} entries")

    # numba: load the cached kernels (or compile them) before timing
    fused_hierarchical_topk(ucodes[:64], icodes, user[:64], item, args.k, 100, exclude[:64], threads=args.threads)
    hierarchical_topk(ucodes[:64], icodes, user[:64], item, args.k, 100, exclude[:64], threads=args.threads)

    cases = {"hamming": lambda: hamming_topk(ucodes, icodes, args.k, exclude, threads=args.threads),
             "hamming k=100": lambda: hamming_topk(ucodes, icodes, 100, exclude, threads=args.threads),
             "candidates c=100": lambda: hamming_candidates(ucodes, icodes, 100, exclude, threads=args.threads),
             "fused single C=100": lambda: fused_hierarchical_topk(ucodes, icodes, user, item, args.k, 100, exclude,
                                                                   threads=args.threads, scan="single")[1]}
    for C in args.candidates:
        cases[f"unfused C={C}"] = lambda C=C: hierarchical_topk(ucodes, icodes, user, item, args.k, C, exclude,
                                                                threads=args.threads)
        cases[f"fused C={C}"] = lambda C=C: fused_hierarchical_topk(ucodes, icodes, user, item, args.k, C, exclude,
                                                                    threads=args.threads)[1]
    best = dict.fromkeys(cases, float("inf"))
    ids = {}
    for _ in range(max(1, args.repeats)):
        for name, call in cases.items():
            t0 = time.perf_counter()
            ids[name] = call()
            best[name] = min(best[name], time.perf_counter() - t0)

    # the candidate set is hamming_topk's, in id order
    ok = bool((ids["candidates c=100"] == np.sort(ids["hamming k=100"], axis=1)).all())
    print(f"candidates c=100: {'equal' if ok else 'NOT equal'} to hamming k=100's ids in id order")
    pairs = [(f"fused C={C}", f"unfused C={C}") for C in args.candidates] + [("fused single C=100", "unfused C=100")]
    for fused, unfused in pairs:
        same = (ids[fused] == ids[unfused]).all(axis=1)
        # A query may differ only where two scores are within float32 rounding: the kernels sum <e_q, e_i> in
        # another order than NumPy's einsum. Check that the two rankings' exact (float64) scores agree.
        bad = np.flatnonzero(~same)
        a, b = ids[fused][bad], ids[unfused][bad]
        sa = np.einsum("qd,qkd->qk", user[bad].astype(np.float64), item[np.maximum(a, 0)].astype(np.float64))
        sb = np.einsum("qd,qkd->qk", user[bad].astype(np.float64), item[np.maximum(b, 0)].astype(np.float64))
        rounding = np.isclose(sa, sb, rtol=1e-5, atol=1e-5).all(axis=1) & ((a < 0) == (b < 0)).all(axis=1)
        ok &= bool(rounding.all())
        print(f"{fused}: ids equal the unfused ids on {int(same.sum())}/{len(same)} queries; "
              f"{int(rounding.sum())}/{len(bad)} others differ only by scores within float32 rounding")
    qps = {name: args.queries / s for name, s in best.items()}
    for name in cases:
        print(f"{name:>18}: {best[name]:.3f} s  {qps[name]:>10,.0f} q/s")
    for C in args.candidates:
        print(f"C={C}: fused/unfused speedup {best[f'unfused C={C}'] / best[f'fused C={C}']:.2f}, "
              f"fused/hamming q/s {qps[f'fused C={C}'] / qps['hamming']:.2f}")
    if not ok:
        print("fused ids differ from unfused ids: speed of a different answer not reported", file=sys.stderr)
        sys.exit(1)
    x = best["unfused C=100"] / best["fused C=100"]
    r = qps["fused C=100"] / qps["hamming"]
    print(f"speedup_vs_unfused={x:.2f} qps_ratio_vs_hamming={r:.2f}")
    return {"speedup_vs_unfused": x, "qps_ratio_vs_hamming": r}


if __name__ == "__main__":
    main()
