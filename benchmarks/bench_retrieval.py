"""Top-k retrieval speed: hashrec's HammingIndex against Faiss IndexBinaryFlat and IndexFlatIP.

Same random data, same threads, one process. Codes: ``--bits`` random bits per
item (packed); floats: 64-d Gaussian vectors (256 bytes each, against 8 for
64-bit codes). Prints queries per second (best of ``--repeats``) and, last,
``speedup_vs_binaryflat=X speedup_vs_flatip=Y``.

    python benchmarks/bench_retrieval.py --items 1000000 --queries 2000 --bits 64 --k 50
    python benchmarks/bench_retrieval.py --items 40981 --queries 29858 --bits 64 --k 50
"""
from __future__ import annotations

import argparse

import faiss
import numpy as np

from hashrec_utils.bench import time_search
from hashrec_utils.retrieval import FaissIndex, HammingIndex


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--bits", type=int, default=64)
    parser.add_argument("--k", type=int, default=50)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    codes = rng.integers(0, 256, (args.items, args.bits // 8), dtype=np.uint8)
    qcodes = rng.integers(0, 256, (args.queries, args.bits // 8), dtype=np.uint8)
    vecs = rng.standard_normal((args.items, args.dim), dtype=np.float32)
    qvecs = rng.standard_normal((args.queries, args.dim), dtype=np.float32)
    faiss.omp_set_num_threads(args.threads)

    ours = HammingIndex(args.bits, threads=args.threads).build(codes)
    ours.search(qcodes[:32], args.k)  # compile / warm up
    binflat = FaissIndex("binary_flat", threads=args.threads).build(codes)
    flatip = FaissIndex("flat_ip", threads=args.threads).build(vecs)
    qps = {}
    results = {}
    for name, index, q in (("hashrec_hamming", ours, qcodes), ("faiss_binaryflat", binflat, qcodes), ("faiss_flatip", flatip, qvecs)):
        seconds, ids = time_search(index, q, args.k, repeats=args.repeats)
        qps[name] = args.queries / seconds
        results[name] = ids
        print(f"{name:>18}: {qps[name]:12,.0f} queries/s  ({index.memory_bytes() / args.items:.0f} bytes/item)", flush=True)
    # the two exact Hamming searches agree on distances (a speed figure of a wrong answer is worthless)
    d_ours, _ = ours.search(qcodes[:200], args.k)
    d_ref, _ = binflat.index.search(qcodes[:200], args.k)
    assert (d_ours == d_ref).all(), "HammingIndex and IndexBinaryFlat disagree on distances"
    x = qps["hashrec_hamming"] / qps["faiss_binaryflat"]
    y = qps["hashrec_hamming"] / qps["faiss_flatip"]
    print(f"items={args.items} queries={args.queries} bits={args.bits} k={args.k} threads={args.threads}")
    print(f"speedup_vs_binaryflat={x:.2f} speedup_vs_flatip={y:.2f}")
    return {"qps": qps, "speedup_vs_binaryflat": x, "speedup_vs_flatip": y}


if __name__ == "__main__":
    main()
