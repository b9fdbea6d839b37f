"""Hash layer, estimators and hash models against hand-computed values."""
from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from hashrec_utils.evaluation import evaluate_model
from hashrec_utils.graph import build_graph
from hashrec_utils.hashing import (
    ESTIMATORS,
    OBJECTIVES,
    HashLayer,
    HashModel,
    SignFourier,
    SignGaussian,
    SignSwish,
    TableEncoder,
    build_hash_model,
    fourier_grad,
    lsh_codes,
    make_estimator,
    pack_codes,
    sign,
    split_method,
    unpack_codes,
)
from hashrec_utils.losses import (bpr_loss, catalogue_softmax_distill, catalogue_softmax_loss, distill_loss, hashgnn_loss,
                                  pooled_listwise_loss, smooth_recall_loss)
from hashrec_utils.models import GraphSAGE, LightGCN

# 6 users x 5 items, two interactions each
R = sp.csr_matrix(np.eye(6, 5, dtype=np.float32) + np.eye(6, 5, k=1, dtype=np.float32))


def test_sign_of_zero_is_plus_one():
    assert sign(torch.tensor([-0.5, 0.0, -0.0, 2.0])).tolist() == [-1.0, 1.0, 1.0, 1.0]
    assert pack_codes(np.zeros((1, 8)))[0, 0] == 0xFF  # 0 -> +1 -> bit 1


def test_pack_layout_is_numpy_packbits_and_round_trips():
    rng = np.random.default_rng(0)
    signs = np.where(rng.random((5, 24)) < 0.5, -1.0, 1.0)
    packed = pack_codes(signs)
    assert packed.dtype == np.uint8 and packed.shape == (5, 3)
    np.testing.assert_array_equal(packed, np.packbits(signs > 0, axis=1))
    np.testing.assert_array_equal(unpack_codes(packed), signs)
    np.testing.assert_array_equal(unpack_codes(packed, 24), signs)
    np.testing.assert_array_equal(pack_codes(torch.from_numpy(signs)), packed)  # tensors too
    assert pack_codes(np.array([[1.0] + [-1.0] * 7]))[0, 0] == 0b10000000  # +1 -> bit 1, MSB first
    assert pack_codes(np.array([[-1.0] * 7 + [1.0]]))[0, 0] == 0b00000001


def test_packing_errors():
    with pytest.raises(ValueError, match="bits must be a multiple of 8; got 12"):
        pack_codes(np.ones((2, 12)))
    with pytest.raises(ValueError, match="2-D"):
        pack_codes(np.ones(8))
    with pytest.raises(TypeError, match="uint8"):
        unpack_codes(np.ones((2, 1), np.int64))
    with pytest.raises(ValueError, match="bits must be in 1..8"):
        unpack_codes(np.ones((2, 1), np.uint8), 16)


def test_ste_forward_sign_backward_identity():
    est = make_estimator("ste")
    a = torch.tensor([[-2.0, 0.0, 0.3]], requires_grad=True)
    out = est.forward(a, 0)
    assert out.tolist() == [[-1.0, 1.0, 1.0]]
    out.backward(torch.tensor([[1.0, 2.0, 3.0]]))
    t = np.tanh([-2.0, 0.0, 0.3])
    # identity through the sign, then tanh' = 1 - tanh^2
    np.testing.assert_allclose(a.grad.numpy()[0], np.array([1.0, 2.0, 3.0]) * (1 - t**2), rtol=1e-6)


def test_guided_ste_schedule_and_mixture():
    est = make_estimator("guided_ste")  # p0 = 1, × 0.95 per stage, 50 stages over the run
    assert est.state(0.0)["p"] == 1.0 and est.state(0.0199)["p"] == 1.0
    assert est.state(0.02)["p"] == pytest.approx(0.95) and est.state(0.04)["p"] == pytest.approx(0.9025)
    assert est.state(1.0)["p"] == pytest.approx(0.95**50) and est.state(3.0)["p"] == pytest.approx(0.95**50)  # clamped
    a = torch.randn(200, 64)
    torch.testing.assert_close(est.forward(a, 0.0), torch.tanh(a))  # p = 1: Q selects the continuous z everywhere
    torch.manual_seed(0)
    late = est.forward(a, 14 / 50)  # p = 0.95^14 ≈ 0.488
    continuous = (late == torch.tanh(a)).float().mean().item()
    assert continuous == pytest.approx(0.95**14, abs=0.02)  # Q ~ Bernoulli(p) per element: 12 800 draws
    assert torch.equal(late[late != torch.tanh(a)].abs(), torch.ones(int((late != torch.tanh(a)).sum())))
    assert make_estimator("guided_ste", decay=0.5, stages=10).state(0.2)["p"] == 0.25
    # backward: tanh' on both branches (z directly, sign by STE)
    x = torch.tensor([0.4, -0.7], requires_grad=True)
    est.forward(x, 1.0).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 1 - np.tanh([0.4, -0.7]) ** 2, rtol=1e-6)


