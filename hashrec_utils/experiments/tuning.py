"""The equal tuning budget (``make tune``): one validation grid for every row of the hashing table.

Every trained row of notebook 03's table (hashrec's estimators under its objective, the same
estimators under HashGNN's objective, and the published recipes) gets the same search, read on
the **validation** split only (Hamming recall@20 of the kept weights; a scaled-code row, BGCH,
is read with its scales, as it is scored):

1. learning rate × schedule length: :attr:`TuningGrid.lr_factors` × :attr:`TuningGrid.length_factors`
   around the row's base settings (every schedule is a fraction of training, so a longer run
   stretches it);
2. then, at the winner of 1, the row's own schedule parameter where it has one
   (:data:`OWN_SCHEDULE`: guided STE's p decay, HashNet's final β, Gumbel's starting τ, SignSwish's
   β, BGCH's Fourier terms, BiGeaR's Dirac-delta width), each alternative once;
3. then, where the winner sits at the grid's longest schedule (the grid's edge) and is still learning
   there (its kept epoch in the schedule's second half: :func:`still_learning`), the schedule is
   doubled at the winner's other settings while validation improves, up to
   :attr:`TuningGrid.max_length_factor` (the ``full`` profile's grid; ``quick`` and ``default`` stop at
   the grid); a winner whose validation peaked early has nothing a longer schedule can add;
4. then, for a row whose objective distils the teacher (hashrec's), its objective's levers
   (:data:`OBJECTIVE_LEVERS`: the distillation weight × 3, its temperature 0.5, then 0.25), each
   once at the winner so far, kept where validation improves (``full``: :attr:`TuningGrid.levers`). The published
   recipes and the pairwise rows have no distillation, so nothing to pull: they are run as published.
   A larger sampled pool, the other lever of the softmax, is left out: it is bounded by the memory
   budget, not by the grid;
5. then, where the final winner (levers included) is still learning at the end of a schedule at
   least the grid's longest, its schedule is doubled again while validation improves, up to
   :attr:`TuningGrid.final_length_factor` (``full``: 8×): the levers change what the codes learn, so
   step 3's answer is asked again at the settings that won (a point step 3 already ran is not rerun).

**On a new teacher** (``tune --table-teacher``: the comparison's
:attr:`~hashrec_utils.profiles.ComparisonStage.teacher`, chosen by :mod:`.teacher_size`), a row keeps
its tuned settings unless its validation drops: its winner is trained from the new teacher first
(step "new teacher"); where it scores at least what it scored on the teacher it was tuned on, only
step 5 runs from there (a longer schedule for a winner still learning), and where it scores less the
whole grid runs again on the new teacher. ``tuning.csv``'s ``teacher`` column names the teacher of each
point (:func:`teacher_label`; empty: the profile's own), and the winner a row has on each teacher is
flagged.

Ties keep the earlier point (the base settings come first). The grid's every point is written to
``results/<profile>/tuning.{csv,json}`` and each row's winner to :data:`.rows.TUNED_FILE`, which
:func:`.rows.variant_run` reads: a winner's run folder is the tuning run itself, so ``make all``
after ``make tune`` reuses it. ``tune --reuse-committed``: a point whose run folder is absent is
read from the committed ``tuning.csv`` where it holds that point (:mod:`.committed`), so on a fresh
clone only the points the record lacks train.
"""
from __future__ import annotations

from dataclasses import replace

import pandas as pd

from ..config import results_dir
from ..profiles import ProfileView, Teacher, TuningGrid, get_profile
from ..utils import read_json, write_json
from . import rows as _rows
from .committed import checked_rows, identity_cells, read_tuning, recorded_point
from .rows import GridPoint, popcount_searchable, row_family, row_spec, table_row, variant_plan, variant_run
from .runs import HASH_STAGE, write_table
from .stages import _valid_columns

