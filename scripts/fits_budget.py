"""Issue 32, item 6, end to end: the default hash run on a 52,204-user x 57,289-item folder completes
within the memory budget with no ``--set``, its log naming the batch and pool it chose.

    python scripts/fits_budget.py [--folder runs/fits_budget] [--interactions 350000]

Makes a folder of raw ``user item rating`` lines of that shape (users and items power-law with exponent 0.3, so that nearly every item occurs;
:func:`hashrec_utils.data.synthetic_interactions`; about 5.4 train items a user, as the sparse public
dataset a new user tried; 80 / 20 per user into ``train.txt`` / ``test.txt``), then runs what that user
ran, through the command line:

    python -m hashrec_utils train --dataset FOLDER --out FOLDER/lightgcn
    python -m hashrec_utils train --dataset FOLDER --hash signswish --bits 64 --init FOLDER/lightgcn --out FOLDER/hash

and prints each command's wall-clock, peak resident memory and the log lines that name the memory
budget and the batch and pool chosen. ``HASHREC_MEMORY_BUDGET`` applies as it does for a user.
"""
from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def make_folder(folder: Path, n_users: int, n_items: int, n_interactions: int, seed: int = 0) -> None:
    from hashrec_utils.data import synthetic_interactions

    if (folder / "train.txt").exists() and (folder / "test.txt").exists():
        return
    pairs = synthetic_interactions(n_users, n_items, n_interactions, seed=seed, exponent=0.3)
    rng = np.random.default_rng(seed)
    pairs = pairs.assign(rating=rng.integers(1, 6, len(pairs)), r=rng.random(len(pairs)))
    # each user's last fifth (by a random key) is test; a user with one item keeps it in train
    rank = pairs.groupby("user")["r"].rank(method="first")
    size = pairs.groupby("user")["r"].transform("size")
    test = (rank > np.ceil(0.8 * size)) & (size > 1)
    folder.mkdir(parents=True, exist_ok=True)
    for name, part in (("train.txt", pairs[~test]), ("test.txt", pairs[test])):
        np.savetxt(folder / name, part[["user", "item", "rating"]].to_numpy(), fmt="%d")
    print(f"{folder}: {n_users:,} users x {n_items:,} items, {int((~test).sum()):,} train and {int(test.sum()):,} "
          f"test interactions", flush=True)


def run(cmd: list[str]) -> None:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "hashrec_utils", *cmd], capture_output=True, text=True)
    secs = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20  # GiB (ru_maxrss is KiB on Linux)
    lines = [line for line in (proc.stdout + proc.stderr).splitlines()
             if any(w in line for w in ("budget", "batch_size", "pool", "estimated peak", "Error", "error"))]
    print(f"$ python -m hashrec_utils {' '.join(cmd)}\n  exit {proc.returncode}, {secs:,.0f} s, "
          f"peak RSS of the children so far {peak:.2f} GiB", flush=True)
    for line in lines[-12:]:
        print("  " + line.strip()[:300], flush=True)
    if proc.returncode:
        print(proc.stderr[-3000:], file=sys.stderr)
        raise SystemExit(proc.returncode)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--folder", default="runs/fits_budget")
    parser.add_argument("--users", type=int, default=52_204)
    parser.add_argument("--items", type=int, default=57_289)
    parser.add_argument("--interactions", type=int, default=350_000)
    args = parser.parse_args()
    folder = Path(args.folder)
    make_folder(folder, args.users, args.items, args.interactions)
    print(f"memory budget: HASHREC_MEMORY_BUDGET={os.environ.get('HASHREC_MEMORY_BUDGET', '(default)')}", flush=True)
    run(["train", "--dataset", str(folder), "--out", str(folder / "lightgcn")])
    run(["train", "--dataset", str(folder), "--hash", "signswish", "--bits", "64", "--init", str(folder / "lightgcn"),
         "--out", str(folder / "hash")])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
