"""Settings derived from the data's size, never from its name.

A profile (``quick|default|full``) says how much work a study buys; the data's
shape (:class:`DataShape`: users, items, train pairs) turns it into numbers:

* **batch sizes** from a target number of steps an epoch,
  ``b = clip(2^round(log2(n_train / steps)), 1,024, 65,536)`` — on
  MovieLens-1M (717 k train pairs) 22 steps give LightGCN's 32,768 and 11 steps
  the hash models' 65,536; Gowalla's 810 k pairs give the same;
* **the sampled pool** of the hash models' listwise softmax
  (:func:`pool_size`): all items when the all-items path fits both the
  profile's score cap (:data:`MAX_STEP_SCORES` scores per matrix, the step's
  time) and the memory budget, else the largest power of two of items
  (≥ 1,024) that fits;
* **the estimators' schedules** (:data:`SCHEDULES`) as fractions of training,
  so they are the same for any data size and run length;
* **the memory budget** (:func:`memory_budget_bytes`): a third of the machine's
  physical memory (fixed per machine, so the chosen settings are too; the estimate is an upper
  bound, so a run stays well inside it — 8 GiB on a 24 GiB machine), or ``HASHREC_MEMORY_BUDGET`` (bytes, or ``"6GiB"``, ``"512MB"`` …).

Everything here is a frozen dataclass or a pure function of its arguments,
except :func:`memory_budget_bytes` (reads the machine) and
:func:`dataset_shape` (reads published counts or, for a folder, the data).
"""
from __future__ import annotations

import math
import os
import re
import sys
from dataclasses import dataclass, field

__all__ = [
    "DataShape", "LightGCNSettings", "HashSettings", "SCHEDULES", "MAX_STEP_SCORES", "MIN_POOL",
    "batch_for_steps", "distinct_users", "score_bytes", "pool_size", "memory_budget_bytes",
    "parse_bytes", "published_split", "dataset_shape", "train_config",
]

GiB = 1 << 30
MIN_POOL = 1024
# The all-items softmax computes (distinct users of a step × items) scores; above this many per
# matrix a step costs too long on a CPU (Gowalla's 27 k × 41 k: about a minute on two cores) and
# the pool path is taken. 2^28 scores is 1 GiB of float32.
MAX_STEP_SCORES = 1 << 28
# Estimator schedules as fractions of training (t / T of the T = epochs × steps of the run):
# guided STE p = p0 · decay^⌊stages · t/T⌋; HashNet β from beta0 to beta_end; Gumbel
# τ = max(tau_min, tau0 · decay^⌊stages · t/T⌋). One schedule whatever the data size.
SCHEDULES = {
    "guided_ste": {"p0": 1.0, "decay": 0.95, "stages": 50},
    "hashnet": {"beta0": 1.0, "beta_end": 10.0},
    "gumbel": {"tau0": 1.0, "tau_min": 0.05, "decay": 0.9, "stages": 20},
}


@dataclass(frozen=True)
class DataShape:
    """The size of a training set: ``n_users``, ``n_items``, ``n_train`` (train pairs, after valid is carved)."""

    n_users: int
    n_items: int
    n_train: int

    def __post_init__(self):
        for name in ("n_users", "n_items", "n_train"):
            value = getattr(self, name)
            if not isinstance(value, (int,)) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"DataShape.{name} must be a positive int; got {value!r}")

    @classmethod
    def of(cls, data) -> "DataShape":
        """The shape of an :class:`~hashrec_utils.data.InteractionData` (its ``train`` pairs)."""
        return cls(int(data.n_users), int(data.n_items), int(data.train.nnz))


def batch_for_steps(n_train: int, steps: float, lo: int = 1024, hi: int = 65536) -> int:
    """``clip(2^round(log2(n_train / steps)), lo, hi)``: the power-of-two batch nearest (in log) to ``steps`` an epoch."""
    if n_train <= 0 or steps <= 0:
        raise ValueError(f"need n_train > 0 and steps > 0; got {n_train}, {steps}")
    return int(min(hi, max(lo, 2 ** round(math.log2(n_train / steps)))))


def distinct_users(shape: DataShape, batch: int) -> int:
    """Expected distinct users of a batch of ``batch`` pairs drawn without replacement, degrees taken equal:
    ``n_users · (1 − (1 − b / n_train)^(n_train / n_users))`` (an upper bound: skewed degrees repeat users more)."""
    frac = min(1.0, batch / shape.n_train)
    mean_degree = shape.n_train / shape.n_users
    expected = shape.n_users * (1.0 - (1.0 - frac) ** mean_degree)
    return int(min(shape.n_users, batch, math.ceil(expected)))