def test_every_schedule_reaches_its_end_value_at_the_end_of_a_10_step_run():
    """HashModel turns the integer step into t = step / total: a 10-step run anneals fully."""
    ends = {"guided_ste": ("p", 0.95**50), "hashnet": ("beta", 10.0), "gumbel": ("tau", max(0.05, 0.9**20))}
    starts = {"guided_ste": ("p", 1.0), "hashnet": ("beta", 1.0), "gumbel": ("tau", 1.0)}
    for name, (key, end) in ends.items():
        model = HashModel(LightGCN(6, 5, dim=8, n_layers=1), 16, make_estimator(name))
        assert model.schedule_state(10)[key] == pytest.approx(starts[name][1])  # before set_total_steps: t = 0
        model.set_total_steps(10)
        assert model.schedule_state(0)[key] == pytest.approx(starts[name][1]), name
        assert model.schedule_state(10)[key] == pytest.approx(end), name
        assert model.schedule_state(25)[key] == pytest.approx(end), name  # past the end: clamped
    model.set_total_steps(10)
    assert model.progress(3) == pytest.approx(0.3) and model.progress(-1) == 0.0
    hn = make_estimator("hashnet", beta0=2.0, beta_end=6.0)  # β0 (1 + ((6/2)² − 1) t)^½
    assert hn.state(0.5)["beta"] == pytest.approx(2.0 * (1 + 8 * 0.5) ** 0.5)
    gb = make_estimator("gumbel", tau0=1.0, decay=0.5, stages=10, tau_min=0.1)
    assert gb.state(0.25)["tau"] == 0.25 and gb.state(1.0)["tau"] == 0.1
    with pytest.raises(ValueError, match="total steps must be a non-negative integer"):
        model.set_total_steps(2.5)


def test_signswish_backward_is_the_curve_derivative():
    beta = 3.0
    est = make_estimator("signswish", beta=beta)
    x = torch.linspace(-2, 2, 9, dtype=torch.float64, requires_grad=True)
    out = est.forward(x, 0.0)
    assert out.tolist() == [-1.0] * 4 + [1.0] * 5  # sign(0) = +1
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
    assert x.grad[4].item() == pytest.approx(beta)  # at 0: 2 * beta * 1/4 * 2


def test_custom_backwards_match_autograd_of_their_smooth_curves():
    """gradcheck-style: each Function's backward equals autograd of the curve it stands for."""
    x = torch.linspace(-1.5, 1.5, 13, dtype=torch.float64, requires_grad=True)
    g = torch.randn(13, dtype=torch.float64)
    beta = 2.5
    smooth = 2 * torch.sigmoid(beta * x) * (1 + beta * x * (1 - torch.sigmoid(beta * x))) - 1
    (want,) = torch.autograd.grad(smooth, x, g)
    (got,) = torch.autograd.grad(SignSwish.apply(x, beta), x, g)
    torch.testing.assert_close(got, want)
    # BGCH: derivative of the n-term square-wave series (4/π) Σ sin((2k−1) w x)/(2k−1), clamped to [−1, 1]
    n, w = 4, 1.0
    series = (4 / math.pi) * sum(torch.sin((2 * k - 1) * w * x) / (2 * k - 1) for k in range(1, n + 1))
    (want,) = torch.autograd.grad(series, x, g, retain_graph=True)
    (deriv,) = torch.autograd.grad(series, x, torch.ones_like(x))
    xr = x[None, :]  # one row: the scale α does not enter the backward
    (got,) = torch.autograd.grad(SignFourier.apply(xr, n, w), xr, g[None, :])
    torch.testing.assert_close(got[0], g * deriv.clamp(-1, 1))
    assert (deriv.abs() > 1).any()  # the clamp is exercised
    # BiGeaR: the normal density (a/√π) exp(−a²x²), clamped to [1e-8, 1]
    a = 1.7
    erf = torch.erf(a * x) / 2  # ∫ density
    (deriv,) = torch.autograd.grad(erf, x, torch.ones_like(x))
    (got,) = torch.autograd.grad(SignGaussian.apply(xr, a), xr, g[None, :])
    torch.testing.assert_close(got[0], g * deriv.clamp(1e-8, 1))


def test_bgch_and_bigear_forward_scaled_sign_backward_as_the_official_code():
    """BGCH gradient.py FS / BiGeaR Normal_Ddelta: out = mean|a| · sign(a) per row, no tanh; the backward
    is the estimator alone (α treated as a constant); BGCH's peak is clamped to 1."""
    a = torch.tensor([[0.5, -1.0, 0.0], [2.0, 0.1, -0.3]], dtype=torch.float64, requires_grad=True)
    m = a.detach().abs().mean(1, keepdim=True)
    for name, params in (("bgch", {}), ("bigear", {})):
        est = make_estimator(name, **params)
        assert est.scaled
        out = est.forward(a, 0.0)
        torch.testing.assert_close(out, m * torch.where(a >= 0, 1.0, -1.0).double())
    g = torch.tensor([[1.0, 2.0, 3.0], [-1.0, 0.5, 2.0]], dtype=torch.float64)
    (got,) = torch.autograd.grad(make_estimator("bgch").forward(a, 0.0), a, g)
    ad = a.detach().numpy()
    f = (4 / math.pi) * sum(np.cos((2 * k - 1) * ad) for k in range(1, 5))  # 4 terms, w = 1 (Gowalla)
    np.testing.assert_allclose(got.numpy(), g.numpy() * np.clip(f, -1, 1), rtol=1e-12)
    assert got[0, 2].item() == pytest.approx(3.0)  # at 0: 16/π clamped to 1
    (got,) = torch.autograd.grad(make_estimator("bigear", norm_a=2.0).forward(a, 0.0), a, g)
    np.testing.assert_allclose(got.numpy(), g.numpy() * np.clip(2 / math.sqrt(math.pi) * np.exp(-(2 * ad) ** 2), 1e-8, 1),
                               rtol=1e-12)
    assert fourier_grad(torch.tensor(0.0), 4, 1.0).item() == pytest.approx(16 / math.pi)  # unclamped peak 4wn/π
    # finite differences of the series at a point where the clamp is inactive
    x0, h = 1.1, 1e-6
    s = lambda v: (4 / math.pi) * sum(math.sin((2 * k - 1) * v) / (2 * k - 1) for k in range(1, 5))
    assert fourier_grad(torch.tensor(x0, dtype=torch.float64), 4, 1.0).item() == pytest.approx((s(x0 + h) - s(x0 - h)) / (2 * h), rel=1e-6)


