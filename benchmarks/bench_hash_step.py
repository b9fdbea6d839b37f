"""One hash-training step of notebook 03's table runs (ml-1m, 64 bits, signswish, the all-items softmax
over a batch of 65,536 pairs: a 6,040 × 3,706 score matrix), four ways, one process. Distillation is
off here (``distill=0``): with it the table runs take :func:`hashrec_utils.losses.catalogue_softmax_distill`,
the same hand-written pass with the teacher's targets added, which has no autograd twin to swap in.

* ``system`` / ``kept``: glibc's defaults, or :func:`hashrec_utils.utils.keep_freed_memory` (large
  blocks from the heap, freed memory reused instead of page-faulting in a fresh ``mmap``);
* ``autograd`` / ``fused``: the loss as ``logsumexp(s)[inv] − s[inv, pos]`` through autograd, or
  :func:`hashrec_utils.losses.catalogue_softmax_loss` with its hand-written backward.

The four share one model and batch: every step starts from the same weights, and each variant
keeps its own Adam. Steps run round-robin (one of each per round, so load from other processes hits
all alike) and the median is reported.
The first step's losses are checked equal. The last line is

    speedup_kept_memory=W speedup_fused_softmax=X speedup_both=Y

(W: system → kept with the fused loss; X: autograd → fused with kept memory; Y: system+autograd →
kept+fused).

    python benchmarks/bench_hash_step.py [--rounds 9] [--threads 2]
"""
from __future__ import annotations

import argparse
import copy
import statistics
import time

import numpy as np
import torch

from hashrec_utils.hashing import objectives as hashing  # the module whose catalogue_softmax_loss the softmax objective calls
from hashrec_utils.experiments import hash_overrides, train_default_init
from hashrec_utils.settings import train_config
from hashrec_utils.training import build_model, load_run_data, make_optimizer
from hashrec_utils.utils import keep_freed_memory


def autograd_softmax(s_rows: torch.Tensor, inv: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """The reference: the same loss through autograd."""
    return (torch.logsumexp(s_rows, dim=1)[inv] - s_rows[inv, pos]).mean()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    overrides = hash_overrides("default", "signswish", distill=0.0)
    train_default_init("default", "ml-1m", overrides)  # the LightGCN table it starts from (trained if absent)
    config = train_config("default", "ml-1m", hash_method="signswish", bits=64, seed=0, **overrides)
    data = load_run_data(config)
    model = build_model(config, data)
    start = copy.deepcopy(model.state_dict())
    coo = data.train.tocoo()
    idx = np.random.default_rng(0).permutation(coo.nnz)[: config.batch_size]
    users, pos = torch.from_numpy(coo.row[idx].astype(np.int64)), torch.from_numpy(coo.col[idx].astype(np.int64))
    neg = torch.zeros_like(pos)
    fused = hashing.catalogue_softmax_loss
    variants = {f"{mem}+{loss}": (mem == "kept", loss) for mem in ("system", "kept") for loss in ("autograd", "fused")}
    optimizers = {name: make_optimizer(model, config.lr, torch.device("cpu")) for name in variants}

    def step(name: str) -> tuple[float, float]:
        kept, loss_kind = variants[name]
        keep_freed_memory(kept)
        hashing.catalogue_softmax_loss = fused if loss_kind == "fused" else autograd_softmax
        model.load_state_dict(start)
        opt = optimizers[name]
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss, _ = model.loss(None, users, pos, neg, 0)
        loss.backward()
        opt.step()
        return time.perf_counter() - t0, float(loss.detach())

    try:
        first = {name: step(name)[1] for name in variants}
        ref = first["system+autograd"]
        assert all(abs(v - ref) <= 1e-5 * abs(ref) for v in first.values()), first
        times = {name: [] for name in variants}
        for _ in range(args.rounds):
            for name in variants:
                times[name].append(step(name)[0])
    finally:
        hashing.catalogue_softmax_loss = fused
        keep_freed_memory(True)
    med = {name: statistics.median(t) for name, t in times.items()}
    print(f"ml-1m hash step, batch {config.batch_size:,}, {data.n_users:,} users × {data.n_items:,} items, "
          f"{args.threads} threads, median of {args.rounds} rounds; first loss {ref:.6f}")
    for name, t in med.items():
        print(f"  {name:<16} {t * 1000:8.1f} ms")
    print(f"speedup_kept_memory={med['system+fused'] / med['kept+fused']:.2f} "
          f"speedup_fused_softmax={med['kept+autograd'] / med['kept+fused']:.2f} "
          f"speedup_both={med['system+autograd'] / med['kept+fused']:.2f}")


if __name__ == "__main__":
    main()
