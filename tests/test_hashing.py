"""Hash layer, estimators and hashing losses against hand-computed values."""
from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from hashrec_utils.graph import build_graph
from hashrec_utils.hashing import (
    HashLayer,
    HashModel,
    TableEncoder,
    lsh_codes,
    make_estimator,
    pack_codes,
    sign,
    unpack_codes,
)
from hashrec_utils.losses import bpr_loss, hashgnn_loss, smooth_recall_loss
from hashrec_utils.models import LightGCN


def test_sign_of_zero_is_plus_one():
    assert sign(torch.tensor([-0.5, 0.0, -0.0, 2.0])).tolist() == [-1.0, 1.0, 1.0, 1.0]


def test_pack_layout_is_numpy_packbits_and_round_trips():
    rng = np.random.default_rng(0)
    signs = np.where(rng.random((5, 24)) < 0.5, -1.0, 1.0)
    packed = pack_codes(signs)
    assert packed.dtype == np.uint8 and packed.shape == (5, 3)
    np.testing.assert_array_equal(packed, np.packbits(signs > 0, axis=1))
    np.testing.assert_array_equal(unpack_codes(packed), signs)
    assert pack_codes(np.array([[1.0] + [-1.0] * 7]))[0, 0] == 0b10000000  # +1 -> bit 1, MSB first
    with pytest.raises(ValueError, match="multiple of 8"):
        pack_codes(np.ones((2, 12)))


def test_ste_forward_sign_backward_identity():
    est = make_estimator("ste")
    a = torch.tensor([[-2.0, 0.0, 0.3]], requires_grad=True)
    out = est.forward(a, 0)
    assert out.tolist() == [[-1.0, 1.0, 1.0]]
    out.backward(torch.tensor([[1.0, 2.0, 3.0]]))
    z = torch.tanh(a.detach())
    torch.testing.assert_close(a.grad, torch.tensor([[1.0, 2.0, 3.0]]) * (1 - z**2))  # identity through sign, then tanh'


def test_guided_ste_schedule_and_mixture():
    est = make_estimator("guided_ste")
    assert est.state(0)["p"] == 1.0 and est.state(249)["p"] == 1.0
    assert est.state(250)["p"] == pytest.approx(0.95) and est.state(500)["p"] == pytest.approx(0.9025)
    a = torch.randn(200, 64)
    torch.testing.assert_close(est.forward(a, 0), torch.tanh(a))  # p = 1: all continuous
    torch.manual_seed(0)
    late = est.forward(a, 250 * 60)  # p = 0.95^60 ≈ 0.046
    is_code = (late.abs() == 1).float().mean().item()
    assert 0.93 < is_code < 0.98
    assert make_estimator("guided_ste", decay=0.5, every=10).state(20)["p"] == 0.25


def test_signswish_backward_is_the_curve_derivative():
    beta = 3.0
    est = make_estimator("signswish", beta=beta)
    x = torch.linspace(-2, 2, 9, dtype=torch.float64, requires_grad=True)
    out = est.forward(x, 0)
    assert set(out.tolist()) <= {-1.0, 1.0}
    out.sum().backward()

    def curve(t):
        s = 1 / (1 + np.exp(-beta * t))
        return 2 * s * (1 + beta * t * (1 - s)) - 1

    xs = x.detach().numpy()
    fd = (curve(xs + 1e-6) - curve(xs - 1e-6)) / 2e-6
    np.testing.assert_allclose(x.grad.numpy(), fd, rtol=1e-5, atol=1e-7)
    # the paper's closed form
    e1, e2 = np.exp(-beta * xs), np.exp(-2 * beta * xs)
    closed = 2 * ((beta**2 * xs + 2 * beta) * e2 - (beta**2 * xs - 2 * beta) * e1) / (1 + e1) ** 3
    np.testing.assert_allclose(x.grad.numpy(), closed, rtol=1e-6)


def test_bgch_scales_by_mean_abs_and_fourier_backward():
    est = make_estimator("bgch", n_terms=1, period=2.0)
    a = torch.tensor([[0.5, -1.0]], requires_grad=True)
    z = torch.tanh(a.detach())
    scale = z.abs().mean()
    torch.testing.assert_close(est.forward(a, 0), scale * torch.tensor([[1.0, -1.0]]))
    # with one term the sign's derivative estimate is (4/H) cos(pi z / H)
    x = torch.tensor([0.25], requires_grad=True)
    from hashrec_utils.hashing import _SignFourier

    _SignFourier.apply(x, 1, 2.0).backward()
    assert x.grad.item() == pytest.approx(2 * math.cos(math.pi * 0.25 / 2))


def test_hashnet_and_gumbel_anneal():
    hn = make_estimator("hashnet", beta0=1.0, gamma=0.01)
    assert hn.state(300)["beta"] == pytest.approx(2.0)
    a = torch.tensor([0.3])
    torch.testing.assert_close(hn.forward(a, 300), torch.tanh(2.0 * a))
    gb = make_estimator("gumbel", tau0=1.0, decay=0.5, every=10, tau_min=0.1)
    assert gb.state(25)["tau"] == 0.25 and gb.state(1000)["tau"] == 0.1
    out = gb.forward(torch.zeros(1000), 1000)
    assert out.abs().min() > 0.0 and (out.abs() > 0.9).float().mean() > 0.7  # near-binary at low temperature


