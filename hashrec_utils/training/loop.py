"""The training loop: one model-agnostic loop, resumable, deterministic.

The loop asks a model for ``loss(graph, users, pos, neg, step) -> (loss, logs)``
and evaluates it through :func:`hashrec_utils.evaluation.evaluate_model`, so LightGCN,
GraphSAGE and the hash models of :mod:`hashrec_utils.hashing` train the same way:

* each epoch visits every train pair ``(u, i)`` once in a random order, with
  one negative ``j`` per pair drawn uniformly from the items ``u`` has not
  trained on (:class:`NegativeSampler`, vectorised rejection sampling);
* Adam; every ``eval_every`` epochs (and after the last), recall@20 on
  ``valid`` (train items excluded; hash models: Hamming search); early
  stopping after ``patience`` evaluations without improvement; ``keep``
  decides the weights a run ends with: ``best_valid`` those of the best
  validation epoch, ``last`` those of the last epoch (with no valid split,
  as Gowalla's published one, ``best_valid`` falls back to the last epoch
  and says so). The test split is never read by the loop;
* an atomic checkpoint after every epoch (model, optimiser, RNG states of
  torch, NumPy and Python, epoch, history, best weights), written to a
  temporary file and moved into place with ``os.replace``. Each epoch's
  randomness is drawn from generators seeded by ``(seed, epoch)``, so a run
  killed at any point (``kill -9`` included) and resumed from its last
  checkpoint ends with exactly the numbers of an uninterrupted run.

:data:`LOOP_VERSION` is this loop's part of a run's identity
(:mod:`hashrec_utils.training.identity`): bump it when a change moves what a run trains to
(sampling, batching, the optimiser, the schedule, the checkpoint rule).
"""
from __future__ import annotations

import copy
import math
import os
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from tqdm.auto import tqdm

from .. import distributed
from ..data import InteractionData
from ..evaluation import evaluate_model
from ..graph import Graph, build_graph
from ..utils import atomic_write, default_device, keep_freed_memory
from .config import TrainConfig

__all__ = ["LOOP_VERSION", "NegativeSampler", "FitResult", "fit", "learning_rate", "make_optimizer"]

# sampling, batching, Adam, the lr schedule, early stopping and the kept-weights rule
LOOP_VERSION = 1


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



def _valid_recall(metrics: dict, watched: str = "hamming") -> float:
    """recall@20 of the section that early stopping and the kept epoch watch: a hash model's
    ``watched_search`` (``hamming``; ``asymmetric`` for a model trained for asymmetric search)."""
    if "recall@20" in metrics:
        return metrics["recall@20"]
    return metrics.get(watched, metrics.get("hamming", next(iter(metrics.values()))))["recall@20"]


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
    last_epoch = config.stop_epoch or config.epochs  # a refit stops at its kept epoch; schedules span epochs
    bar = tqdm(total=last_epoch, initial=state["epoch"], desc=f"{config.model}{'+' + config.hash_method if config.hash_method else ''}",
               disable=not progress or not distributed.is_main(), unit="epoch", dynamic_ncols=True)
    last_recall = state["history"][-1].get("valid_recall@20") if state["history"] else None
    while state["epoch"] < last_epoch and not state["stopped"]:
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
        if has_valid and distributed.is_main() and ((epoch + 1) % config.eval_every == 0 or epoch + 1 == last_epoch):
            metrics = evaluate_model(model, graph, data.valid, data.train, ks=(20,))
            row.update(_flat(metrics, "valid_"))
            recall = _valid_recall(metrics, getattr(model, "watched_search", "hamming"))
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
