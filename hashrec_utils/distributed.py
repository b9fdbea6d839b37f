"""Data-parallel training with ``torch.distributed`` (gloo on CPU, nccl on GPUs).

Under ``torchrun --nproc_per_node=N`` (or ``--nnodes`` across machines) every
rank builds the same model from the same seed and draws the same global
batch (the epoch's generators are seeded by ``(seed, epoch)``); rank ``r``
takes the contiguous share ``[B·r/N, B·(r+1)/N)`` of it. Each rank's loss is
its share's mean scaled by ``n_r / B``, so summing the gradients over ranks
(one all-reduce) gives exactly the gradient of the global batch's mean loss:
the run follows the single-process trajectory, up to floating-point
summation order. Rank 0 evaluates, checkpoints and writes results; the
others wait at a barrier.

Outside ``torchrun`` (no ``WORLD_SIZE`` > 1 in the environment) every
function here is a no-op, and training is single-process.
"""
from __future__ import annotations

import os

import torch
import torch.distributed as dist

__all__ = ["init_from_env", "active", "rank", "world_size", "is_main", "share", "all_reduce_gradients",
           "all_reduce_sum", "broadcast_flag", "barrier"]


def init_from_env(device: torch.device | str = "cpu") -> bool:
    """Join the process group ``torchrun`` describes (``WORLD_SIZE`` > 1); returns whether training is distributed."""
    if dist.is_available() and not dist.is_initialized() and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        backend = "nccl" if torch.device(device).type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    return active()


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    return rank() == 0


def share(n: int) -> slice:
    """This rank's contiguous share of ``n`` rows of a global batch."""
    r, w = rank(), world_size()
    return slice(n * r // w, n * (r + 1) // w)


def all_reduce_gradients(params) -> None:
    """Sum gradients over ranks, flattened into one buffer (one all-reduce per step)."""
    if not active():
        return
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    offset = 0
    for g in grads:
        n = g.numel()
        g.copy_(flat[offset : offset + n].view_as(g))
        offset += n


def all_reduce_sum(value: float, device: torch.device | str = "cpu") -> float:
    """Sum a Python number over ranks."""
    if not active():
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return float(t.item())


def broadcast_flag(flag: bool, device: torch.device | str = "cpu") -> bool:
    """Rank 0's decision (e.g. early stopping), shared with every rank."""
    if not active():
        return flag
    t = torch.tensor([1 if flag else 0], dtype=torch.int64, device=device)
    dist.broadcast(t, src=0)
    return bool(t.item())


def barrier() -> None:
    if active():
        dist.barrier()
