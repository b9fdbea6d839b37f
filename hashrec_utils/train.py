"""Training: one model-agnostic loop, resumable, deterministic.

The loop asks a model for ``loss(graph, users, pos, neg, step) -> (loss, logs)``
and evaluates it through :func:`evaluate_model`, so LightGCN, GraphSAGE and
the hash models of :mod:`hashrec_utils.hashing` train the same way:

* each epoch visits every train pair ``(u, i)`` once in a random order, with
  one negative ``j`` per pair drawn uniformly from the items ``u`` has not
  trained on (vectorised rejection sampling);
* Adam; every ``eval_every`` epochs (and after the last), recall@20 on
  ``valid`` (train items excluded; hash models: Hamming search); early
  stopping after ``patience`` evaluations without improvement; ``keep``
  decides the weights a run ends with: ``best_valid`` those of the best
  validation epoch, ``last`` those of the last epoch (with no valid split,
  as Gowalla's published one, ``best_valid`` falls back to the last epoch
  and says so). The test split is never read by the loop: :func:`run`
  evaluates the kept model on it once;
* an atomic checkpoint after every epoch (model, optimiser, RNG states of
  torch, NumPy and Python, epoch, history, best weights), written to a
  temporary file and moved into place with ``os.replace``. Each epoch's
  randomness is drawn from generators seeded by ``(seed, epoch)``, so a run
  killed at any point (``kill -9`` included) and resumed from its last
  checkpoint ends with exactly the numbers of an uninterrupted run.

A run folder's identity is its config and the code that trains it:
``config.json`` holds ``code_version`` (:func:`code_version`, a hash of the
package files listed in :data:`CODE_FILES`); a folder written by other code
is stale (see :func:`run`).
"""
from __future__ import annotations

import copy
import hashlib
import math
import os
import random
import shutil
import sys
import time
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from tqdm.auto import tqdm

from . import distributed
from .config import check_profile, get_profile
from .data import FORMATS, InteractionData, load_dataset, subset_users
from .graph import Graph, build_graph
from .memory import check_memory
from .metrics import evaluate_topk, rank_topk
from .settings import DataShape, LightGCNSettings, dataset_shape, published_split
from .utils import atomic_write, default_device, keep_freed_memory, read_json, seed_everything, write_json

__all__ = [
    "TrainConfig",
    "train_config",
    "NegativeSampler",
    "fit",
    "evaluate_model",
    "load_run_data",
    "build_model",
    "run",
    "FitResult",
    "make_optimizer",
    "learning_rate",
    "code_version",
    "code_files",
    "CODE_FILES",
    "KEEP_RULES",
    "ACCEPT_UNVERSIONED",
    "evaluate_arrays",
]