def test_hashnet_and_gumbel_anneal():
    hn = make_estimator("hashnet", beta0=1.0, beta_end=3.0)
    assert hn.state(1.0)["beta"] == pytest.approx(3.0)
    a = torch.tensor([0.3])
    torch.testing.assert_close(hn.forward(a, 1.0), torch.tanh(3.0 * a))
    gb = make_estimator("gumbel", tau0=1.0, decay=0.5, stages=10, tau_min=0.1, noise=1.0)
    torch.manual_seed(0)
    out = gb.forward(torch.randn(4000), 1.0)
    assert (out.abs() > 0.9).float().mean() > 0.7  # near-binary at low temperature
    x = torch.tensor([0.1, -0.2], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: hn.forward(v, 0.5), (x,))

    # backward: the noise scale s = noise · median|a| is a constant (detached), so
    # d/da [2σ((a + s g)/τ) − 1] = (2/τ) σ'(·); g recovered from the same draw
    torch.manual_seed(3)
    out = gb.forward(x, 0.0)
    (got,) = torch.autograd.grad(out.sum(), x)
    torch.manual_seed(3)
    u = torch.rand_like(x).clamp_(1e-6, 1 - 1e-6)
    s = 1.0 * x.detach().abs().median()
    y = torch.sigmoid((x.detach() + s * (u.log() - torch.log1p(-u))) / 1.0)
    torch.testing.assert_close(out, 2 * y - 1)
    torch.testing.assert_close(got, 2 * y * (1 - y))


def test_gumbel_noise_is_relative_to_the_batch_and_flips_few_bits():
    """P(flip) = E σ(−|a| / s), s = noise · median|a|: ≈ 3.7 % at the default 0.1 for Gaussian a,
    whatever the scale of a (0.18 median, like the hash layer on LightGCN embeddings, or 100×)."""
    rng = np.random.default_rng(0)
    est = make_estimator("gumbel")
    for spread in (0.18 / 0.6745, 18 / 0.6745):
        a = torch.from_numpy(rng.standard_normal(200_000) * spread).float()
        torch.manual_seed(0)
        flips = (torch.sign(est.forward(a, 0.0)) != torch.sign(a)).float().mean().item()
        x = np.abs(a.numpy()) / (0.1 * np.median(np.abs(a.numpy())))
        assert flips == pytest.approx(np.mean(1 / (1 + np.exp(x))), abs=0.003)
        assert 0.03 < flips < 0.045
    torch.manual_seed(1)  # unit relative noise: P(+) = σ(a / median|a|)
    big = make_estimator("gumbel", noise=1.0).forward(torch.cat([torch.full((4000,), 1.0), -torch.ones(1)]), 0.0)
    assert (big[:4000] > 0).float().mean().item() == pytest.approx(1 / (1 + math.exp(-1.0)), abs=0.03)


def test_estimator_errors_list_the_choices():
    with pytest.raises(ValueError, match="unknown estimator 'sigmoid'; choose one of ste, guided_ste, hashnet, gumbel, signswish, bgch, bigear"):
        make_estimator("sigmoid")
    with pytest.raises(ValueError, match=r"estimator 'ste' takes no parameters; got \['beta'\]"):
        make_estimator("ste", beta=2.0)
    with pytest.raises(ValueError, match="'lsh' needs no training"):
        make_estimator("lsh")
    for bits in (60, 0, -8):
        with pytest.raises(ValueError, match="bits must be a positive multiple of 8"):
            HashLayer(8, bits, make_estimator("ste"))
    with pytest.raises(ValueError, match="objective must be one of bpr, softmax, recall, bgch, hashgnn, bigear; got 'mse'"):
        HashModel(LightGCN(6, 5, dim=8, n_layers=1), 16, make_estimator("ste"), objective="mse")
    with pytest.raises(ValueError, match="bits must equal dim"):
        HashLayer(8, 16, make_estimator("bgch"), kind="identity")
    with pytest.raises(ValueError, match="hash_layer must be one of"):
        HashLayer(8, 16, make_estimator("bgch"), kind="mlp")


def test_eval_codes_are_sign_whatever_the_estimator():
    torch.manual_seed(0)
    e = torch.randn(10, 8)
    for name in ESTIMATORS:
        layer = HashLayer(8, 16, make_estimator(name))
        a = layer.linear(e)
        want = torch.where(a >= 0, 1.0, -1.0)
        torch.testing.assert_close(layer.codes(e), want)
        assert layer.estimator.codes(torch.zeros(3)).tolist() == [1.0, 1.0, 1.0]


def _batch():
    return torch.tensor([0, 1, 2, 3]), torch.tensor([0, 1, 2, 3]), torch.tensor([4, 4, 0, 1])


