"""LightGCN's propagation on Gowalla, plain against column blocks: the product ``Ã x`` and the
teacher's whole training step, one process, round-robin.

``x`` is ``(n_users + n_items, d)`` and ``Ã`` the normalised adjacency of the `full` teacher's train
(Gowalla's published train less the 10 % validation carve-out: 70,839 nodes). Each round times, per
embedding size,

* one product: ``torch.sparse.mm`` whole, on the CSR tensor with int32 indices that
  :func:`hashrec_utils.graph.csr_to_torch` builds and on the int64 one torch builds by default;
  :func:`hashrec_utils.graph.spmm` with blocks forced (its width from ``SPMM_BLOCK_BYTES``, ``x``
  copied into blocks and back); and ``x`` already in blocks of
  8, 16, 32, 64 columns (:func:`hashrec_utils.graph.to_blocks`), as
  :func:`hashrec_utils.models.propagate` keeps its layers;
* one training step of the teacher as :func:`hashrec_utils.training.fit` runs it (3-layer LightGCN,
  BPR + L2 on a batch of 1/22 of the train pairs with sampled negatives, backward, Adam ``foreach``,
  freed memory kept as ``fit`` keeps it), plain (blocks off) and with blocks forced, from the same
  weights; and plain on the int64 adjacency (the product as it was before column blocks and int32),

so load from other processes hits all alike; medians are reported. Every product is checked
bit-identical to ``torch.sparse.mm`` and the three steps' first losses equal. The last line per size is

    dim=D block=B speedup_spmm=X speedup_step=Y speedup_step_vs_int64=Z

X: ``torch.sparse.mm`` over ``spmm`` (one product); Y: the plain training step over the blocked one;
Z: the plain step on int64 indices over the blocked one;
``block``: what :func:`hashrec_utils.graph.spmm_block` picks by default (``D``: none, ``x`` fits
``SPMM_WHOLE_BYTES`` whole; the ratios then show what blocks would do).

    python benchmarks/bench_spmm.py [--dims 64 128 256] [--rounds 7] [--threads 2]
"""
from __future__ import annotations

import argparse
import statistics
import warnings
from unittest import mock

import numpy as np
import torch

from hashrec_utils import graph as graph_module
from hashrec_utils.bench import round_robin
from hashrec_utils.data import load_dataset
from hashrec_utils.graph import Graph, build_graph, from_blocks, spmm, spmm_block, to_blocks
from hashrec_utils.models import LightGCN
from hashrec_utils.training import NegativeSampler
from hashrec_utils.training.loop import make_optimizer
from hashrec_utils.utils import keep_freed_memory

PLAIN = 1 << 62  # SPMM_WHOLE_BYTES nothing exceeds: one product, no blocks
BLOCKED = 0  # SPMM_WHOLE_BYTES everything exceeds: blocks of SPMM_BLOCK_BYTES


def int64_graph(graph: Graph) -> Graph:
    """``graph`` with int64 CSR indices (what ``torch.sparse_csr_tensor`` gets from int64 arrays)."""
    adj = graph.adj
    adj64 = torch.sparse_csr_tensor(adj.crow_indices().long(), adj.col_indices().long(), adj.values(), size=adj.shape)
    return Graph(adj64, graph.n_users, graph.n_items)


def train_step(graph, batch, dim: int, whole_bytes: int):
    """One training step of a fresh ``dim``-d teacher (seed 0) with ``SPMM_WHOLE_BYTES = whole_bytes``."""
    torch.manual_seed(0)
    model = LightGCN(graph.n_users, graph.n_items, dim=dim, n_layers=3)
    opt = make_optimizer(model, 0.01, torch.device("cpu"))

    def step() -> float:
        with mock.patch.object(graph_module, "SPMM_WHOLE_BYTES", whole_bytes):
            opt.zero_grad(set_to_none=True)
            loss = model.loss(graph, *batch)[0]
            loss.backward()
            opt.step()
        return float(loss.detach())

    return step


