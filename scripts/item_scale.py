"""Asymmetric search with a scale byte an item (its power chosen on validation) for hash run folders.

    python scripts/item_scale.py --name gowalla --profile full runs/full/hash_gowalla_v10_..._s0_... [...]

For each run: validation recall@20 at each power of the item norm (``hashrec_utils.item_scale``),
the chosen power and the test metrics there and unscaled; printed, and written to
``results/<profile>/item_scale_<name>.json`` (atomically).
"""
from __future__ import annotations

import argparse
import sys


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--name", required=True)
    parser.add_argument("--profile", default="default", choices=("quick", "default", "full"))
    args = parser.parse_args(argv)
    from hashrec_utils.config import results_dir
    from hashrec_utils.item_scale import item_scale_metrics
    from hashrec_utils.utils import write_json

    out = []
    for run in args.runs:
        m = item_scale_metrics(run)
        out.append(m)
        valid = " ".join(f"p={p:g}:{v:.4f}" for p, v in zip(m["powers"], m["valid_recall@20"]))
        print(f"{m['run']}: valid recall@20 {valid}; chosen p={m['power']:g}; test recall@20 "
              f"{m['test']['recall@20']:.4f} (unscaled {m['test_unscaled']['recall@20']:.4f}), recall@50 "
              f"{m['test']['recall@50']:.4f} ({m['test_unscaled']['recall@50']:.4f}), {m['bytes_per_item']:.2f} bytes an item")
    path = results_dir(args.profile) / f"item_scale_{args.name}.json"
    write_json(path, out)
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
