"""Hashing objectives on tiny batches, against numbers computed by hand (plain ``math``)."""
from __future__ import annotations

import math

import pytest
import torch

from hashrec_utils.losses import (bpr_loss, catalogue_softmax_distill, catalogue_softmax_loss, distill_loss, hashgnn_loss, listwise_loss, pooled_listwise_loss,
                                  smooth_recall_loss)


def sig(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def test_bpr_loss_by_hand():
    got = bpr_loss(torch.tensor([2.0, 0.0]), torch.tensor([1.0, 1.0]))
    assert got.item() == pytest.approx((-math.log(sig(1.0)) - math.log(sig(-1.0))) / 2)
    # several negatives per pair broadcast against the positive
    got = bpr_loss(torch.tensor([2.0]), torch.tensor([[1.0, 3.0]]))
    assert got.item() == pytest.approx((-math.log(sig(1.0)) - math.log(sig(-1.0))) / 2)


def test_bpr_on_code_scores_by_hand():
    # 8-bit codes, score gamma <h_u, h_i> / K with gamma = 4: <hu, hi> = 6 - 2 = 4, <hu, hj> = 2 - 6 = -4
    hu = torch.tensor([[1.0, 1, 1, 1, 1, 1, 1, 1]])
    hi = torch.tensor([[1.0, 1, 1, 1, 1, 1, -1, -1]])
    hj = torch.tensor([[1.0, 1, -1, -1, -1, -1, -1, -1]])
    s_pos, s_neg = 4 * (hu * hi).sum(-1) / 8, 4 * (hu * hj).sum(-1) / 8
    assert bpr_loss(s_pos, s_neg).item() == pytest.approx(-math.log(sig(2.0 - (-2.0))))


def test_hashgnn_loss_by_hand():
    s_pos = torch.tensor([1.0, -0.5])
    s_neg = torch.tensor([[0.0, 2.0], [-1.0, 0.5]])  # 2 triplets per node; column 0 is the sampled non-link
    cross = (-math.log(sig(1.0)) - math.log(sig(-0.5))) / 2 + (-math.log(1 - sig(0.0)) - math.log(1 - sig(-1.0))) / 2
    trip = [max(0, -sig(1.0) + sig(0.0) + 0.2), max(0, -sig(1.0) + sig(2.0) + 0.2),
            max(0, -sig(-0.5) + sig(-1.0) + 0.2), max(0, -sig(-0.5) + sig(0.5) + 0.2)]
    assert hashgnn_loss(s_pos, s_neg, lambda_rank=0.5, margin=0.2).item() == pytest.approx(cross + 0.5 * sum(trip) / 4, rel=1e-6)
    assert hashgnn_loss(s_pos, s_neg, lambda_rank=0.0).item() == pytest.approx(cross, rel=1e-6)  # HashGNN_nr
    # one negative as a vector: the same as a (B, 1) column
    one = hashgnn_loss(s_pos, s_neg[:, 0], lambda_rank=1.0)
    trip1 = [max(0, -sig(1.0) + sig(0.0) + 0.2), max(0, -sig(-0.5) + sig(-1.0) + 0.2)]
    assert one.item() == pytest.approx(cross + sum(trip1) / 2, rel=1e-6)


def test_smooth_recall_loss_by_hand():
    s_pos = torch.tensor([1.0, 0.0])
    pool = torch.tensor([[0.0, 3.0, float("-inf")], [1.0, 1.0, -2.0]])  # -inf: a masked entry
    # rank_hat = 1 + (n_items / M) * sum_j sigma((s_j - s_pos) / tau_rank), tau_rank = 0.5, M = 3, n_items = 30
    r0 = 1 + 10 * (sig(-2.0) + sig(4.0) + 0.0)
    r1 = 1 + 10 * (sig(2.0) + sig(2.0) + sig(-4.0))
    expected = -(sig((20 - r0) / 2.0) + sig((20 - r1) / 2.0)) / 2
    got = smooth_recall_loss(s_pos, pool, top_n=20, n_items=30, tau_rank=0.5, tau_recall=2.0)
    assert got.item() == pytest.approx(expected, rel=1e-6)
    # without n_items the pool is the catalogue
    got = smooth_recall_loss(s_pos[:1], pool[:1, :2], top_n=2)
    assert got.item() == pytest.approx(-sig(2 - (1 + sig(-1.0) + sig(2.0))), rel=1e-6)
    with pytest.raises(ValueError, match="s_pool"):
        smooth_recall_loss(s_pos, torch.zeros(3))


def test_listwise_loss_by_hand():
    s_pos = torch.tensor([2.0, 0.0])
    pool = torch.tensor([[1.0, 0.0], [0.0, float("-inf")]])
    l0 = -math.log(math.exp(2) / (math.exp(2) + math.exp(1) + math.exp(0)))
    l1 = -math.log(1 / (1 + 1))
    assert listwise_loss(s_pos, pool).item() == pytest.approx((l0 + l1) / 2, rel=1e-6)
    with pytest.raises(ValueError, match="s_pool"):
        listwise_loss(s_pos, torch.zeros(2))


def test_pooled_listwise_loss_by_hand():
    # one user, pool items (a, b, a) with scores (1, 0, 1); pair 0's positive is a (twice in the pool,
    # score 1), pair 1's is c (absent, score 2)
    s_rows = torch.tensor([[1.0, 0.0, 1.0]])
    inv, hits, s_pos = torch.tensor([0, 0]), torch.tensor([2, 0]), torch.tensor([1.0, 2.0])
    l0 = -math.log(math.exp(1) / (math.exp(1) + math.exp(0)))            # pool minus both a's: {b}
    l1 = -math.log(math.exp(2) / (math.exp(2) + 2 * math.exp(1) + 1))    # the whole pool
    assert pooled_listwise_loss(s_pos, s_rows, inv, hits).item() == pytest.approx((l0 + l1) / 2, rel=1e-6)
    with pytest.raises(ValueError, match="s_rows"):
        pooled_listwise_loss(s_pos, s_rows[0], inv, hits)


def test_pooled_listwise_loss_equals_the_masked_per_pair_loss():
    """Same value and gradients as listwise_loss over each pair's row of the pool, positive masked."""
    g = torch.Generator().manual_seed(0)
    n_users, n_items, batch = 5, 12, 40
    user_codes = torch.randn(n_users, 8, dtype=torch.float64, generator=g)
    item_codes = torch.randn(n_items, 8, dtype=torch.float64, generator=g)
    users = torch.randint(0, n_users, (batch,), generator=g)
    pos = torch.randint(0, n_items, (batch,), generator=g)
    pool = torch.randint(0, n_items, (9,), generator=g)  # with repeats, positives drawn in
    ordered = pool.sort().values
    hits = torch.searchsorted(ordered, pos, right=True) - torch.searchsorted(ordered, pos)
    assert hits.max() >= 1

    def both(uc, ic):
        s_rows = uc @ ic[pool].T
        s_pos = (uc[users] * ic[pos]).sum(-1)
        masked = s_rows[users].masked_fill(pos[:, None] == pool[None, :], float("-inf"))
        return pooled_listwise_loss(s_pos, s_rows, users, hits), listwise_loss(s_pos, masked)

    a = user_codes.clone().requires_grad_()
    b = item_codes.clone().requires_grad_()
    fast, ref = both(a, b)
    assert fast.item() == pytest.approx(ref.item(), rel=1e-10)
    grads_fast = torch.autograd.grad(fast, (a, b))
    grads_ref = torch.autograd.grad(both(a, b)[1], (a, b))
    for x, y in zip(grads_fast, grads_ref):
        torch.testing.assert_close(x, y, rtol=1e-8, atol=1e-10)


def test_catalogue_softmax_loss_by_hand():
    # two users over three items; pairs (u0, i0), (u0, i2), (u1, i1)
    s_rows = torch.tensor([[1.0, 0.0, 2.0], [0.0, 0.0, 0.0]])
    inv, pos = torch.tensor([0, 0, 1]), torch.tensor([0, 2, 1])
    lse0 = math.log(math.e + 1 + math.e**2)
    expected = ((lse0 - 1.0) + (lse0 - 2.0) + math.log(3.0)) / 3
    assert catalogue_softmax_loss(s_rows, inv, pos).item() == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match="s_rows"):
        catalogue_softmax_loss(s_rows[0], inv, pos)
    with pytest.raises(ValueError, match="inv, pos"):
        catalogue_softmax_loss(s_rows, inv, pos[:2])


