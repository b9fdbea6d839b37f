"""The comparison's teacher, chosen on validation (``python -m hashrec_utils teacher-size``): its size, then its schedule.

The codes are bounded by the LightGCN they learn from, so that teacher is a choice like any other:
made on the validation carve-out, never on test, in two steps.

1. **Size.** The sizes of :attr:`~hashrec_utils.profiles.ComparisonStage.teacher_dims` are tried in
   order (``full``: 64, 128, 256), each LightGCN at the profile's schedule on the carve-out, and a
   size is tried only after the one before it won (256 only if 128 beat 64): the first that does
   not raise validation recall@20 ends the search, and the best so far is the choice. The hash
   layer maps the teacher's ``d`` to ``K`` bits, so the codes stay ``K`` bits whatever the size.
2. **Schedule.** Once every size the rule asks for is tried, the chosen size's schedule is doubled
   while it is still learning at the end (its kept epoch in the schedule's second half:
   :func:`.tuning.still_learning`, the tuning grid's rule) and validation improves, up to
   :attr:`~hashrec_utils.profiles.ComparisonStage.teacher_max_length` × the profile's epochs (the
   learning rate's cosine decay spans each run's own length, so a doubled schedule is a new run).

The record, ``results/<profile>/teacher_size_<dataset>.json``, holds every run tried (its folder,
validation and test recall@20 — test reported, never read by the choice —, kept epoch against the
schedule's length, seconds an epoch): ``sizes`` at the profile's schedule and ``schedules`` of the
chosen size; the ``chosen`` size and ``chosen_epochs``; and ``pending`` / ``pending_epochs``: the
sizes and schedule lengths the rule would try next but this call was not asked to (``--dims``,
``--no-schedule``). The table moves to a new teacher by its profile's
:attr:`~hashrec_utils.profiles.ComparisonStage.teacher` (a :class:`~hashrec_utils.profiles.Teacher`),
set by hand from this record (every row then retrains on the new teacher); until it does, the
comparison's summary lists the move as pending.
"""
from __future__ import annotations

from ..config import results_dir
from ..profiles import Teacher
from ..utils import read_json, write_json

__all__ = ["teacher_size", "teacher_size_path", "read_teacher_size", "teacher_pending", "table_teacher"]


def table_teacher(profile: str, dataset: str) -> Teacher:
    """The teacher the comparison's table is built on, resolved: its stage's
    :attr:`~hashrec_utils.profiles.ComparisonStage.teacher` with the profile's own size and schedule
    where it leaves them unset."""
    from ..settings import train_config
    from .comparison import COMPARISON

    own, set_ = train_config(profile, dataset), COMPARISON[profile].teacher or Teacher()
    return Teacher(set_.dim or own.dim, set_.epochs or own.epochs)


def teacher_size_path(profile: str, dataset: str):
    """Where :func:`teacher_size` writes its record."""
    return results_dir(profile) / f"teacher_size_{dataset}.json"


def read_teacher_size(profile: str, dataset: str) -> dict | None:
    """The recorded choice (:func:`teacher_size`), None where none was made."""
    path = teacher_size_path(profile, dataset)
    return read_json(path) if path.exists() else None


def _entry(dim: int, out, metrics: dict) -> dict:
    """One run's line of the record, from its ``metrics.json``."""
    valid = metrics.get("valid") or {}
    if "recall@20" not in valid:
        raise ValueError(f"{out}: the teacher choice needs a validation split; metrics.json has no valid recall@20")
    epochs = int(metrics["epochs_run"])
    seconds = metrics.get("train_seconds")
    return {"dim": int(dim), "run": out.name, "valid_recall@20": float(valid["recall@20"]),
            "test_recall@20": float(metrics["recall@20"]), "kept_epoch": int(metrics["kept_epoch"]),
            "epochs": epochs, "kept_is_last": int(metrics["kept_epoch"]) == epochs,
            "train_seconds": seconds, "seconds_per_epoch": None if seconds is None else float(seconds) / epochs}


def _learning(entry: dict) -> bool:
    """Whether a teacher run was still learning at its schedule's end (the tuning grid's rule)."""
    from .tuning import still_learning

    return still_learning({"best_epoch": entry["kept_epoch"], "epochs": entry["epochs"]})


