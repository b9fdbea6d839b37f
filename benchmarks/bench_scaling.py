"""Retrieval scaling: queries per second, build time and bytes per item from 10^4 to 10^7 items.

Synthetic data (queries and items drawn alike): ``--bits``-bit random codes
for the binary indexes, ``--dim``-d Gaussian vectors for the float ones, the
same for every method at a size. Every method runs with ``--threads``
threads (numba's and Faiss's pools pinned alike) and is timed best of
``--repeats``. On random data recall means nothing, so this measures cost
only; ``bench.sweep`` measures accuracy on real data.

Methods (``--methods``, comma-separated; default all): ``hamming``
(hashrec, exact), ``binary_flat``, ``binary_ivf``, ``binary_multihash``,
``binary_hnsw``, ``flat_ip``, ``ivf_flat``, ``ivf_pq``, ``hnsw``; ``nsg`` on
request (its build is the slowest by far: minutes at 10^5 items on two cores).
Graph indexes (``*hnsw``, ``nsg``) are skipped above ``--graph-max-items``.

    python benchmarks/bench_scaling.py --max-items 1000000 --out results/scaling.csv
    python benchmarks/bench_scaling.py --max-items 10000000 --methods hamming,binary_flat,flat_ip,ivf_pq
    python benchmarks/bench_scaling.py --profile default --min-items 10000000 --max-items 10000000 \
        --methods hamming,binary_flat,binary_ivf,binary_multihash,flat_ip

``--profile P`` also writes ``results/P/retrieval_scaling_large.{csv,json}``: notebook 04 adds
its sizes beyond the notebook's own to the scaling table and figure (what ``make all`` cannot
afford to measure on two cores, kept from the run that measured it).

The CSV (one row per method and size: method, items, qps, build_s,
bytes_per_item, params) is rewritten atomically after every size, so an
interrupted run keeps what it measured.
"""
from __future__ import annotations

import argparse
import pandas as pd

from hashrec_utils.bench import SCALING_BINARY as BINARY, SCALING_FLOAT as FLOAT, scaling_measure as measure
from hashrec_utils.config import PROFILES
from hashrec_utils.experiments import SCALING_LARGE, write_table
from hashrec_utils.utils import atomic_write

def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--min-items", type=int, default=10_000)
    parser.add_argument("--max-items", type=int, default=1_000_000, help="largest size (10^7 works; minutes)")
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--bits", type=int, default=64)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--k", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--methods", default=",".join(m for m in BINARY + FLOAT if m != "nsg"))
    parser.add_argument("--graph-max-items", type=int, default=100_000)
    parser.add_argument("--out", default=None, help="CSV path (written atomically)")
    parser.add_argument("--profile", default=None, choices=PROFILES,
                        help=f"also write results/<profile>/{SCALING_LARGE}.{{csv,json}} (read by notebook 04)")
    args = parser.parse_args(argv)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = sorted(set(methods) - set(BINARY + FLOAT))
    if unknown:
        parser.error(f"unknown methods {', '.join(unknown)}; choose from {', '.join(BINARY + FLOAT)}")
    sizes = [10**e for e in range(4, 8) if args.min_items <= 10**e <= args.max_items]
    rows: list[dict] = []
    for n in sizes:
        rows += measure(n, methods, n_queries=args.queries, bits=args.bits, dim=args.dim, k=args.k,
                        threads=args.threads, repeats=args.repeats, graph_max_items=args.graph_max_items)
        if args.out:
            with atomic_write(args.out, "w") as fh:
                pd.DataFrame(rows).to_csv(fh, index=False)
        if args.profile:
            write_table(pd.DataFrame(rows), SCALING_LARGE, args.profile)
    return pd.DataFrame(rows)


if __name__ == "__main__":
    main()