KS = (10, 20, 50)
KEEP_RULES = ("best_valid", "last")
# Hash methods that train nothing: codes made from the ``init`` LightGCN run's embeddings.
UNTRAINED_METHODS = ("lsh", "sign")
# Set to 1 to adopt run folders written before config.json carried ``code_version`` (see run()).
ACCEPT_UNVERSIONED = "HASHREC_ACCEPT_UNVERSIONED"
# The package files (and folders: their *.py, recursively) whose code decides a run's numbers:
# the loop, models, graph, hashing, losses, data, metrics and what they import within the package.
# Names that do not exist (yet) are skipped; notebooks, plotting, the study stages and the CLI are
# not part of a run's identity.
CODE_FILES = ("config.py", "data.py", "distributed.py", "estimators.py", "fused.py", "graph.py", "hashing", "losses.py",
              "memory.py", "metrics.py", "models.py", "netflix.py", "retrieval", "retrieval.py", "settings.py",
              "train.py", "utils.py")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run (written to ``config.json``).

    ``patience``: evaluations without a better valid recall@20 before
    stopping (0: never stop early). ``keep``: ``best_valid`` (the weights of
    the best validation epoch; the last epoch's when there is no valid split)
    or ``last``. ``lr_schedule``: ``constant``, or
    ``cosine``: ``lr · ½(1 + cos(π t / T))`` at step ``t`` of the
    ``T = epochs × steps per epoch`` (a function of the step count, so a
    resumed run follows the same schedule). ``max_users``: keep only the first users
    (the ``quick`` slice). ``hash_*``: settings of the hash layer when
    ``hash_method`` is set (see :mod:`hashrec_utils.hashing`). ``data_format``: the
    format of a folder dataset's split files, ``auto`` or one of
    :data:`hashrec_utils.data.FORMATS` (``--format``).
    """

    dataset: str = "ml-1m"
    model: str = "lightgcn"
    dim: int = 64
    n_layers: int = 3
    lr: float = 1e-3
    lr_schedule: str = "constant"
    reg: float = 1e-4
    batch_size: int = 2048
    epochs: int = 100
    eval_every: int = 5
    patience: int = 5
    keep: str = "best_valid"
    valid_fraction: float = 0.1
    max_users: int | None = None
    seed: int = 0
    device: str | None = None
    hash_method: str | None = None
    bits: int = 64
    hash_params: dict = field(default_factory=dict)
    data_format: str = "auto"

    def __post_init__(self):
        if self.data_format not in ("auto", *FORMATS):
            raise ValueError(f"data_format must be 'auto' or one of {', '.join(FORMATS)}; got {self.data_format!r}")
        if self.lr_schedule not in ("constant", "cosine"):
            raise ValueError(f"lr_schedule must be constant or cosine; got {self.lr_schedule!r}")
        if self.lr <= 0 or self.batch_size <= 0 or self.epochs < 0 or self.eval_every <= 0 or self.dim <= 0:
            raise ValueError(f"need lr, batch_size, eval_every, dim > 0 and epochs >= 0; got lr={self.lr}, "
                             f"batch_size={self.batch_size}, eval_every={self.eval_every}, dim={self.dim}, epochs={self.epochs}")
        if self.keep not in KEEP_RULES:
            raise ValueError(f"keep must be best_valid or last; got {self.keep!r}")

    def to_json(self) -> dict:
        return asdict(self)


def train_config(profile: str, dataset: str = "ml-1m", shape: DataShape | None = None, **overrides) -> TrainConfig:
    """Tuned settings of a profile, derived from the data's size (:class:`~hashrec_utils.settings.LightGCNSettings`).

    Propagation costs the same per step whatever the batch size, so large
    batches with a larger learning rate make epochs cheap (measured on 2 CPU
    cores, ml-1m: about 0.1 s a step); the batch follows a target number of
    steps an epoch (ml-1m ``default`` and Gowalla ``full``: 32,768).

    ``quick``: the first 600 users, a few epochs (nbval in CI).
    ``default``: 80/20 split with 10 % of train as valid.
    ``full``: paper scale. A dataset distributed with its own split (LightGCN's
    files, e.g. Gowalla) keeps it outside ``quick``: no valid, a fixed epoch
    budget, cosine decay. ``shape``: the data's :class:`~hashrec_utils.settings.DataShape`
    when known; else its published counts (or, for a folder, the data itself).
    """
    check_profile(profile)
    published = published_split(str(dataset))
    max_users = get_profile("quick").max_users if profile == "quick" else None
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


class NegativeSampler:
    """Uniform negatives avoiding a user's train items, vectorised.

    Draw ``j ~ U{0..n_items-1}`` for every pair at once; redraw only those
    that hit a train item of their user (membership by binary search on the
    sorted keys ``u · n_items + i``), until none does.
    """

    def __init__(self, train: sp.csr_matrix):
        train = sp.csr_matrix(train)
        train.sort_indices()
        self.n_items = train.shape[1]
        rows = np.repeat(np.arange(train.shape[0], dtype=np.int64), np.diff(train.indptr))
        self.keys = rows * self.n_items + train.indices
        full = np.diff(train.indptr) >= self.n_items
        if full.any():
            raise ValueError(f"user {int(np.flatnonzero(full)[0])} has trained on every item: no negative exists")

    def sample(self, users: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        neg = rng.integers(0, self.n_items, size=len(users))
        todo = np.arange(len(users))
        while len(todo):
            keys = users[todo] * self.n_items + neg[todo]
            pos = np.minimum(np.searchsorted(self.keys, keys), len(self.keys) - 1)
            hit = self.keys[pos] == keys
            todo = todo[hit]
            neg[todo] = rng.integers(0, self.n_items, size=len(todo))
        return neg


@dataclass
class FitResult:
    """What :func:`fit` returns. ``best_epoch``: the epoch of the best validation recall@20
    (the last epoch when there is no valid split); ``kept_epoch``: the epoch whose weights
    ``model`` holds; ``kept``: the rule that chose them (``best_valid``, ``last``, or
    ``last (no validation split)``)."""

    model: torch.nn.Module
    graph: Graph
    history: pd.DataFrame
    best_epoch: int
    resumed_from: int
    kept_epoch: int = -1
    kept: str = "best_valid"


def _epoch_generators(seed: int, epoch: int) -> np.random.Generator:
    torch.manual_seed(seed * 1_000_003 + epoch)
    return np.random.default_rng([seed, epoch])


def evaluate_model(model, graph: Graph, target: sp.csr_matrix, exclude: sp.csr_matrix, ks=KS) -> dict:
    """Metrics of ``model`` on ``target``, ``exclude`` never recommended.

    A model with ``evaluate(graph, target, exclude, ks)`` (the hash models:
    continuous, Hamming and hierarchical sections) answers itself; otherwise
    items are ranked by the inner product of ``model.embeddings(graph)``.
    """
    model.eval()
    try:
        with torch.no_grad():
            if hasattr(model, "evaluate"):
                return model.evaluate(graph, target, exclude, ks)
            users, items = model.embeddings(graph)
            top = rank_topk(users.float().cpu(), items.float().cpu(), max(ks), exclude=exclude)
            return evaluate_topk(top, target, ks)
    finally:
        model.train()


def _valid_recall(metrics: dict) -> float:
    """recall@20 of the section that early stopping watches (hash models: ``hamming``)."""
    if "recall@20" in metrics:
        return metrics["recall@20"]
    return metrics.get("hamming", next(iter(metrics.values())))["recall@20"]


def _flat(metrics: dict, prefix: str) -> dict:
    out = {}
    for key, value in metrics.items():
        if isinstance(value, dict):
            out.update({f"{prefix}{key}/{k}": v for k, v in value.items() if k.endswith("@20")})
        elif key.endswith("@20"):
            out[f"{prefix}{key}"] = value
    return out


def fit(
    model: torch.nn.Module,
    data: InteractionData,
    config: TrainConfig,
    checkpoint: str | os.PathLike | None = None,
    *,
    progress: bool = True,
) -> FitResult:
    """Train ``model`` on ``data.train`` with ``config``; resume from ``checkpoint`` if it exists.

    Reads ``data.train`` and ``data.valid`` only. A model with ``set_total_steps(T)`` is told
    the run's ``T = epochs × steps per epoch`` before the first step (schedules that are
    functions of the fraction of training done). ``config.keep`` picks the weights returned.
    """
    device = torch.device(config.device or default_device())
    if device.type == "cpu":
        keep_freed_memory()  # large score matrices reuse freed memory instead of page-faulting anew
    dp = distributed.init_from_env(device)  # under torchrun: data-parallel (see hashrec_utils.distributed)
    model.to(device)
    graph = build_graph(data.train, device)
    optimizer = make_optimizer(model, config.lr, device)
    sampler = NegativeSampler(data.train)
    coo = data.train.tocoo()
    pair_users, pair_items = coo.row.astype(np.int64), coo.col.astype(np.int64)
    has_valid = data.valid.nnz > 0

    state = {"epoch": 0, "step": 0, "history": [], "best_metric": -1.0, "best_epoch": -1,
             "best_state": None, "bad_evals": 0, "seconds": 0.0, "stopped": False}
    resumed_from = 0
    ckpt_path = Path(checkpoint) if checkpoint else None
    if ckpt_path is not None and ckpt_path.exists():
        saved = torch.load(ckpt_path, map_location=device, weights_only=True)
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        state.update({k: saved[k] for k in state if k in saved})
        if hasattr(model, "load_extra_state"):
            model.load_extra_state(saved.get("extra", {}))
        if "rng" in saved:
            _set_rng_state(saved["rng"])
        resumed_from = state["epoch"]
        if progress:
            tqdm.write(f"resumed from epoch {resumed_from} ({ckpt_path})", file=sys.stderr)

    n_pairs = len(pair_users)
    steps_per_epoch = max(1, -(-n_pairs // config.batch_size))
    total_steps = config.epochs * steps_per_epoch
    if hasattr(model, "set_total_steps"):
        model.set_total_steps(total_steps)
    keep_best = has_valid and config.keep == "best_valid"
    bar = tqdm(total=config.epochs, initial=state["epoch"], desc=f"{config.model}{'+' + config.hash_method if config.hash_method else ''}",
               disable=not progress or not distributed.is_main(), unit="epoch", dynamic_ncols=True)
    last_recall = state["history"][-1].get("valid_recall@20") if state["history"] else None
    while state["epoch"] < config.epochs and not state["stopped"]:
        epoch = state["epoch"]
        rng = _epoch_generators(config.seed, epoch)
        t0 = time.perf_counter()
        order = rng.permutation(n_pairs)
        negatives = sampler.sample(pair_users[order], rng)
        total, logs_sum = 0.0, {}
        for b in range(steps_per_epoch):
            idx = order[b * config.batch_size : (b + 1) * config.batch_size]
            users = torch.from_numpy(pair_users[idx]).to(device)
            pos = torch.from_numpy(pair_items[idx]).to(device)
            neg = torch.from_numpy(negatives[b * config.batch_size : (b + 1) * config.batch_size]).to(device)
            optimizer.zero_grad(set_to_none=True)
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(config, state["step"], total_steps)
            part = distributed.share(len(idx)) if dp else slice(0, len(idx))
            # this rank's share of the global batch; its mean loss weighted by its share, so the
            # gradients summed over ranks are those of the global batch's mean loss
            weight = (part.stop - part.start) / len(idx)
            loss, logs = model.loss(graph, users[part], pos[part], neg[part], state["step"])
            if not torch.isfinite(loss):
                raise FloatingPointError(f"loss became {float(loss)} at epoch {epoch + 1}, step {state['step']}: lower lr ({config.lr})")
            (loss * weight).backward() if dp else loss.backward()
            distributed.all_reduce_gradients(model.parameters())
            optimizer.step()
            state["step"] += 1
            total += distributed.all_reduce_sum(float(loss.detach()) * weight) if dp else float(loss.detach())
            for k, v in logs.items():
                logs_sum[k] = logs_sum.get(k, 0.0) + (distributed.all_reduce_sum(float(v) * weight) if dp else float(v))
        state["seconds"] += time.perf_counter() - t0
        row = {"epoch": epoch + 1, "iteration": state["step"], "loss": total / steps_per_epoch, **{k: v / steps_per_epoch for k, v in logs_sum.items()}}
        if hasattr(model, "schedule_state"):
            row.update(model.schedule_state(state["step"]))
        if has_valid and distributed.is_main() and ((epoch + 1) % config.eval_every == 0 or epoch + 1 == config.epochs):
            metrics = evaluate_model(model, graph, data.valid, data.train, ks=(20,))
            row.update(_flat(metrics, "valid_"))
            recall = _valid_recall(metrics)
            last_recall = recall
            if recall > state["best_metric"]:
                state.update(best_metric=recall, best_epoch=epoch + 1, bad_evals=0,
                             best_state=copy.deepcopy(model.state_dict()) if keep_best else None)
            else:
                state["bad_evals"] += 1
                if config.patience and state["bad_evals"] >= config.patience:
                    state["stopped"] = True
        state["stopped"] = distributed.broadcast_flag(state["stopped"])  # rank 0 decides early stopping
        row["seconds"] = state["seconds"]
        state["history"].append(row)
        state["epoch"] = epoch + 1
        if ckpt_path is not None and distributed.is_main():
            _save_checkpoint(ckpt_path, model, optimizer, state)
        bar.update(1)
        bar.set_postfix(loss=f"{row['loss']:.4f}", valid_recall20="-" if last_recall is None else f"{last_recall:.4f}")
    bar.close()
    best_epoch = state["best_epoch"] if has_valid else state["epoch"]
    if keep_best and state["best_state"] is not None:
        model.load_state_dict(state["best_state"])
        kept, kept_epoch = "best_valid", best_epoch
    else:
        kept = "last" if has_valid or config.keep == "last" else "last (no validation split)"
        kept_epoch = state["epoch"]
    return FitResult(model, graph, pd.DataFrame(state["history"]), best_epoch, resumed_from, kept_epoch, kept)


def learning_rate(config: TrainConfig, step: int, total_steps: int) -> float:
    """The learning rate at ``step`` (0-based) of ``total_steps`` under ``config.lr_schedule``."""
    if config.lr_schedule == "constant":
        return config.lr
    if config.lr_schedule == "cosine":
        return config.lr * 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / max(total_steps, 1)))
    raise ValueError(f"lr_schedule must be constant or cosine; got {config.lr_schedule!r}")


def make_optimizer(model: torch.nn.Module, lr: float, device: torch.device) -> torch.optim.Optimizer:
    """Adam over the trainable parameters: fused kernel on CUDA, multi-tensor (``foreach``) on CPU."""
    params = [p for p in model.parameters() if p.requires_grad]
    if device.type == "cuda":
        return torch.optim.Adam(params, lr=lr, fused=True)
    return torch.optim.Adam(params, lr=lr, foreach=True)


def _rng_state() -> dict:
    """Global RNG states (torch CPU and CUDA, NumPy's legacy generator, Python) as ``weights_only``-loadable values."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, py_gauss = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "python": {"version": version, "internal": list(internal), "gauss": py_gauss},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"].cpu())
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss"]))
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def _save_checkpoint(path: Path, model, optimizer, state: dict) -> None:
    """Everything a resumed run needs, written atomically (temporary file + ``os.replace``)."""
    payload = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "rng": _rng_state(), **state}
    if hasattr(model, "extra_state"):
        payload["extra"] = model.extra_state()
    with atomic_write(path, "wb") as fh:
        torch.save(payload, fh)


