"""Codes of every propagation layer side by side (BGCH's and BiGeaR's official layout), against
PyG's LightGCN layers and a brute-force ``Σ_l w_l² α_u^l α_i^l ⟨b_u^l, b_i^l⟩`` (their ``get_scores``)."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from ..conftest import TOY as R  # 4 users x 5 items
from hashrec_utils.evaluation import evaluate_model
from hashrec_utils.graph import build_graph
from hashrec_utils.hashing import HashModel, dequantize, make_estimator, pack_codes, scaled_code_topk
from hashrec_utils.hashing.model import HashLayer
from hashrec_utils.metrics import evaluate_topk
from hashrec_utils.models import LayerConcatLightGCN, LightGCN, make_encoder


def _pyg_layers(model: LightGCN, train: sp.csr_matrix, n_layers: int) -> list[torch.Tensor]:
    """Each layer e^(l) of PyG's LGConv propagation (its own symmetric normalisation) of the same ego table."""
    from torch_geometric.nn import LGConv

    coo = train.tocoo()
    u = torch.from_numpy(coo.row.astype(np.int64))
    i = torch.from_numpy(coo.col.astype(np.int64)) + model.n_users
    edge_index = torch.stack([torch.cat([u, i]), torch.cat([i, u])])
    conv, x = LGConv(), model.embedding.weight.detach()
    out = [x]
    for _ in range(n_layers):
        x = conv(x, edge_index)
        out.append(x)
    return out


@pytest.mark.parametrize("weights", ["equal", "linear"])
def test_layer_concat_is_every_pyg_layer_weighted_side_by_side(weights):
    torch.manual_seed(0)
    enc = make_encoder("lightgcn_layers" if weights == "equal" else "lightgcn_layers_weighted", 4, 5, dim=6, n_layers=2)
    assert isinstance(enc, LayerConcatLightGCN) and enc.blocks == 3 and enc.dim == 6
    users, items = enc.embeddings(build_graph(R))
    assert users.shape == (4, 18) and items.shape == (5, 18)
    w = [1.0, 1.0, 1.0] if weights == "equal" else [1 / 3, 2 / 3, 1.0]  # BiGeaR: (l + 1)/(L + 1)
    want = torch.cat([x * wl for x, wl in zip(_pyg_layers(enc, R, 2), w)], 1)
    torch.testing.assert_close(torch.cat([users, items]).detach(), want, atol=1e-6, rtol=1e-5)
    # LightGCN's output is the mean of the equal-weight blocks
    plain = LightGCN(4, 5, dim=6, n_layers=2)
    plain.embedding.weight.data.copy_(enc.embedding.weight.data)
    if weights == "equal":
        mean = torch.cat([users, items]).detach().reshape(9, 3, 6).mean(1)
        torch.testing.assert_close(mean, torch.cat(plain.embeddings(build_graph(R))).detach(), atol=1e-6, rtol=1e-5)
    with pytest.raises(ValueError, match="layer_weights must be 'equal' or 'linear'; got 'cubic'"):
        LayerConcatLightGCN(4, 5, layer_weights="cubic")


def test_hash_layer_codes_each_block_with_its_own_scale_and_a_fixed_projection_stays_fixed():
    torch.manual_seed(1)
    layer = HashLayer(8, 48, make_estimator("bgch"), kind="fixed_nobias", blocks=3)
    assert layer.linear.weight.shape == (16, 8) and not layer.linear.weight.requires_grad
    e = torch.randn(5, 24)
    a = [e[:, 8 * l : 8 * (l + 1)] @ layer.linear.weight.T for l in range(3)]  # the same W on every block
    torch.testing.assert_close(layer.project(e), torch.cat(a, 1))
    torch.testing.assert_close(layer.codes(e), torch.cat([torch.where(x >= 0, 1.0, -1.0) for x in a], 1))
    torch.testing.assert_close(layer.scales(e), torch.stack([x.abs().mean(1) for x in a], 1))
    # training codes: α^l · sign(a^l), block by block (BGCH's FS per layer)
    torch.testing.assert_close(layer(e), torch.cat([x.abs().mean(1, keepdim=True) * torch.where(x >= 0, 1.0, -1.0)
                                                    for x in a], 1))
    # an optimiser step leaves the fixed projection where it started (BGCH's official W is never trained)
    model = HashModel(make_encoder("lightgcn_layers", 4, 5, dim=8, n_layers=2), 48, make_estimator("bgch"),
                      objective="bgch", cont_weight=0.0, hash_layer="fixed_nobias")
    w0 = model.hash.linear.weight.detach().clone()
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=0.1)
    users, pos, neg = torch.tensor([0, 1, 2]), torch.tensor([0, 1, 2]), torch.tensor([3, 4, 3])
    loss, _ = model.loss(build_graph(R), users, pos, neg)
    loss.backward()
    opt.step()
    torch.testing.assert_close(model.hash.linear.weight, w0)
    assert model.hash.linear.weight.grad is None and model.encoder.embedding.weight.grad is not None
    # one block is the plain layer; bad sizes get one clear error
    single = HashLayer(8, 16, make_estimator("bgch"), kind="linear_nobias")
    assert single.scales(torch.randn(3, 8)).shape == (3,)
    with pytest.raises(ValueError, match=r"blocks must be a positive divisor of bits \(48\); got 5"):
        HashLayer(8, 48, make_estimator("bgch"), blocks=5)
    with pytest.raises(ValueError, match=r"bits must equal dim \(8\) per block \(3 blocks: 24\); got 48"):
        HashLayer(8, 48, make_estimator("bigear"), kind="identity", blocks=3)