def test_catalogue_softmax_loss_matches_autograd_and_listwise():
    """The hand-written backward gives autograd's gradients of logsumexp(s)[inv] − s[inv, pos], and
    the value is listwise_loss over each pair's row of the catalogue with the positive masked."""
    g = torch.Generator().manual_seed(1)
    n_users, n_items, batch = 6, 10, 50
    users = torch.randint(0, n_users, (batch,), generator=g)
    pos = torch.randint(0, n_items, (batch,), generator=g)
    uniq, inv = torch.unique(users, return_inverse=True)
    a = torch.randn(n_users, 4, dtype=torch.float64, generator=g)[uniq].requires_grad_()
    b = torch.randn(n_items, 4, dtype=torch.float64, generator=g).requires_grad_()
    fused = catalogue_softmax_loss(a @ b.T, inv, pos)
    s = a @ b.T
    ref = (torch.logsumexp(s, dim=1)[inv] - s[inv, pos]).mean()
    masked = s[inv].masked_fill(torch.arange(n_items)[None, :] == pos[:, None], float("-inf"))
    assert fused.item() == pytest.approx(ref.item(), rel=1e-12)
    assert fused.item() == pytest.approx(listwise_loss(s[inv, pos], masked).item(), rel=1e-12)
    for x, y in zip(torch.autograd.grad(fused, (a, b)), torch.autograd.grad(ref, (a, b))):
        torch.testing.assert_close(x, y, rtol=1e-10, atol=1e-12)
    rows = torch.randn(3, 5, dtype=torch.float64, generator=g, requires_grad=True)
    assert torch.autograd.gradcheck(lambda r: catalogue_softmax_loss(r, torch.tensor([0, 2, 2, 1]), torch.tensor([4, 0, 0, 3])), (rows,))