# --------------------------------------------------------------------------
# Runs: config.json, history.csv, metrics.json, embeddings, checkpoint
# --------------------------------------------------------------------------

def load_run_data(config: TrainConfig) -> InteractionData:
    """The data a run trains on: the dataset, valid carved with split seed 0, sliced to ``max_users``.

    The split does not depend on the model seed, so seeds compare on one split.
    """
    data = load_dataset(config.dataset, valid_fraction=config.valid_fraction, seed=0, format=config.data_format)
    return subset_users(data, config.max_users)


def build_model(config: TrainConfig, data: InteractionData) -> torch.nn.Module:
    """The model a config names: an encoder, with a hash layer when ``hash_method`` is set."""
    seed_everything(config.seed)
    if config.model == "hashgnn" or config.hash_method is not None:
        from .hashing import build_hash_model

        return build_hash_model(config, data)
    from .models import make_encoder

    return make_encoder(config.model, data.n_users, data.n_items, dim=config.dim,
                        n_layers=config.n_layers if config.model == "lightgcn" else None, reg=config.reg)


def code_files() -> list[Path]:
    """The existing files of :data:`CODE_FILES` (folders expanded to their ``*.py``), sorted by path."""
    package = Path(__file__).resolve().parent
    files = []
    for name in CODE_FILES:
        path = package / name
        if path.is_dir():
            files += [p for p in path.rglob("*.py") if "__pycache__" not in p.parts]
        elif path.is_file():
            files.append(path)
    return sorted(set(files), key=lambda p: p.relative_to(package).as_posix())


