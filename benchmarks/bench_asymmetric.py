"""Asymmetric search speed: real-valued queries against 64-bit item codes, against the Hamming scan and Faiss RaBitQ.

Gowalla's shape by default: 29,858 queries x 40,981 items, 64-d N(0, 1) embeddings; item codes
``np.packbits(item >= 0)`` (``K = d``; other ``--bits``: a random Gaussian projection), the queries
the users' real-valued vectors, ``k = 20``, train items excluded (the real Gowalla train matrix
when ``HASHREC_DATA_DIR`` holds it, else a random CSR of mean 27 a user:
:func:`hashrec_utils.bench.gowalla_exclusion`). One process, numba's and Faiss's pools pinned to
``--threads``. Compared, at the same ``k`` with the same exclusion:

* ``asymmetric``: :class:`~hashrec_utils.retrieval.AsymmetricIndex` (``<q, b_i>`` by table lookups);
* ``hamming``: :class:`~hashrec_utils.retrieval.HammingIndex` on the users' sign codes (the symmetric scan);
* ``rabitq`` and ``rabitq_fastscan``: Faiss's ``IndexRaBitQ`` / ``IndexRaBitQFastScan`` built on the
  item embeddings (``d`` bits + factors per item, ``qb = 4``), searched through hashrec's wrapper
  (exclusion: each query group searched at ``k`` + its exclusion count, excluded ids dropped).

The searches take turns, ``--repeats`` rounds; each reports its median (and min/max) seconds. Before
the ratios, the asymmetric ids are checked against the float reference ``<q, b_i>`` on a sample
of queries (share of the reference top-k found; quantisation error within its bound).

Prints one line per method and, last,
``qps_ratio_vs_hamming=R speedup_vs_rabitq=S``: asymmetric q/s over the Hamming scan's, and over
the faster of the two RaBitQ indexes'.

    python benchmarks/bench_asymmetric.py
    python benchmarks/bench_asymmetric.py --queries 5000 --threads 2 --repeats 5
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np

from hashrec_utils.bench import gowalla_exclusion, take_turns
from hashrec_utils.retrieval import AsymmetricIndex, HammingIndex, asymmetric_scores, make_index
from hashrec_utils.retrieval.asymmetric import quantise_queries


def _check(index: AsymmetricIndex, user, icodes, exclude, k: int, sample: int) -> tuple[bool, str]:
    """The asymmetric top-k against the float reference on ``sample`` queries."""
    rows = np.arange(min(sample, len(user)))
    scores, ids = index.search(user[rows], k, exclude[rows])
    ref = asymmetric_scores(user[rows], icodes)
    ref[exclude[rows].toarray() != 0] = -np.inf
    truth = np.argsort(-ref, axis=1, kind="stable")[:, :k]
    found = np.mean([len(set(a) & set(b)) / k for a, b in zip(ids, truth)])
    _, _, _, bound = quantise_queries(user[rows])
    err = np.abs(scores - np.take_along_axis(ref, ids, 1))
    within = bool((err <= bound[:, None] + 1e-4).all())
    return within and found > 0.9, (f"reference check on {len(rows)} queries: {found:.4f} of the float top-{k} found, "
                                    f"score error max {err.max():.4f} (bound {bound.max():.4f}, {'within' if within else 'NOT within'})")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--queries", type=int, default=29_858)
    parser.add_argument("--items", type=int, default=40_981)
    parser.add_argument("--bits", type=int, default=64)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--qb", type=int, default=4, help="RaBitQ's query bits")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    exclude, source = gowalla_exclusion(rng, args.queries, args.items)
    user = rng.standard_normal((args.queries, args.dim), dtype=np.float32)
    item = rng.standard_normal((args.items, args.dim), dtype=np.float32)
    proj = np.eye(args.dim, args.bits, dtype=np.float32) if args.bits == args.dim else \
        rng.standard_normal((args.dim, args.bits), dtype=np.float32)
    query, icodes = user @ proj, np.packbits(item @ proj >= 0, axis=1)
    ucodes = np.packbits(query >= 0, axis=1)
    print(f"shape: {args.queries} queries x {args.items} items, {args.bits} bits, d={args.dim}, k={args.k}, "
          f"threads={args.threads}; exclusion: {source}, {exclude.nnz} entries")

    indexes = {"asymmetric": (AsymmetricIndex(args.bits, args.threads).build(icodes), query),
               "hamming": (HammingIndex(args.bits, args.threads).build(icodes), ucodes),
               "rabitq": (make_index("rabitq", threads=args.threads, qb=args.qb).build(item), user),
               "rabitq_fastscan": (make_index("rabitq_fastscan", threads=args.threads, qb=args.qb).build(item), user)}
    for index, q in indexes.values():  # numba: load the cached kernels (or compile them) before timing
        index.search(q[:64], args.k, exclude[:64])
    ok, line = _check(indexes["asymmetric"][0], query, icodes, exclude, args.k, 300)
    print(line)

    times = take_turns(indexes, args.k, args.repeats, exclude=exclude)
    qps = {name: args.queries / float(np.median(t)) for name, t in times.items()}
    for name, (index, _) in indexes.items():
        t = times[name]
        print(f"{name:>16}: {qps[name]:>10,.0f} q/s (median of {len(t)}; {args.queries / max(t):,.0f}-"
              f"{args.queries / min(t):,.0f})  {index.memory_bytes() / args.items:6.1f} bytes/item")
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"load average {load} on {os.cpu_count()} CPUs")
    if not ok:
        print("asymmetric ids fail the reference check: speed of a wrong answer not reported", file=sys.stderr)
        sys.exit(1)
    r = qps["asymmetric"] / qps["hamming"]
    s = qps["asymmetric"] / max(qps["rabitq"], qps["rabitq_fastscan"])
    print(f"qps_ratio_vs_hamming={r:.2f} speedup_vs_rabitq={s:.2f}")
    return {"qps": qps, "qps_ratio_vs_hamming": r, "speedup_vs_rabitq": s}


if __name__ == "__main__":
    main()
