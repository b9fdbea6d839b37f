"""Stamp a tuning record written before rows carried an identity with this code's identity.

    python scripts/stamp_identity.py PROFILE [--valid-fraction F]

``results/<PROFILE>/tuning.csv`` rows without the identity columns
(:data:`hashrec_utils.experiments.committed.IDENTITY_COLUMNS`) get those of the run each row
would train now (its recipe's component versions, this code's evaluation, the libraries, the
device): the adoption ``HASHREC_ACCEPT_UNVERSIONED=1`` performs for a comparison record when
``compare --reuse-committed`` rewrites it. Only rows lacking an identity are touched; numbers are
not. Use it once, on records written by the code the current versions describe (every version
was 1 when identities were introduced).
"""
from __future__ import annotations

import argparse

import pandas as pd

from hashrec_utils.config import results_dir
from hashrec_utils.experiments.committed import IDENTITY_COLUMNS, identity_cells
from hashrec_utils.experiments.rows import variant_plan
from hashrec_utils.experiments.runs import write_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profile")
    parser.add_argument("--valid-fraction", type=float, default=None,
                        help="the validation carve-out the grid ran on (Gowalla in full: 0.1)")
    args = parser.parse_args()
    path = results_dir(args.profile) / "tuning.csv"
    frame = pd.read_csv(path, keep_default_na=False)  # as tune() reads it: empty cells stay ""
    for col in IDENTITY_COLUMNS:
        if col not in frame:
            frame[col] = ""
    todo = (frame[list(IDENTITY_COLUMNS)].astype(str) == "").any(axis=1)
    cells = {}
    for i in frame.index[todo]:
        key = (frame.at[i, "row"], str(frame.at[i, "dataset"]))
        if key not in cells:
            config, _ = variant_plan(args.profile, key[0], dataset=key[1], valid_fraction=args.valid_fraction)
            cells[key] = identity_cells(config)
        for col, value in cells[key].items():
            frame.at[i, col] = value
    write_table(frame, "tuning", args.profile)
    print(f"{path}: {int(todo.sum())} rows stamped ({len(cells)} recipes)")


if __name__ == "__main__":
    main()