def test_catalogue_softmax_distill_matches_listwise_plus_kl():
    """Both outputs and their gradients (any mix of the two) against autograd through
    logsumexp − s[inv, pos] and distill_loss: cross-entropy − teacher entropy is the KL."""
    g = torch.Generator().manual_seed(2)
    n_users, n_items, batch = 5, 9, 30
    inv = torch.randint(0, n_users, (batch,), generator=g)
    pos = torch.randint(0, n_items, (batch,), generator=g)
    teacher = torch.randn(n_users, n_items, dtype=torch.float64, generator=g)
    probs = torch.softmax(teacher, dim=1)
    entropy = -(probs * probs.log()).sum(1).mean()
    a = torch.randn(n_users, 4, dtype=torch.float64, generator=g).requires_grad_()
    b = torch.randn(n_items, 4, dtype=torch.float64, generator=g).requires_grad_()
    hard, cross = catalogue_softmax_distill(a @ b.T, inv, pos, probs)
    s = a @ b.T
    ref_hard = (torch.logsumexp(s, dim=1)[inv] - s[inv, pos]).mean()
    ref_kl = distill_loss(s, teacher)
    assert hard.item() == pytest.approx(ref_hard.item(), rel=1e-12)
    assert (cross - entropy).item() == pytest.approx(ref_kl.item(), rel=1e-10)
    for w in (0.0, 0.7):
        got = torch.autograd.grad(hard + w * cross, (a, b), retain_graph=True)
        want = torch.autograd.grad(ref_hard + w * ref_kl, (a, b), retain_graph=True)
        for x, y in zip(got, want):
            torch.testing.assert_close(x, y, rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="soft targets must have the shape"):
        catalogue_softmax_distill(s, inv, pos, probs[:, :3])


def test_distill_loss_by_hand():
    teacher = torch.tensor([[2.0, 0.0]])
    student = torch.tensor([[0.0, 0.0]])
    p = [math.exp(1) / (math.exp(1) + 1), 1 / (math.exp(1) + 1)]  # softmax(teacher / 2)
    kl = sum(pi * math.log(pi / 0.5) for pi in p)
    assert distill_loss(student, teacher, tau=2.0).item() == pytest.approx(kl, rel=1e-6)
    assert distill_loss(teacher, teacher).item() == pytest.approx(0.0, abs=1e-7)
    with pytest.raises(ValueError, match="one shape"):
        distill_loss(student, torch.zeros(1, 3))


def test_losses_pass_gradcheck():
    torch.manual_seed(0)
    s_pos = torch.randn(3, dtype=torch.float64, requires_grad=True)
    pool = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: listwise_loss(a, b), (s_pos, pool))
    assert torch.autograd.gradcheck(lambda a, b: smooth_recall_loss(a, b, top_n=2, tau_rank=0.5), (s_pos, pool))
    assert torch.autograd.gradcheck(lambda a, b: hashgnn_loss(a, b, lambda_rank=0.5), (s_pos, pool))
    teacher = torch.randn(3, 4, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda b: distill_loss(b, teacher, tau=0.5), (pool,))
