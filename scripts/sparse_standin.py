"""Issue 30's sparse stand-in: why code-only search falls behind Faiss's RaBitQ on sparse data.

    python scripts/sparse_standin.py make --out data/gowalla20          # the stand-in's split files
    python -m hashrec_utils train --dataset data/gowalla20 --profile default --out runs/g20_lgcn
    python -m hashrec_utils train --dataset data/gowalla20 --profile default --hash signswish --bits 64 \\
        --init runs/g20_lgcn --out runs/g20_hash
    python scripts/sparse_standin.py probe --run runs/g20_lgcn [--hash runs/g20_hash]

``make``: Gowalla's published split (``HASHREC_DATA_DIR``'s mirror) with a seeded random 20 % of each
user's train items kept (at least one), test untouched. ``probe``: test recall@20 (train and
validation items excluded) of the teacher's own embeddings, Faiss ``IndexRaBitQ`` on them (64 bits +
float factors), hashrec's transform code (64 bits, asymmetric scan), and the transform code of the
items' *directions* scaled by each item's exact norm (scored in float); with ``--hash``, that run's
own modes and its asymmetric search with a scale byte an item
(:mod:`hashrec_utils.item_scale`: the item norm to a power chosen on validation).
"""
from __future__ import annotations

import argparse
import os
import random
import sys
from pathlib import Path

import numpy as np


def make(out: Path, keep: float = 0.2, seed: int = 20) -> None:
    from hashrec_utils.data import load_dataset
    from hashrec_utils.data.sources import dataset_folder

    load_dataset("gowalla", valid_fraction=0.0)  # downloads the published split when it is not here yet
    src = dataset_folder("gowalla")
    rng = random.Random(seed)
    out.mkdir(parents=True, exist_ok=True)
    lines = []
    for line in (src / "train.txt").read_text().splitlines():
        parts = line.split()
        if not parts:
            continue
        items = parts[1:]
        kept = sorted(rng.sample(items, max(1, round(keep * len(items)))), key=int) if items else []
        lines.append(" ".join([parts[0], *kept]))
    (out / "train.txt").write_text("\n".join(lines) + "\n")
    (out / "test.txt").write_text((src / "test.txt").read_text())
    print(f"{out}: {keep:.0%} of each user's train items kept (seed {seed}), test untouched")


def _run_data(run: str):
    from hashrec_utils.training.runs import load_run_data, run_config

    return load_run_data(run_config(run))


def probe(run: str, hash_run: str | None) -> None:
    from hashrec_utils.hashing import pack_codes
    from hashrec_utils.hashing.transform import fit_transform_code
    from hashrec_utils.metrics import evaluate_topk
    from hashrec_utils.retrieval import AsymmetricIndex, exact_topk, make_index
    from hashrec_utils.utils import read_json

    data = _run_data(run)
    emb = np.load(os.path.join(run, "embeddings.npz"))
    user, item, seen = emb["user"], emb["item"], data.train_full

    def recall(ids):
        return evaluate_topk(ids, data.test, ks=(20,))["recall@20"]

    base = recall(exact_topk(user, item, 20, seen)[1])
    rows = [("teacher (exact)", 4 * item.shape[1], base)]
    rabitq = make_index("rabitq", qb=8).build(item)
    rows.append(("Faiss IndexRaBitQ (qb 8)", rabitq.memory_bytes() / len(item), recall(rabitq.search(user, 20, seen)[1])))
    code = fit_transform_code(user, item, 64)
    ids = AsymmetricIndex(64).build(pack_codes(code.codes)).search(code.query(user), 20, seen)[1]
    rows.append(("transform code, 64 bits", 8, recall(ids)))
    norm = np.linalg.norm(item, axis=1)
    direction = fit_transform_code(user, item / np.maximum(norm, 1e-12)[:, None], 64)
    scaled = (direction.codes * norm[:, None]).astype(np.float32)
    rows.append(("transform code of directions x norm (float)", 8 + 4, recall(exact_topk(direction.query(user), scaled, 20, seen)[1])))
    if hash_run:
        from hashrec_utils.item_scale import item_scale_metrics

        metrics = read_json(os.path.join(hash_run, "metrics.json"))
        rows += [(f"hash run: {m}", 8, metrics[m]["recall@20"]) for m in ("hamming", "asymmetric") if m in metrics]
        scaled = item_scale_metrics(hash_run, data=data)
        rows.append((f"hash run: asymmetric x norm^p (p={scaled['power']:g}, valid)", scaled["bytes_per_item"],
                     scaled["test"]["recall@20"]))
    print(f"{'method':<46} {'bytes/item':>10} {'recall@20':>10} {'x teacher':>9}")
    for name, size, r in rows:
        print(f"{name:<46} {size:>10.1f} {r:>10.4f} {r / base:>9.3f}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make")
    m.add_argument("--out", type=Path, default=Path("data/gowalla20"))
    p = sub.add_parser("probe")
    p.add_argument("--run", required=True)
    p.add_argument("--hash", default=None)
    args = parser.parse_args(argv)
    if args.cmd == "make":
        make(args.out)
    else:
        probe(args.run, args.hash)
    return 0


if __name__ == "__main__":
    sys.exit(main())