__all__ = ["TuningGrid", "TUNING_GRID", "OWN_SCHEDULE", "OBJECTIVE_LEVERS", "own_alternatives", "objective_levers",
           "still_learning", "tune_row", "tune", "tuning_rows", "final_schedule_pending", "teacher_label",
           "teacher_tuning_pending"]


# Each profile's grid (:class:`hashrec_utils.profiles.TuningGrid`; full: step 3 up to 4× the base
# schedule, a Gowalla 64-bit run at 4× is ~8 min on two cores), by profile name.
TUNING_GRID = ProfileView("tuning")

# Step 4's levers of a distilling objective, in the order tried: (hash parameter, value), the
# distillation weight as a factor of the row's own, the temperature as the value itself.
OBJECTIVE_LEVERS = (("distill", 3.0), ("distill_tau", 0.5), ("distill_tau", 0.25))

# Each estimator's own schedule parameter and the values the grid tries (the row's own value, from
# its settings, is always tried first; see own_alternatives).
OWN_SCHEDULE = {
    "guided_ste": ("decay", (0.95, 0.9)),   # p = p0 · decay^stage: 0.9 reaches p ≈ 0.005 by the end
    "hashnet": ("beta_end", (10.0, 30.0)),  # tanh(βa): the final sharpness
    "gumbel": ("tau0", (1.0, 0.3)),         # the starting temperature
    "signswish": ("beta", (5.0, 10.0)),     # SignSwish's slope
    "bgch": ("n_terms", (4, 8)),            # Fourier terms of the sign's gradient
    "bigear": ("norm_a", (1.0, 3.0)),       # width of BiGeaR's Gaussian Dirac-delta gradient
}


def _row_estimator(label: str) -> tuple[str, dict]:
    """A row's estimator name and the estimator parameters its settings fix."""
    from ..hashing import split_method
    from ..settings import HashSettings

    method, _, params = row_spec(label)
    estimator = split_method(method)[0]
    return estimator, {**HashSettings.schedule(estimator), **params.get("estimator", {})}


def own_alternatives(label: str) -> list[dict]:
    """The values of the row's own schedule parameter that step 2 tries besides the row's own."""
    from ..hashing import ESTIMATORS

    estimator, fixed = _row_estimator(label)
    if estimator not in OWN_SCHEDULE:
        return []
    name, values = OWN_SCHEDULE[estimator]
    own = fixed.get(name, ESTIMATORS[estimator].defaults.get(name))
    return [{name: v} for v in values if v != own]


def objective_levers(label: str, point: GridPoint) -> list[dict]:
    """Step 4's alternatives for ``label`` at ``point``: the objective parameters each lever sets
    (the distillation weight scaled from the row's own, the temperature set), [] for a row that
    does not distil."""
    from .runs import TABLE_OBJECTIVE

    _, _, params = row_spec(label)
    weight = float(dict(point.objective).get("distill", params.get("distill", TABLE_OBJECTIVE["distill"])))
    if row_family(label) != "hashrec objective" or weight <= 0:
        return []
    return [{name: weight * value if name == "distill" else value} for name, value in OBJECTIVE_LEVERS]


def still_learning(row: dict) -> bool:
    """Whether a grid point's kept epoch (best on validation) lies in the second half of its
    schedule: validation was still improving late, so a longer schedule may add to it."""
    best, epochs = row.get("best_epoch"), row.get("epochs")
    return best is None or not epochs or best > epochs / 2


def teacher_label(teacher: Teacher | None) -> str:
    """The ``teacher`` cell of ``tuning.csv``: the teacher's folder tag without its underscore
    (``d256_e900``); empty for the profile's own."""
    return teacher.tag.lstrip("_") if teacher else ""


def _at_teacher(record: pd.DataFrame, teacher: Teacher | None) -> pd.Series:
    """Which points of a tuning record were run from ``teacher`` (a record without the column: all
    from the profile's own)."""
    cells = record["teacher"].fillna("").astype(str) if "teacher" in record else pd.Series("", index=record.index)
    return cells == teacher_label(teacher)