@pytest.mark.parametrize("name,kind,weights", [("bgch", "fixed_nobias", "lightgcn_layers"),
                                               ("bigear", "identity", "lightgcn_layers_weighted")])
def test_layer_codes_are_ranked_by_the_official_get_scores(name, kind, weights):
    """evaluate's hamming section equals a brute-force ranking by Σ_l α_u^l α_i^l ⟨b_u^l, b_i^l⟩ of
    each layer's (weighted) embedding — BGCH's and BiGeaR's get_scores on the concatenated scaled codes —
    and the training scores are that inner product (times γ / K)."""
    rng = np.random.default_rng(5)
    n_users, n_items = 30, 50
    train = sp.random(n_users, n_items, density=0.15, random_state=5, format="csr")
    train.data[:] = 1.0
    graph = build_graph(train)
    torch.manual_seed(2)
    enc = make_encoder(weights, n_users, n_items, dim=8, n_layers=2)
    model = HashModel(enc, 24, make_estimator(name), objective="bgch", cont_weight=0.0, hash_layer=kind)
    with torch.no_grad():
        users, items = enc.embeddings(graph)
        blocks = [(model.hash.project(users)[:, 8 * l : 8 * (l + 1)], model.hash.project(items)[:, 8 * l : 8 * (l + 1)])
                  for l in range(3)]
    scores = np.zeros((n_users, n_items))
    for au, ai in blocks:
        bu, bi = np.where(au.numpy() >= 0, 1.0, -1.0), np.where(ai.numpy() >= 0, 1.0, -1.0)
        scores += np.abs(au.numpy()).mean(1)[:, None] * np.abs(ai.numpy()).mean(1)[None, :] * (bu @ bi.T)
    with torch.no_grad():
        hu, hi = model.hash(users), model.hash(items)
        train_scores = (model._score(hu[:, None, :], hi[None, :, :]) * 24 / model.log_scale.exp()).numpy()
    np.testing.assert_allclose(train_scores, scores, rtol=1e-4, atol=1e-6)
    su, si = model.code_scales(graph)
    assert su.shape == (n_users, 3) and si.shape == (n_items, 3)
    cu, ci = model.codes(graph)
    exclude = train
    k = 10
    ids = scaled_code_topk(cu, ci, si, k, exclude, user_scales=su)
    masked = np.where(train.toarray() > 0, -np.inf, scores)
    got = np.take_along_axis(masked, ids, 1)
    np.testing.assert_allclose(got, -np.sort(-masked, 1)[:, :k], rtol=1e-4, atol=1e-6)  # the true top-k scores
    target = sp.csr_matrix((np.ones(n_users), (np.arange(n_users), ids[:, 0])), shape=(n_users, n_items))
    out = evaluate_model(model, graph, target, exclude, ks=(1, k))
    assert out["hamming"] == evaluate_topk(ids, target, (1, k)) and out["hamming"]["recall@1"] == 1.0
    # asymmetric: the real-valued user projection against the items' scaled codes, block by block
    deq = dequantize(ci, si, np.float32)
    np.testing.assert_allclose(deq, np.concatenate([np.abs(ai.numpy()).mean(1, keepdims=True) * np.where(ai.numpy() >= 0, 1, -1)
                                                    for _, ai in blocks], 1), rtol=1e-6)


def test_per_layer_scales_need_the_users_scales_and_matching_shapes():
    codes = pack_codes(np.random.default_rng(0).standard_normal((4, 24)))
    scales = np.ones((4, 3), np.float32)
    with pytest.raises(ValueError, match=r"user_scales \(n_users, L\) is needed too"):
        scaled_code_topk(codes, codes, scales, 2)
    with pytest.raises(ValueError, match="one number of layers"):
        scaled_code_topk(codes, codes, scales, 2, user_scales=np.ones((4, 2), np.float32))
    with pytest.raises(ValueError, match=r"L dividing the 24 bits; got \(4, 5\)"):
        dequantize(codes, np.ones((4, 5), np.float32))
    with pytest.raises(ValueError, match=r"item_scales must be \(4,\), one per item; got \(3,\)"):
        scaled_code_topk(codes, codes, np.ones(3, np.float32), 2)


