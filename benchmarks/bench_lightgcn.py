"""One LightGCN training step (forward, BPR, backward, Adam) on ml-1m, three ways, one process.

* hashrec: symmetric-CSR propagation with a custom autograd backward;
* PyG: ``torch_geometric.nn.models.LightGCN`` on its fastest input, the
  adjacency as a torch sparse CSR tensor (LGConv re-normalises it each call);
* torch.sparse: the same maths with a COO adjacency and autograd through
  ``torch.sparse.mm``.

All three: 64-d, 3 layers, batch 2048, Adam, same threads. Prints seconds per
step (best of ``--repeats``) and, last, ``speedup_vs_pyg=X speedup_vs_torch_sparse=Y``.

    python benchmarks/bench_lightgcn.py [--threads 2] [--repeats 5]
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch
import torch.nn.functional as F

from hashrec_utils.data import load_dataset
from hashrec_utils.graph import build_graph, normalized_adjacency
from hashrec_utils.models import LightGCN


def time_steps(step, repeats: int) -> float:
    step()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        step()
        best = min(best, time.perf_counter() - t)
    return best


def bpr_step(final: torch.Tensor, ego: torch.Tensor, n_users: int, batch, opt, reg: float = 1e-4) -> None:
    users, pos, neg = batch
    u, i, j = final[users], final[n_users + pos], final[n_users + neg]
    loss = F.softplus((u * j).sum(-1) - (u * i).sum(-1)).mean()
    loss = loss + reg * 0.5 * (ego[users].square().sum() + ego[n_users + pos].square().sum() + ego[n_users + neg].square().sum()) / len(users)
    loss.backward()
    opt.step()


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="ml-1m")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=2048)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    data = load_dataset(args.dataset, valid_fraction=0.0)
    n_users, n_items = data.n_users, data.n_items
    rng = np.random.default_rng(0)
    batch = tuple(torch.from_numpy(rng.integers(0, n, args.batch)) for n in (n_users, n_items, n_items))
    torch.manual_seed(0)
    init = torch.randn(n_users + n_items, 64) * 0.1

    # hashrec
    ours = LightGCN(n_users, n_items, 64, 3)
    ours.embedding.weight.data.copy_(init)
    graph = build_graph(data.train)
    opt_ours = torch.optim.Adam(ours.parameters(), lr=1e-3)

    def step_ours():
        opt_ours.zero_grad(set_to_none=True)
        loss, _ = ours.loss(graph, *batch)
        loss.backward()
        opt_ours.step()

    # PyG, torch sparse CSR adjacency (binary A; LGConv applies gcn_norm itself)
    from torch_geometric.nn.models import LightGCN as PygLightGCN

    pyg = PygLightGCN(n_users + n_items, 64, 3)
    pyg.embedding.weight.data.copy_(init)
    coo = data.train.tocoo()
    u = torch.from_numpy(coo.row.astype(np.int64))
    i = torch.from_numpy(coo.col.astype(np.int64)) + n_users
    edge_index = torch.stack([torch.cat([u, i]), torch.cat([i, u])])
    n = n_users + n_items
    adj_csr = torch.sparse_coo_tensor(edge_index, torch.ones(edge_index.shape[1]), (n, n)).coalesce().to_sparse_csr()
    opt_pyg = torch.optim.Adam(pyg.parameters(), lr=1e-3)

    def step_pyg():
        opt_pyg.zero_grad(set_to_none=True)
        bpr_step(pyg.get_embedding(adj_csr), pyg.embedding.weight, n_users, batch, opt_pyg)

    # plain torch.sparse COO with autograd
    norm = normalized_adjacency(data.train).tocoo()
    adj_coo = torch.sparse_coo_tensor(np.vstack([norm.row, norm.col]).astype(np.int64), norm.data, norm.shape).coalesce()
    emb = torch.nn.Parameter(init.clone())
    opt_coo = torch.optim.Adam([emb], lr=1e-3)

    def step_coo():
        opt_coo.zero_grad(set_to_none=True)
        x, out = emb, emb
        for _ in range(3):
            x = torch.sparse.mm(adj_coo, x)
            out = out + x
        bpr_step(out / 4, emb, n_users, batch, opt_coo)

    times = {}
    for name, step in (("hashrec", step_ours), ("pyg_csr", step_pyg), ("torch_sparse_coo", step_coo)):
        times[name] = time_steps(step, args.repeats)
        print(f"{name:>18}: {times[name]:.4f} s/step", flush=True)
    x = times["pyg_csr"] / times["hashrec"]
    y = times["torch_sparse_coo"] / times["hashrec"]
    print(f"dataset={args.dataset} threads={args.threads} batch={args.batch} dim=64 layers=3")
    print(f"speedup_vs_pyg={x:.2f} speedup_vs_torch_sparse={y:.2f}")
    return {"times": times, "speedup_vs_pyg": x, "speedup_vs_torch_sparse": y}


if __name__ == "__main__":
    main()
