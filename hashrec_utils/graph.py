"""The normalised bipartite graph LightGCN propagates on, built once.

Users are nodes ``0..n_users-1`` and items ``n_users..n_users+n_items-1``.
With ``R`` the binary train matrix (users x items),

    A = [[0, R], [R^T, 0]],      Ã = D^{-1/2} A D^{-1/2},

``D`` the diagonal degree matrix (isolated nodes get ``D^{-1/2} = 0``, not
``inf``). ``Ã`` is symmetric, which the propagation's backward pass relies on
(see :class:`hashrec_utils.models.SymmetricSpMM`).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
import torch

__all__ = ["Graph", "normalized_adjacency", "build_graph", "csr_to_torch"]


def normalized_adjacency(train: sp.spmatrix) -> sp.csr_matrix:
    """``D^{-1/2} A D^{-1/2}`` of the bipartite graph of ``train`` (users x items), float32 CSR.

    Any stored entry of ``train`` (a rating, a count) is one interaction. Edge
    weights ``1 / sqrt(d_a d_b)`` are computed in float64 and rounded once;
    isolated nodes keep empty rows and columns.
    """
    if not sp.issparse(train):
        raise TypeError(f"train must be a scipy sparse matrix (users x items); got {type(train).__name__}")
    R = sp.csr_matrix(train, dtype=np.float64)
    R.eliminate_zeros()
    R.data[:] = 1.0
    A = sp.bmat([[None, R], [R.T, None]], format="csr", dtype=np.float64)
    A.sum_duplicates()
    degree = np.diff(A.indptr).astype(np.float64)
    inv_sqrt = np.zeros_like(degree)
    inv_sqrt[degree > 0] = degree[degree > 0] ** -0.5
    rows = np.repeat(np.arange(A.shape[0]), np.diff(A.indptr))
    A.data = inv_sqrt[rows] * A.data * inv_sqrt[A.indices]
    out = A.astype(np.float32)
    out.sort_indices()
    return out


@dataclass(frozen=True)
class Graph:
    """Normalised adjacency as a torch sparse CSR tensor, plus the node counts.

    ``adj``: ``(n_users + n_items, n_users + n_items)`` float32, symmetric.
    ``edge_index``: ``(2, 2·nnz(R))`` int64 COO of ``A`` (for PyG layers such as
    ``SAGEConv``), built on first use.
    """

    adj: torch.Tensor
    n_users: int
    n_items: int
    _edge_index: list = field(default_factory=list, repr=False, compare=False)

    @property
    def n_nodes(self) -> int:
        return self.n_users + self.n_items

    @property
    def device(self) -> torch.device:
        return self.adj.device

    @property
    def edge_index(self) -> torch.Tensor:
        if not self._edge_index:
            crow, col = self.adj.crow_indices(), self.adj.col_indices()
            row = torch.repeat_interleave(torch.arange(self.n_nodes, device=crow.device), crow.diff())
            self._edge_index.append(torch.stack([row, col]))
        return self._edge_index[0]

    def to(self, device: str | torch.device) -> "Graph":
        return Graph(self.adj.to(device), self.n_users, self.n_items)


def build_graph(train: sp.spmatrix, device: str | torch.device = "cpu") -> Graph:
    """The :class:`Graph` of the train interactions (normalised once, reused every step)."""
    return Graph(csr_to_torch(normalized_adjacency(train)).to(device), train.shape[0], train.shape[1])


def csr_to_torch(matrix: sp.csr_matrix) -> torch.Tensor:
    """A scipy CSR matrix as a torch sparse CSR tensor (int64 indices, same dtype)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(
            torch.from_numpy(matrix.indptr.astype(np.int64)),
            torch.from_numpy(matrix.indices.astype(np.int64)),
            torch.from_numpy(matrix.data),
            size=matrix.shape,
            check_invariants=False,
        )
