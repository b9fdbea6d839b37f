"""LightGCN by hand and against PyG's reference, gradients by gradcheck, the BPR loss, GraphSAGE."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from .conftest import TOY as R  # 4 users x 5 items; item 4 isolated; every edge of Ã weighs 1/2
from hashrec_utils.graph import build_graph, csr_to_torch, normalized_adjacency
from hashrec_utils.losses import bpr_loss
from hashrec_utils.models import GraphSAGE, LightGCN, SymmetricSpMM, make_encoder, propagate

from .test_graph import force_blocks



def pyg_embedding(model: LightGCN, train: sp.csr_matrix) -> torch.Tensor:
    """PyG's LightGCN (normalising ``edge_index`` itself) on the same ego embeddings."""
    from torch_geometric.nn.models import LightGCN as PygLightGCN

    ref = PygLightGCN(model.n_users + model.n_items, model.dim, model.n_layers)
    ref.embedding.weight.data.copy_(model.embedding.weight.data)
    coo = train.tocoo()
    u = torch.from_numpy(coo.row.astype(np.int64))
    i = torch.from_numpy(coo.col.astype(np.int64)) + model.n_users
    edge_index = torch.stack([torch.cat([u, i]), torch.cat([i, u])])
    with torch.no_grad():
        return ref.get_embedding(edge_index)