# How many (distinct users × scored items) float32 matrices a hash step (loss, backward, Adam) adds
# to peak RSS, measured (ru_maxrss in a fresh process, 2-4 k users, 6-10 k items, pools 2-4 k):
# the fused all-items softmax + distillation 2.0; the pooled softmax + distillation (autograd)
# 8.2-10.2. The frozen teacher's cache peaks at 3.9 (users × items) matrices while it is built
# (scores, their log-softmax, the probabilities, the entropy's product).
SCORE_MATRICES = {"all": 2, "pool": 10, "teacher": 4}


def score_bytes(shape: DataShape, batch: int, pool: int, *, distill: bool = True, teacher_cache: bool = True) -> int:
    """Bytes of a hash step's score matrices: ``U_b × M × 4 × k`` (``M``: pool, or all items when ``pool = 0``;
    ``k``: :data:`SCORE_MATRICES`), plus with distillation over all items the frozen teacher's cached
    softmax over every user and item (``n_users × n_items × 4 × 4`` at its build: scores, log-softmax,
    probabilities, the entropy's product; measured)."""
    users = distinct_users(shape, batch)
    if pool == 0 or pool >= shape.n_items:
        total = users * shape.n_items * 4 * SCORE_MATRICES["all"]
        if distill and teacher_cache:
            total += shape.n_users * shape.n_items * 4 * SCORE_MATRICES["teacher"]
        return total
    return users * pool * 4 * SCORE_MATRICES["pool"]


def pool_size(shape: DataShape, batch: int, budget_bytes: float, *, max_scores: int | None = MAX_STEP_SCORES,
              distill: bool = True, teacher_cache: bool = True) -> int:
    """Items the listwise softmax scores per step: 0 (all items) when the all-items path fits.

    All items when ``U_b × n_items ≤ max_scores`` and :func:`score_bytes` with every item
    ≤ ``budget_bytes``; else the largest ``M = 2^j`` with ``1,024 ≤ M < n_items`` such that
    ``U_b × M ≤ max_scores`` and the pooled bytes fit (the teacher is then scored on the
    pool, no cache). If even ``M = 1,024`` does not fit, 1,024 (``check_memory`` refuses it).
    """
    users = distinct_users(shape, batch)
    cap = math.inf if max_scores is None else max_scores
    if users * shape.n_items <= cap and score_bytes(shape, batch, 0, distill=distill, teacher_cache=teacher_cache) <= budget_bytes:
        return 0
    if shape.n_items <= MIN_POOL:
        return 0  # nothing smaller to sample; the memory check decides
    pool = MIN_POOL
    while pool * 2 < shape.n_items and users * pool * 2 <= cap and score_bytes(shape, batch, pool * 2) <= budget_bytes:
        pool *= 2
    return pool


_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9, "t": 10**12,
          "tb": 10**12, "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40}


def parse_bytes(text: str, what: str = "HASHREC_MEMORY_BUDGET") -> int:
    """``"6GiB"`` → 6 · 2^30, ``"512MB"`` → 512 · 10^6, ``"1000"`` → 1000; one ValueError naming ``what`` otherwise."""
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]*)?)\s*([A-Za-z]*)\s*", str(text))
    unit = match.group(2).lower() if match else None
    if match is None or unit not in _UNITS or float(match.group(1)) <= 0:
        raise ValueError(f"{what} must be a positive number of bytes, optionally with a unit (KB, MB, GB, KiB, MiB, GiB, ...); "
                         f"got {text!r}")
    return int(float(match.group(1)) * _UNITS[unit])


def _meminfo_bytes(key: str, pages: str) -> int:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(os.sysconf(pages)) * int(os.sysconf("SC_PAGE_SIZE"))


def available_bytes() -> int:
    """Memory available to a new process right now (``MemAvailable``; elsewhere ``os.sysconf``)."""
    return _meminfo_bytes("MemAvailable", "SC_AVPHYS_PAGES")


def total_bytes() -> int:
    """The machine's physical memory (``MemTotal``; elsewhere ``os.sysconf``)."""
    return _meminfo_bytes("MemTotal", "SC_PHYS_PAGES")


def memory_budget_bytes(fraction: float = 1 / 3) -> int:
    """The bytes a run may plan to use: ``HASHREC_MEMORY_BUDGET`` if set (bytes or ``"6GiB"``), else
    ``fraction`` of the machine's physical memory (``MemTotal``).

    Total rather than available memory, because the budget chooses settings that change a run's
    result (the sampled pool): on one machine it must not depend on what else happens to be running,
    or the same seed would train a different model. What is available *now* is checked separately,
    before any work, by :func:`hashrec_utils.memory.check_memory`.
    """
    env = os.environ.get("HASHREC_MEMORY_BUDGET")
    if env:
        return parse_bytes(env)
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1]; got {fraction}")
    return int(fraction * total_bytes())


