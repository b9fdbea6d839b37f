"""Encoders: LightGCN (He et al., SIGIR 2020) and HashGNN's GraphSAGE encoder.

Every encoder answers ``embeddings(graph) -> (user_emb, item_emb)`` and
``loss(graph, users, pos, neg, step) -> (loss, logs)``, so one training loop
(:mod:`hashrec_utils.training`) serves them all, hash models included.
"""
from __future__ import annotations

from types import MappingProxyType

import torch
from torch import nn

from .graph import Graph
from .losses import bpr_loss

__all__ = ["SymmetricSpMM", "propagate", "LightGCN", "GraphSAGE", "make_encoder", "ENCODERS"]


class SymmetricSpMM(torch.autograd.Function):
    """``y = Ã x`` for a *symmetric* sparse ``Ã``; backward ``∂L/∂x = Ãᵀ g = Ã g``.

    Symmetry makes the backward pass one more product with the same CSR
    matrix: no transpose, no COO coalescing (what autograd through
    ``torch.sparse.mm`` would do). ``Ã``: sparse CSR ``(N, N)``; ``x``: ``(N, d)``.
    """

    @staticmethod
    def forward(ctx, adj: torch.Tensor, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.adj = adj
        return torch.sparse.mm(adj, x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        return None, torch.sparse.mm(ctx.adj, grad.contiguous())


def propagate(adj: torch.Tensor, x: torch.Tensor, n_layers: int) -> torch.Tensor:
    """LightGCN's layer combination ``e = Σ_{k=0}^{L} e^{(k)} / (L+1)``, ``e^{(k+1)} = Ã e^{(k)}``."""
    out = x
    layer = x
    for _ in range(n_layers):
        layer = SymmetricSpMM.apply(adj, layer)
        out = out + layer
    return out / (n_layers + 1)


class LightGCN(nn.Module):
    """LightGCN: free embeddings smoothed over the normalised bipartite graph.

    ``e^{(0)}``: an ``(n_users + n_items, dim)`` table, ``N(0, 0.1²)`` at init (the
    reference code's choice). ``embeddings(graph)`` returns the propagated
    ``(user_emb (n_users, dim), item_emb (n_items, dim))``; a pair is scored by
    the inner product ``⟨e_u, e_i⟩``.

    ``version``: bump when a change moves what it computes (init, propagation with
    :mod:`hashrec_utils.graph`'s normalisation, loss); part of every run's identity.
    """

    version = 1

    def __init__(self, n_users: int, n_items: int, dim: int = 64, n_layers: int = 3, reg: float = 1e-4):
        super().__init__()
        if n_users <= 0 or n_items <= 0 or dim <= 0 or n_layers < 0:
            raise ValueError(f"need n_users, n_items, dim > 0 and n_layers >= 0; got {n_users}, {n_items}, {dim}, {n_layers}")
        self.n_users, self.n_items, self.dim, self.n_layers, self.reg = n_users, n_items, dim, n_layers, reg
        self.embedding = nn.Embedding(n_users + n_items, dim)
        nn.init.normal_(self.embedding.weight, std=0.1)

    def propagated(self, graph: Graph) -> torch.Tensor:
        return propagate(graph.adj, self.embedding.weight, self.n_layers)

    def embeddings(self, graph: Graph) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.propagated(graph)
        return out[: self.n_users], out[self.n_users :]

    def loss(self, graph: Graph, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, step: int = 0):
        """BPR on ``⟨e_u, e_i⟩ - ⟨e_u, e_j⟩`` plus ``reg/2 · ‖e^{(0)}_{u,i,j}‖² / B`` (ego embeddings of the batch)."""
        user_emb, item_emb = self.embeddings(graph)
        u, i, j = user_emb[users], item_emb[pos], item_emb[neg]
        bpr = bpr_loss((u * i).sum(-1), (u * j).sum(-1))
        ego = self.embedding.weight
        l2 = (ego[users].square().sum() + ego[self.n_users + pos].square().sum() + ego[self.n_users + neg].square().sum())
        l2 = 0.5 * l2 / len(users)
        return bpr + self.reg * l2, {"bpr": float(bpr.detach())}


class GraphSAGE(nn.Module):
    """HashGNN's encoder: free node embeddings, two ``SAGEConv`` layers (mean aggregation), ReLU between.

    Same interface as :class:`LightGCN`; messages flow along the (unnormalised)
    user-item edges of ``graph.edge_index``. ``version``: as :class:`LightGCN`'s.
    """

    version = 1

    def __init__(self, n_users: int, n_items: int, dim: int = 64, n_layers: int = 2, reg: float = 1e-4):
        super().__init__()
        from torch_geometric.nn import SAGEConv

        self.n_users, self.n_items, self.dim, self.reg = n_users, n_items, dim, reg
        self.embedding = nn.Embedding(n_users + n_items, dim)
        nn.init.normal_(self.embedding.weight, std=0.1)
        self.convs = nn.ModuleList(SAGEConv(dim, dim) for _ in range(n_layers))

    def embeddings(self, graph: Graph) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.embedding.weight
        for k, conv in enumerate(self.convs):
            x = conv(x, graph.edge_index)
            if k < len(self.convs) - 1:
                x = torch.relu(x)
        return x[: self.n_users], x[self.n_users :]

    loss = LightGCN.loss


ENCODERS = MappingProxyType({"lightgcn": LightGCN, "graphsage": GraphSAGE})


def make_encoder(name: str, n_users: int, n_items: int, dim: int = 64, n_layers: int | None = None, reg: float = 1e-4) -> nn.Module:
    """An encoder by name: ``lightgcn`` (3 layers by default) or ``graphsage`` (2)."""
    if name not in ENCODERS:
        raise ValueError(f"unknown encoder {name!r}; choose one of {', '.join(ENCODERS)}")
    cls = ENCODERS[name]
    layers = n_layers if n_layers is not None else (3 if name == "lightgcn" else 2)
    return cls(n_users, n_items, dim=dim, n_layers=layers, reg=reg)