def test_propagation_on_paper():
    # ego values: users 0, items 1..5. Layer 1: users (1.5, 2.5, 2.5, 3.5); layer 2: items
    # (2, 2, 3, 3, 0); layer 3: users (2, 2.5, 2.5, 3). Final = (e0 + e1 + e2 + e3) / 4.
    model = LightGCN(4, 5, dim=1, n_layers=3)
    model.embedding.weight.data.copy_(torch.tensor([0, 0, 0, 0, 1, 2, 3, 4, 5], dtype=torch.float32)[:, None])
    users, items = model.embeddings(build_graph(R))
    torch.testing.assert_close(users[:, 0], torch.tensor([0.875, 1.25, 1.25, 1.625]))
    torch.testing.assert_close(items[:, 0], torch.tensor([0.75, 1.0, 1.5, 1.75, 1.25]))  # isolated: e0 / 4
    torch.testing.assert_close(torch.cat([users, items]), pyg_embedding(model, R), atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("n_layers", [0, 1, 2, 3, 4])
def test_propagation_equals_dense_numpy_and_pyg(n_layers):
    torch.manual_seed(n_layers)
    model = LightGCN(4, 5, dim=8, n_layers=n_layers)
    users, items = model.embeddings(build_graph(R))
    got = torch.cat([users, items])
    A = normalized_adjacency(R).toarray().astype(np.float64)
    x = model.embedding.weight.detach().double().numpy()
    layer, total = x, x.copy()
    for _ in range(n_layers):
        layer = A @ layer
        total += layer
    np.testing.assert_allclose(got.detach().numpy(), total / (n_layers + 1), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got, pyg_embedding(model, R), atol=1e-5, rtol=1e-5)


def test_propagation_equals_pyg_on_ml1m_slice(ml1m):
    train = ml1m.train[:400]
    train = train[:, np.flatnonzero(np.asarray(train.sum(axis=0)).ravel() > 0)]
    torch.manual_seed(1)
    model = LightGCN(train.shape[0], train.shape[1], dim=16, n_layers=3)
    users, items = model.embeddings(build_graph(train))
    assert users.shape == (400, 16) and items.shape == (train.shape[1], 16)
    torch.testing.assert_close(torch.cat([users, items]), pyg_embedding(model, train), atol=1e-5, rtol=1e-5)


def test_symmetric_spmm_gradcheck_double():
    rng = np.random.default_rng(0)
    train = sp.csr_matrix((rng.random((7, 6)) < 0.4).astype(np.float64))
    adj = csr_to_torch(normalized_adjacency(train).astype(np.float64))
    x = torch.randn(13, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: SymmetricSpMM.apply(adj, t), (x,))
    assert torch.autograd.gradcheck(lambda t: propagate(adj, t, 3), (x,))
    assert torch.autograd.gradgradcheck(lambda t: propagate(adj, t, 2), (x,))


def test_blocked_propagation_gradcheck_double(monkeypatch):
    """Column blocks forced (8 of 16 columns): propagation, its gradient and its second derivative
    as the plain product's."""
    from hashrec_utils import graph as graph_module

    rng = np.random.default_rng(1)
    train = sp.csr_matrix((rng.random((7, 6)) < 0.4).astype(np.float64))
    adj = csr_to_torch(normalized_adjacency(train).astype(np.float64))
    force_blocks(monkeypatch, 8, 13, itemsize=8)
    x = torch.randn(13, 16, dtype=torch.float64, requires_grad=True)
    assert graph_module.column_block(x) == 8
    dense = torch.from_numpy(normalized_adjacency(train).toarray().astype(np.float64))
    expected = (x + dense @ x + dense @ dense @ x + dense @ dense @ dense @ x) / 4
    torch.testing.assert_close(propagate(adj, x, 3), expected)
    assert torch.autograd.gradcheck(lambda t: propagate(adj, t, 3), (x,))
    assert torch.autograd.gradgradcheck(lambda t: propagate(adj, t, 2), (x,))


def test_lightgcn_gradient_equals_dense_autograd():
    torch.manual_seed(0)
    model = LightGCN(4, 5, dim=4, n_layers=2)
    users, items = model.embeddings(build_graph(R))
    (users.sum() * 2 + items.square().sum()).backward()
    x = model.embedding.weight.detach().clone().requires_grad_(True)
    A = torch.from_numpy(normalized_adjacency(R).toarray())
    out = (x + A @ x + A @ (A @ x)) / 3
    (out[:4].sum() * 2 + out[4:].square().sum()).backward()
    torch.testing.assert_close(model.embedding.weight.grad, x.grad)


def test_bpr_loss_by_hand():
    pos, neg = torch.tensor([2.0, 0.0]), torch.tensor([0.0, 1.0])
    want = (np.log1p(np.exp(-2.0)) + np.log1p(np.exp(1.0))) / 2  # mean softplus(neg - pos)
    assert float(bpr_loss(pos, neg)) == pytest.approx(want)
    # several negatives per positive broadcast against it
    two = bpr_loss(torch.tensor([1.0]), torch.tensor([[1.0, 3.0]]))
    assert float(two) == pytest.approx((np.log(2.0) + np.log1p(np.exp(2.0))) / 2)


def test_lightgcn_loss_by_hand():
    model = LightGCN(4, 5, dim=2, n_layers=0, reg=0.0)
    w = torch.zeros(9, 2)
    w[0] = torch.tensor([1.0, 0.0])  # user 0
    w[4 + 1] = torch.tensor([2.0, 0.0])  # item 1
    w[4 + 2] = torch.tensor([0.0, 3.0])  # item 2
    model.embedding.weight.data.copy_(w)
    graph = build_graph(R)
    loss, logs = model.loss(graph, torch.tensor([0]), torch.tensor([1]), torch.tensor([2]))
    bpr = np.log1p(np.exp(-(2.0 - 0.0)))  # <u, i> = 2, <u, j> = 0
    assert float(loss.detach()) == pytest.approx(bpr) and logs["bpr"] == pytest.approx(bpr)
    model.reg = 1.0  # + reg/2 * (|e_u|^2 + |e_i|^2 + |e_j|^2) / batch on the ego embeddings
    loss, _ = model.loss(graph, torch.tensor([0]), torch.tensor([1]), torch.tensor([2]))
    assert float(loss.detach()) == pytest.approx(bpr + 0.5 * (1 + 4 + 9))


def test_lightgcn_init_and_errors():
    torch.manual_seed(0)
    model = LightGCN(300, 200)
    assert model.embedding.weight.shape == (500, 64) and model.n_layers == 3
    assert float(model.embedding.weight.std()) == pytest.approx(0.1, rel=0.05)
    with pytest.raises(ValueError, match="n_layers >= 0; got 4, 5, 64, -1"):
        LightGCN(4, 5, n_layers=-1)


def test_graphsage_encoder_is_two_pyg_sage_layers():
    from torch_geometric.nn import SAGEConv

    torch.manual_seed(0)
    enc = make_encoder("graphsage", 4, 5, dim=8)
    assert isinstance(enc, GraphSAGE) and len(enc.convs) == 2
    assert all(isinstance(c, SAGEConv) for c in enc.convs)
    graph = build_graph(R)
    users, items = enc.embeddings(graph)
    assert users.shape == (4, 8) and items.shape == (5, 8)
    # by hand: layer 1 of user 0 = lin_l(mean of items 0, 1) + lin_r(x_u0)
    x = enc.embedding.weight
    c = enc.convs[0]
    h0 = c.lin_l((x[4] + x[5]) / 2) + c.lin_r(x[0])
    torch.testing.assert_close(enc.convs[0](x, graph.edge_index)[0], h0)
    loss, _ = enc.loss(graph, torch.tensor([0, 1]), torch.tensor([0, 1]), torch.tensor([3, 4]))
    loss.backward()
    assert all(p.grad is not None for p in enc.parameters())


def test_make_encoder_by_name_and_errors():
    enc = make_encoder("lightgcn", 4, 5, dim=8)
    assert isinstance(enc, LightGCN) and enc.n_layers == 3 and enc.dim == 8
    assert make_encoder("lightgcn", 4, 5, n_layers=1).n_layers == 1
    with pytest.raises(ValueError, match="unknown encoder 'gcn'; choose one of lightgcn, graphsage"):
        make_encoder("gcn", 4, 5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_lightgcn_on_cuda_matches_cpu():
    torch.manual_seed(0)
    model = LightGCN(4, 5, dim=8)
    cpu = torch.cat(model.embeddings(build_graph(R)))
    gpu = torch.cat(model.to("cuda").embeddings(build_graph(R, "cuda")))
    torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-5, rtol=1e-5)
    loss, _ = model.loss(build_graph(R, "cuda"), *(torch.tensor([0, 1], device="cuda"),) * 3)
    loss.backward()
    assert model.embedding.weight.grad.is_cuda


def test_lightgcn_steps_match_with_column_blocks(ml1m, monkeypatch):
    """Two Adam steps of a 48-d LightGCN on MovieLens-1M: with the layers in column blocks (forced
    to 16 columns) it trains to the weights of the plain product. (Each product is bit-identical,
    tests/test_graph.py; autograd sums the weight's gradient terms in another order, and the
    embedding rows' accumulation on two threads is not deterministic anyway, so the weights agree to
    float32 rounding, as two runs of either do.)"""
    from hashrec_utils import graph as graph_module

    graph = build_graph(ml1m.train)
    rng = np.random.default_rng(0)
    coo = ml1m.train.tocoo()
    pick = rng.choice(ml1m.train.nnz, 4096, replace=False)
    batch = [torch.from_numpy(a.astype(np.int64)) for a in (coo.row[pick], coo.col[pick], rng.integers(0, ml1m.n_items, 4096))]

    def train(columns: int | None, lr: float = 0.01) -> torch.Tensor:
        with monkeypatch.context() as m:
            if columns:
                force_blocks(m, columns, graph.n_nodes)
            torch.manual_seed(0)
            model = LightGCN(ml1m.n_users, ml1m.n_items, dim=48, n_layers=3)
            assert graph_module.column_block(model.embedding.weight) == (columns or 48)
            opt = torch.optim.Adam(model.parameters(), lr=lr, foreach=True)
            for step in range(2):
                opt.zero_grad()
                model.loss(graph, *batch, step)[0].backward()
                opt.step()
        return model.embedding.weight.detach()

    reference = train(None)  # 48 columns of 9,746 rows fit whole: no blocks
    torch.testing.assert_close(train(16), reference, rtol=1e-5, atol=1e-7)
    with pytest.raises(AssertionError):  # the check can fail: another learning rate
        torch.testing.assert_close(train(16, lr=0.0101), reference, rtol=1e-5, atol=1e-7)
