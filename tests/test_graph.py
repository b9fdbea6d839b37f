"""The normalised bipartite adjacency: by hand, against dense NumPy, and the Graph object."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from .conftest import TOY as R  # 4 users x 5 items; item 4 isolated; every edge of Ã weighs 1/2
from hashrec_utils import graph as graph_module
from hashrec_utils.graph import Graph, build_graph, csr_to_torch, normalized_adjacency, spmm, spmm_block, from_blocks, to_blocks



def dense_reference(train: sp.spmatrix) -> np.ndarray:
    """``D^{-1/2} A D^{-1/2}`` with dense NumPy, isolated nodes set to 0 by hand."""
    r = (np.asarray(train.todense()) != 0).astype(np.float64)
    n_u, n_i = r.shape
    a = np.zeros((n_u + n_i, n_u + n_i))
    a[:n_u, n_u:] = r
    a[n_u:, :n_u] = r.T
    deg = a.sum(1)
    inv = np.zeros_like(deg)
    inv[deg > 0] = deg[deg > 0] ** -0.5
    return inv[:, None] * a * inv[None, :]


def test_normalized_adjacency_by_hand():
    A = normalized_adjacency(R).toarray()
    # every user and every used item has degree 2 -> every edge weighs 1/sqrt(2*2) = 1/2
    assert A.shape == (9, 9) and A.dtype == np.float32
    expected = np.zeros((9, 9), dtype=np.float32)
    for u, i in zip(*R.nonzero()):
        expected[u, 4 + i] = expected[4 + i, u] = 0.5
    np.testing.assert_array_equal(A, expected)
    assert np.all(A[:, 8] == 0) and np.all(A[8] == 0)  # isolated item: zeros, not NaN


def test_normalized_adjacency_uneven_degrees():
    R2 = sp.csr_matrix(np.array([[1, 1, 1], [1, 0, 0]], dtype=np.float32))
    A = normalized_adjacency(R2).toarray()
    # user 0 degree 3, user 1 degree 1; item 0 degree 2, items 1, 2 degree 1
    assert A[0, 2] == pytest.approx(1 / np.sqrt(3 * 2))
    assert A[1, 2] == pytest.approx(1 / np.sqrt(1 * 2))
    assert A[0, 3] == pytest.approx(1 / np.sqrt(3 * 1))
    assert A[1, 3] == 0.0 and A[0, 1] == 0.0 and A[2, 3] == 0.0  # no user-user or item-item edges


def test_matches_dense_numpy_with_isolated_users_and_items():
    rng = np.random.default_rng(0)
    dense = (rng.random((30, 20)) < 0.15).astype(np.float32)
    dense[3] = 0  # a user with no train item
    dense[:, 7] = 0  # an item nobody trained on
    dense[5, 2] = 4.0  # a rating: counted as one interaction
    A = normalized_adjacency(sp.csr_matrix(dense))
    assert A.has_sorted_indices
    np.testing.assert_allclose(A.toarray(), dense_reference(sp.csr_matrix(dense)), rtol=1e-6, atol=1e-7)
    assert np.isfinite(A.data).all()


def test_build_graph_is_a_symmetric_float32_csr_tensor():
    graph = build_graph(R)
    assert isinstance(graph, Graph)
    assert (graph.n_users, graph.n_items, graph.n_nodes) == (4, 5, 9)
    assert graph.adj.layout == torch.sparse_csr and graph.adj.dtype == torch.float32
    assert graph.adj.shape == (9, 9) and graph.device == torch.device("cpu")
    dense = graph.adj.to_dense()
    torch.testing.assert_close(dense, dense.T)
    torch.testing.assert_close(dense, torch.from_numpy(dense_reference(R)).float())
    with pytest.raises(AttributeError):
        graph.n_users = 5  # frozen: built once, shared by every step


def test_edge_index_lists_both_directions_once_and_is_cached():
    graph = build_graph(R)
    ei = graph.edge_index
    assert ei is graph.edge_index  # built on first use, then reused
    assert ei.shape == (2, 2 * R.nnz) and ei.dtype == torch.int64
    edges = set(map(tuple, ei.T.tolist()))
    want = {(u, 4 + i) for u, i in zip(*R.nonzero())}
    assert edges == want | {(b, a) for a, b in want}


def test_graph_to_device_keeps_counts():
    graph = build_graph(R).to("cpu")
    assert (graph.n_users, graph.n_items) == (4, 5)
    torch.testing.assert_close(graph.adj.to_dense(), build_graph(R).adj.to_dense())


def test_csr_to_torch_round_trip():
    m = sp.random(6, 4, density=0.5, format="csr", dtype=np.float64, random_state=0)
    t = csr_to_torch(m)
    assert t.layout == torch.sparse_csr and t.dtype == torch.float64
    assert t.crow_indices().dtype == t.col_indices().dtype == torch.int32  # fits: what MKL takes
    np.testing.assert_array_equal(t.to_dense().numpy(), m.toarray())


def test_csr_to_torch_keeps_int64_past_int32(monkeypatch):
    m = sp.random(6, 4, density=0.5, format="csr", dtype=np.float32, random_state=0)
    monkeypatch.setattr(sp.csr_matrix, "nnz", property(lambda self: 2**31))  # as if past 2^31 non-zeros
    t = csr_to_torch(m)
    assert t.crow_indices().dtype == t.col_indices().dtype == torch.int64
    np.testing.assert_array_equal(t.to_dense().numpy(), m.toarray())


def test_graph_rejects_dense_input():
    with pytest.raises(TypeError, match=r"train must be a scipy sparse matrix \(users x items\); got ndarray"):
        normalized_adjacency(np.ones((2, 2)))


def test_spmm_block_rule():
    assert graph_module.SPMM_BLOCK_BYTES == graph_module.SPMM_WHOLE_BYTES == 16 << 20
    # Gowalla's 70,839 nodes: 32 float32 columns fit 16 MiB (9.1 MB), 64 do not (18.1 MB)
    assert spmm_block(70_839, 64) == 32 and spmm_block(70_839, 128) == 32 and spmm_block(70_839, 256) == 32
    assert spmm_block(100_000, 48) == 16  # 19.2 MB: the widest power of two that divides d
    assert spmm_block(9_746, 256) == 256 and spmm_block(9_746, 430) == 430  # MovieLens-1M's nodes: whole (16 MiB)
    assert spmm_block(9_746, 448) == 64  # 17.5 MB: past it
    assert spmm_block(300_000, 40) == 8 and spmm_block(300_000, 100) == 100  # blocks divide d, or none
    assert spmm_block(70_839, 256, itemsize=8) == 16  # float64 rows weigh twice
    assert spmm_block(10**9, 256) == 8  # the floor


def force_blocks(monkeypatch, columns: int, n_rows: int, itemsize: int = 4) -> None:
    """Blocks of ``columns`` for ``n_rows`` rows, whatever the width."""
    monkeypatch.setattr(graph_module, "SPMM_WHOLE_BYTES", 0)
    monkeypatch.setattr(graph_module, "SPMM_BLOCK_BYTES", columns * n_rows * itemsize)


def test_blocks_round_trip():
    x = torch.arange(24.0).reshape(3, 8)
    blocks = to_blocks(x, 4)
    assert blocks.shape == (2, 3, 4) and blocks.is_contiguous()
    assert torch.equal(blocks[1], x[:, 4:]) and torch.equal(from_blocks(blocks), x)


@pytest.mark.parametrize("dim", [7, 40, 64])
def test_spmm_is_bit_identical_to_torch_sparse_mm_on_ml1m(ml1m, monkeypatch, dim):
    # blocks of 8 columns forced (40 columns: 8 x 5; 7: none divides, one product)
    adj = build_graph(ml1m.train).adj
    force_blocks(monkeypatch, 8, adj.shape[0])
    assert spmm_block(adj.shape[0], dim) == (8 if dim % 8 == 0 else dim)
    torch.manual_seed(dim)
    x = torch.randn(adj.shape[0], dim, requires_grad=True)
    g = torch.randn(adj.shape[0], dim)
    reference = torch.sparse.mm(adj, x.detach())
    out = spmm(adj, x)
    assert torch.equal(out, reference)
    (grad,) = torch.autograd.grad(out, x, g)  # differentiable: the gradient is Ãᵀ g = Ã g
    assert torch.equal(grad, torch.sparse.mm(adj, g))
    if dim % 8 == 0:  # the blocked layout in, the blocked layout out
        with torch.no_grad():
            assert torch.equal(from_blocks(spmm(adj, to_blocks(x, 8))), reference)


def test_spmm_rejects_wrong_shapes():
    adj = build_graph(R).adj
    with pytest.raises(ValueError, match=r"x must be \(9, d\) or \(blocks, 9, block\) for a \(9, 9\) adjacency; got \(8, 3\)"):
        spmm(adj, torch.zeros(8, 3))
    with pytest.raises(ValueError, match=r"got \(9,\)"):
        spmm(adj, torch.zeros(9))
    with pytest.raises(ValueError, match=r"got \(2, 8, 3\)"):
        spmm(adj, torch.zeros(2, 8, 3))
