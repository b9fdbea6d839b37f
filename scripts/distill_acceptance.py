"""Issue 32's acceptance figures: distil MovieLens-1M embeddings into 64-bit codes, report on held-out users.

    python scripts/distill_acceptance.py puresvd [--out runs/distill/puresvd]
    python scripts/distill_acceptance.py lightgcn --run runs/lgcn_ml1m [--out runs/distill/lightgcn]

``puresvd``: rank-64 truncated SVD of the training matrix (train + valid of ``load_dataset("ml-1m",
valid_fraction=0)``), ``user = U S^½``, ``item = V S^½`` (any split of S ranks alike: the scores are
``U S Vᵀ``). ``lightgcn``: a LightGCN run folder's ``embeddings.npz`` on that run's own split. Seen
items (the training matrix) are excluded from search and from the targets; recall@20 is on the test
split. Prints the report (share of the model's exact top-20 found, throughput, recall against the
model's own) and writes it to ``OUT/report.json``.
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np


def puresvd(rank: int = 64):
    import scipy.sparse.linalg as sla

    from hashrec_utils.data import load_dataset

    data = load_dataset("ml-1m", valid_fraction=0.0, seed=0)
    train = data.train_full.astype(np.float64)
    v0 = np.full(min(train.shape), 1.0 / np.sqrt(min(train.shape)))  # a fixed start: same seed, same numbers
    u, s, vt = sla.svds(train, k=rank, v0=v0)
    return (u * np.sqrt(s)).astype(np.float32), (vt.T * np.sqrt(s)).astype(np.float32), data


def lightgcn(run: str):
    from hashrec_utils.distill import read_embeddings
    from hashrec_utils.training.runs import load_run_data, run_config

    user, item = read_embeddings(os.path.join(run, "embeddings.npz"))
    return user, item, load_run_data(run_config(run))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", choices=("puresvd", "lightgcn"))
    parser.add_argument("--run", default="runs/lgcn_ml1m", help="the LightGCN run folder (lightgcn)")
    parser.add_argument("--out", default=None)
    parser.add_argument("--bits", type=int, default=64)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    from hashrec_utils.__main__ import _overrides
    from hashrec_utils.distill import distill
    from hashrec_utils.distill.report import format_report

    user, item, data = puresvd() if args.model == "puresvd" else lightgcn(args.run)
    out = args.out or f"runs/distill/{args.model}"
    searcher = distill(user, item, args.bits, interactions=data.train_full, test=data.test, out=out,
                       keep_float=True, **_overrides(args.set))
    print(format_report(searcher.report))
    best = searcher.report["best_code_mode"]
    row = searcher.report[best]
    print(f"{args.model}: best code-only mode {best}: share of exact top-20 {row['top20_share']:.4f}, "
          f"recall@20 {row['recall@20']:.4f} = {row['recall_ratio_vs_exact']:.3f}x the model's own "
          f"{searcher.report['exact']['recall@20']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
