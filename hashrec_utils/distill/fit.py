"""Distil a model's scores ``⟨e_u, e_i⟩`` into K-bit item codes and a query transform of the user embedding.

The student (:class:`DistillStudent`) is hashrec's table objective with the query side tied to the
user's embedding, so that users who took no part in distillation are served too:

    a_u = W e_u + b                      (the hash layer on the frozen user embedding; the query)
    h_u = est(a_u),  h_i = est(c_i)      (training codes, :mod:`hashrec_utils.hashing.estimators`)
    s(u, i) = γ ⟨h_u, h_i⟩ / K           (the code score; γ learnt)

``asymmetric`` (default): the users' side of the code score is the real query ``a_u`` itself (scaled
to mean magnitude 1), as asymmetric search scores it, instead of its training codes (chosen on
validation: on MovieLens-1M's PureSVD it finds 0.56 of the teacher's top-20 against 0.535).

Start (``init``): ``transform`` (default) starts ``W`` and the item table at the transform code of the
embeddings (:func:`hashrec_utils.hashing.transform.fit_transform_code`, fitted on the training users:
bits allocated over the principal axes by variance, several bits on the first axes), ``random`` at a
random hyperplane hash ``W₀``. The start is validated as epoch 0 and kept when no epoch beats it
(on MovieLens-1M, 64 bits, validation share of the teacher's top-20 found: LightGCN 0.786 at the
start against 0.724 at best trained from it; PureSVD 0.559 at the start, 0.582 trained from it
against 0.56 from ``random``).

Item side (``item_side``): ``table`` (default: free item pre-activations ``c_i``, started at
``W₀ e_i`` or at the transform code; the catalogue is known when distilling), ``layer`` (a second hash layer,
``c_i = W' e_i + b'``) or ``shared`` (``c_i = W e_i + b``). The loss is the study's table objective
(:data:`hashrec_utils.experiments.TABLE_OBJECTIVE`): the listwise softmax of the code scores over the
catalogue at each user's distillation targets plus ``distill`` × KL from the teacher's softmax

    p_u = softmax((⟨e_u, e_·⟩ − μ_u) / (σ_u τ))      (μ_u, σ_u: the mean and spread of u's scores)

with the user's seen items removed from both the targets and ``p_u``. Standardising by ``σ_u`` makes
``τ`` (``temperature``) mean the same for any model's score scale. Targets: each user's top
``targets`` unseen items by the teacher. Over all items (:func:`~hashrec_utils.losses.catalogue_softmax_distill`)
when the score matrices fit the budget, else over a pool of items drawn per step
(:func:`~hashrec_utils.losses.pooled_listwise_loss`, :func:`~hashrec_utils.losses.distill_loss`), as
:func:`hashrec_utils.settings.HashSettings.of` chooses.

Users are split once by the seed: ``holdout`` (the report's users, untouched here), ``valid`` (the
kept epoch: the best share of the teacher's top-20 that Hamming search of the student's codes finds,
the mode they serve; and the additive code's beam, :func:`fit_item_code`) and the rest, whose
embeddings train. The test split is never read here.

Asymmetric search does not use the student: it scores the user's embedding against an additive code of
the items (:mod:`hashrec_utils.hashing.additive`, :func:`fit_item_code`), which keeps more of the
model's ranking at the same bytes (MovieLens-1M, 64 bits, held-out users: PureSVD 0.569 of the
exact top-20 with the student's ±1 codes scored asymmetrically against 0.92 with the additive code).
"""
from __future__ import annotations

import copy
import math
import sys
import time
from dataclasses import asdict, dataclass

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn
from tqdm.auto import tqdm

from ..hashing import HashLayer, make_estimator, pack_codes
from ..hashing.additive import BEAMS, AdditiveCode, fit_additive_code
from ..hashing.transform import TransformCode, fit_transform_code
from ..losses import catalogue_softmax_distill, distill_loss, pooled_listwise_loss
from ..retrieval import exact_topk
from ..utils import seed_everything
from .searcher import Searcher

__all__ = ["DistillSettings", "DistillStudent", "UserSplit", "split_users", "teacher_targets", "top_share", "fit_item_code",
           "fit_student", "ITEM_SIDES"]

ITEM_SIDES = ("table", "layer", "shared")
INITS = ("transform", "random")


