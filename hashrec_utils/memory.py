"""A run's peak memory, estimated from its config and the data's shape, checked before any work.

:func:`check_memory` refuses a run whose estimate exceeds the budget
(:func:`hashrec_utils.settings.memory_budget_bytes`: a third of the physical memory, or
``HASHREC_MEMORY_BUDGET``), or the memory available right now when that is less, with one :class:`MemoryBudgetError` naming the estimate,
the budget and the settings to change — instead of the kernel's OOM kill minutes later.
The per-step factors are measured (see :data:`hashrec_utils.settings.SCORE_MATRICES`).
"""
from __future__ import annotations

from .settings import DataShape, available_bytes, distinct_users, memory_budget_bytes, score_bytes

__all__ = ["MemoryBudgetError", "estimate_peak_bytes", "check_memory", "format_bytes", "fixed_bytes"]

# The interpreter with torch, NumPy, SciPy and pandas loaded (measured RSS of a fresh process: ~0.39 GB).
BASELINE_BYTES = 400 << 20
# rank_topk / evaluation score blocks: memory_mb = 256 MiB of scores, with the masked copy and top-k.
EVAL_BLOCK_BYTES = 3 * (256 << 20)


class MemoryBudgetError(MemoryError, ValueError):
    """The estimated peak of a run exceeds the memory budget (raised before any work)."""


def format_bytes(n: float) -> str:
    return f"{n / (1 << 30):.2f} GiB" if n >= 1 << 30 else f"{n / (1 << 20):.0f} MiB"


def _hash_params(config) -> dict:
    return dict(getattr(config, "hash_params", None) or {})


def fixed_bytes(shape: DataShape, dim: int = 64, *, table: bool = True, n_layers: int = 3) -> dict:
    """The parts of :func:`estimate_peak_bytes` that neither the batch nor the pool moves, by part:
    ``baseline``, ``data``, ``embeddings`` (a table: 5 copies; an encoder end to end: ``4 + 2 (n_layers + 1)``)
    and ``evaluation``. :meth:`hashrec_utils.settings.HashSettings.of` sizes the batch and the pool
    within what they leave of the budget, so one memory model chooses settings and checks them."""
    copies = 4 + (1 if table else 2 * (int(n_layers) + 1))
    return {"baseline": BASELINE_BYTES,
            "data": shape.n_train * 48 + 2 * shape.n_train * 40,
            "embeddings": (shape.n_users + shape.n_items) * int(dim) * 4 * copies,
            "evaluation": min(EVAL_BLOCK_BYTES, 3 * shape.n_users * shape.n_items * 4)}


