"""Retrieval scaling: queries per second and bytes per item from 10^4 to 10^7 items (synthetic).

Each index family on the same random data per size (see
``hashrec_utils.bench.scaling``): hashrec Hamming (64-bit codes), Faiss
BinaryFlat, FlatIP, HNSW and IVF-PQ (64-d floats). Writes a CSV with
``--out`` (atomically).

    python benchmarks/bench_scaling.py --max-items 10000000 --out results/default/scaling.csv
"""
from __future__ import annotations

import argparse

from hashrec_utils.bench import scaling
from hashrec_utils.utils import atomic_write


def main(argv: list[str] | None = None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--min-items", type=int, default=10_000)
    parser.add_argument("--max-items", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--bits", type=int, default=64)
    parser.add_argument("--k", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-graph-above", type=int, default=1_000_000)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    sizes = [n for n in (10**4, 10**5, 10**6, 10**7) if args.min_items <= n <= args.max_items]
    df = scaling(sizes, n_queries=args.queries, bits=args.bits, k=args.k, threads=args.threads,
                 skip_graph_above=args.skip_graph_above)
    if args.out:
        with atomic_write(args.out, "w") as fh:
            df.to_csv(fh, index=False)
    return df


if __name__ == "__main__":
    main()
