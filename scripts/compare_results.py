"""Did any number move? Compare two ``results/<profile>/`` folders in every accuracy figure.

    python scripts/compare_results.py OLD_RESULTS NEW_RESULTS

Every CSV and JSON file both folders hold is compared value by value (floats exactly: a
refactor must reproduce them bit for bit). Ignored, and listed in the output:

* timings and what is derived from them: columns and keys that name seconds, throughput,
  speed-ups or build time (``*seconds*``, ``qps*``, ``build_s``, ``*_qps``, ``speedup*``,
  ``latency*``), the Pareto flags and ``pareto_methods`` (a point is on the frontier by its
  speed), and the fixed-throughput tables (``tradeoff_fixed*``: which operating point meets a
  target throughput depends on the machine's timing);
* records of the machine (``environment.json``) and of how a run was identified (``identity``,
  ``components``, ``libraries``, ``device`` columns: new with run identities, not numbers);
* files only one folder holds (named, not compared).

Compared within a relative tolerance, not exactly (also listed in the output), because two runs of
the *same* code and seed differ there in the last float bits: the training-loss logs (``loss*``,
``bpr`` columns of the learning curves: a LightGCN run trained twice in two processes logs losses
7e-9 apart, its embeddings 3e-7 apart, with identical validation metrics) and ``bytes_per_item``
(the size of a graph index whose construction Faiss parallelises, NSG's). Every metric — recall,
NDCG, precision, hit rate, recall against exact search, on test and validation — is compared exactly.

Exit status 0 when every compared value is equal, 1 otherwise (each difference printed).
"""
from __future__ import annotations

import json
import math
import re
import sys
from pathlib import Path

import pandas as pd

TIMING = re.compile(r"(seconds|^qps|_qps|qps_|build_s|speedup|latency|pareto|wall)", re.I)
IDENTITY = {"identity", "components", "libraries", "device", "reused_committed", "evaluation"}
SKIP_FILES = re.compile(r"^(environment\.json|tradeoff_fixed.*)$")
# field name -> relative tolerance (see the module docstring)
TOLERANT = ((re.compile(r"^(loss.*|bpr)$"), 1e-6), (re.compile(r"^bytes_per_item$"), 1e-4))


def tolerance(key: str) -> float:
    return next((tol for pattern, tol in TOLERANT if pattern.match(str(key))), 0.0)


def ignored(key: str) -> bool:
    return bool(TIMING.search(str(key))) or str(key) in IDENTITY


def _equal(a, b, tol: float = 0.0) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if tol and isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(a, b, rel_tol=tol)
    return a == b


def compare_json(a, b, path: str, out: list[str], tol: float = 0.0) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b), key=str):
            if ignored(key):
                continue
            if key not in a or key not in b:
                out.append(f"{path}.{key}: only in {'new' if key in b else 'old'}")
                continue
            compare_json(a[key], b[key], f"{path}.{key}", out, tolerance(key))
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            out.append(f"{path}: {len(a)} entries → {len(b)}")
        for i, (x, y) in enumerate(zip(a, b)):
            compare_json(x, y, f"{path}[{i}]", out, tol)
    elif not _equal(a, b, tol):
        out.append(f"{path}: {a!r} → {b!r}")


def compare_csv(old: Path, new: Path, out: list[str]) -> None:
    a, b = pd.read_csv(old), pd.read_csv(new)
    cols = [c for c in a.columns if not ignored(c)]
    missing = [c for c in cols if c not in b.columns]
    if missing:
        out.append(f"{new.name}: columns gone: {missing}")
        return
    if len(a) != len(b):
        out.append(f"{new.name}: {len(a)} rows → {len(b)}")
        return
    for c in cols:
        x, y = a[c], b[c]
        same = (x == y) | (x.isna() & y.isna())
        if tolerance(c):
            same = same | ((x - y).abs() <= tolerance(c) * y.abs())
        for i in (~same).to_numpy().nonzero()[0][:5]:
            out.append(f"{new.name}[{i}].{c}: {x.iloc[i]!r} → {y.iloc[i]!r}")


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    old, new = map(Path, argv)
    names_old = {p.name for p in old.iterdir() if p.suffix in (".csv", ".json")}
    names_new = {p.name for p in new.iterdir() if p.suffix in (".csv", ".json")}
    diffs: list[str] = []
    compared = []
    for name in sorted(names_old & names_new):
        if SKIP_FILES.match(name):
            continue
        compared.append(name)
        if name.endswith(".csv"):
            compare_csv(old / name, new / name, diffs)
        else:
            compare_json(json.loads((old / name).read_text()), json.loads((new / name).read_text()), name, diffs)
    print(f"compared {len(compared)} files: {' '.join(compared)}")
    print(f"ignored files: {' '.join(sorted(n for n in names_old & names_new if SKIP_FILES.match(n))) or 'none'}")
    print(f"ignored fields: names matching {TIMING.pattern} (timings and what derives from them), and {sorted(IDENTITY)}")
    print("within a relative tolerance: " + ", ".join(f"{p.pattern} ({t:g})" for p, t in TOLERANT) + "; every other value exactly")
    only = sorted(names_old ^ names_new)
    if only:
        print(f"in one folder only (not compared): {' '.join(only)}")
    for line in diffs:
        print("DIFF", line)
    print("identical in every accuracy figure" if not diffs else f"{len(diffs)} differences")
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