@dataclass(frozen=True)
class DistillSettings:
    """Everything a distillation run chooses (:func:`hashrec_utils.distill.settings_for` derives them from
    the data's size). ``batch_size``: pairs (user, target) a step; ``pool``: items a step's softmax
    scores (0: all); ``temperature``: τ of the standardised teacher; ``targets``: teacher items a user."""

    bits: int = 64
    batch_size: int = 8192
    pool: int = 0
    epochs: int = 40
    lr: float = 0.01
    lr_schedule: str = "cosine"
    temperature: float = 0.5
    distill: float = 1.0
    targets: int = 20
    estimator: str = "signswish"
    estimator_params: tuple = (("beta", 10.0),)
    item_side: str = "table"
    init: str = "transform"
    asymmetric: bool = True
    scale: float = 8.0
    eval_every: int = 2
    k: int = 20
    holdout_fraction: float = 0.1
    valid_fraction: float = 0.1
    seed: int = 0

    def __post_init__(self):
        if self.bits <= 0 or self.bits % 8:
            raise ValueError(f"bits must be a positive multiple of 8; got {self.bits}")
        if self.init not in INITS:
            raise ValueError(f"init must be one of {', '.join(INITS)}; got {self.init!r}")
        if self.init == "transform" and self.item_side != "table":
            raise ValueError(f"init='transform' starts the item table: it needs item_side='table'; got {self.item_side!r}")
        if self.item_side not in ITEM_SIDES:
            raise ValueError(f"item_side must be one of {', '.join(ITEM_SIDES)}; got {self.item_side!r}")
        for name in ("batch_size", "epochs", "targets", "eval_every", "k"):
            if int(getattr(self, name)) <= 0:
                raise ValueError(f"{name} must be a positive integer; got {getattr(self, name)!r}")
        if self.pool < 0 or self.lr <= 0 or self.temperature <= 0:
            raise ValueError(f"need pool >= 0, lr > 0, temperature > 0; got {self.pool}, {self.lr}, {self.temperature}")
        if not (0 < self.holdout_fraction < 1 and 0 < self.valid_fraction < 1
                and self.holdout_fraction + self.valid_fraction < 1):
            raise ValueError(f"holdout_fraction and valid_fraction must be in (0, 1) with a sum below 1; got "
                             f"{self.holdout_fraction}, {self.valid_fraction}")

    def to_json(self) -> dict:
        out = asdict(self)
        out["estimator_params"] = dict(self.estimator_params)
        return out


@dataclass(frozen=True)
class UserSplit:
    """Disjoint user ids: ``train`` (distilled on), ``valid`` (the kept epoch), ``holdout`` (the report)."""

    train: np.ndarray
    valid: np.ndarray
    holdout: np.ndarray


def split_users(n_users: int, holdout_fraction: float, valid_fraction: float, seed: int) -> UserSplit:
    """A seeded permutation of the users cut into holdout, valid and train (each at least one user)."""
    if n_users < 3:
        raise ValueError(f"distillation needs at least 3 users (train, validation, held out); got {n_users}")
    order = np.random.default_rng([seed, 32]).permutation(n_users)
    n_hold = min(n_users - 2, max(1, round(holdout_fraction * n_users)))
    n_valid = min(n_users - n_hold - 1, max(1, round(valid_fraction * n_users)))
    hold, valid, train = order[:n_hold], order[n_hold : n_hold + n_valid], order[n_hold + n_valid :]
    return UserSplit(np.sort(train), np.sort(valid), np.sort(hold))


def _rows(matrix: sp.csr_matrix | None, users: np.ndarray) -> sp.csr_matrix | None:
    return None if matrix is None else matrix[users]


def teacher_targets(user: np.ndarray, item: np.ndarray, k: int, seen: sp.csr_matrix | None) -> np.ndarray:
    """The model's own top-``k`` items of each user, seen items excluded (``-1`` padding): ids ``(n, k)``."""
    return exact_topk(user, item, min(k, len(item)), seen)[1]


def top_share(found: np.ndarray, truth: np.ndarray) -> float:
    """The share of the truth's ids (``-1`` padding ignored) that ``found`` holds, over all rows."""
    hits = total = 0
    for f, t in zip(found, truth):
        t = t[t >= 0]
        hits += len(np.intersect1d(f[f >= 0], t, assume_unique=True))
        total += len(t)
    return hits / max(total, 1)