def _score(metrics: dict, search: str = "hamming") -> float:
    """What the grid maximises: validation recall@20 of the kept weights in the row's own search mode
    (:attr:`.rows.Row.search`: Hamming, or asymmetric for a row trained for it)."""
    valid = (metrics.get("valid") or {}).get(search) or {}
    if "recall@20" not in valid:
        raise ValueError(f"tuning needs a validation split: the run's metrics.json has no valid.{search} block")
    return float(valid["recall@20"])


def tune_row(profile: str, label: str, grid: TuningGrid | None = None, progress: bool = False,
             dataset: str | None = None, valid_fraction: float | None = None,
             record: pd.DataFrame | None = None, teacher: Teacher | None = None,
             kept: tuple[GridPoint, float] | None = None) -> list[dict]:
    """Every grid point of one row on ``dataset`` (default: the profile's first), in order, with its
    validation score; ``winner`` marks the chosen one. ``valid_fraction``: the validation carve-out of a
    split that has none (:func:`.runs.hash_overrides`; the comparison's runs, notebook 07). ``record``
    (:func:`.committed.read_tuning`): a point whose run folder is absent is read from it where it holds
    that point (``_reused`` marks those rows) instead of training. ``teacher``: every point starts from
    that LightGCN (:class:`~hashrec_utils.profiles.Teacher`; None: the profile's own). ``kept``: the
    row's winner on another teacher and its validation score there: it is run first and, where it does
    not score less, kept (only step 5 runs from it; see the module's docstring)."""
    grid = grid or TUNING_GRID[profile]
    dataset = dataset or get_profile(profile).datasets[0]
    rows = []

    def trained(point: GridPoint, config) -> dict:
        metrics, out = variant_run(profile, label, seed=grid.seed, point=point, progress=progress, dataset=dataset,
                                   valid_fraction=valid_fraction, teacher=teacher)
        return {"valid_recall@20": _score(metrics, table_row(label).search),
                "valid_hierarchical_recall@20": _valid_columns(metrics, "hierarchical")["valid_recall@20"],
                "epochs": read_json(out / "config.json")["epochs"], "best_epoch": metrics.get("best_epoch"),
                "train_seconds": metrics.get("train_seconds"), "run": out.name, **identity_cells(config, out)}

    def point_row(point: GridPoint, step: str) -> dict:
        """The row of ``point``: one already run here (steps may meet a point twice), read from the
        record, or trained."""
        ran = next((r for r in rows if r["_point"] == point), None)
        if ran is not None:
            return ran
        got = None
        config, folder = variant_plan(profile, label, seed=grid.seed, dataset=dataset, point=point,
                                      valid_fraction=valid_fraction, teacher=teacher)
        if record is not None and not folder.exists():
            got = recorded_point(record, label, dataset, folder.name)
            if got is not None:
                got = checked_rows([got], config, f"tuning record of run {folder.name} ({label}, {dataset})")[0]
        row = {"row": label, "dataset": dataset, "teacher": teacher_label(teacher), "step": step, **point.to_json(),
               "estimator": str(dict(point.estimator) or ""), "objective": str(dict(point.objective) or ""),
               **(got or trained(point, config)), "_point": point,
               "_reused": got is not None}
        rows.append(row)
        return row

    def grid_steps() -> dict:
        """Steps 1 to 4; their winner."""
        best = None
        for lr in grid.lr_factors:
            for length in grid.length_factors:
                row = point_row(GridPoint(lr, length), "lr × length")
                best = row if best is None or row["valid_recall@20"] > best["valid_recall@20"] else best
        base = best["_point"]
        for alt in own_alternatives(label) if grid.own else ():
            row = point_row(GridPoint(base.lr_factor, base.length_factor, alt), "own schedule")
            best = row if row["valid_recall@20"] > best["valid_recall@20"] else best
        for length in grid.extensions(best["_point"].length_factor) if still_learning(best) else ():
            row = point_row(replace(best["_point"], length_factor=length), "longer schedule")
            if row["valid_recall@20"] <= best["valid_recall@20"]:
                break
            best = row
        for lever in objective_levers(label, best["_point"]) if grid.levers else ():
            point = best["_point"]
            row = point_row(replace(point, objective={**dict(point.objective), **lever}), "objective lever")
            best = row if row["valid_recall@20"] > best["valid_recall@20"] else best
        return best

    moved = point_row(kept[0], "new teacher") if kept else None
    best = moved if moved is not None and moved["valid_recall@20"] >= kept[1] else grid_steps()
    final = grid.final_length_factor
    for length in grid.extensions(best["_point"].length_factor, final) if final and still_learning(best) else ():
        row = point_row(replace(best["_point"], length_factor=length), "final schedule")
        if row["valid_recall@20"] <= best["valid_recall@20"]:
            break
        best = row
    for row in rows:
        row["winner"] = row is best
    return rows