@pytest.mark.parametrize("objective", OBJECTIVES)
@pytest.mark.parametrize("estimator", ["ste", "signswish", "bgch"])
def test_hash_layer_parameters_reach_the_optimiser(objective, estimator):
    """The BGCH reference code kept its hash layer out of the optimiser; a training step must move it."""
    torch.manual_seed(0)
    model = HashModel(LightGCN(6, 5, dim=8, n_layers=1), 16, make_estimator(estimator), objective=objective,
                      n_negatives=0 if objective != "bpr" else 2, distill=0.5)
    if objective == "bigear":  # its teacher's top items (build_hash_model sets them from the warm-start teacher)
        model.teacher_top = torch.argsort(torch.randn(6, 5, generator=torch.Generator().manual_seed(1)), 1)[:, None, :3]
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    assert any(p is model.hash.linear.weight for group in opt.param_groups for p in group["params"])
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    loss, logs = model.loss(build_graph(R), *_batch())
    loss.backward()
    opt.step()
    for name in ("hash.linear.weight", "hash.linear.bias", "log_scale", "encoder.embedding.weight"):
        assert not torch.equal(before[name], dict(model.named_parameters())[name]), name
    assert {"loss_continuous", "loss_hash", "loss_distill"} <= set(logs)


def test_sampled_pool_and_multiple_negatives():
    torch.manual_seed(0)
    model = HashModel(LightGCN(6, 5, dim=8, n_layers=1), 16, make_estimator("ste"), objective="softmax", n_negatives=3)
    loss, _ = model.loss(build_graph(R), *_batch())
    assert torch.isfinite(loss)
    with pytest.raises(ValueError, match="n_negatives >= 0"):
        HashModel(LightGCN(6, 5, dim=8, n_layers=1), 16, make_estimator("ste"), n_negatives=-1)


def test_code_scores_by_hand():
    """``loss_hash`` of a frozen model with known codes equals BPR on γ<h_u, h_i>/K computed by hand."""
    enc = TableEncoder(np.array([[1.0, 0.0]], np.float32), np.array([[1.0, 0.0], [-1.0, 0.0]], np.float32))
    model = HashModel(enc, 8, make_estimator("ste"), objective="bpr", scale=4.0, freeze_encoder=True)
    with torch.no_grad():
        model.hash.linear.weight.copy_(torch.tensor([[1.0, 0.0]] * 6 + [[-1.0, 0.0]] * 2))
        model.hash.linear.bias.zero_()
    # user code = (+1 x6, -1 x2); item 0 the same (<.,.> = 8), item 1 its negation (<.,.> = -8)
    _, logs = model.loss(None, torch.tensor([0]), torch.tensor([0]), torch.tensor([1]))
    assert logs["loss_hash"] == pytest.approx(math.log1p(math.exp(-(4.0 - -4.0))), rel=1e-5)
    assert "loss_continuous" not in logs
    cu, ci = model.codes(None)
    np.testing.assert_array_equal(cu, [[0b11111100]])
    np.testing.assert_array_equal(ci, [[0b11111100], [0b00000011]])


def test_codes_are_packed_sign_codes_and_evaluate_has_a_section_per_mode():
    torch.manual_seed(0)
    model = HashModel(LightGCN(6, 5, dim=8, n_layers=1), 16, make_estimator("guided_ste"))
    g = build_graph(R)
    cu, ci = model.codes(g)
    su, si = model.sign_codes(g)
    assert cu.dtype == np.uint8 and cu.shape == (6, 2) and ci.shape == (5, 2)
    np.testing.assert_array_equal(unpack_codes(cu), su.detach().numpy())
    np.testing.assert_array_equal(ci, np.packbits(si.detach().numpy() > 0, axis=1))
    test = sp.csr_matrix(np.eye(6, 5, k=2, dtype=np.float32))
    model.candidates = 3
    out = evaluate_model(model, g, test, R, ks=(1, 3))
    assert set(out) == {"continuous", "hamming", "hierarchical", "asymmetric"}
    assert set(out["hamming"]) >= {"recall@1", "recall@3"}
    # asymmetric search's queries are the hash layer's real outputs, whose signs are the user codes
    query = model.query_vectors(g)
    np.testing.assert_array_equal(np.packbits(query >= 0, axis=1), cu)


def test_training_for_asymmetric_search_scores_real_users_against_item_codes():
    """``asymmetric=True``: the users' side of every code score is ``a_u = W e_u + b`` scaled to mean
    magnitude 1 (no estimator), the items' side their codes; the loss differs from the symmetric one
    and the hash layer gets gradients from both sides."""
    torch.manual_seed(0)
    enc = TableEncoder(np.random.default_rng(0).standard_normal((6, 8)).astype(np.float32),
                       np.random.default_rng(1).standard_normal((5, 8)).astype(np.float32))
    sym = HashModel(enc, 16, make_estimator("signswish"), objective="softmax", n_negatives=0)
    asym = HashModel(enc, 16, make_estimator("signswish"), objective="softmax", n_negatives=0, asymmetric=True)
    asym.load_state_dict(sym.state_dict())
    e = enc.embeddings()[0]
    a = asym.hash.linear(e)
    np.testing.assert_allclose(asym._user_side(e, 0.5).detach().numpy(),
                               (a / a.abs().mean(-1, keepdim=True)).detach().numpy(), rtol=1e-6)
    np.testing.assert_array_equal(sym._user_side(e, 0.5).detach().numpy(), sym.hash(e, 0.5).detach().numpy())
    users, pos, neg = torch.tensor([0, 1, 2]), torch.tensor([0, 1, 2]), torch.tensor([3, 4, 0])
    loss_sym, _ = sym.loss(None, users, pos, neg)
    loss_asym, _ = asym.loss(None, users, pos, neg)
    assert not torch.isclose(loss_sym, loss_asym)
    loss_asym.backward()
    assert asym.hash.linear.weight.grad is not None and asym.hash.linear.weight.grad.abs().sum() > 0


