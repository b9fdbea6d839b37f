"""The inverted-file asymmetric scan against the full asymmetric scan and Faiss's IVF-RaBitQ FastScan.

Clustered items (a mixture of ``--clusters`` Gaussians in 64 dimensions, ``--items`` of them), their
64-bit codes ``np.packbits(item >= 0)``, queries drawn like the items; ``k = 20``, no exclusion. One
process, numba's and Faiss's pools pinned to ``--threads``. Compared on the same queries:

* ``full``: :class:`~hashrec_utils.retrieval.AsymmetricIndex`, every item's code scanned;
* ``ivf``: :class:`~hashrec_utils.retrieval.IVFAsymmetricIndex` (``nlist`` cells, ``--nprobe`` visited),
  code-only: the same scan restricted to the visited lists;
* ``ivf_rabitq``: Faiss ``IndexIVFRaBitQFastScan`` on the item embeddings at the same ``nlist`` and
  ``nprobe`` (64 bits + factors an item).

The searches take turns, ``--repeats`` rounds (medians). Accuracy: each method's share of the exact
float top-k of the embeddings (``ivf`` also: the share of the full scan's own top-k, what the coarse
stage loses). Last line: ``speedup_vs_full_scan=X speedup_vs_ivf_rabitq=Y`` (queries/s of ``ivf`` over
each).

    python benchmarks/bench_ivf_asymmetric.py
    python benchmarks/bench_ivf_asymmetric.py --items 1000000 --nprobe 16
"""
from __future__ import annotations

import argparse

import numpy as np

from hashrec_utils.bench import recall_vs_exact, take_turns
from hashrec_utils.retrieval import exact_topk, make_index


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=200_000)
    parser.add_argument("--queries", type=int, default=2_000)
    parser.add_argument("--clusters", type=int, default=500)
    parser.add_argument("--nprobe", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    d, k = 64, 20
    centres = rng.normal(size=(args.clusters, d))
    item = (centres[rng.integers(args.clusters, size=args.items)] + 0.5 * rng.normal(size=(args.items, d))).astype(np.float32)
    query = (centres[rng.integers(args.clusters, size=args.queries)] + 0.5 * rng.normal(size=(args.queries, d))).astype(np.float32)
    codes = np.packbits(item >= 0, axis=1)
    nlist = int(min(4 * np.sqrt(args.items), args.items // 39))
    truth = exact_topk(query, item, k, threads=args.threads)[1]
    searches = {
        "full": (make_index("asymmetric", bits=d, threads=args.threads).build(codes), query),
        "ivf": (make_index("ivf_asymmetric", bits=d, nlist=nlist, nprobe=args.nprobe, threads=args.threads)
                .build((codes, item)), (query, query)),
        "ivf_rabitq": (make_index("ivf_rabitq_fastscan", nlist=nlist, nprobe=args.nprobe, threads=args.threads)
                       .build(item), query),
    }
    ids = {name: index.search(q, k)[1] for name, (index, q) in searches.items()}  # warm-up, and the ids scored below
    times = take_turns(searches, k, args.repeats)
    qps = {name: args.queries / float(np.median(t)) for name, t in times.items()}
    print(f"{args.items:,} items in {args.clusters} clusters, {args.queries:,} queries, k = {k}, nlist {nlist}, "
          f"nprobe {args.nprobe}, {args.threads} threads, {args.repeats} rounds")
    for name in searches:
        extra = f", share of the full scan's top-{k} {recall_vs_exact(ids['ivf'], ids['full']):.3f}" if name == "ivf" else ""
        print(f"{name:<11} {qps[name]:>12,.0f} queries/s  share of the exact top-{k} "
              f"{recall_vs_exact(ids[name], truth):.3f}{extra}")
    out = {"speedup_vs_full_scan": qps["ivf"] / qps["full"], "speedup_vs_ivf_rabitq": qps["ivf"] / qps["ivf_rabitq"]}
    print(f"speedup_vs_full_scan={out['speedup_vs_full_scan']:.2f} speedup_vs_ivf_rabitq={out['speedup_vs_ivf_rabitq']:.2f}")
    return out


if __name__ == "__main__":
    main()
