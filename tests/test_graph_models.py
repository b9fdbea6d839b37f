"""Graph normalisation by hand, LightGCN against PyG's reference, gradients by gradcheck."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from hashrec_utils.graph import build_graph, csr_to_torch, normalized_adjacency
from hashrec_utils.models import GraphSAGE, LightGCN, SymmetricSpMM, make_encoder, propagate

# 4 users x 5 items; item 4 has no interaction (an isolated node)
R = sp.csr_matrix(np.array([
    [1, 1, 0, 0, 0],
    [0, 1, 1, 0, 0],
    [1, 0, 0, 1, 0],
    [0, 0, 1, 1, 0],
], dtype=np.float32))


def test_normalized_adjacency_by_hand():
    A = normalized_adjacency(R).toarray()
    # user degrees: 2, 2, 2, 2; item degrees: 2, 2, 2, 2, 0 -> every edge weight 1/sqrt(2*2)
    assert A.shape == (9, 9)
    assert A[0, 4 + 0] == pytest.approx(0.5) and A[4 + 1, 1] == pytest.approx(0.5)
    assert A[0, 4 + 2] == 0.0
    assert np.all(A[:, 8] == 0) and np.all(A[8] == 0)  # isolated item: zeros, not NaN
    np.testing.assert_allclose(A, A.T)
    assert np.isfinite(A).all()


def test_normalized_adjacency_uneven_degrees():
    R2 = sp.csr_matrix(np.array([[1, 1, 1], [1, 0, 0]], dtype=np.float32))
    A = normalized_adjacency(R2).toarray()
    # user 0 degree 3, user 1 degree 1; item 0 degree 2, items 1, 2 degree 1
    assert A[0, 2] == pytest.approx(1 / np.sqrt(3 * 2))
    assert A[1, 2] == pytest.approx(1 / np.sqrt(1 * 2))
    assert A[0, 3] == pytest.approx(1 / np.sqrt(3 * 1))


def test_graph_rejects_dense_input():
    with pytest.raises(TypeError, match="scipy sparse"):
        normalized_adjacency(np.ones((2, 2)))


def _pyg_embedding(model: LightGCN, train: sp.csr_matrix) -> torch.Tensor:
    from torch_geometric.nn.models import LightGCN as PygLightGCN

    ref = PygLightGCN(model.n_users + model.n_items, model.dim, model.n_layers)
    ref.embedding.weight.data.copy_(model.embedding.weight.data)
    coo = train.tocoo()
    u = torch.from_numpy(coo.row.astype(np.int64))
    i = torch.from_numpy(coo.col.astype(np.int64)) + model.n_users
    edge_index = torch.stack([torch.cat([u, i]), torch.cat([i, u])])
    return ref.get_embedding(edge_index)


def test_propagation_equals_pyg_on_hand_graph():
    torch.manual_seed(0)
    model = LightGCN(4, 5, dim=8, n_layers=3)
    users, items = model.embeddings(build_graph(R))
    ref = _pyg_embedding(model, R)
    torch.testing.assert_close(torch.cat([users, items]), ref, atol=1e-5, rtol=1e-5)


def test_propagation_by_hand_one_layer():
    model = LightGCN(4, 5, dim=2, n_layers=1)
    x = torch.randn(9, 2)
    model.embedding.weight.data.copy_(x)
    A = torch.from_numpy(normalized_adjacency(R).toarray())
    users, items = model.embeddings(build_graph(R))
    torch.testing.assert_close(torch.cat([users, items]), (x + A @ x) / 2)


def test_propagation_equals_pyg_on_ml1m_slice(ml1m):
    train = ml1m.train[:500]
    train = train[:, np.flatnonzero(np.asarray(train.sum(axis=0)).ravel() > 0)]
    torch.manual_seed(1)
    model = LightGCN(train.shape[0], train.shape[1], dim=16, n_layers=3)
    users, items = model.embeddings(build_graph(train))
    torch.testing.assert_close(torch.cat([users, items]), _pyg_embedding(model, train), atol=1e-5, rtol=1e-5)


def test_symmetric_spmm_gradcheck_double():
    A = normalized_adjacency(R).astype(np.float64)
    adj = csr_to_torch(A)
    x = torch.randn(9, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: SymmetricSpMM.apply(adj, t), (x,))
    assert torch.autograd.gradcheck(lambda t: propagate(adj, t, 3), (x,))


def test_lightgcn_gradient_equals_dense_autograd():
    torch.manual_seed(0)
    model = LightGCN(4, 5, dim=4, n_layers=2)
    graph = build_graph(R)
    users, items = model.embeddings(graph)
    (users.sum() * 2 + items.square().sum()).backward()
    got = model.embedding.weight.grad.clone()
    x = model.embedding.weight.detach().clone().requires_grad_(True)
    A = torch.from_numpy(normalized_adjacency(R).toarray())
    out = (x + A @ x + A @ (A @ x)) / 3
    (out[:4].sum() * 2 + out[4:].square().sum()).backward()
    torch.testing.assert_close(got, x.grad)


def test_bpr_loss_of_lightgcn_by_hand():
    model = LightGCN(4, 5, dim=2, n_layers=0, reg=0.0)
    w = torch.zeros(9, 2)
    w[0] = torch.tensor([1.0, 0.0])
    w[4 + 1] = torch.tensor([2.0, 0.0])  # item 1
    w[4 + 2] = torch.tensor([0.0, 3.0])  # item 2
    model.embedding.weight.data.copy_(w)
    loss, _ = model.loss(build_graph(R), torch.tensor([0]), torch.tensor([1]), torch.tensor([2]))
    assert float(loss.detach()) == pytest.approx(np.log1p(np.exp(-(2.0 - 0.0))))
    model.reg = 1.0
    loss, _ = model.loss(build_graph(R), torch.tensor([0]), torch.tensor([1]), torch.tensor([2]))
    assert float(loss.detach()) == pytest.approx(np.log1p(np.exp(-2.0)) + 0.5 * (1 + 4 + 9))


def test_graphsage_encoder_shapes_and_grad():
    torch.manual_seed(0)
    enc = make_encoder("graphsage", 4, 5, dim=8)
    assert isinstance(enc, GraphSAGE) and len(enc.convs) == 2
    users, items = enc.embeddings(build_graph(R))
    assert users.shape == (4, 8) and items.shape == (5, 8)
    loss, _ = enc.loss(build_graph(R), torch.tensor([0, 1]), torch.tensor([0, 1]), torch.tensor([3, 4]))
    loss.backward()
    assert all(p.grad is not None for p in enc.parameters())


def test_make_encoder_errors():
    with pytest.raises(ValueError, match="unknown encoder 'gcn'; choose one of lightgcn, graphsage"):
        make_encoder("gcn", 4, 5)
    with pytest.raises(ValueError, match="n_layers"):
        LightGCN(4, 5, n_layers=-1)