def test_two_stage_freezes_the_encoder():
    enc = TableEncoder(np.ones((3, 8), np.float32), np.ones((4, 8), np.float32))
    model = HashModel(enc, 8, make_estimator("ste"), freeze_encoder=True)
    assert not any(p.requires_grad for p in model.encoder.parameters())
    assert all(p.requires_grad for p in model.hash.parameters())


def test_split_method_and_build_hash_model(tmp_path):
    assert split_method("guided_ste_sp") == ("guided_ste", {"freeze": True})
    assert split_method("guided_ste_nr") == ("guided_ste", {"lambda_rank": 0.0})
    assert split_method("signswish") == ("signswish", {})
    data = SimpleNamespace(n_users=6, n_items=5)
    cfg = SimpleNamespace(model="hashgnn", hash_method="guided_ste_nr", hash_params={}, dim=8, reg=1e-4, n_layers=2, bits=16)
    m = build_hash_model(cfg, data)
    assert isinstance(m.encoder, GraphSAGE) and m.objective == "hashgnn" and m.lambda_rank == 0.0
    assert m.hash.estimator.name == "guided_ste"
    np.savez(tmp_path / "embeddings.npz", user=np.ones((6, 8), np.float32), item=np.ones((5, 8), np.float32))
    cfg = SimpleNamespace(model="lightgcn", hash_method="signswish_sp", dim=8, reg=1e-4, n_layers=2, bits=16,
                          hash_params={"init": str(tmp_path), "estimator": {"beta": 2.0}, "objective": "softmax"})
    m = build_hash_model(cfg, data)
    assert isinstance(m.encoder, TableEncoder) and m.freeze_encoder and m.hash.estimator.params == {"beta": 2.0}
    bad = SimpleNamespace(n_users=7, n_items=5)
    with pytest.raises(ValueError, match="embeddings.npz has 6 users, 5 items; the data has 7, 5"):
        build_hash_model(cfg, bad)


def test_lsh_is_sign_of_random_projection():
    u, i = np.random.default_rng(1).standard_normal((2, 5, 8)).astype(np.float32)
    cu, ci = lsh_codes(u, i, 16, seed=3)
    planes = np.random.default_rng(3).standard_normal((8, 16)).astype(np.float32)
    np.testing.assert_array_equal(cu, np.packbits(u @ planes >= 0, axis=1))
    assert ci.shape == (5, 2)


def test_continuous_init_keeps_the_starting_embeddings_while_the_table_learns_codes():
    rng = np.random.default_rng(0)
    u0, i0 = rng.standard_normal((6, 8)).astype(np.float32), rng.standard_normal((5, 8)).astype(np.float32)
    model = HashModel(TableEncoder(u0, i0), 16, make_estimator("ste"), objective="softmax", n_negatives=0,
                      cont_weight=0.0, continuous="init")
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    for step in range(3):
        loss, logs = model.loss(None, torch.tensor([0, 1, 2]), torch.tensor([0, 3, 4]), torch.tensor([1, 1, 1]), step)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert "loss_continuous" not in logs
    users, items = model.embeddings(None)
    np.testing.assert_array_equal(users.numpy(), u0)  # hierarchical re-ranks with the untouched embeddings
    np.testing.assert_array_equal(items.numpy(), i0)
    assert not np.allclose(model.encoder.embeddings()[0].detach().numpy(), u0)  # the code table moved
    with pytest.raises(ValueError, match="continuous='init' needs an encoder started from trained embeddings"):
        HashModel(LightGCN(6, 5, dim=8, n_layers=1), 16, make_estimator("ste"), continuous="init")


def test_distillation_from_the_frozen_embeddings_equals_the_unfused_objective():
    """With continuous="init" the teacher's softmax over all items is computed once and the KL shares
    the listwise loss's pass; loss, logs and gradients equal the plain path (teacher recomputed per
    step, distill_loss) that a model whose teacher moves takes."""
    from hashrec_utils.losses import distill_loss

    rng = np.random.default_rng(4)
    u0, i0 = rng.standard_normal((6, 8)).astype(np.float32), rng.standard_normal((7, 8)).astype(np.float32)
    users, pos = torch.tensor([0, 1, 1, 3, 5]), torch.tensor([0, 3, 4, 6, 2])

    def model():
        torch.manual_seed(0)
        return HashModel(TableEncoder(u0, i0), 16, make_estimator("signswish"), objective="softmax", n_negatives=0,
                         cont_weight=0.0, continuous="init", distill=0.8, distill_tau=0.5)

    fused = model()
    loss, logs = fused.loss(None, users, pos, torch.zeros_like(pos))
    loss.backward()
    ref = model()
    uniq, inv = torch.unique(users, return_inverse=True)
    eu, ei = ref.encoder.embeddings(None)
    s_rows = ref._score_pool(ref.hash(eu[uniq]), ref.hash(ei))
    hashed = (torch.logsumexp(s_rows, dim=1)[inv] - s_rows[inv, pos]).mean()
    kd = distill_loss(s_rows, torch.from_numpy(u0)[uniq] @ torch.from_numpy(i0).T, tau=0.5)
    (hashed + 0.8 * kd).backward()
    assert loss.item() == pytest.approx((hashed + 0.8 * kd).item(), rel=1e-5)
    assert logs["loss_hash"] == pytest.approx(hashed.item(), rel=1e-5)
    assert logs["loss_distill"] == pytest.approx(kd.item(), rel=1e-4, abs=1e-6)
    for (name, p), q in zip(fused.named_parameters(), ref.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-6, msg=name)


