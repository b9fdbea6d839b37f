"""A comparison's committed record as a stand-in for run folders that are not on this machine.

``compare --reuse-committed`` (:func:`.comparison.comparison_stage` with ``reuse_committed``):
every run of the table is named by its settings (:func:`.rows.variant_run_name`), so a run whose
folder is absent but whose rows ``results/<profile>/comparison_{runs,bits}.csv`` hold (the same
name, row and dataset) is read from there, with its wall-clock from ``comparison_summary.json``;
every other run trains (or resumes) as usual. On a fresh clone, only the runs whose settings
changed since the record was written train, e.g. a row whose tuned winner moved.

``tune --reuse-committed`` (:func:`.tuning.tune` with ``reuse_committed``) does the same for the
grid: a point whose run folder is absent is read from ``results/<profile>/tuning.csv`` where it
holds that point (:func:`read_tuning`, :func:`recorded_point`), so a grid grown by new points trains
only those.

Each recorded row carries the identity of the run behind it (:data:`IDENTITY_COLUMNS`: the
versions of its training components and of the evaluation that scored it, the major library
versions, the device; :mod:`hashrec_utils.training.identity`), and a recorded run is reused only
when that identity is the one this code would train it with (:func:`checked_rows`): a record
written by other versions is refused, naming the component. A search mode added since (a
``search.*``/``kernel.*`` component the record lacks) refuses nothing: those rows lack its section. A record written before rows carried
an identity is refused too, unless ``HASHREC_ACCEPT_UNVERSIONED=1`` adopts it (its rows are then
stamped with this code's identity).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..config import results_dir
from ..utils import read_json

__all__ = ["CommittedRuns", "read_comparison", "read_tuning", "recorded_point", "POINT_COLUMNS", "IDENTITY_COLUMNS",
           "identity_cells", "checked_rows"]

# the identity of the run behind a recorded row (what identity_cells writes)
IDENTITY_COLUMNS = ("components", "libraries", "device")


def identity_cells(config, out: str | os.PathLike | None = None) -> dict:
    """A recorded row's identity: the run's training components (from ``out/config.json`` where
    the folder exists, the versions that trained it; else those ``config`` would train with; a
    teacher's ``init.*`` components are left to the teacher's own row) and this code's evaluation
    components, formatted ``name=version …``; the libraries ``name=major.minor …``; the device."""
    from ..evaluation import evaluation_components
    from ..training.identity import format_components, run_identity

    saved = Path(out) / "config.json" if out is not None else None
    ident = read_json(saved).get("identity") if saved is not None and saved.exists() else None
    ident = ident or run_identity(config)
    comps = {k: v for k, v in ident["components"].items() if not k.startswith("init.")}
    return {"components": format_components({**comps, **evaluation_components()}),
            "libraries": format_components(ident["libraries"]), "device": ident["device"]}


def checked_rows(rows: list[dict], config, where: str) -> list[dict]:
    """``rows`` (one recorded run's) when their identity is the one ``config`` would train and this
    code would score with; else one clear ``ValueError`` naming what differs. Rows recorded before
    identities are refused unless ``HASHREC_ACCEPT_UNVERSIONED=1``, which stamps them with this code's."""
    from ..training.identity import identity_differences, parse_components
    from ..training.runs import ACCEPT_UNVERSIONED

    want = identity_cells(config)
    have = rows[0]
    if any(pd.isna(have.get(c)) for c in IDENTITY_COLUMNS):
        if os.environ.get(ACCEPT_UNVERSIONED) == "1":
            return [{**r, **want} for r in rows]
        raise ValueError(f"{where}: its record was written before recorded rows carried an identity (component "
                         f"versions): run without --reuse-committed to train it, or set {ACCEPT_UNVERSIONED}=1 to adopt "
                         f"the record as this code's")

    def ident(cells: dict) -> dict:
        return {"components": parse_components(cells["components"]), "device": cells["device"],
                "libraries": parse_components(cells["libraries"], versions=False)}

    have_id, want_id = ident(have), ident(want)
    # a search mode added since the record was written: its rows lack that section, the rest still holds
    want_id["components"] = {k: v for k, v in want_id["components"].items()
                             if k in have_id["components"] or not k.startswith(("search.", "kernel."))}
    diffs = identity_differences(have_id, want_id)
    if diffs:
        raise ValueError(f"{where}: recorded by other versions ({'; '.join(diffs)}): run without --reuse-committed "
                         f"(or delete its rows from the record) to train it with this code")
    return rows


def read_comparison(profile: str) -> dict:
    """``results/<profile>/``'s committed comparison: the ``table``, ``runs`` and ``bits`` frames
    (empty where it has not run) and the ``summary`` (a dict per dataset; empty likewise)."""
    folder = results_dir(profile)
    frames = {name: (pd.read_csv(folder / f"comparison_{name}.csv") if (folder / f"comparison_{name}.csv").exists()
                     else pd.DataFrame()) for name in ("table", "runs", "bits")}
    summary_path = folder / "comparison_summary.json"
    return {**frames, "summary": read_json(summary_path) if summary_path.exists() else {}}


def _of_run(frame: pd.DataFrame, dataset: str, run: str, label: str) -> pd.DataFrame:
    """A record's rows of run folder ``run`` as table row ``label`` on ``dataset``."""
    return frame[(frame["dataset"].astype(str) == str(dataset)) & (frame["run"] == run) & (frame["row"] == label)]


# the record each kind of run's rows live in
_TABLES = {"runs": "comparison_runs.csv", "bits": "comparison_bits.csv"}


@dataclass(frozen=True)
class CommittedRuns:
    """The rows and wall-clock of the runs a profile's committed comparison was built from."""

    tables: dict  # "runs"/"bits" -> the DataFrame of comparison_{runs,bits}.csv
    seconds: dict = field(default_factory=dict)  # dataset -> {run name: train seconds}

    @classmethod
    def read(cls, profile: str) -> "CommittedRuns":
        """``results/<profile>/``'s record; a clear error when a file of it is missing."""
        folder = results_dir(profile)
        paths = {**{k: folder / v for k, v in _TABLES.items()}, "summary": folder / "comparison_summary.json"}
        missing = [str(p) for p in paths.values() if not p.exists()]
        if missing:
            raise FileNotFoundError(f"--reuse-committed needs the {profile} profile's committed comparison; missing: "
                                    f"{', '.join(missing)} (run compare without the flag)")
        record = read_comparison(profile)  # what notebook 07 shows of a profile's committed comparison
        tables = {k: record[k] for k in _TABLES}
        for name, frame in tables.items():
            lacking = sorted({"dataset", "row", "run", "search"} - set(frame))
            if lacking:
                raise ValueError(f"{paths[name]}: no column {', '.join(lacking)}; not a comparison record")
        return cls(tables, {d: dict(s.get("train_seconds") or {}) for d, s in record["summary"].items()})

    def rows(self, which: str, dataset: str, run: str, label: str) -> list[dict] | None:
        """The recorded rows of run folder ``run`` as table row ``label`` on ``dataset`` (one per
        search mode, as :func:`.comparison._rows_of` makes them), None when the record has none."""
        hit = _of_run(self.tables[which], dataset, run, label)
        if hit.empty:
            return None
        return [{**rec, "seed": int(rec["seed"]), "bits": int(rec["bits"])}
                for rec in hit.drop(columns="dataset").to_dict("records")]  # identity columns included where recorded

    def train_seconds(self, dataset: str, run: str) -> float:
        """The run's recorded wall-clock of training (0 where the record has none)."""
        return float((self.seconds.get(dataset) or {}).get(run) or 0.0)


# what a grid point's row holds of its run (tuning.tune_row), read from the run or from the record: column -> type
POINT_COLUMNS = {"valid_recall@20": float, "valid_hierarchical_recall@20": float, "epochs": int, "best_epoch": int,
                 "train_seconds": float}


def read_tuning(profile: str) -> pd.DataFrame:
    """``results/<profile>/tuning.csv``, the committed grid; a clear error when it is missing or is not one."""
    path = results_dir(profile) / "tuning.csv"
    if not path.exists():
        raise FileNotFoundError(f"--reuse-committed needs the {profile} profile's committed grid; missing: {path} "
                                f"(run tune without the flag)")
    frame = pd.read_csv(path)
    lacking = sorted({"row", "dataset", "run", *POINT_COLUMNS} - set(frame))
    if lacking:
        raise ValueError(f"{path}: no column {', '.join(lacking)}; not a tuning record")
    return frame


def recorded_point(record: pd.DataFrame, label: str, dataset: str, run: str) -> dict | None:
    """What ``record`` (:func:`read_tuning`) holds of run folder ``run`` as a grid point of row
    ``label`` on ``dataset`` (the :data:`POINT_COLUMNS` and the run's name), None when it has none."""
    hit = _of_run(record, dataset, run, label)
    if hit.empty:
        return None
    rec = hit.iloc[-1]
    point = {name: None if pd.isna(rec[name]) else cast(rec[name]) for name, cast in POINT_COLUMNS.items()}
    return {**point, **{c: rec[c] if c in rec else None for c in IDENTITY_COLUMNS}, "run": run}
