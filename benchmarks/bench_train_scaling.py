"""Training scaling: LightGCN step time and peak memory against interactions, and 1 against 2 processes.

Synthetic power-law graphs (exponent 0.6, users and items) with Netflix's
catalogue and interactions per user: 17,770 items, users = n/209 (at least
100), so 10^8 interactions is Netflix's shape (480k users, 1.2 % density). Each size runs in a fresh process, so its
peak resident memory is its own: one training step = forward propagation
(3 layers, 64-d), BPR on a batch of 8,192, backward, Adam. The 1-vs-2
process comparison runs the same step data-parallel under ``torchrun``
(gloo), each rank with its share of the batch and one all-reduce of the
gradients. Writes a CSV with ``--out`` and prints one line per measurement.

    python benchmarks/bench_train_scaling.py --max 100000000 --profile default   # results + figure
    python benchmarks/bench_train_scaling.py --sizes 100480507          # Netflix size: ~8 GiB peak
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np


def one(n: int, batch: int, steps: int, threads: int) -> dict:
    """Time ``steps`` training steps on a synthetic graph of ``n`` interactions (this process)."""
    import torch

    from hashrec_utils import distributed
    from hashrec_utils.data import synthetic_interactions
    from hashrec_utils.graph import build_graph
    from hashrec_utils.models import LightGCN

    torch.set_num_threads(threads)
    distributed.init_from_env("cpu")
    n_users, n_items = max(100, n // 209), 17_770
    frame = synthetic_interactions(n_users, n_items, n, seed=0, exponent=0.6)
    import scipy.sparse as sp

    train = sp.csr_matrix((np.ones(len(frame), np.float32), (frame["user"].to_numpy(), frame["item"].to_numpy())),
                          shape=(n_users, n_items))
    del frame
    t = time.perf_counter()
    graph = build_graph(train)
    build_s = time.perf_counter() - t
    torch.manual_seed(0)
    model = LightGCN(n_users, n_items, 64, 3)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, foreach=True)
    rng = np.random.default_rng(0)
    times = []
    for step in range(steps + 1):
        users = torch.from_numpy(rng.integers(0, n_users, batch))
        pos = torch.from_numpy(rng.integers(0, n_items, batch))
        neg = torch.from_numpy(rng.integers(0, n_items, batch))
        part = distributed.share(batch)
        t = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss, _ = model.loss(graph, users[part], pos[part], neg[part])
        (loss * (part.stop - part.start) / batch).backward()
        distributed.all_reduce_gradients(model.parameters())
        opt.step()
        if step:  # the first step warms caches and allocators
            times.append(time.perf_counter() - t)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB
    return {"interactions": n, "users": n_users, "items": n_items, "processes": distributed.world_size(),
            "threads_per_process": threads, "step_s": float(np.median(times)), "graph_build_s": build_s,
            "peak_rss_gib": peak, "adjacency_bytes": int(graph.adj.values().nbytes + graph.adj.col_indices().nbytes
                                                            + graph.adj.crow_indices().nbytes)}


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="*", default=None)
    parser.add_argument("--max", type=int, default=10_000_000, help="largest size of the default 10^5..10^8 ladder")
    parser.add_argument("--batch", type=int, default=8192)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dp-size", type=int, default=1_000_000, help="size of the 1-vs-2-process comparison (0: skip)")
    parser.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", default=None, help="CSV of every measurement")
    parser.add_argument("--profile", default=None,
                        help="also write results/<profile>/train_scaling.{csv,json} and figures/<profile>/train_scaling.{png,pdf}")
    args = parser.parse_args(argv)
    if args.one is not None:  # a child: measure and print JSON
        row = one(args.one, args.batch, args.steps, args.threads)
        if int(os.environ.get("RANK", "0")) == 0:
            print("RESULT " + json.dumps(row), flush=True)
        return [row]
    sizes = args.sizes or [n for n in (10**5, 10**6, 10**7, 10**8) if n <= args.max]
    script = os.path.abspath(__file__)
    rows = []

    def child(cmd: list[str]) -> dict:
        out = subprocess.run(cmd, capture_output=True, text=True, check=True)
        line = next(l for l in out.stdout.splitlines() if l.startswith("RESULT "))
        return json.loads(line[len("RESULT "):])

    for n in sizes:
        rows.append(child([sys.executable, script, "--one", str(n), "--batch", str(args.batch), "--steps", str(args.steps),
                           "--threads", str(args.threads)]))
        r = rows[-1]
        print(f"interactions={n} processes=1 step_s={r['step_s']:.3f} peak_rss_gib={r['peak_rss_gib']:.2f}", flush=True)
    if args.dp_size:
        n = args.dp_size
        single = next((r for r in rows if r["interactions"] == n), None) or child(
            [sys.executable, script, "--one", str(n), "--batch", str(args.batch), "--steps", str(args.steps), "--threads", str(args.threads)])
        dp = child([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29517", script, "--one", str(n),
                    "--batch", str(args.batch), "--steps", str(args.steps), "--threads", str(max(1, args.threads // 2))])
        rows.append(dp)
        print(f"interactions={n} processes=2 step_s={dp['step_s']:.3f} (1 process: {single['step_s']:.3f}) "
              f"speedup_2_processes={single['step_s'] / dp['step_s']:.2f}", flush=True)
    if args.out:
        import pandas as pd

        from hashrec_utils.utils import atomic_write

        with atomic_write(args.out, "w") as fh:
            pd.DataFrame(rows).to_csv(fh, index=False)
    if args.profile:
        import pandas as pd

        from hashrec_utils.experiments import write_table
        from hashrec_utils.config import figures_dir
        from hashrec_utils.plotting import plot_train_scaling, savefig

        frame = pd.DataFrame(rows)
        print(write_table(frame, "train_scaling", args.profile))
        savefig(plot_train_scaling(frame), "train_scaling", figures_dir(args.profile))
    return rows


if __name__ == "__main__":
    main()