def test_full_softmax_loss_by_hand():
    """All-items softmax on code scores: mean over pairs of logsumexp_j s_uj − s_ui, s = γ<h_u, h_j>/K."""
    rng = np.random.default_rng(1)
    enc = TableEncoder(rng.standard_normal((2, 4)).astype(np.float32), rng.standard_normal((3, 4)).astype(np.float32))
    model = HashModel(enc, 8, make_estimator("ste"), objective="softmax", n_negatives=0, cont_weight=0.0, scale=3.0)
    users, pos = torch.tensor([0, 1, 0]), torch.tensor([2, 0, 1])
    _, logs = model.loss(None, users, pos, torch.tensor([0, 0, 0]))
    hu, hi = model.sign_codes(None)
    s = 3.0 / 8 * (hu @ hi.T).detach().numpy()
    lse = np.log(np.exp(s).sum(1))
    expected = np.mean([lse[u] - s[u, i] for u, i in zip(users.tolist(), pos.tolist())])
    assert logs["loss_hash"] == pytest.approx(expected, rel=1e-5)


# The loss as HashModel.loss computed it before the objectives became a registry (commit 595b4c9),
# kept verbatim (estimator at t = 0) as the reference the registry must reproduce.
def _legacy_loss(self, graph, users, pos, neg, step=0):
    user_emb, item_emb = self.encoder.embeddings(graph)
    device = user_emb.device
    logs, total = {}, torch.zeros((), device=device)
    if not self.freeze_encoder and self.cont_weight:
        eu, ei, ej = user_emb[users], item_emb[pos], item_emb[neg]
        cont = bpr_loss((eu * ei).sum(-1), (eu * ej).sum(-1))
        ego = getattr(self.encoder, "embedding", None)
        if ego is not None and self.reg:
            n_u, w = self.encoder.n_users, ego.weight
            l2 = 0.5 * (w[users].square().sum() + w[n_u + pos].square().sum() + w[n_u + neg].square().sum()) / len(users)
            cont = cont + self.reg * l2
        total = total + self.cont_weight * cont
        logs["loss_continuous"] = float(cont.detach())
    # Codes are computed once per distinct user and item of the step (one guided-STE draw per
    # node and step), then gathered: hashing every gathered row would cost (1 + negatives) × batch.
    n_items, batch = item_emb.shape[0], len(users)
    uniq, inv = torch.unique(users, return_inverse=True)
    h_uniq = self.hash(user_emb[uniq], 0.0)
    hu = h_uniq[inv]
    needs_pool = self.objective in ("softmax", "recall") or bool(self.distill)
    pool = self._pool(n_items, device) if needs_pool else None
    negs = None
    if self.objective in ("bpr", "hashgnn"):
        k = self.n_negatives if self.objective == "bpr" else self.n_triplets
        negs = neg[:, None]
        if k > 1:
            negs = torch.cat([negs, torch.randint(0, n_items, (batch, k - 1), device=device)], 1)
    parts = [pos] + ([negs.reshape(-1)] if negs is not None else [])
    if needs_pool:
        parts.append(torch.arange(n_items, device=device) if pool is None else pool)
    item_ids, item_inv = torch.unique(torch.cat(parts), return_inverse=True)
    h_items = self.hash(item_emb[item_ids], 0.0)
    # the all-items softmax reads the positives' scores off its (users × items) matrix instead
    all_items_softmax = self.objective == "softmax" and pool is None
    # a frozen teacher (continuous="init") has one softmax over all items, computed once: its KL then
    # shares the all-items softmax's pass over the score matrix
    fused_distill = all_items_softmax and bool(self.distill) and self.continuous == "init"
    s_pos = None if all_items_softmax else self._score(hu, h_items[item_inv[:batch]])
    if needs_pool:
        h_pool = h_items if pool is None else h_items[item_inv[len(item_inv) - len(pool):]]
        s_rows = self._score_pool(h_uniq, h_pool)
    if negs is not None:
        h_neg = h_items[item_inv[batch : batch + negs.numel()]].view(batch, negs.shape[1], -1)
        s_neg = self._score(hu[:, None, :], h_neg)
        if self.objective == "bpr":
            hashed = bpr_loss(s_pos, s_neg)
        else:
            hashed = hashgnn_loss(s_pos, s_neg, lambda_rank=self.lambda_rank, margin=self.margin)
    elif fused_distill:
        # −log softmax over all items and the distillation's cross-entropy share one pass
        probs, entropy = self._teacher_probs()
        hashed, cross = catalogue_softmax_distill(s_rows, inv, pos, probs[uniq])
        kd = cross - entropy[uniq].mean()  # KL(teacher ‖ codes) = cross-entropy − teacher entropy
    elif all_items_softmax:
        # −log softmax over all items: logsumexp once per distinct user, fused backward
        hashed = catalogue_softmax_loss(s_rows, inv, pos)
    elif self.objective == "softmax":
        # a sampled pool shared by the batch: its log-sum-exp once per distinct user, the
        # positive's own entries (drawn into the pool by chance) taken back out
        ordered = pool.sort().values
        hits = torch.searchsorted(ordered, pos, right=True) - torch.searchsorted(ordered, pos)
        hashed = pooled_listwise_loss(s_pos, s_rows, inv, hits)
    else:
        ids = torch.arange(n_items, device=device) if pool is None else pool
        s_pool = s_rows[inv].masked_fill(pos[:, None] == ids[None, :], float("-inf"))  # the positive leaves the pool
        hashed = smooth_recall_loss(s_pos, s_pool, top_n=self.top_n, n_items=n_items,
                                    tau_rank=self.tau_rank, tau_recall=self.tau_recall)
    total = total + self.hash_weight * hashed
    logs["loss_hash"] = float(hashed.detach())
    if self.distill:
        # the teacher is the continuous model that hierarchical search re-ranks with (with
        # continuous="init": the frozen LightGCN embeddings the table started from)
        if not fused_distill:
            t_users, t_items = self.embeddings(graph)
            teacher = t_users[uniq] @ (t_items if pool is None else t_items[pool]).T
            kd = distill_loss(s_rows, teacher, tau=self.distill_tau)
        total = total + self.distill * kd
        logs["loss_distill"] = float(kd.detach())
    return total, logs