def forced(f, *args):
    """``f(*args)`` with blocks forced (``SPMM_WHOLE_BYTES = 0``)."""
    with mock.patch.object(graph_module, "SPMM_WHOLE_BYTES", BLOCKED):
        return f(*args)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="gowalla")
    parser.add_argument("--dims", type=int, nargs="+", default=[64, 128, 256])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps-per-epoch", type=int, default=22, help="the teacher's batch: train pairs / this")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    keep_freed_memory()  # as fit does: the steps reuse freed memory instead of page-faulting anew
    warnings.filterwarnings("ignore", message=".*[Ss]parse CSR tensor support is in beta.*")
    data = load_dataset(args.dataset, valid_fraction=0.1)
    graph = build_graph(data.train)
    adj, n = graph.adj, graph.n_nodes
    graph64 = int64_graph(graph)
    rng = np.random.default_rng(0)
    coo = data.train.tocoo()
    pick = rng.choice(data.train.nnz, -(-data.train.nnz // args.steps_per_epoch), replace=False)
    users = coo.row[pick].astype(np.int64)
    batch = [torch.from_numpy(a) for a in (users, coo.col[pick].astype(np.int64), NegativeSampler(data.train).sample(users, rng))]
    print(f"dataset={args.dataset} nodes={n} nnz={adj._nnz()} batch={len(users)} threads={args.threads} "
          f"rounds={args.rounds} block_bytes={graph_module.SPMM_BLOCK_BYTES} whole_bytes={graph_module.SPMM_WHOLE_BYTES}")
    out = {}
    for dim in args.dims:
        torch.manual_seed(dim)
        x = torch.randn(n, dim)
        timed = {"sparse.mm": lambda: torch.sparse.mm(adj, x), "sparse.mm int64": lambda: torch.sparse.mm(graph64.adj, x),
                 "spmm": lambda: forced(spmm, adj, x)}
        checks = dict(timed)
        for b in (8, 16, 32, 64):
            if b < dim:
                xb = to_blocks(x, b)
                timed[f"in blocks of {b}"] = lambda xb=xb: spmm(adj, xb)
                checks[f"in blocks of {b}"] = lambda xb=xb: from_blocks(spmm(adj, xb))
        reference = timed["sparse.mm"]()
        for name, f in checks.items():
            if not torch.equal(f(), reference):
                raise AssertionError(f"dim {dim}: {name} differs from torch.sparse.mm")
        timed["step plain"] = train_step(graph, batch, dim, PLAIN)
        timed["step plain int64"] = train_step(graph64, batch, dim, PLAIN)
        timed["step blocked"] = train_step(graph, batch, dim, BLOCKED)
        first = [timed[k]() for k in ("step plain", "step plain int64", "step blocked")]  # warm-up, same weights
        if len(set(first)) > 1:
            raise AssertionError(f"dim {dim}: first-step losses differ: {first}")
        times = round_robin(timed, args.rounds)
        median = {name: statistics.median(ts) for name, ts in times.items()}
        for name, value in median.items():
            print(f"dim={dim} {name:>16}: {value * 1e3:8.1f} ms (median; min {min(times[name]) * 1e3:.1f})")
        x_ratio = median["sparse.mm"] / median["spmm"]
        y_ratio = median["step plain"] / median["step blocked"]
        z_ratio = median["step plain int64"] / median["step blocked"]
        print(f"dim={dim} block={spmm_block(n, dim)} speedup_spmm={x_ratio:.2f} speedup_step={y_ratio:.2f} "
              f"speedup_step_vs_int64={z_ratio:.2f}")
        out[dim] = {"times": median, "speedup_spmm": x_ratio, "speedup_step": y_ratio, "speedup_step_vs_int64": z_ratio}
    return out


if __name__ == "__main__":
    main()
