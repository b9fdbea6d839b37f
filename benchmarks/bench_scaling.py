"""Retrieval scaling: queries per second and bytes per item from 10^4 to 10^7 items (synthetic).

Each index family on the same random data per size: hashrec Hamming (64-bit
codes), Faiss BinaryFlat, FlatIP, HNSW (M=32, efSearch=64) and IVF-PQ (64-d
floats). HNSW and IVF-PQ build times grow fast; ``--skip-graph-above`` skips
HNSW past that many items. Writes a CSV with ``--out`` (atomically).

    python benchmarks/bench_scaling.py --max-items 1000000 --out results/default/scaling.csv
"""
from __future__ import annotations

import argparse
import sys

import numpy as np
import pandas as pd

from hashrec_utils.bench import time_search
from hashrec_utils.retrieval import make_index
from hashrec_utils.utils import atomic_write


def measure(n_items: int, n_queries: int, bits: int, dim: int, k: int, threads: int, skip_graph_above: int, seed: int = 0) -> list[dict]:
    import time

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
    rows = []
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
        print(f"{n_items:>10,} {label:>18}: {rows[-1]['qps']:10,.0f} q/s  {rows[-1]['bytes_per_item']:7.1f} B/item", flush=True)
    return rows


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--min-items", type=int, default=10_000)
    parser.add_argument("--max-items", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--bits", type=int, default=64)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--k", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-graph-above", type=int, default=1_000_000)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    sizes = [n for n in (10**4, 10**5, 10**6, 10**7) if args.min_items <= n <= args.max_items]
    rows = [r for n in sizes for r in measure(n, args.queries, args.bits, args.dim, args.k, args.threads, args.skip_graph_above)]
    df = pd.DataFrame(rows)
    if args.out:
        with atomic_write(args.out, "w") as fh:
            df.to_csv(fh, index=False)
    return df


if __name__ == "__main__":
    main(sys.argv[1:])