def final_schedule_pending(profile: str, dataset: str, grid: TuningGrid | None = None,
                           record: pd.DataFrame | None = None, teacher: Teacher | None = None) -> list[str]:
    """The rows of ``profile``'s recorded grid on ``dataset`` (``results/<profile>/tuning.csv``, or
    ``record``) whose step 5 has not run: the recorded winner is still learning at a schedule step 5
    would double (:func:`still_learning`, :meth:`TuningGrid.extensions` up to ``final_length_factor``)
    and that doubled point is not in the record (a grid recorded before step 5 existed). [] where the
    profile's grid has no step 5 or nothing is recorded. ``teacher``: the points run from that teacher
    (None: the profile's own)."""
    grid = grid or TUNING_GRID[profile]
    path = results_dir(profile) / "tuning.csv"
    if record is None:
        if not path.exists():
            return []
        record = pd.read_csv(path, keep_default_na=False)
    if not grid.final_length_factor or not len(record):
        return []
    here = record[(record["dataset"].astype(str) == str(dataset)) & _at_teacher(record, teacher)]
    same = ["lr_factor", "estimator", "objective"]
    pending = []
    for _, win in here[here["winner"].astype(str).isin(("True", "true", "1"))].iterrows():
        doubled = grid.extensions(float(win["length_factor"]), grid.final_length_factor)
        if not doubled or not still_learning({"best_epoch": int(win["best_epoch"]), "epochs": int(win["epochs"])}):
            continue
        rows = here[here["row"] == win["row"]]
        ran = rows[(rows["length_factor"].astype(float) == doubled[0])
                   & (rows[same].astype(str) == win[same].astype(str)).all(axis=1)]
        if ran.empty:
            pending.append(str(win["row"]))
    return pending


def teacher_tuning_pending(profile: str, dataset: str, teacher: Teacher | None,
                           record: pd.DataFrame | None = None) -> list[str]:
    """The rows tuned on ``dataset`` (``results/<profile>/tuning.csv``, or ``record``) that have no point
    run from ``teacher`` yet: ``tune --table-teacher`` has not checked their settings on it. [] for the
    profile's own teacher (None) or where nothing is recorded."""
    path = results_dir(profile) / "tuning.csv"
    if teacher is None or (record is None and not path.exists()):
        return []
    record = pd.read_csv(path, keep_default_na=False) if record is None else record
    here = record[record["dataset"].astype(str) == str(dataset)]
    done = set(here[_at_teacher(here, teacher)]["row"].astype(str))
    return [r for r in dict.fromkeys(here["row"].astype(str)) if r not in done]


def _tuned_elsewhere(record: pd.DataFrame, label: str, dataset: str, teacher: Teacher | None) -> float | None:
    """The validation score of ``label``'s winner on ``dataset`` in the tuning record from a teacher
    other than ``teacher`` (the one its tuned settings were chosen on), None where it has none."""
    if not len(record):
        return None
    win = record[(record["row"].astype(str) == label) & (record["dataset"].astype(str) == str(dataset))
                 & record["winner"].astype(str).isin(("True", "true", "1")) & ~_at_teacher(record, teacher)]
    return float(win["valid_recall@20"].iloc[-1]) if len(win) else None