def teacher_size(profile: str, dataset: str, *, dims: tuple[int, ...] | None = None, schedule: bool = True,
                 progress: bool = True, reuse_committed: bool = False) -> dict:
    """Choose the comparison's teacher on ``dataset``'s validation carve-out (see the module's
    docstring: its size, then its schedule) and write the record. ``dims``: the sizes to try, in
    order (default: the profile's ``teacher_dims``); a prefix of them leaves the rest ``pending``
    where the last one tried won, and the schedule step waits for them. ``schedule``: run the schedule
    step (else its next length is left in ``pending_epochs``). Finished runs are reused;
    ``reuse_committed``: a run whose folder is absent is read from the committed record where it
    holds a line of that run."""
    from ..settings import train_config
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
        old = read_teacher_size(profile, dataset) or {}
        committed = {e["run"]: e for e in old.get("sizes", []) + old.get("schedules", [])}

    def tried_run(dim: int, epochs: int | None = None) -> dict:
        _, folder = lightgcn_plan(profile, dataset, epochs=epochs, valid_fraction=stage.valid_fraction, dim=dim)
        if not folder.exists() and folder.name in committed:
            return {**committed[folder.name], "reused_committed": True}
        metrics, out = lightgcn_run(profile, dataset, epochs=epochs, valid_fraction=stage.valid_fraction, dim=dim,
                                    progress=progress)
        return _entry(dim, out, metrics)

    tried, best = [], None
    for dim in dims:
        entry = tried_run(dim)
        tried.append(entry)
        if best is not None and entry["valid_recall@20"] <= best["valid_recall@20"]:
            break
        best = entry
    won_last = tried[-1] is best
    rest = [d for d in planned if d not in dims] if won_last else []

    cap = (stage.teacher_max_length or 1.0) * train_config(profile, dataset).epochs
    schedules, pending_epochs = [], []
    while _learning(best) and 2 * best["epochs"] <= cap:
        if rest or not schedule:  # the schedule step waits for the sizes, or was not asked for
            pending_epochs = [2 * best["epochs"]]
            break
        entry = tried_run(best["dim"], 2 * best["epochs"])
        schedules.append(entry)
        if entry["valid_recall@20"] <= best["valid_recall@20"]:
            break
        best = entry
    table = table_teacher(profile, dataset)
    record = {
        "dataset": dataset, "profile": profile, "valid_fraction": stage.valid_fraction,
        "rule": ("sizes tried in order on the validation carve-out at the profile's schedule, each only after the one "
                 "before won; the first that does not raise validation recall@20 ends the search; then the chosen "
                 "size's schedule doubled while its kept epoch lies in the second half and validation recall@20 "
                 f"rises, up to {stage.teacher_max_length or 1.0:g}x the profile's epochs"),
        "selected_on": "valid recall@20", "sizes": tried, "schedules": schedules,
        "chosen": best["dim"], "chosen_epochs": best["epochs"], "pending": rest, "pending_epochs": pending_epochs,
        # the choice still learning at the longest schedule the profile allows (nothing left to try)
        "learning_at_cap": bool(_learning(best) and not rest and 2 * best["epochs"] > cap),
        "table_teacher_dim": table.dim, "table_teacher_epochs": table.epochs,
    }
    write_json(teacher_size_path(profile, dataset), record)
    return record


def teacher_pending(profile: str, dataset: str, table: Teacher) -> dict | None:
    """What the record says the table's teacher should still become: ``{"chosen", "chosen_epochs",
    "table", "table_epochs", "pending", "pending_epochs"}`` where the chosen size or schedule differs
    from ``table`` (the resolved teacher the table was built on, :func:`table_teacher`) or sizes or
    schedules are still to try; None where the record agrees (or there is none)."""
    record = read_teacher_size(profile, dataset)
    if record is None:
        return None
    chosen = int(record["chosen"])
    chosen_epochs = int(record.get("chosen_epochs") or next(e["epochs"] for e in record["sizes"] if e["dim"] == chosen))
    pending, pending_epochs = list(record.get("pending", [])), list(record.get("pending_epochs", []))
    if (chosen, chosen_epochs) == (table.dim, table.epochs) and not pending and not pending_epochs:
        return None
    return {"chosen": chosen, "chosen_epochs": chosen_epochs, "table": int(table.dim), "table_epochs": int(table.epochs),
            "pending": pending, "pending_epochs": pending_epochs}
