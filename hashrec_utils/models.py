"""Encoders: LightGCN (He et al., SIGIR 2020) and HashGNN's GraphSAGE encoder.

Every encoder answers ``embeddings(graph) -> (user_emb, item_emb)`` and
``loss(graph, users, pos, neg, step) -> (loss, logs)``, so one training loop
(:mod:`hashrec_utils.training`) serves them all, hash models included.
"""
from __future__ import annotations

from types import MappingProxyType

import torch
from torch import nn

from .graph import Graph, column_block, from_blocks, spmm, to_blocks
from .losses import bpr_loss

__all__ = ["SymmetricSpMM", "propagate", "LightGCN", "LayerConcatLightGCN", "GraphSAGE", "make_encoder", "ENCODERS"]


class SymmetricSpMM(torch.autograd.Function):
    """``y = Ã x`` for a *symmetric* sparse ``Ã``; backward ``∂L/∂x = Ãᵀ g = Ã g``.

    Symmetry makes the backward pass one more product with the same CSR
    matrix: no transpose, no COO coalescing (what autograd through
    ``torch.sparse.mm`` would do). ``Ã``: sparse CSR ``(N, N)``; ``x``: ``(N, d)``, or its column
    blocks ``(blocks, N, block)``. Both products are :func:`hashrec_utils.graph.spmm`.
    """

    @staticmethod
    def forward(ctx, adj: torch.Tensor, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.adj = adj
        return spmm(adj, x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        return None, spmm(ctx.adj, grad.contiguous())


def propagate(adj: torch.Tensor, x: torch.Tensor, n_layers: int) -> torch.Tensor:
    """LightGCN's layer combination ``e = Σ_{k=0}^{L} e^{(k)} / (L+1)``, ``e^{(k+1)} = Ã e^{(k)}``.

    On the CPU, where ``x`` outgrows the cache (:func:`hashrec_utils.graph.column_block`), the layers
    are kept in column blocks from the first product to the sum (one copy in, one out): the same
    values, bit for bit, faster; the gradient to float32 rounding (autograd sums its terms in another
    order; see :mod:`hashrec_utils.graph`)."""
    block = column_block(x)
    blocked = n_layers > 0 and block < x.shape[1]
    out = layer = to_blocks(x, block) if blocked else x
    for _ in range(n_layers):
        layer = SymmetricSpMM.apply(adj, layer)
        out = out + layer
    out = out / (n_layers + 1)
    return from_blocks(out) if blocked else out


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
        out = self.propagated(graph)  # rows gathered from the whole table: no slices to scatter back
        u, i, j = out[users], out[self.n_users + pos], out[self.n_users + neg]
        bpr = bpr_loss((u * i).sum(-1), (u * j).sum(-1))
        ego = self.embedding.weight
        l2 = (ego[users].square().sum() + ego[self.n_users + pos].square().sum() + ego[self.n_users + neg].square().sum())
        l2 = 0.5 * l2 / len(users)
        return bpr + self.reg * l2, {"bpr": float(bpr.detach())}


class LayerConcatLightGCN(LightGCN):
    """LightGCN whose output keeps every layer apart: ``[w_0 e^{(0)} | w_1 e^{(1)} | … | w_L e^{(L)}]``,
    ``(L + 1) · dim`` columns, the encoder of BGCH's and BiGeaR's official code, which binarise each
    layer's embedding on its own (one sign code and one scale per layer; ``blocks = L + 1``).

    ``layer_weights``: ``"equal"`` (every ``w_l = 1``: BGCH, ``src/model.py:106-113``) or
    ``"linear"`` (``w_l = (l + 1)/(L + 1)``: BiGeaR, ``src/model.py:47-66`` and ``300-322``, so a
    pair's score weighs layer ``l`` by ``w_l²``). The loss is LightGCN's (BPR on the concatenated
    embeddings' inner product + L2 on the batch's ego embeddings): BiGeaR's teacher.
    """

    version = 1

    def __init__(self, n_users: int, n_items: int, dim: int = 64, n_layers: int = 2, reg: float = 1e-4,
                 layer_weights: str = "equal"):
        super().__init__(n_users, n_items, dim=dim, n_layers=n_layers, reg=reg)
        if layer_weights not in ("equal", "linear"):
            raise ValueError(f"layer_weights must be 'equal' or 'linear'; got {layer_weights!r}")
        self.layer_weights = layer_weights
        self.blocks = n_layers + 1

    def weights(self) -> list[float]:
        """``w_l`` of each layer ``l = 0..L``."""
        n = self.blocks
        return [1.0] * n if self.layer_weights == "equal" else [(l + 1) / n for l in range(n)]

    def propagated(self, graph: Graph) -> torch.Tensor:
        layer, out = self.embedding.weight, []
        for l, w in enumerate(self.weights()):
            if l:
                layer = SymmetricSpMM.apply(graph.adj, layer)
            out.append(layer * w if w != 1.0 else layer)
        return torch.cat(out, dim=1)


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

    def propagated(self, graph: Graph) -> torch.Tensor:
        x = self.embedding.weight
        for k, conv in enumerate(self.convs):
            x = conv(x, graph.edge_index)
            if k < len(self.convs) - 1:
                x = torch.relu(x)
        return x

    embeddings = LightGCN.embeddings
    loss = LightGCN.loss


class _Weighted(LayerConcatLightGCN):
    """:class:`LayerConcatLightGCN` with BiGeaR's layer weights ``(l + 1)/(L + 1)``."""

    def __init__(self, n_users: int, n_items: int, dim: int = 64, n_layers: int = 2, reg: float = 1e-4):
        super().__init__(n_users, n_items, dim=dim, n_layers=n_layers, reg=reg, layer_weights="linear")


# ``lightgcn_layers``: every layer side by side, equal weights (BGCH); ``lightgcn_layers_weighted``:
# BiGeaR's (l + 1)/(L + 1)
ENCODERS = MappingProxyType({"lightgcn": LightGCN, "graphsage": GraphSAGE, "lightgcn_layers": LayerConcatLightGCN,
                             "lightgcn_layers_weighted": _Weighted})


def make_encoder(name: str, n_users: int, n_items: int, dim: int = 64, n_layers: int | None = None, reg: float = 1e-4) -> nn.Module:
    """An encoder by name: ``lightgcn`` (3 layers by default), ``graphsage`` (2) or the layer-wise
    LightGCNs ``lightgcn_layers``, ``lightgcn_layers_weighted`` (2, as BGCH's and BiGeaR's code)."""
    if name not in ENCODERS:
        raise ValueError(f"unknown encoder {name!r}; choose one of {', '.join(ENCODERS)}")
    cls = ENCODERS[name]
    layers = n_layers if n_layers is not None else (3 if name == "lightgcn" else 2)
    return cls(n_users, n_items, dim=dim, n_layers=layers, reg=reg)