def code_version() -> str:
    """12 hex digits of ``sha256`` over ``(relative path, bytes)`` of every :func:`code_files` entry:
    what identifies the code behind a run folder (written to ``config.json`` as ``code_version``)."""
    package = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for path in code_files():
        digest.update(path.relative_to(package).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


def evaluate_arrays(arrays: dict, target: sp.csr_matrix, exclude: sp.csr_matrix, ks=KS, candidates: int = 100) -> dict:
    """Metrics of saved arrays (``embeddings.npz``'s keys) on ``target``, ``exclude`` never recommended.

    With ``user_codes``/``item_codes``: the sections of a hash model's ``evaluate``
    (``continuous``: inner product of ``user``·``item``; ``hamming``: the codes;
    ``hierarchical``: top-``max(candidates, k)`` Hamming candidates re-ranked by the inner
    product), else the flat metrics of the inner-product ranking.
    """
    from .retrieval import continuous_topk, hamming_topk, hierarchical_topk

    k = max(ks)
    u, i = np.ascontiguousarray(arrays["user"], dtype=np.float32), np.ascontiguousarray(arrays["item"], dtype=np.float32)
    if "user_codes" not in arrays:
        return evaluate_topk(rank_topk(u, i, k, exclude=exclude), target, ks)
    cu, ci = arrays["user_codes"], arrays["item_codes"]
    return {
        "continuous": evaluate_topk(continuous_topk(u, i, k, exclude), target, ks),
        "hamming": evaluate_topk(hamming_topk(cu, ci, k, exclude), target, ks),
        "hierarchical": evaluate_topk(hierarchical_topk(cu, ci, u, i, k, max(candidates, k), exclude), target, ks),
    }


def _untrained_codes(method: str, user_emb: np.ndarray, item_emb: np.ndarray, bits: int, seed: int):
    """Packed codes of a method that trains nothing: ``lsh`` (random hyperplanes, seeded) or ``sign``
    (the sign of each dimension: needs ``bits`` = the embedding dimension)."""
    from . import hashing

    if hasattr(hashing, "untrained_codes"):
        return hashing.untrained_codes(method, user_emb, item_emb, bits, seed)
    if method == "lsh":
        return hashing.lsh_codes(user_emb, item_emb, bits, seed)
    if method == "sign":
        if bits != user_emb.shape[1]:
            raise ValueError(f"sign codes have one bit per dimension: bits must be {user_emb.shape[1]}; got {bits}")
        return hashing.pack_codes(user_emb), hashing.pack_codes(item_emb)
    raise ValueError(f"untrained hash method must be one of {', '.join(UNTRAINED_METHODS)}; got {method!r}")


def _untrained_arrays(config: TrainConfig, data: InteractionData) -> dict:
    """``embeddings.npz`` of an ``lsh``/``sign`` run: the ``init`` run's embeddings and codes made from them."""
    init = (config.hash_params or {}).get("init")
    if not init:
        raise ValueError(f"hash_method {config.hash_method!r} makes codes from a trained run: "
                         "set hash_params['init'] to a LightGCN run folder (train --init DIR)")
    path = Path(init) / "embeddings.npz"
    if not path.exists():
        raise FileNotFoundError(f"{path}: the init run has no embeddings (is it finished?)")
    emb = np.load(path)
    user, item = emb["user"].astype(np.float32), emb["item"].astype(np.float32)
    if user.shape[0] != data.n_users or item.shape[0] != data.n_items:
        raise ValueError(f"{path} has {user.shape[0]} users, {item.shape[0]} items; the data has {data.n_users}, {data.n_items}")
    user_codes, item_codes = _untrained_codes(config.hash_method, user, item, config.bits, config.seed)
    return {"user": user, "item": item, "user_codes": user_codes, "item_codes": item_codes}


def _stale_message(out: Path, old: str | None, new: str) -> str:
    return (f"{out} was trained by code version {old or 'unversioned (before code_version)'}; this code is {new}: "
            f"pass --retrain (run(..., retrain=True)) to move it aside to {out.name}.stale-{old or 'unversioned'} "
            f"and train again" + ("" if old else f", or set {ACCEPT_UNVERSIONED}=1 to adopt it"))


def _adopt(out: Path, config: TrainConfig, saved: dict, version: str, progress: bool) -> None:
    """Write ``version`` into an unversioned folder's config.json; a complete run without a ``valid``
    block gets one, computed from its ``embeddings.npz`` (the weights it kept)."""
    write_json(out / "config.json", {**saved, "code_version": version})
    print(f"{out}: adopted a run trained before code_version ({ACCEPT_UNVERSIONED}=1); "
          f"config.json now says code_version {version}", file=sys.stderr)
    metrics_path = out / "metrics.json"
    if metrics_path.exists() and (out / "embeddings.npz").exists():
        metrics = read_json(metrics_path)
        if "valid" not in metrics:
            data = load_run_data(config)
            valid = None
            if data.valid.nnz:
                arrays = dict(np.load(out / "embeddings.npz"))
                valid = evaluate_arrays(arrays, data.valid, data.train, KS, (config.hash_params or {}).get("candidates", 100))
            write_json(metrics_path, {**metrics, "valid": valid, "kept": metrics.get("kept", "unknown (adopted unversioned run)")})


def run(
    dataset: str,
    model: str = "lightgcn",
    hash_method: str | None = None,
    bits: int = 64,
    profile: str = "default",
    seed: int = 0,
    out: str | os.PathLike = "runs/train",
    device: str | None = None,
    overrides: dict | None = None,
    progress: bool = True,
    retrain: bool = False,
) -> dict:
    """Train into ``out`` (the CLI's ``train``): resumes a partial run; a complete one is not redone.

    Writes ``config.json`` (the :class:`TrainConfig` and ``code_version``), ``history.csv``
    (epoch, loss, valid metrics, seconds), ``checkpoint.pt``, ``embeddings.npz`` (``user``,
    ``item``; hash models add packed ``user_codes``, ``item_codes``, and a model's
    ``extra_arrays(graph)``) and, last, ``metrics.json``, whose presence marks the run
    complete: the kept model's test metrics at 10, 20, 50 (hash models: sections
    ``continuous``, ``hamming``, ``hierarchical``), ``valid`` (the same on the validation
    split, train items excluded; ``null`` without one), ``best_epoch`` (chosen on validation),
    ``kept_epoch``, ``kept`` (the rule), ``train_seconds``, ``epochs_run``. Returns the metrics.

    ``hash_method`` ``lsh`` or ``sign`` trains nothing: codes of the ``hash_params["init"]``
    run's embeddings (no ``history.csv``, no checkpoint, ``train_seconds`` 0).

    A folder holding another config is refused. A folder whose ``code_version`` differs from
    :func:`code_version` (or that has none) is stale: refused, unless ``retrain`` (then it is
    moved aside to ``<out>.stale-<its version>`` and trained anew). An unversioned folder is
    adopted instead when the environment sets ``HASHREC_ACCEPT_UNVERSIONED=1`` (runs trained
    before versioning: the current version is written into its config.json, stderr says so).

    Before anything is written, the data is loaded and :func:`hashrec_utils.memory.check_memory`
    refuses (``MemoryBudgetError``) a trained run whose estimated peak exceeds the memory budget
    (``HASHREC_MEMORY_BUDGET``, default a third of the physical memory) or the memory available now,
    so a refused run leaves no folder behind.
    """
    config = train_config(profile, str(dataset), model=model, hash_method=hash_method, bits=bits, seed=seed,
                          device=device, **(overrides or {}))
    out = Path(out)
    saved_config = out / "config.json"
    version = code_version()
    wanted = {k: v for k, v in config.to_json().items() if k != "device"}
    if saved_config.exists():
        saved = read_json(saved_config)
        # a field added to TrainConfig after the run started counts at its default
        defaults = {f.name: f.default for f in fields(TrainConfig) if f.default is not MISSING}
        have = {k: v for k, v in {**defaults, **saved}.items() if k not in ("device", "code_version")}
        if have != wanted:
            diff = sorted(k for k in set(have) | set(wanted) if have.get(k) != wanted.get(k))
            raise ValueError(f"{out} holds a different run (differs in {', '.join(diff)}); choose another --out")
        old = saved.get("code_version")
        if old != version:
            if old is None and os.environ.get(ACCEPT_UNVERSIONED) == "1":
                _adopt(out, config, saved, version, progress)
            elif retrain:
                aside = out.with_name(f"{out.name}.stale-{old or 'unversioned'}")
                if aside.exists():
                    shutil.rmtree(aside)
                out.rename(aside)
                out.mkdir(parents=True)
                print(f"{out}: trained by code version {old or 'unversioned'}, this code is {version}: "
                      f"moved aside to {aside.name}, training again", file=sys.stderr)
            else:
                raise ValueError(_stale_message(out, old, version))
        if (out / "metrics.json").exists():
            if progress:
                print(f"{out}: run complete (metrics.json exists); nothing to do")
            return read_json(out / "metrics.json")
    data = load_run_data(config)
    if config.hash_method not in UNTRAINED_METHODS:
        check_memory(config, DataShape.of(data))  # refuse before anything is written, not an OOM kill later
    out.mkdir(parents=True, exist_ok=True)
    if distributed.is_main():
        write_json(saved_config, {**config.to_json(), "code_version": version})
    if config.hash_method in UNTRAINED_METHODS:
        arrays = _untrained_arrays(config, data)
        candidates = (config.hash_params or {}).get("candidates", 100)
        valid = evaluate_arrays(arrays, data.valid, data.train, KS, candidates) if data.valid.nnz else None
        metrics = evaluate_arrays(arrays, data.test, data.train_full, KS, candidates)
        meta = {"best_epoch": 0, "kept_epoch": 0, "kept": "untrained", "train_seconds": 0.0, "epochs_run": 0}
        with atomic_write(out / "embeddings.npz", "wb") as fh:
            np.savez(fh, **arrays)
        write_json(out / "metrics.json", {**metrics, "valid": valid, **meta})
        return read_json(out / "metrics.json")
    net = build_model(config, data)
    result = fit(net, data, config, out / "checkpoint.pt", progress=progress)
    if not distributed.is_main():  # under torchrun, rank 0 evaluates and writes the results
        distributed.barrier()
        return {}
    with atomic_write(out / "history.csv", "w") as fh:
        result.history.to_csv(fh, index=False)
    net = result.model
    valid = evaluate_model(net, result.graph, data.valid, data.train, ks=KS) if data.valid.nnz else None
    metrics = evaluate_model(net, result.graph, data.test, data.train_full, ks=KS)  # the one read of the test split
    metrics_meta = {"best_epoch": result.best_epoch, "kept_epoch": result.kept_epoch, "kept": result.kept,
                    "train_seconds": float(result.history["seconds"].iloc[-1]) if len(result.history) else 0.0,
                    "epochs_run": int(result.history["epoch"].iloc[-1]) if len(result.history) else 0}
    with torch.no_grad():
        net.eval()
        users, items = net.embeddings(result.graph)
        arrays = {"user": users.float().cpu().numpy(), "item": items.float().cpu().numpy()}
        if hasattr(net, "packed_codes"):
            arrays["user_codes"], arrays["item_codes"] = net.packed_codes(result.graph)
        if hasattr(net, "extra_arrays"):
            extra = {k: np.asarray(v.detach().cpu() if isinstance(v, torch.Tensor) else v)
                     for k, v in net.extra_arrays(result.graph).items()}
            clash = set(extra) & set(arrays)
            if clash:
                raise ValueError(f"extra_arrays of {type(net).__name__} may not overwrite {sorted(clash)}")
            arrays.update(extra)
    with atomic_write(out / "embeddings.npz", "wb") as fh:
        np.savez(fh, **arrays)
    write_json(out / "metrics.json", {**metrics, "valid": valid, **metrics_meta})
    distributed.barrier()
    return read_json(out / "metrics.json")