def estimate_peak_bytes(config, shape: DataShape) -> dict:
    """Peak bytes of training ``config`` on data of ``shape``, by part, and their ``total``.

    * ``data``: train pairs in the loop (CSR, the sampler's sorted keys, pair ids, the epoch's order
      and negatives: ~48 B a pair) and the normalised adjacency (``2 n_train`` entries as a torch CSR
      with int64 indices and its SciPy build: ~40 B an entry);
    * ``embeddings``: ``(n_users + n_items) × dim × 4`` B times parameter, gradient, Adam's two
      moments (a hash table also keeps its initial copy) and, for LightGCN end to end, each layer's
      output for the backward pass (``2 (n_layers + 1)``), and where the layers stay side by side
      (BGCH's and BiGeaR's layout) their concatenation and its gradient (another ``2 (n_layers + 1)``);
    * ``scores``: hash models with a listwise objective (``softmax``, ``recall``) or distillation:
      ``U_b × M × 4 × k`` (:func:`~hashrec_utils.settings.score_bytes`; ``U_b`` distinct users of a batch,
      ``M`` the pool ``n_negatives`` or all items); pairwise objectives ``batch × (dim + bits) × 4 × 8``;
    * ``teacher``: with distillation from the frozen table (``continuous="init"``) over all items, the
      cached softmax over every user and item (counted inside ``score_bytes``, reported apart); for
      BiGeaR's objective, its teacher's top-100 items of every user on every layer (int64);
    * ``evaluation``: the score blocks of top-k ranking;
    * ``baseline``: the interpreter and libraries.
    """
    dim = int(getattr(config, "dim", 64))
    batch = int(getattr(config, "batch_size", 2048))
    from .hashing import OBJECTIVES, recipe_of

    hp = _hash_params(config)
    recipe = recipe_of(config)
    is_hash, table = recipe.hashed, recipe.encoder == "table"
    parts = fixed_bytes(shape, dim, table=table, n_layers=int(getattr(config, "n_layers", 3)))
    blocks = recipe.blocks(config)
    if blocks > 1:  # the layers side by side, and the gradient of that concatenation
        parts["embeddings"] += (shape.n_users + shape.n_items) * dim * blocks * 4 * 2
    width = dim * blocks  # what each row of the encoder's output holds
    parts["scores"], parts["teacher"] = batch * width * 4 * 8, 0
    if is_hash:
        objective = OBJECTIVES[recipe.objective]
        distill = bool(hp.get("distill", 0.0))
        if objective.pool or distill:
            pool = int(hp.get("n_negatives", objective.default_negatives))
            all_items = pool == 0 or pool >= shape.n_items
            cache = all_items and distill and objective.fuses_distill and hp.get("continuous", "encoder") == "init"
            total = score_bytes(shape, batch, pool, distill=distill, teacher_cache=cache)
            teacher = score_bytes(shape, batch, 0, distill=True) - score_bytes(shape, batch, 0, distill=False) if cache else 0
            parts["scores"], parts["teacher"] = total - teacher, teacher
        else:
            parts["scores"] = batch * (width + int(getattr(config, "bits", 64))) * 4 * 8
        if recipe.objective == "bigear":
            from .hashing.objectives import BIGEAR_TOP_R

            parts["teacher"] = shape.n_users * blocks * min(BIGEAR_TOP_R, shape.n_items) * 8
    parts["distinct_users"] = distinct_users(shape, batch)  # not bytes: the U_b the scores assumed
    parts["total"] = sum(v for k, v in parts.items() if k not in ("total", "distinct_users"))
    return parts


def check_memory(config, shape: DataShape, budget: float | None = None) -> dict:
    """The estimate of :func:`estimate_peak_bytes` if it fits ``budget`` (default
    :func:`~hashrec_utils.settings.memory_budget_bytes`, capped by the memory available now: a busy
    machine refuses rather than swaps or is OOM-killed); else one :class:`MemoryBudgetError`."""
    now = None
    if budget is None:
        budget, now = memory_budget_bytes(), available_bytes()
    est = estimate_peak_bytes(config, shape)
    if est["total"] <= budget and (now is None or est["total"] <= now):
        return est
    if now is not None and est["total"] <= budget:  # fits the plan, not what is free at the moment
        raise MemoryBudgetError(
            f"{getattr(config, 'dataset', '?')}: estimated peak memory {format_bytes(est['total'])} fits the budget "
            f"{format_bytes(budget)} but only {format_bytes(now)} is available now; stop other jobs and run again")
    hp = _hash_params(config)
    largest = sorted(((v, k) for k, v in est.items() if k not in ("total", "distinct_users")), reverse=True)[:3]
    parts = ", ".join(f"{k} {format_bytes(v)}" for v, k in largest)
    advice = [f"--set batch_size=N below {config.batch_size} (fewer distinct users a step: {est['distinct_users']:,})"]
    if est["scores"] + est["teacher"] > est["embeddings"]:
        pool = hp.get("n_negatives", 0)
        advice.append(f"a smaller sampled pool, hash_params n_negatives (now {pool}{' = all items' if not pool else ''}; "
                      f"at least 1024)")
    advice.append("or a larger HASHREC_MEMORY_BUDGET (bytes or e.g. 6GiB; default a third of the physical memory) "
                  "on a machine that has it")
    raise MemoryBudgetError(
        f"{getattr(config, 'dataset', '?')} ({shape.n_users:,} users × {shape.n_items:,} items, {shape.n_train:,} train "
        f"pairs): estimated peak memory {format_bytes(est['total'])} ({parts}) exceeds the memory budget "
        f"{format_bytes(budget)}; change {'; '.join(advice)}")