# ---- datasets -------------------------------------------------------------------------------

def published_split(dataset: str) -> bool:
    """Whether ``dataset`` is a named source distributed with its own train/test split (LightGCN's files):
    a property of the source (:data:`hashrec_utils.data.DATASETS` kind), not of its name."""
    from .data import DATASETS

    source = DATASETS.get(str(dataset))
    return source is not None and source.kind == "lightgcn-split"


def dataset_shape(dataset: str, valid_fraction: float = 0.1, max_users: int | None = None, *,
                  format: str = "auto") -> DataShape:
    """The shape a run on ``dataset`` trains on, without loading it when its counts are published.

    Published counts ``(users, items, interactions)``: ``n_train ≈ interactions · 0.8 · (1 − valid_fraction)``
    (the 80/20 split; LightGCN's published splits hold 79–80 % train), and with ``max_users`` the users
    and pairs scaled by ``max_users / users`` (items kept: an upper bound). Otherwise (a folder, the
    synthetic set) the data is loaded and measured.
    """
    from .data import DATASETS, load_dataset, subset_users

    source = DATASETS.get(str(dataset))
    if source is not None and source.counts is not None:
        users, items, interactions = source.counts
        share = 1.0 if max_users is None else min(1.0, max_users / users)
        n_train = int(round(interactions * 0.8 * (1.0 - valid_fraction) * share))
        return DataShape(int(min(users, max_users or users)), int(items), max(1, n_train))
    data = load_dataset(str(dataset), valid_fraction=valid_fraction, seed=0, format=format)
    return DataShape.of(subset_users(data, max_users))


# ---- per-profile settings ---------------------------------------------------------------------

@dataclass(frozen=True)
class LightGCNSettings:
    """LightGCN's training settings of a profile on data of a given shape (:func:`train_config`).

    A step's cost is the propagation whatever the batch, so the batch follows the profile's target
    number of steps an epoch (:func:`batch_for_steps`; :class:`hashrec_utils.profiles.LightGCNTargets`):
    ``quick`` 16, ``default`` 22, ``full`` 175 (the paper's small batches); a published split (no
    valid, a fixed budget, cosine decay) 22.
    """

    batch_size: int
    lr: float
    reg: float
    epochs: int
    eval_every: int
    patience: int
    valid_fraction: float
    lr_schedule: str = "constant"

    @staticmethod
    def valid_fraction_for(profile: str, published: bool) -> float:
        """Valid share carved from train: none on a published split (outside ``quick``), else 10 %."""
        from .profiles import get_profile

        return get_profile(profile).valid_fraction(published)

    @classmethod
    def of(cls, profile: str, shape: DataShape, *, published: bool = False) -> "LightGCNSettings":
        from .profiles import get_profile

        prof = get_profile(profile)
        t = prof.lightgcn_published if published and prof.lightgcn_published is not None else prof.lightgcn
        return cls(batch_for_steps(shape.n_train, t.steps), t.lr, t.reg, t.epochs, t.eval_every, t.patience,
                   prof.valid_fraction(published), t.lr_schedule)

    def overrides(self) -> dict:
        return {k: getattr(self, k) for k in ("batch_size", "lr", "reg", "epochs", "eval_every", "patience",
                                              "valid_fraction", "lr_schedule")}