@pytest.mark.parametrize("objective,n_negatives,distill,continuous", [
    ("bpr", 1, 0.0, "encoder"), ("bpr", 3, 0.5, "encoder"), ("hashgnn", None, 0.0, "hash"),
    ("softmax", 0, 0.0, "encoder"), ("softmax", 0, 0.7, "init"), ("softmax", 0, 0.7, "encoder"),
    ("softmax", 4, 0.3, "init"), ("recall", 0, 0.0, "encoder"), ("recall", 4, 0.5, "encoder")])
def test_objective_registry_equals_the_old_loss(objective, n_negatives, distill, continuous):
    rng = np.random.default_rng(7)
    u0, i0 = rng.standard_normal((6, 8)).astype(np.float32), rng.standard_normal((9, 8)).astype(np.float32)
    users, pos, neg = torch.tensor([0, 1, 1, 3, 5, 0]), torch.tensor([0, 3, 4, 6, 2, 8]), torch.tensor([1, 1, 2, 0, 7, 5])

    def model():
        torch.manual_seed(0)
        return HashModel(TableEncoder(u0, i0), 16, make_estimator("guided_ste"), objective=objective,
                         n_negatives=n_negatives, distill=distill, continuous=continuous, top_n=3, tau_rank=0.5)

    new, old = model(), model()
    torch.manual_seed(1)
    loss, logs = new.loss(None, users, pos, neg, 0)
    torch.manual_seed(1)
    ref, ref_logs = _legacy_loss(old, None, users, pos, neg, 0)
    assert loss.item() == pytest.approx(ref.item(), rel=1e-6)
    assert logs.keys() == ref_logs.keys()
    for key in logs:
        assert logs[key] == pytest.approx(ref_logs[key], rel=1e-5, abs=1e-7), key
    loss.backward()
    ref.backward()
    for (name, p), q in zip(new.named_parameters(), old.parameters()):
        if p.grad is not None or q.grad is not None:
            torch.testing.assert_close(p.grad, q.grad, rtol=1e-5, atol=1e-7, msg=name)


def test_a_new_objective_is_one_function_in_an_objective_value():
    from hashrec_utils.hashing import OBJECTIVES, Objective

    def mean_margin(model, b):
        return (model._score(b.hu[:, None, :], b.h_neg) - model._score(b.hu, b.h_pos)[:, None]).mean(), {}

    torch.manual_seed(0)
    objective = Objective("mean_margin", mean_margin, negatives=lambda m: 2)
    model = HashModel(LightGCN(6, 5, dim=8, n_layers=1), 16, make_estimator("ste"), objective=objective, cont_weight=0.0)
    assert model.objective == "mean_margin" and model.hash_objective is objective and model.n_negatives == 1
    _, logs = model.loss(build_graph(R), *_batch())
    assert set(logs) == {"loss_hash"} and math.isfinite(logs["loss_hash"])
    assert "mean_margin" not in OBJECTIVES  # nothing was registered


def test_components_carry_versions_and_the_registries_are_read_only():
    import dataclasses

    from hashrec_utils.hashing import UNTRAINED, UNTRAINED_VERSIONS, Estimator

    def is_version(v):
        return type(v) is int and v >= 1

    for name, cls in ESTIMATORS.items():
        assert issubclass(cls, Estimator) and cls.name == name
        assert is_version(vars(cls).get("version")), name  # each estimator declares its own, none inherited
    for name, objective in OBJECTIVES.items():
        assert objective.name == name and is_version(objective.version), name
    assert all(is_version(c.version) for c in (HashLayer, HashModel, TableEncoder))
    assert set(UNTRAINED_VERSIONS) == set(UNTRAINED) and all(map(is_version, UNTRAINED_VERSIONS.values()))
    for registry, value in ((OBJECTIVES, OBJECTIVES["bpr"]), (ESTIMATORS, ESTIMATORS["ste"]), (UNTRAINED_VERSIONS, 1)):
        with pytest.raises(TypeError):
            registry["new"] = value
        with pytest.raises(TypeError):
            del registry[next(iter(registry))]
    with pytest.raises(dataclasses.FrozenInstanceError):
        OBJECTIVES["bpr"].pool = True


