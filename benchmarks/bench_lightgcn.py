"""One LightGCN training step (forward, BPR + L2, backward, Adam) on ml-1m, several ways, one process.

* ``hashrec``: :class:`hashrec_utils.models.LightGCN` — the adjacency
  normalised once, a sparse CSR tensor; each layer's backward is one more
  product with the same symmetric CSR matrix (custom autograd Function).
* ``pyg_*``: ``torch_geometric.nn.models.LightGCN`` (PyG 2.8) on the inputs its
  ``LGConv`` accepts: ``edge_index`` (COO, gather/scatter messages), and the
  binary adjacency as a ``torch.sparse_csr`` tensor (``spmm`` through
  ``torch.sparse.mm``; ``gcn_norm`` re-normalises it on every call, as
  ``LGConv`` does by default). ``pyg_csr_prenorm`` passes ``normalize=False``
  with our pre-normalised CSR adjacency: PyG's layers with the
  normalisation cached, shown for reference. (``torch_sparse.SparseTensor`` is
  not installed, so PyG's ``SparseTensor`` path is unavailable.)
* ``torch_sparse``: the same maths written with a coalesced COO
  ``torch.sparse`` adjacency and plain autograd through ``torch.sparse.mm``.

All: 64-d, 3 layers, the same initial weights, the same batch of 2048
(user, positive, negative) triples, Adam (``foreach``), ``--threads`` threads.
The first step's losses are checked equal across implementations. Steps are
timed round-robin (one step of each implementation per round), so load from
other processes hits all of them alike; the median per implementation is
reported. The last line is

    speedup_vs_pyg=X speedup_vs_torch_sparse=Y

with X against the fastest PyG input that normalises as PyG's LightGCN does
(``pyg_edge_index``, ``pyg_csr``) and Y against ``torch_sparse``.

    python benchmarks/bench_lightgcn.py [--threads 2] [--rounds 7]
"""
from __future__ import annotations

import argparse
import statistics
import warnings

import numpy as np
import torch
import torch.nn.functional as F

from hashrec_utils.bench import round_robin
from hashrec_utils.data import load_dataset
from hashrec_utils.graph import build_graph, normalized_adjacency
from hashrec_utils.models import LightGCN
from hashrec_utils.training import NegativeSampler


def bpr_l2(final: torch.Tensor, ego: torch.Tensor, n_users: int, batch, reg: float = 1e-4) -> torch.Tensor:
    """BPR on the propagated embeddings + ``reg/2 · ‖ego rows of the batch‖² / B`` (as LightGCN.loss)."""
    users, pos, neg = batch
    u, i, j = final[users], final[n_users + pos], final[n_users + neg]
    loss = F.softplus((u * j).sum(-1) - (u * i).sum(-1)).mean()
    l2 = ego[users].square().sum() + ego[n_users + pos].square().sum() + ego[n_users + neg].square().sum()
    return loss + reg * 0.5 * l2 / len(users)


def make_step(params, loss_fn):
    opt = torch.optim.Adam(params, lr=1e-3, foreach=True)

    def step() -> float:
        opt.zero_grad(set_to_none=True)
        loss = loss_fn()
        loss.backward()
        opt.step()
        return float(loss.detach())

    return step


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="ml-1m")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--batch", type=int, default=2048)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message=".*[Ss]parse CSR tensor support is in beta.*")
    data = load_dataset(args.dataset, valid_fraction=0.0)
    n_users, n_items = data.n_users, data.n_items
    n, dim, layers = n_users + n_items, 64, 3

    rng = np.random.default_rng(0)
    coo = data.train.tocoo()
    pick = rng.choice(data.train.nnz, args.batch, replace=False)
    users = coo.row[pick].astype(np.int64)
    neg = NegativeSampler(data.train).sample(users, rng)
    batch = tuple(torch.from_numpy(a) for a in (users, coo.col[pick].astype(np.int64), neg))
    torch.manual_seed(0)
    init = torch.randn(n, dim) * 0.1

    steps = {}

    # hashrec: normalised once, symmetric CSR, custom backward
    ours = LightGCN(n_users, n_items, dim, layers)
    ours.embedding.weight.data.copy_(init)
    graph = build_graph(data.train)
    steps["hashrec"] = make_step(ours.parameters(), lambda: ours.loss(graph, *batch)[0])

    # PyG's LightGCN on its inputs
    from torch_geometric.nn.models import LightGCN as PygLightGCN

    u = torch.from_numpy(coo.row.astype(np.int64))
    i = torch.from_numpy(coo.col.astype(np.int64)) + n_users
    edge_index = torch.stack([torch.cat([u, i]), torch.cat([i, u])])
    binary_csr = torch.sparse_coo_tensor(edge_index, torch.ones(edge_index.shape[1]), (n, n)).coalesce().to_sparse_csr()

    def pyg_step(adj, **kwargs):
        model = PygLightGCN(n, dim, layers, **kwargs)
        model.embedding.weight.data.copy_(init)
        return make_step(model.parameters(), lambda: bpr_l2(model.get_embedding(adj), model.embedding.weight, n_users, batch))

    steps["pyg_edge_index"] = pyg_step(edge_index)
    steps["pyg_csr"] = pyg_step(binary_csr)
    steps["pyg_csr_prenorm"] = pyg_step(graph.adj, normalize=False)

    # plain torch.sparse: COO adjacency, autograd through torch.sparse.mm
    norm = normalized_adjacency(data.train).tocoo()
    adj_coo = torch.sparse_coo_tensor(np.vstack([norm.row, norm.col]).astype(np.int64), norm.data, norm.shape).coalesce()
    emb = torch.nn.Parameter(init.clone())

    def coo_loss():
        x, out = emb, emb
        for _ in range(layers):
            x = torch.sparse.mm(adj_coo, x)
            out = out + x
        return bpr_l2(out / (layers + 1), emb, n_users, batch)

    steps["torch_sparse"] = make_step([emb], coo_loss)

    first = {name: step() for name, step in steps.items()}  # warm-up, and the same loss everywhere
    ref = first["hashrec"]
    for name, value in first.items():
        if abs(value - ref) > 1e-5 * max(1.0, abs(ref)):
            raise AssertionError(f"{name}: first-step loss {value} differs from hashrec's {ref}")

    times = round_robin(steps, args.rounds)
    median = {name: statistics.median(ts) for name, ts in times.items()}

    print(f"dataset={args.dataset} users={n_users} items={n_items} nnz(A)={2 * data.train.nnz} "
          f"dim={dim} layers={layers} batch={args.batch} threads={args.threads} rounds={args.rounds}")
    print(f"first-step loss (all equal): {ref:.6f}")
    for name, value in median.items():
        print(f"{name:>16}: {value:.4f} s/step (median; min {min(times[name]):.4f})")
    pyg_best = min(median["pyg_edge_index"], median["pyg_csr"])
    x = pyg_best / median["hashrec"]
    y = median["torch_sparse"] / median["hashrec"]
    print(f"(vs pyg_csr_prenorm, PyG with our cached normalisation: {median['pyg_csr_prenorm'] / median['hashrec']:.2f}x)")
    print(f"speedup_vs_pyg={x:.2f} speedup_vs_torch_sparse={y:.2f}")
    return {"times": median, "speedup_vs_pyg": x, "speedup_vs_torch_sparse": y}


if __name__ == "__main__":
    main()
