"""The comparison's teacher size, chosen on validation (``python -m hashrec_utils teacher-size``).

The codes are bounded by the LightGCN they learn from, so the size of that teacher is a choice like
any other: made on the validation carve-out, never on test. The sizes of
:attr:`~hashrec_utils.profiles.ComparisonStage.teacher_dims` are tried in order (``full``: 64, 128,
256), each LightGCN at the profile's schedule on the carve-out, and a size is tried only after the
one before it won (256 only if 128 beat 64): the first that does not raise validation recall@20
ends the search, and the best so far is the choice. The hash layer maps the teacher's ``d`` to
``K`` bits, so the codes stay ``K`` bits whatever the size.

The record, ``results/<profile>/teacher_size_<dataset>.json``, holds every size tried (its run,
validation and test recall@20 — test reported, never read by the choice —, kept epoch against the
schedule's length, seconds an epoch), the ``chosen`` size, and ``pending``: the sizes the rule
would try next but this call was not asked to (``--dims``). The table moves to a new size by its
profile's :attr:`~hashrec_utils.profiles.ComparisonStage.teacher_dim`, set by hand from this record
(every row then retrains on the new teacher); until it does, the comparison's summary lists the
move as pending.
"""
from __future__ import annotations

from ..config import results_dir
from ..utils import read_json, write_json

__all__ = ["teacher_size", "teacher_size_path", "read_teacher_size", "teacher_pending", "table_teacher_dim"]


def table_teacher_dim(profile: str, dataset: str) -> int:
    """The size the comparison's table is built on: its stage's ``teacher_dim``, else the profile's own."""
    from ..settings import train_config
    from .comparison import COMPARISON

    return COMPARISON[profile].teacher_dim or train_config(profile, dataset).dim


def teacher_size_path(profile: str, dataset: str):
    """Where :func:`teacher_size` writes its record."""
    return results_dir(profile) / f"teacher_size_{dataset}.json"


def read_teacher_size(profile: str, dataset: str) -> dict | None:
    """The recorded choice (:func:`teacher_size`), None where none was made."""
    path = teacher_size_path(profile, dataset)
    return read_json(path) if path.exists() else None


def _entry(dim: int, out, metrics: dict) -> dict:
    """One size's line of the record, from its run's ``metrics.json``."""
    valid = metrics.get("valid") or {}
    if "recall@20" not in valid:
        raise ValueError(f"{out}: the teacher-size choice needs a validation split; metrics.json has no valid recall@20")
    epochs = int(metrics["epochs_run"])
    seconds = metrics.get("train_seconds")
    return {"dim": int(dim), "run": out.name, "valid_recall@20": float(valid["recall@20"]),
            "test_recall@20": float(metrics["recall@20"]), "kept_epoch": int(metrics["kept_epoch"]),
            "epochs": epochs, "kept_is_last": int(metrics["kept_epoch"]) == epochs,
            "train_seconds": seconds, "seconds_per_epoch": None if seconds is None else float(seconds) / epochs}


def teacher_size(profile: str, dataset: str, *, dims: tuple[int, ...] | None = None, progress: bool = True,
                 reuse_committed: bool = False) -> dict:
    """Choose the comparison's teacher size on ``dataset``'s validation carve-out (see the module's
    docstring) and write the record. ``dims``: the sizes to try, in order (default: the profile's
    ``teacher_dims``); a prefix of them leaves the rest ``pending`` where the last one tried won.
    Finished runs are reused; ``reuse_committed``: a size whose run folder is absent is read from the
    committed record where it holds a line of that run."""
    from .comparison import COMPARISON
    from .runs import lightgcn_plan, lightgcn_run

    stage = COMPARISON[profile]
    planned = tuple(stage.teacher_dims)
    dims = tuple(dims or planned)
    if not dims:
        raise ValueError(f"the {profile} profile's comparison has no teacher_dims to choose among")
    if len(set(dims)) != len(dims) or any(d <= 0 for d in dims):
        raise ValueError(f"dims must be distinct positive sizes; got {dims}")
    committed = {}
    if reuse_committed:
        old = read_teacher_size(profile, dataset)
        committed = {e["run"]: e for e in (old or {}).get("sizes", [])}
    tried, best = [], None
    for dim in dims:
        _, folder = lightgcn_plan(profile, dataset, valid_fraction=stage.valid_fraction, dim=dim)
        if not folder.exists() and folder.name in committed:
            entry = {**committed[folder.name], "reused_committed": True}
        else:
            metrics, out = lightgcn_run(profile, dataset, valid_fraction=stage.valid_fraction, dim=dim, progress=progress)
            entry = _entry(dim, out, metrics)
        tried.append(entry)
        if best is not None and entry["valid_recall@20"] <= best["valid_recall@20"]:
            break
        best = entry
    won_last = tried[-1] is best
    rest = [d for d in planned if d not in dims] if won_last else []
    record = {
        "dataset": dataset, "profile": profile, "valid_fraction": stage.valid_fraction,
        "rule": ("sizes tried in order on the validation carve-out, each only after the one before won; the first "
                 "that does not raise validation recall@20 ends the search"),
        "selected_on": "valid recall@20", "sizes": tried, "chosen": best["dim"], "pending": rest,
        "table_teacher_dim": table_teacher_dim(profile, dataset),
    }
    write_json(teacher_size_path(profile, dataset), record)
    return record


def teacher_pending(profile: str, dataset: str, teacher_dim: int) -> dict | None:
    """What the record says the table's teacher should still become: ``{"chosen", "table", "pending"}``
    where the chosen size differs from ``teacher_dim`` (the size the table was built on) or larger
    sizes are still to try; None where the record agrees (or there is none)."""
    record = read_teacher_size(profile, dataset)
    if record is None:
        return None
    chosen, pending = int(record["chosen"]), list(record.get("pending", []))
    if chosen == int(teacher_dim) and not pending:
        return None
    return {"chosen": chosen, "table": int(teacher_dim), "pending": pending}