@pytest.mark.parametrize("name", ["bgch", "bigear"])
def test_scaled_codes_are_ranked_by_alpha_times_inner_product(name):
    """evaluate's hamming / hierarchical sections for BGCH equal a brute-force ranking by α_i ⟨b_u, b_i⟩
    (official get_scores: α_u α_i ⟨b_u, b_i⟩; α_u > 0 changes no user's order)."""
    from hashrec_utils.hashing import scaled_code_topk
    from hashrec_utils.metrics import evaluate_topk

    rng = np.random.default_rng(3)
    n_users, n_items, k, c = 7, 40, 5, 12
    u0, i0 = rng.standard_normal((n_users, 16)).astype(np.float32), rng.standard_normal((n_items, 16)).astype(np.float32)
    torch.manual_seed(0)
    model = HashModel(TableEncoder(u0, i0), 16, make_estimator(name), hash_layer="linear_nobias", candidates=c)
    assert model.hash.linear.bias is None
    with torch.no_grad():
        a_u, a_i = model.hash.linear(torch.from_numpy(u0)), model.hash.linear(torch.from_numpy(i0))
    bu, bi = torch.where(a_u >= 0, 1.0, -1.0).numpy(), torch.where(a_i >= 0, 1.0, -1.0).numpy()
    alpha_u, alpha_i = a_u.abs().mean(1).numpy(), a_i.abs().mean(1).numpy()
    su, si = model.code_scales(None)
    np.testing.assert_allclose(su, alpha_u, rtol=1e-6)
    np.testing.assert_allclose(si, alpha_i, rtol=1e-6)
    extra = model.extra_arrays(None)
    assert set(extra) == {"user_scales", "item_scales"} and extra["item_scales"].dtype == np.float32
    exclude = sp.csr_matrix((np.ones(n_users), (np.arange(n_users), np.arange(n_users) % n_items)), shape=(n_users, n_items))
    scores = alpha_u.astype(np.float64)[:, None] * alpha_i.astype(np.float64)[None, :] * (bu @ bi.T)  # official, α_u included
    scores[exclude.toarray() > 0] = -np.inf
    order = np.lexsort((np.broadcast_to(np.arange(n_items), scores.shape), -scores), axis=1)  # ties: smaller id
    cu, ci = model.codes(None)
    ids, hier = scaled_code_topk(cu, ci, si, k, exclude, candidates=c, user_emb=u0, item_emb=i0)
    np.testing.assert_array_equal(ids, order[:, :k])
    cont = np.take_along_axis(u0 @ i0.T, order[:, :c], 1)  # hierarchical: the top-c re-ranked by <e_u, e_i>
    want = np.take_along_axis(order[:, :c], np.argsort(-cont, axis=1, kind="stable")[:, :k], 1)
    np.testing.assert_array_equal(hier, want)
    target = sp.csr_matrix((np.ones(n_users), (np.arange(n_users), order[:, 0])), shape=(n_users, n_items))
    out = evaluate_model(model, None, target, exclude, ks=(1, k))
    assert out["hamming"] == evaluate_topk(order[:, :k], target, (1, k))
    assert out["hamming"]["recall@1"] == 1.0
    assert out["hierarchical"] == evaluate_topk(want, target, (1, k))
    # unscaled estimators have no scales to save
    plain = HashModel(TableEncoder(u0, i0), 16, make_estimator("ste"))
    assert plain.code_scales(None) is None and plain.extra_arrays(None) == {}


def test_identity_hash_layer_binarises_the_embeddings_themselves():
    rng = np.random.default_rng(0)
    u0, i0 = rng.standard_normal((3, 16)).astype(np.float32), rng.standard_normal((4, 16)).astype(np.float32)
    model = HashModel(TableEncoder(u0, i0), 16, make_estimator("signswish"), hash_layer="identity")
    cu, ci = model.codes(None)
    np.testing.assert_array_equal(cu, np.packbits(u0 >= 0, axis=1))
    np.testing.assert_array_equal(ci, np.packbits(i0 >= 0, axis=1))


def test_untrained_codes_lsh_and_sign():
    from hashrec_utils.hashing import untrained_codes

    u, i = np.random.default_rng(1).standard_normal((2, 5, 16)).astype(np.float32)
    for got, want in zip(untrained_codes("lsh", u, i, 24, seed=3), lsh_codes(u, i, 24, seed=3)):
        np.testing.assert_array_equal(got, want)
    cu, ci = untrained_codes("sign", u, i, 16)
    np.testing.assert_array_equal(cu, np.packbits(u >= 0, axis=1))
    np.testing.assert_array_equal(ci, np.packbits(i >= 0, axis=1))
    with pytest.raises(ValueError, match="bits must be 16; got 32"):
        untrained_codes("sign", u, i, 32)
    with pytest.raises(ValueError, match="untrained method must be one of lsh, sign; got 'ste'"):
        untrained_codes("ste", u, i, 16)
    with pytest.raises(ValueError, match="bits must be a positive multiple of 8"):
        untrained_codes("lsh", u, i, 12)


def test_bgch_objective_is_bpr_on_codes_plus_reconstruction_on_the_ego_table():
    torch.manual_seed(0)
    enc = LightGCN(6, 5, dim=8, n_layers=1)
    model = HashModel(enc, 16, make_estimator("bgch"), objective="bgch", cont_weight=0.0, hash_layer="linear_nobias")
    users, pos, neg = _batch()
    loss, logs = model.loss(build_graph(R), users, pos, neg)
    hu, hi = (model.hash(e) for e in enc.embeddings(build_graph(R)))  # scaled codes, α_u α_i <b_u, b_i>
    s = model.log_scale.exp() / 16 * hu @ hi.T
    loss1 = torch.nn.functional.softplus(s[users, neg] - s[users, pos]).mean()
    w = enc.embedding.weight
    e = w[:6] @ w[6:].T
    probs = torch.sigmoid(torch.cat([e[users, pos], e[users, neg]]))
    loss2 = torch.nn.functional.binary_cross_entropy(probs, torch.cat([torch.ones(4), torch.zeros(4)]))
    assert logs["loss_recon"] == pytest.approx(loss2.item(), rel=1e-5)
    assert loss.item() == pytest.approx((loss1 + loss2).item(), rel=1e-5)