def test_estimator_errors_list_the_choices():
    with pytest.raises(ValueError, match="unknown estimator 'sigmoid'; choose one of ste, guided_ste, hashnet, gumbel, signswish, bgch"):
        make_estimator("sigmoid")
    with pytest.raises(ValueError, match="takes"):
        make_estimator("ste", beta=2.0)
    with pytest.raises(ValueError, match="multiple of 8"):
        HashLayer(8, 60, make_estimator("ste"))


def test_eval_codes_are_sign_whatever_the_estimator():
    torch.manual_seed(0)
    e = torch.randn(10, 8)
    for name in ("ste", "guided_ste", "hashnet", "gumbel", "signswish", "bgch"):
        layer = HashLayer(8, 16, make_estimator(name))
        torch.testing.assert_close(layer.codes(e), sign(torch.tanh(layer.linear(e))))


def test_hash_layer_parameters_reach_the_optimiser():
    R = sp.csr_matrix(np.eye(6, 5, dtype=np.float32) + np.eye(6, 5, k=1, dtype=np.float32))
    torch.manual_seed(0)
    model = HashModel(LightGCN(6, 5, dim=8, n_layers=1), 16, make_estimator("ste"))
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    before = model.hash.linear.weight.detach().clone()
    loss, logs = model.loss(build_graph(R), torch.tensor([0, 1, 2]), torch.tensor([0, 1, 2]), torch.tensor([4, 4, 0]))
    loss.backward()
    opt.step()
    assert not torch.equal(before, model.hash.linear.weight)
    assert {"bpr_continuous", "loss_hash"} <= set(logs)
    assert any(p is model.hash.linear.weight for group in opt.param_groups for p in group["params"])


def test_two_stage_freezes_the_encoder():
    enc = TableEncoder(np.ones((3, 8), np.float32), np.ones((4, 8), np.float32))
    model = HashModel(enc, 8, make_estimator("ste"), freeze_encoder=True)
    assert not any(p.requires_grad for p in model.encoder.parameters())
    assert all(p.requires_grad for p in model.hash.parameters())


def test_lsh_is_sign_of_random_projection():
    u, i = np.random.default_rng(1).standard_normal((2, 5, 8)).astype(np.float32)
    cu, ci = lsh_codes(u, i, 16, seed=3)
    planes = np.random.default_rng(3).standard_normal((8, 16)).astype(np.float32)
    np.testing.assert_array_equal(cu, np.packbits(u @ planes >= 0, axis=1))
    assert ci.shape == (5, 2)


# ---- losses on tiny batches, by hand --------------------------------------------------

def sig(x):
    return 1 / (1 + math.exp(-x))


def test_bpr_loss_by_hand():
    got = bpr_loss(torch.tensor([2.0, 0.0]), torch.tensor([1.0, 1.0]))
    assert got.item() == pytest.approx((-math.log(sig(1.0)) - math.log(sig(-1.0))) / 2)


def test_hashgnn_loss_by_hand():
    s_pos = torch.tensor([1.0, -0.5])
    s_neg = torch.tensor([[0.0, 2.0], [-1.0, 0.5]])
    cross = (-math.log(sig(1.0)) - math.log(sig(-0.5))) / 2 + (-math.log(1 - sig(0.0)) - math.log(1 - sig(-1.0))) / 2
    trip = [max(0, -sig(1.0) + sig(0.0) + 0.2), max(0, -sig(1.0) + sig(2.0) + 0.2),
            max(0, -sig(-0.5) + sig(-1.0) + 0.2), max(0, -sig(-0.5) + sig(0.5) + 0.2)]
    assert hashgnn_loss(s_pos, s_neg, lambda_rank=0.5, margin=0.2).item() == pytest.approx(cross + 0.5 * sum(trip) / 4, rel=1e-6)
    assert hashgnn_loss(s_pos, s_neg, lambda_rank=0.0).item() == pytest.approx(cross, rel=1e-6)  # _nr


def test_smooth_recall_loss_by_hand():
    s_pos = torch.tensor([1.0])
    pool = torch.tensor([[1.0, 0.0, 3.0]])  # contains the positive itself
    # rank = 1 + (n_items / M) * (sigma(-1) + sigma(2)) with tau_rank = 1; the self term sigma(0) removed
    rank = 1 + (30 / 3) * (sig(-1.0) + sig(2.0))
    expected = -sig((20 - rank) / 2.0)
    got = smooth_recall_loss(s_pos, pool, top_n=20, n_items=30, tau_rank=1.0, tau_recall=2.0)
    assert got.item() == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match="s_pool"):
        smooth_recall_loss(s_pos, torch.zeros(3))