class DistillStudent(nn.Module):
    """The query transform ``a = W e_u + b`` and the item codes (module docstring), trained on frozen embeddings.

    ``user``, ``item``: the teacher's float32 embeddings (kept as buffers, never trained).
    """

    def __init__(self, user: np.ndarray, item: np.ndarray, settings: DistillSettings, start: TransformCode | None = None):
        super().__init__()
        self.settings = settings
        estimator = make_estimator(settings.estimator, **dict(settings.estimator_params))
        dim = user.shape[1]
        self.hash = HashLayer(dim, settings.bits, estimator)
        self.register_buffer("user", torch.from_numpy(user))
        self.register_buffer("item", torch.from_numpy(item))
        self.log_scale = nn.Parameter(torch.tensor(math.log(settings.scale)))
        self.item_layer = HashLayer(dim, settings.bits, estimator) if settings.item_side == "layer" else None
        if settings.item_side == "table":
            with torch.no_grad():
                table = self.hash.linear(self.item).clone()
                if start is not None:  # the transform code: its query rows and item signs, at the random start's scale
                    margin = table.abs().mean()
                    query = torch.from_numpy(start.weight) @ self.user.T
                    self.hash.linear.weight.copy_(torch.from_numpy(start.weight) * (margin / query.abs().mean()))
                    self.hash.linear.bias.zero_()
                    table = torch.from_numpy(start.codes.astype(np.float32)) * margin
            self.item_table = nn.Parameter(table)
        else:
            self.register_parameter("item_table", None)
        # the teacher's per-user score mean and spread over the catalogue: ⟨e_u, ī⟩ and (e_uᵀ Σ e_u)^½
        centred = self.item - self.item.mean(0)
        cov = centred.T @ centred / len(item)
        mean = self.user @ self.item.mean(0)
        spread = ((self.user @ cov) * self.user).sum(1).clamp_min(1e-12).sqrt()
        self.register_buffer("t_mean", mean)
        self.register_buffer("t_spread", spread)
        self.total_steps = 1

    def item_preact(self, ids: torch.Tensor | None = None) -> torch.Tensor:
        """The items' pre-activations ``c_i`` (all items, or ``ids``)."""
        if self.item_table is not None:
            return self.item_table if ids is None else self.item_table[ids]
        emb = self.item if ids is None else self.item[ids]
        layer = self.item_layer if self.item_layer is not None else self.hash
        return layer.linear(emb)

    def teacher_logits(self, users: torch.Tensor, items: torch.Tensor | None = None) -> torch.Tensor:
        """``(⟨e_u, e_i⟩ − μ_u) / (σ_u τ)`` for ``users`` against all items (or ``items``)."""
        emb = self.item if items is None else self.item[items]
        scores = self.user[users] @ emb.T
        return (scores - self.t_mean[users, None]) / (self.t_spread[users, None] * self.settings.temperature)

    def loss(self, users: torch.Tensor, pos: torch.Tensor, seen: sp.csr_matrix | None, step: int,
             generator: torch.Generator) -> tuple[torch.Tensor, dict]:
        """The table objective (module docstring) on a batch of ``(user, target)`` pairs."""
        t = min(step / max(self.total_steps, 1), 1.0)
        uniq, inv = torch.unique(users, return_inverse=True)
        if self.settings.asymmetric:  # trained as asymmetric search scores: the real query against the codes
            a = self.hash.linear(self.user[uniq])
            h_u = a / a.detach().abs().mean(-1, keepdim=True).clamp_min(1e-8)
        else:
            h_u = self.hash(self.user[uniq], t)
        n_items, pool = self.item.shape[0], self.settings.pool
        pooled = 0 < pool < n_items
        ids = torch.randint(0, n_items, (pool,), generator=generator) if pooled else None
        h_items = self.hash.estimator.forward(self.item_preact(ids), t)
        gamma = self.log_scale.exp() / self.settings.bits
        s_rows = (h_u * gamma) @ h_items.T
        logits = self.teacher_logits(uniq, ids)
        if seen is not None:
            mask = _seen_mask(seen, uniq.numpy(), None if ids is None else ids.numpy(), n_items)
            logits = logits.masked_fill(mask, float("-inf"))
        if not pooled:
            with torch.no_grad():
                logp = torch.log_softmax(logits, 1)
                probs = logp.exp()
                entropy = -torch.where(probs > 0, probs * logp, torch.zeros_like(probs)).sum(1)
            hard, cross = catalogue_softmax_distill(s_rows, inv, pos, probs)
            kd = cross - entropy.mean()
        else:
            ordered = ids.sort().values
            hits = torch.searchsorted(ordered, pos, right=True) - torch.searchsorted(ordered, pos)
            h_pos = self.hash.estimator.forward(self.item_preact(pos), t)
            s_pos = gamma * (h_u[inv] * h_pos).sum(1)
            hard = pooled_listwise_loss(s_pos, s_rows, inv, hits)
            kd = distill_loss(s_rows, logits)
        total = hard + self.settings.distill * kd
        return total, {"loss_hash": float(hard.detach()), "loss_distill": float(kd.detach())}

    @torch.no_grad()
    def searcher(self, keep_float: bool = False, info: dict | None = None,
                 additive: "AdditiveCode | None" = None) -> Searcher:
        """The trained query transform and the items' packed sign codes as a :class:`Searcher`, with the
        ``additive`` item code of asymmetric search where given."""
        linear = self.hash.linear
        return Searcher(linear.weight.detach().numpy(), linear.bias.detach().numpy(),
                        pack_codes(self.item_preact()), self.item.numpy() if keep_float else None,
                        None if additive is None else (additive.codes, additive.codebooks), info=info)


