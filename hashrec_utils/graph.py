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

__all__ = ["Graph", "normalized_adjacency", "build_graph", "csr_to_torch", "spmm", "spmm_block", "SPMM_BLOCK_BYTES", "SPMM_WHOLE_BYTES", "column_block", "to_blocks", "from_blocks"]

# On the CPU a product Ã x gathers rows of ``x`` in the order of Ã's column indices: once ``x`` no longer
# fits the last-level cache (Gowalla: 70,839 nodes, 18 MB at 64 floats a row) most gathers miss. Done
# one column block at a time, each block's rows fit and the same sums run faster on two cores: a
# Gowalla training step 1.1-1.2x at d = 64, 1.4-1.65x at 128-256 (benchmarks/bench_spmm.py; int32
# indices, csr_to_torch, spare each block a conversion). Each
# output element is the same sum in the same order: the product is bit-identical to
# ``torch.sparse.mm`` (tests/test_graph.py). A training step's gradient agrees to float32 rounding
# (autograd sums a weight's gradient terms in another order), as two runs of the plain step on two
# threads already do (tests/test_models.py).
SPMM_BLOCK_BYTES = 16 << 20  # a block's rows: half the last-level cache (Gowalla: 32 columns, bench_spmm.py's best)
SPMM_WHOLE_BYTES = 16 << 20  # ``x`` up to this goes whole (past it, blocks: Gowalla at d = 64, 18 MB, 1.1-1.2x)


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
            crow, col = self.adj.crow_indices().long(), self.adj.col_indices().long()
            row = torch.repeat_interleave(torch.arange(self.n_nodes, device=crow.device), crow.diff())
            self._edge_index.append(torch.stack([row, col]))
        return self._edge_index[0]

    def to(self, device: str | torch.device) -> "Graph":
        return Graph(self.adj.to(device), self.n_users, self.n_items)


def build_graph(train: sp.spmatrix, device: str | torch.device = "cpu") -> Graph:
    """The :class:`Graph` of the train interactions (normalised once, reused every step)."""
    return Graph(csr_to_torch(normalized_adjacency(train)).to(device), train.shape[0], train.shape[1])


def csr_to_torch(matrix: sp.csr_matrix) -> torch.Tensor:
    """A scipy CSR matrix as a torch sparse CSR tensor (same dtype). Indices are int32 where the
    non-zeros and both dimensions fit (what the CPU product hands MKL: int64 indices are converted
    on every call), int64 otherwise."""
    fits = max(matrix.nnz, *matrix.shape) < np.iinfo(np.int32).max
    index = np.int32 if fits else np.int64
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(
            torch.from_numpy(matrix.indptr.astype(index)),
            torch.from_numpy(matrix.indices.astype(index)),
            torch.from_numpy(matrix.data),
            size=matrix.shape,
            check_invariants=False,
        )


def spmm_block(n_rows: int, dim: int, itemsize: int = 4) -> int:
    """Columns of ``x`` (``(n_rows, dim)``, ``itemsize`` bytes an entry) that one block of the CPU
    product gathers. ``dim`` itself (one product, no blocks) while ``x`` is at most
    ``SPMM_WHOLE_BYTES`` (MovieLens-1M at any width up to 256: one product); past it, the widest
    power of two, at least 8, that divides ``dim`` and whose ``n_rows × block`` entries fit
    ``SPMM_BLOCK_BYTES`` (``dim`` when none divides it)."""
    if dim * n_rows * itemsize <= SPMM_WHOLE_BYTES:
        return dim
    block = 8
    while dim % (block * 2) == 0 and block * 2 * n_rows * itemsize <= SPMM_BLOCK_BYTES:
        block *= 2
    return block if dim % block == 0 else dim


def column_block(x: torch.Tensor) -> int:
    """:func:`spmm_block` for ``x`` ``(n, d)``: blocks on the CPU only (``d`` elsewhere)."""
    return spmm_block(x.shape[0], x.shape[1], x.element_size()) if x.device.type == "cpu" else x.shape[1]


def to_blocks(x: torch.Tensor, block: int) -> torch.Tensor:
    """``(n, d)`` → ``(d / block, n, block)``, each column block contiguous (one copy; differentiable)."""
    n, d = x.shape
    return x.reshape(n, d // block, block).permute(1, 0, 2).contiguous()


def from_blocks(blocks: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`to_blocks`: ``(d / block, n, block)`` → ``(n, d)`` (one copy). Its gradient
    comes back in contiguous blocks (:func:`to_blocks`), not as a strided view of ``(n, d)``: the
    layers' backward products and sums then read contiguous memory, with no copy each."""
    return _FromBlocks.apply(blocks)


class _FromBlocks(torch.autograd.Function):
    @staticmethod
    def forward(ctx, blocks: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        n_blocks, n, block = blocks.shape
        ctx.block = block
        return blocks.permute(1, 0, 2).reshape(n, n_blocks * block)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        return to_blocks(grad, ctx.block)


def spmm(adj: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``adj @ x`` for a sparse ``adj``, bit-identical to ``torch.sparse.mm``; differentiable as it is.

    ``x``: ``(n, d)``, or column blocks ``(n_blocks, n, block)`` (:func:`to_blocks`; the product of
    each block, returned in the same layout: how :func:`hashrec_utils.models.propagate` keeps its
    layers). A 2-D ``x`` on the CPU wider than :func:`spmm_block` goes through blocks and back.
    """
    if x.dim() not in (2, 3) or adj.shape[1] != x.shape[-2]:
        raise ValueError(f"spmm: x must be ({adj.shape[1]}, d) or (blocks, {adj.shape[1]}, block) for a "
                         f"{tuple(adj.shape)} adjacency; got {tuple(x.shape)}")
    if x.dim() == 3:
        if torch.is_grad_enabled() and x.requires_grad:  # recorded (a double backward): out= is not
            return torch.stack([torch.sparse.mm(adj, x[k]) for k in range(x.shape[0])])
        out = x.new_empty(x.shape[0], adj.shape[0], x.shape[2])
        for k in range(x.shape[0]):
            # beta = 0 into itself: MKL writes the block in place, the uninitialised ``out`` never read
            # (torch.addmm's documented rule: with beta 0, input is ignored, NaN and inf included);
            # ``torch.mm(out=)`` zero-fills a temporary and copies it over: two more passes a block
            torch.addmm(out[k], adj, x[k], beta=0, out=out[k])
        return out
    block = column_block(x)
    if block >= x.shape[1]:
        return torch.sparse.mm(adj, x)
    return from_blocks(spmm(adj, to_blocks(x, block)))