@dataclass(frozen=True)
class HashSettings:
    """Hash-table training settings of a profile on data of a given shape (``experiments.hash_overrides``).

    ``batch_size``: 11 steps an epoch (``quick``: the whole slice at once), 1,024..65,536.
    ``n_negatives``: the pool of the listwise softmax, :func:`pool_size` under ``budget_bytes``
    (0: all items). ``pooled``: a pool is sampled (such runs train :data:`POOLED_EPOCHS`-style
    shorter budgets, decided by the caller).
    """

    batch_size: int
    n_negatives: int
    lr: float = 0.01
    lr_schedule: str = "cosine"
    patience: int = 0
    note: str = field(default="", compare=False)

    @property
    def pooled(self) -> bool:
        return self.n_negatives > 0

    @classmethod
    def of(cls, profile: str, shape: DataShape, *, budget_bytes: float | None = None, distill: bool = True,
           max_scores: int | None = MAX_STEP_SCORES, dim: int = 64, log: bool = True) -> "HashSettings":
        """The profile's batch (:func:`batch_for_steps`) and the pool that fits, both within what the
        run's fixed memory (:func:`hashrec_utils.memory.fixed_bytes`: interpreter, data, embeddings,
        evaluation) leaves of the budget: the same memory model :func:`hashrec_utils.memory.check_memory`
        applies, so derived settings are never refused. The pool shrinks first (:func:`pool_size`); if
        even :data:`MIN_POOL` items do not fit, the batch halves (down to 1,024) until they do. If nothing
        fits, the profile's batch and the smallest pool (the check then refuses, naming what to change).
        A choice the budget forced is said on stderr (``log``) and kept in ``note``."""
        from .memory import fixed_bytes, format_bytes
        from .profiles import get_profile

        batch = batch_for_steps(shape.n_train, get_profile(profile).hash_steps)
        budget = memory_budget_bytes() if budget_bytes is None else budget_bytes
        fixed = sum(fixed_bytes(shape, dim).values())
        left = budget - fixed
        scores_only = pool_size(shape, batch, budget, max_scores=max_scores, distill=distill)

        def fits(b: int, pool: int) -> bool:
            cache = distill and (pool == 0 or pool >= shape.n_items)
            return score_bytes(shape, b, pool, distill=distill, teacher_cache=cache) <= left

        chosen = batch
        pool = pool_size(shape, chosen, left, max_scores=max_scores, distill=distill)
        while not fits(chosen, pool) and chosen > 1024:
            chosen //= 2
            pool = pool_size(shape, chosen, left, max_scores=max_scores, distill=distill)
        if not fits(chosen, pool):  # nothing fits: leave the refusal to check_memory, with its advice
            return cls(batch, pool_size(shape, batch, budget, max_scores=max_scores, distill=distill))
        note = ""
        if (chosen, pool) != (batch, scores_only):
            note = (f"batch_size {chosen:,} and pool {pool:,} {'(all items)' if pool == 0 else 'items'} chosen to fit the "
                    f"memory budget {format_bytes(budget)} ({format_bytes(fixed)} of it fixed: interpreter, data, "
                    f"embeddings, evaluation; the profile's batch is {batch:,})")
            if log:
                print(f"hashrec: {note}", file=sys.stderr)
        return cls(chosen, pool, note=note)

    @staticmethod
    def schedule(estimator: str) -> dict:
        """The estimator's schedule parameters (:data:`SCHEDULES`; ``{}`` for one without)."""
        return dict(SCHEDULES.get(estimator, {}))


# ---- a profile resolved into one run's settings -------------------------------------------------

def train_config(profile: str, dataset: str = "ml-1m", shape: DataShape | None = None, **overrides):
    """A profile's :class:`~hashrec_utils.training.TrainConfig` for ``dataset``, derived from the
    data's size (:class:`LightGCNSettings`), ``overrides`` on top (unknown fields refused).

    Propagation costs the same per step whatever the batch size, so large
    batches with a larger learning rate make epochs cheap (measured on 2 CPU
    cores, ml-1m: about 0.1 s a step); the batch follows a target number of
    steps an epoch (ml-1m ``default`` and Gowalla ``full``: 32,768).

    ``quick``: the first 600 users, a few epochs (nbval in CI).
    ``default``: 80/20 split with 10 % of train as valid.
    ``full``: paper scale. A dataset distributed with its own split (LightGCN's
    files, e.g. Gowalla) keeps it outside ``quick``: no valid, a fixed epoch
    budget, cosine decay. ``shape``: the data's :class:`DataShape`
    when known; else its published counts (or, for a folder, the data itself).
    This is where a profile becomes settings: the CLI and the stages call it once, at the top.
    """
    from dataclasses import fields

    from .profiles import get_profile
    from .training.config import TrainConfig

    published = published_split(str(dataset))
    max_users = get_profile(profile).max_users
    if shape is None:
        valid = overrides.get("valid_fraction")
        valid = LightGCNSettings.valid_fraction_for(profile, published) if valid is None else valid
        shape = dataset_shape(str(dataset), valid, overrides.get("max_users", max_users),
                              format=overrides.get("data_format") or "auto")
    base = dict(dataset=dataset, **LightGCNSettings.of(profile, shape, published=published).overrides())
    if max_users is not None:
        base["max_users"] = max_users
    unknown = set(overrides) - {f.name for f in fields(TrainConfig)}
    if unknown:
        raise ValueError(f"unknown TrainConfig field(s): {', '.join(sorted(unknown))}")
    base.update({k: v for k, v in overrides.items() if v is not None or k in ("hash_method", "max_users")})
    return TrainConfig(**base)