def _seen_mask(seen: sp.csr_matrix, users: np.ndarray, items: np.ndarray | None, n_items: int) -> torch.Tensor:
    """Boolean ``(len(users), n_items or len(items))``: True where the user has seen the item."""
    rows = seen[users]
    if items is None:
        mask = np.zeros((len(users), n_items), bool)
        r = np.repeat(np.arange(len(users)), np.diff(rows.indptr))
        mask[r, rows.indices] = True
        return torch.from_numpy(mask)
    return torch.from_numpy(rows[:, items].toarray() > 0)


def _lr(settings: DistillSettings, step: int, total: int) -> float:
    if settings.lr_schedule == "constant":
        return settings.lr
    return settings.lr * 0.5 * (1.0 + math.cos(math.pi * min(step, total) / max(total, 1)))


def _valid_shares(student: DistillStudent, users: np.ndarray, seen: sp.csr_matrix | None,
                  truth: np.ndarray) -> dict[str, float]:
    """The share of the teacher's top-k (``truth``) that each code-only mode finds for ``users``, the
    student in eval mode for it and back in training mode after."""
    student.eval()
    searcher = student.searcher()
    student.train()
    emb, ex, k = student.user.numpy()[users], _rows(seen, users), truth.shape[1]
    return {mode: top_share(searcher.search(emb, k, ex, mode)[1], truth) for mode in ("hamming", "asymmetric")}