def _teacher(tmp_path, n_users=4, n_items=5, dim=8):
    """A saved continuous BiGeaR teacher (LightGCN, layers side by side, weights (l+1)/(L+1)): its model.pt."""
    torch.manual_seed(7)
    teacher = make_encoder("lightgcn_layers_weighted", n_users, n_items, dim=dim, n_layers=2)
    folder = tmp_path / "teacher"
    folder.mkdir()
    torch.save(teacher.state_dict(), folder / "model.pt")
    return teacher, folder


def test_bigear_student_starts_from_the_teacher_and_distils_its_top_items_by_the_official_formula(tmp_path):
    from types import SimpleNamespace

    from hashrec_utils.hashing import build_hash_model
    from hashrec_utils.hashing.objectives import BIGEAR_DECAY
    from hashrec_utils.training import TrainConfig

    teacher, folder = _teacher(tmp_path)
    data = SimpleNamespace(n_users=4, n_items=5, train=R)
    config = TrainConfig(model="lightgcn_layers_weighted", dim=8, n_layers=2, hash_method="bigear", bits=24,
                         hash_params={"objective": "bigear", "hash_layer": "identity", "warm_start": str(folder),
                                      "cont_weight": 0.0, "n_negatives": 1})
    model = build_hash_model(config, data)
    torch.testing.assert_close(model.encoder.embedding.weight, teacher.embedding.weight)
    graph = build_graph(R)
    with torch.no_grad():
        tu, ti = teacher.embeddings(graph)
    top = model.teacher_top
    assert top.shape == (4, 3, 5)  # R = min(100, n_items)
    for l in range(3):  # each layer's ranking of every item, train included
        want = torch.argsort(-(tu[:, 8 * l:8 * (l + 1)] @ ti[:, 8 * l:8 * (l + 1)].T), dim=1, stable=True)
        scores = tu[:, 8 * l:8 * (l + 1)] @ ti[:, 8 * l:8 * (l + 1)].T
        torch.testing.assert_close(scores.gather(1, top[:, l]), scores.gather(1, want))
    users, pos, neg = torch.tensor([0, 1, 1, 3]), torch.tensor([0, 2, 3, 1]), torch.tensor([4, 0, 4, 2])
    loss, logs = model.loss(graph, users, pos, neg)
    # by hand: BPR on γ/K-scaled code scores + the mean over layers of (1/R) Σ_r e^{-0.1 r} softplus(-s^l(u, i_r))
    with torch.no_grad():
        eu, ei = model.encoder.embeddings(graph)
        hu, hi = model.hash(eu), model.hash(ei)  # α^l sign(w_l e^l), layer by layer
        s = model.log_scale.exp() / 24 * hu @ hi.T
        bpr = torch.nn.functional.softplus(s[users, neg] - s[users, pos]).mean()
        w = torch.exp(-BIGEAR_DECAY * torch.arange(1, 6, dtype=torch.float32))
        ids = torch.unique(users)
        distil = 0.0
        for l in range(3):
            sl = hu[ids, 8 * l:8 * (l + 1)] @ hi[:, 8 * l:8 * (l + 1)].T
            distil += (torch.nn.functional.softplus(-sl.gather(1, top[ids, l])) * w).sum(1).div(5).mean() / 3
    assert logs["loss_id"] == pytest.approx(float(distil), rel=1e-5)
    assert float(loss.detach()) == pytest.approx(float(bpr + distil), rel=1e-5)
    # the layer-l student score is w_l² α_u^l α_i^l <b_u^l, b_i^l> of the unweighted layer
    l = 1
    e_u, e_i = eu[0, 8:16] / (2 / 3), ei[2, 8:16] / (2 / 3)
    want = (2 / 3) ** 2 * e_u.abs().mean() * e_i.abs().mean() * (torch.sign(e_u) * torch.sign(e_i)).sum()
    assert float(hu[0, 8:16] @ hi[2, 8:16]) == pytest.approx(float(want), rel=1e-5)


def test_bigear_and_warm_start_errors(tmp_path):
    from types import SimpleNamespace

    from hashrec_utils.hashing import build_hash_model
    from hashrec_utils.training import TrainConfig

    data = SimpleNamespace(n_users=4, n_items=5, train=R)
    base = dict(model="lightgcn_layers_weighted", dim=8, n_layers=2, hash_method="bigear", bits=24)
    with pytest.raises(ValueError, match="objective 'bigear' distils a teacher: set hash_params warm_start"):
        build_hash_model(TrainConfig(**base, hash_params={"objective": "bigear", "hash_layer": "identity"}), data)
    with pytest.raises(FileNotFoundError, match="warm_start: .*model.pt does not exist"):
        build_hash_model(TrainConfig(**base, hash_params={"objective": "bigear", "hash_layer": "identity",
                                                          "warm_start": str(tmp_path / "none")}), data)
    _, folder = _teacher(tmp_path, dim=4)
    with pytest.raises(ValueError, match=r"holds a \(9, 4\) ego table; the encoder's is \(9, 8\)"):
        build_hash_model(TrainConfig(**base, hash_params={"objective": "bigear", "hash_layer": "identity",
                                                          "warm_start": str(folder)}), data)