def tuning_rows(profile: str) -> tuple[str, ...]:
    """The rows the grid tunes: every trained row of the profile's table."""
    return HASH_STAGE[profile].rows


def tune(profile: str, labels: tuple[str, ...] | None = None, progress: bool = True,
         dataset: str | None = None, grid: TuningGrid | None = None, valid_fraction: float | None = None,
         reuse_committed: bool = False, teacher: Teacher | None = None) -> pd.DataFrame:
    """Run the grid (default ``TUNING_GRID[profile]``; a smaller ``grid`` is recorded as such in
    ``tuning.csv``'s points) for ``labels`` (default :func:`tuning_rows`) on ``dataset`` (default: the
    profile's first, whose validation split scores it), write ``results/<profile>/tuning``
    (rows not in ``labels``, and other datasets' grids, keep their earlier points; ``valid_fraction``:
    see :func:`tune_row`) and merge the winners into
    :data:`.rows.TUNED_FILE` (other rows' and profiles' winners are kept), after every row.
    ``reuse_committed``: points without a run folder are read from the committed ``tuning.csv`` where
    it holds them (:func:`tune_row`'s ``record``); ``frame.attrs["reused_committed"]`` names their runs.
    ``teacher``: every point starts from that LightGCN (the comparison's, ``tune --table-teacher``); a
    row tuned on another teacher keeps its winner unless its validation drops there (:func:`tune_row`'s
    ``kept``), and its points on the other teacher stay in the record."""
    from tqdm.auto import tqdm

    from .runs import own_teacher

    labels = tuple(labels or tuning_rows(profile))
    dataset = dataset or get_profile(profile).datasets[0]
    teacher = own_teacher(profile, dataset, teacher)
    previous = results_dir(profile) / "tuning.csv"
    record = read_tuning(profile) if reuse_committed else None  # before this grid writes its own
    earlier = pd.read_csv(previous, keep_default_na=False) if previous.exists() else pd.DataFrame()
    if len(earlier) and "teacher" not in earlier:
        earlier.insert(2, "teacher", "")  # a record from before the column: every point from the profile's own
    kept = earlier
    if len(kept):
        same = (kept["row"].isin(labels) & (kept["dataset"].astype(str) == str(dataset) if "dataset" in kept else True)
                & _at_teacher(kept, teacher))
        kept = kept[~same]
    rows = []
    for label in tqdm(labels, desc=f"tune ({profile})", disable=not progress):
        point, score = _rows.tuned_point(profile, label, dataset), None
        if teacher is not None:
            score = _tuned_elsewhere(earlier, label, dataset, teacher)
        rows += tune_row(profile, label, grid, dataset=dataset, valid_fraction=valid_fraction, record=record,
                         teacher=teacher, kept=None if score is None else (point, score))
        # after every row: an interrupted grid keeps the rows it finished (their runs resume anyway)
        winners = {r["row"]: r["_point"].to_json() for r in rows if r["winner"]}
        frame = pd.DataFrame([{k: v for k, v in r.items() if not k.startswith("_")} for r in rows])
        frame["popcount_searchable"] = frame["row"].map(popcount_searchable)
        frame = pd.concat([kept, frame], ignore_index=True) if len(kept) else frame
        write_table(frame, "tuning", profile)
        path = _rows.TUNED_FILE
        saved = read_json(path) if path.exists() else {}
        tuned = saved.setdefault(profile, {})
        tuned[dataset] = {**tuned.get(dataset, {}), **winners}
        write_json(path, saved)
    frame.attrs["reused_committed"] = [r["run"] for r in rows if r["_reused"]]
    return frame
