"""Codes for anyone's model: distil a user's own embeddings into K-bit item codes and a searchable index.

Input: ``user (n_users, d)`` and ``item (n_items, d)`` float arrays whose inner product is the model's
score (a two-tower network, matrix factorisation, a LightGCN run's ``embeddings.npz``), optionally the
items each user has seen (excluded from search and from the distillation targets) and a test split
(for the report's recall). Output: a :class:`~.searcher.Searcher` that maps a user embedding of the
same model, seen in distillation or not, to its top-k items from ``bits/8`` bytes an item, saved in a
folder and loaded back with :func:`load`, and a report (:mod:`.report`) on users held out of distillation.
Two codes of ``bits/8`` bytes an item: the student's ±1 codes (Hamming search of ``sign(W e_u + b)``) and
an additive code of the item embeddings (asymmetric search of ``e_u`` itself, the default;
:mod:`hashrec_utils.hashing.additive`).

* :mod:`.inputs`: checks of everything read (one clear error, nothing written);
* :mod:`.fit`: the student (hash layer on the user embedding, item codes) and its training; the additive
  item code (:func:`~.fit.fit_item_code`, its beam chosen on the validation users);
* :mod:`.searcher`: search in each mode, the folder it saves, :func:`load`;
* :mod:`.report`: share of the model's exact top-k found, throughput against exact search, recall.

``python -m hashrec_utils distill --embeddings FILE.npz --bits 64 --out DIR`` runs :func:`distill`.
"""
from __future__ import annotations

import sys

from ..settings import DataShape, HashSettings
from ..utils import write_json
from .fit import DistillSettings, fit_item_code, fit_student, split_users
from .inputs import check_embeddings, check_interactions, check_out, read_embeddings, read_interactions
from .report import format_report, make_report
from .searcher import MODES, Searcher, load

__all__ = ["distill", "settings_for", "load", "Searcher", "DistillSettings", "MODES", "read_embeddings",
           "read_interactions", "make_report", "format_report", "DISTILL_EPOCHS"]

# epochs of distillation per profile (a step is a user batch's scores over the catalogue or its pool);
# on MovieLens-1M PureSVD (4.8 k users) 30 epochs take about 3 min on two cores
DISTILL_EPOCHS = {"quick": 4, "default": 30, "full": 60}


def _memory_config(settings: DistillSettings, dim: int):
    """The :class:`~hashrec_utils.training.TrainConfig` whose memory estimate bounds a distillation step:
    the table objective with the teacher over all items (or the pool), on a table of the embeddings."""
    from ..training import TrainConfig

    hp = {"objective": "softmax", "n_negatives": settings.pool, "cont_weight": 0.0, "continuous": "init",
          "distill": settings.distill, "init": "embeddings"}
    return TrainConfig(dataset="distill", hash_method=settings.estimator, bits=settings.bits, dim=dim,
                       batch_size=settings.batch_size, hash_params=hp)


def settings_for(n_users: int, n_items: int, dim: int, *, bits: int = 64, profile: str = "default",
                 budget_bytes: float | None = None, **overrides) -> tuple[DistillSettings, DataShape]:
    """The :class:`DistillSettings` of data of this size: the batch (pairs of user and target, the
    profile's hash steps an epoch) and the pool from :meth:`~hashrec_utils.settings.HashSettings.of`
    (within the memory budget, the same model :func:`hashrec_utils.memory.check_memory` applies),
    :data:`DISTILL_EPOCHS`; ``overrides`` (fields of :class:`DistillSettings`) on top. Returns the
    settings and the :class:`~hashrec_utils.settings.DataShape` they were sized for (the training users)."""
    from dataclasses import fields

    unknown = set(overrides) - {f.name for f in fields(DistillSettings)}
    if unknown:
        raise ValueError(f"unknown distillation setting(s): {', '.join(sorted(unknown))} "
                         f"(known: {', '.join(f.name for f in fields(DistillSettings))})")
    base = DistillSettings(bits=bits)
    targets = int(overrides.get("targets", base.targets))
    n_train = max(1, round(n_users * (1 - base.holdout_fraction - base.valid_fraction)))
    shape = DataShape(int(n_train), int(n_items), int(n_train * targets))
    chosen = HashSettings.of(profile, shape, budget_bytes=budget_bytes, distill=True, dim=dim)
    derived = {"batch_size": chosen.batch_size, "pool": chosen.n_negatives, "epochs": DISTILL_EPOCHS[profile]}
    return DistillSettings(bits=bits, **{**derived, **overrides}), shape


def distill(user_emb, item_emb, bits: int = 64, *, interactions=None, test=None, out=None, keep_float: bool = False,
            profile: str = "default", seed: int = 0, progress: bool = True, budget_bytes: float | None = None,
            **overrides) -> Searcher:
    """Distil ``user_emb`` / ``item_emb`` (their inner product is the score) into ``bits``-bit item codes.

    ``interactions``: a sparse ``(n_users, n_items)`` of seen items (excluded from search and from the
    targets; without it the model's own top items are the targets); ``test``: held-out items of the same
    users, for the report's recall. Users are split by ``seed`` into training, validation (the kept
    epoch) and held out (the report). Everything is checked, and the memory estimated against the
    budget, before any work; with ``out`` the searcher, ``report.json`` and ``history.json`` are
    written there (atomically, the manifest last). Returns the :class:`Searcher`, its ``report`` and
    ``history`` as attributes. ``overrides``: :class:`DistillSettings` fields.
    """
    from ..memory import check_memory

    k = int(overrides.get("k", 20))
    user, item = check_embeddings(user_emb, item_emb, k)
    seen = None if interactions is None else check_interactions(interactions, len(user), len(item), "interactions")
    test = None if test is None else check_interactions(test, len(user), len(item), "test")
    if out is not None:
        out = check_out(out)
    settings, shape = settings_for(len(user), len(item), user.shape[1], bits=bits, profile=profile,
                                   budget_bytes=budget_bytes, seed=seed, **overrides)
    check_memory(_memory_config(settings, user.shape[1]), shape,
                 budget=budget_bytes)  # refuse before any work, naming what to change
    split = split_users(len(user), settings.holdout_fraction, settings.valid_fraction, settings.seed)
    if progress:
        print(f"distill: {len(user):,} users ({len(split.train):,} distilled on, {len(split.valid):,} validation, "
              f"{len(split.holdout):,} held out) x {len(item):,} items, dim {user.shape[1]} -> {bits}-bit codes; "
              f"batch_size {settings.batch_size:,}, pool {settings.pool or 'all items'}, {settings.epochs} epochs",
              file=sys.stderr)
    student, history, kept = fit_student(user, item, seen, split, settings, progress=progress)
    code, code_info = fit_item_code(user, item, seen, split, settings, progress=progress)
    info = {"settings": settings.to_json(), "kept_epoch": kept, "n_users": len(user), "additive": code_info,
            "users": {"train": len(split.train), "valid": len(split.valid), "holdout": len(split.holdout)}}
    searcher = student.searcher(keep_float, info, code)
    h = split.holdout
    report = make_report(searcher, user[h], item, None if seen is None else seen[h],
                         None if test is None else test[h], k=k)
    if out is not None:
        write_json(out / "history.json", history)
        write_json(out / "report.json", report)
        searcher.save(out)
    searcher.report, searcher.history = report, history
    return searcher