def fit_student(user: np.ndarray, item: np.ndarray, seen: sp.csr_matrix | None, split: UserSplit,
                settings: DistillSettings, *, progress: bool = True) -> tuple[DistillStudent, list[dict], int]:
    """Train a :class:`DistillStudent` on ``split.train``'s embeddings; returns it with the weights of the
    validation epoch that found the largest share of the teacher's top-k (best code-only mode),
    the per-epoch history and that epoch. Same seed, same numbers."""
    seed_everything(settings.seed)
    start = fit_transform_code(user[split.train], item, settings.bits) if settings.init == "transform" else None
    student = DistillStudent(user, item, settings, start)
    targets = teacher_targets(user[split.train], item, settings.targets, _rows(seen, split.train))
    pair_users = np.repeat(split.train, targets.shape[1]).astype(np.int64)
    pair_items = targets.reshape(-1)
    keep = pair_items >= 0
    pair_users, pair_items = pair_users[keep], pair_items[keep]
    if len(pair_users) == 0:
        raise ValueError("no distillation targets: every training user has seen every item")
    truth = teacher_targets(user[split.valid], item, settings.k, _rows(seen, split.valid))
    optimizer = torch.optim.Adam([p for p in student.parameters() if p.requires_grad], lr=settings.lr, foreach=True)
    # batches of whole users (all of a user's targets in one step): a step's score matrix is then
    # (batch / targets) users x items, not one row for nearly every user as uniform pairs would give
    per_step = max(1, settings.batch_size // settings.targets)
    train_users = np.unique(pair_users)
    starts = np.searchsorted(pair_users, train_users)
    ends = np.append(starts[1:], len(pair_users))
    steps = max(1, -(-len(train_users) // per_step))
    student.total_steps = total = settings.epochs * steps
    shares = _valid_shares(student, split.valid, seen, truth)  # the start (the transform code) is a candidate
    history = [{"epoch": 0, **{f"valid_top{settings.k}_{m}": v for m, v in shares.items()}, "seconds": 0.0}]
    # the student's codes serve Hamming search (asymmetric search scores the additive code, fitted apart)
    best, best_state, best_epoch, step = shares["hamming"], copy.deepcopy(student.state_dict()), 0, 0
    t0 = time.perf_counter()
    bar = tqdm(range(settings.epochs), desc="distill", unit="epoch", disable=not progress, dynamic_ncols=True)
    for epoch in bar:
        rng = np.random.default_rng([settings.seed, epoch])
        gen = torch.Generator().manual_seed(settings.seed * 1_000_003 + epoch)
        order = rng.permutation(len(train_users))
        logs_sum: dict[str, float] = {}
        for b in range(steps):
            chosen = np.sort(order[b * per_step : (b + 1) * per_step])
            idx = np.concatenate([np.arange(starts[c], ends[c]) for c in chosen])
            for group in optimizer.param_groups:
                group["lr"] = _lr(settings, step, total)
            optimizer.zero_grad(set_to_none=True)
            loss, logs = student.loss(torch.from_numpy(pair_users[idx]), torch.from_numpy(pair_items[idx]), seen, step, gen)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"distillation loss became {float(loss)} at epoch {epoch + 1}: lower lr ({settings.lr})")
            loss.backward()
            optimizer.step()
            step += 1
            for key, value in {"loss": float(loss.detach()), **logs}.items():
                logs_sum[key] = logs_sum.get(key, 0.0) + value / steps
        row = {"epoch": epoch + 1, **logs_sum, "seconds": time.perf_counter() - t0}
        if (epoch + 1) % settings.eval_every == 0 or epoch + 1 == settings.epochs:
            shares = _valid_shares(student, split.valid, seen, truth)
            row.update({f"valid_top{settings.k}_{m}": v for m, v in shares.items()})
            if shares["hamming"] > best:  # ties keep the earlier epoch
                best, best_epoch, best_state = shares["hamming"], epoch + 1, copy.deepcopy(student.state_dict())
            bar.set_postfix(loss=f"{row['loss']:.4f}", valid_share=f"{shares['hamming']:.4f}")
        history.append(row)
    bar.close()
    student.load_state_dict(best_state)
    student.eval()
    if progress:
        tqdm.write(f"distill: kept epoch {best_epoch} (valid share of the teacher's top-{settings.k}, Hamming: "
                   f"{best:.4f})", file=sys.stderr)
    return student, history, best_epoch


def fit_item_code(user: np.ndarray, item: np.ndarray, seen: sp.csr_matrix | None, split: UserSplit,
                  settings: DistillSettings, *, progress: bool = True) -> tuple[AdditiveCode, dict]:
    """The additive item code of asymmetric search (:mod:`hashrec_utils.hashing.additive`), its encoder's
    beam chosen among :data:`~hashrec_utils.hashing.additive.BEAMS` on the validation users' share of the
    teacher's top-k (ties: the narrower beam); returns it with ``{"beam", "valid_share": {beam: share}}``.
    Fitted on the items alone; the test split and the held-out users are not read."""
    from ..retrieval.additive import AdditiveCodeIndex

    users, ex = user[split.valid], _rows(seen, split.valid)
    truth = teacher_targets(users, item, settings.k, ex)
    best, shares = None, {}
    for beam in BEAMS:
        code = fit_additive_code(item, settings.bits, beam=beam, seed=settings.seed)
        ids = AdditiveCodeIndex().build((code.codes, code.codebooks)).search(users, min(settings.k, len(item)), ex)[1]
        shares[str(beam)] = top_share(ids, truth)
        if best is None or shares[str(beam)] > shares[str(best.beam)]:
            best = code
    if progress:
        tqdm.write(f"distill: additive item code, beam {best.beam} (valid share of the teacher's top-{settings.k}: "
                   f"{shares[str(best.beam)]:.4f})", file=sys.stderr)
    return best, {"beam": best.beam, "valid_share": shares}
