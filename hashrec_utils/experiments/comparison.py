"""Notebook 07: the seed paper's table, every row run by hashrec, beside the published numbers.

Luo & Wu (``shared/papers/003``) compare hash codes on Gowalla's published split at R@50, R@100,
N@50 and N@100. :func:`comparison_stage` runs each of its rows (and hashrec's own) on every
catalogue of :data:`COMPARISON`'s profile under the study's one protocol:

* a published split has no validation set, so ``valid_fraction`` of each user's train items is
  carved out (split seed 0) and every model — the LightGCN teacher included — trains on the rest;
  every choice (checkpoint, the best row, the bits sweep's base) reads that validation split, and
  the test split is read once per final model, every train item (validation included) excluded;
* each run's saved arrays are evaluated at ``ks`` (hierarchical search: ``candidates`` Hamming
  candidates re-ranked by the continuous inner product, the same C for every k), and the
  numbers are cached in the run folder (``comparison_metrics.json``), so a rerun reads them;
* the top rows run over every seed of ``seeds`` (each seed fine-tunes the same seed-0
  LightGCN, so ± leaves LightGCN's own variance out); the others seed 0. The top rows are chosen
  on validation once every row's seed 0 has run (:func:`comparison_top_rows`): every published
  recipe, and the ``top_hashrec`` rows of hashrec's objective with the best validation Hamming
  recall@50.

With ``reuse_committed`` (``compare --reuse-committed``), a run with no folder here is read from
those committed files where they hold it (:mod:`.committed`), so a fresh clone trains only the
runs whose settings changed.

Writes ``results/<profile>/comparison_{runs,table,bits}.{csv,json}``, ``comparison_summary.json``
and the ``comparison_bits_<dataset>`` figures. A profile without catalogues of its own (``default``) shows
the ``full`` profile's committed results instead (:attr:`ComparisonStage.source`).
"""
from __future__ import annotations

import functools
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from ..config import figures_dir, results_dir
from ..profiles import ALL_ROWS, ComparisonStage, ProfileView
from ..utils import read_json, write_json
from .committed import CommittedRuns, checked_rows, identity_cells, read_comparison
from .refit import CARVE_OUT, REFIT, REFIT_SUFFIX, refit_config, refit_folder, refit_run, refit_summary
from .rows import GridPoint, popcount_searchable, row_family, tuned_point, tuned_winners, variant_plan, variant_run
from .runs import hash_plan, hash_run, lightgcn_args, lightgcn_plan, lightgcn_run, own_teacher, write_table
from .teacher_size import table_teacher, teacher_pending
from .tuning import final_schedule_pending, teacher_tuning_pending

__all__ = ["ComparisonStage", "COMPARISON", "UNTRAINED_ROWS", "comparison_stage", "comparison_metrics", "comparison_view",
           "comparison_best_row", "comparison_top_rows", "published_rows", "sweep_point"]

# The rows that train nothing: (label, method); post-hoc sign takes one bit per dimension.
UNTRAINED_ROWS = (("lsh", "lsh"), ("sign (post-hoc)", "sign"))
_ALL_ROWS = ALL_ROWS
# Each profile's notebook-07 stage (:class:`hashrec_utils.profiles.ComparisonStage`; default shows
# full's committed results), by profile name.
COMPARISON = ProfileView("comparison")


def comparison_metrics(out: Path, data, ks: tuple[int, ...], candidates: int) -> dict:
    """Test and validation metrics at ``ks`` of a finished run folder's ``embeddings.npz``:
    ``{"test": sections, "valid": sections}`` (hash runs: ``continuous``/``hamming``/``hierarchical``;
    LightGCN: ``continuous``; scaled codes ranked by ``α_i ⟨b_u, b_i⟩`` as their model ranks them).
    Test excludes every train item (validation included), validation the train items. Cached in ``out/comparison_metrics.json`` under the ``ks`` and ``candidates``."""
    from ..evaluation import evaluate_arrays

    out = Path(out)
    cache = out / "comparison_metrics.json"
    with np.load(out / "embeddings.npz") as npz:  # the key only needs the archive's names
        scaled = "item_scales" in npz.files
    key = {"ks": list(ks), "candidates": int(candidates), "scoring": "scaled codes" if scaled else "codes"}
    if cache.exists():
        saved = read_json(cache)
        if saved.get("key") == key and (out / "metrics.json").stat().st_mtime <= cache.stat().st_mtime:
            return saved
    with np.load(out / "embeddings.npz") as npz:
        arrays = dict(npz)
    result = {"key": key}
    for split, target, exclude in (("test", data.test, data.train_full), ("valid", data.valid, data.train)):
        if target.nnz == 0:
            result[split] = None
            continue
        m = evaluate_arrays(arrays, target, exclude, ks=ks, candidates=candidates)
        result[split] = m if "continuous" in m else {"continuous": m}
    write_json(cache, result)
    return result


def _rows_of(label: str, seed: int, bits: int, metrics: dict, ks: tuple[int, ...], run: Path,
             protocol: str = CARVE_OUT) -> list[dict]:
    """One row per search mode: test metrics at ``ks`` and the validation ones (``valid_…``)."""
    rows = []
    for search, test in metrics["test"].items():
        valid = (metrics.get("valid") or {}).get(search) or {}
        row = {"row": label, "family": row_family(label), "seed": seed, "bits": bits, "search": search, "run": run.name,
               "protocol": protocol}
        for k in ks:
            for m in ("recall", "ndcg"):
                row[f"{m}@{k}"] = test.get(f"{m}@{k}", np.nan)
                row[f"valid_{m}@{k}"] = valid.get(f"{m}@{k}", np.nan)
        rows.append(row)
    return rows


def _metric_columns(ks) -> list[str]:
    return [f"{m}@{k}" for k in ks for m in ("recall", "ndcg")] + [f"valid_{m}@{k}" for k in ks for m in ("recall", "ndcg")]


def best_row_candidate(label: str) -> bool:
    """Whether ``label`` may be hashrec's best row: a row of hashrec's objective whose codes popcount serves."""
    return row_family(label) == "hashrec objective" and popcount_searchable(label)


def comparison_top_rows(table: pd.DataFrame, n_hashrec: int, selection: str = "valid_recall@50_mean") -> list[str]:
    """The rows that run every seed, chosen on validation from a table of seed-0 runs: every
    published recipe (family ``as published``) and the ``n_hashrec`` rows of hashrec's objective
    (scaled codes included) with the highest validation Hamming ``selection``, in the table's order.
    Test numbers choose nothing; a row without a validation number is not among the best."""
    hamming = table[(table.search == "hamming") & (table.get("protocol", CARVE_OUT) == CARVE_OUT)]
    published = hamming[hamming.family == "as published"].row.tolist()
    ours = hamming[(hamming.family == "hashrec objective") & hamming[selection].notna()]
    best = set(ours.sort_values(selection, ascending=False, kind="stable").row.head(max(0, n_hashrec)))
    return [r for r in hamming.row if r in best or r in published]


def comparison_best_row(table: pd.DataFrame, selection: str = "valid_recall@50_mean") -> str:
    """hashrec's best recipe: the :func:`best_row_candidate` with the highest mean validation Hamming
    ``selection``; test numbers choose nothing."""
    cand = table[(table.search == "hamming") & table.row.map(best_row_candidate)
                 & (table.get("protocol", CARVE_OUT) == CARVE_OUT)]
    if cand.empty or cand[selection].isna().all():
        raise ValueError(f"comparison_best_row needs hashrec-objective rows with {selection} (a validation split)")
    return str(cand.loc[cand[selection].idxmax(), "row"])


def published_rows(dataset: str) -> pd.DataFrame:
    """The published numbers of ``dataset`` (:data:`hashrec_utils.report.PUBLISHED`) as rows."""
    from ..report import PUBLISHED

    return pd.DataFrame([r for r in PUBLISHED if r["dataset"] == dataset])


def own_budget_pending(profile: str, dataset: str, steps: tuple[str, ...]) -> list[str]:
    """The ``steps`` of ``scripts/published_budget.py`` (BGCH and BiGeaR at their official budgets,
    seed 0) whose run ``results/<profile>/published_budget.json`` does not hold on ``dataset``."""
    path = results_dir(profile) / "published_budget.json"
    record = read_json(path) if path.exists() else {}
    done = record.get("variants", {}) if record.get("dataset") == dataset else {}
    return [s for s in steps if f"{s}_s0" not in done]


def _summarize(runs: pd.DataFrame, ks) -> pd.DataFrame:
    from .stages import summarize

    cols = [c for c in _metric_columns(ks) if c in runs]
    return summarize(runs, ["row", "family", "bits", "search", "protocol"], tuple(cols))


def comparison_stage(profile: str, stage: ComparisonStage | None = None,
                     reuse_committed: bool = False) -> dict[str, pd.DataFrame]:
    """Notebook 07 (see the module's docstring); returns ``table``, ``runs``, ``bits``, ``published``
    and ``summary`` (a dict per dataset).

    ``stage``: a part of the profile's :data:`COMPARISON` (fewer rows, seeds or bits, e.g. while
    long runs are still training); the summary's ``pending`` lists what the profile's stage has
    and this one did not run, and the report prints it. ``reuse_committed``: a run whose folder is
    absent is read from the profile's committed record where it holds that run
    (:class:`.committed.CommittedRuns`; the summary's ``reused_committed`` names them)."""
    from ..plotting import plot_comparison_bits, savefig
    from ..settings import train_config
    from ..training.runs import load_run_data

    planned = COMPARISON[profile]
    stage = planned if stage is None else stage
    if not stage.datasets:
        return _read(stage.source)
    if not any(map(best_row_candidate, stage.rows)):
        # checked before anything trains: the summary and the bits sweep need hashrec's best row
        raise ValueError(f"rows {' '.join(stage.rows)}: the table's best row (and the bits sweep's base) is chosen "
                         f"among hashrec's objective rows, and none is listed; add one, e.g. --rows signswish "
                         f"{' '.join(stage.rows)} (finished runs are reused)")
    committed = CommittedRuns.read(profile) if reuse_committed else None
    seeds_left = [s for s in planned.seeds if s not in stage.seeds]
    run_rows, tables, bit_rows, summaries = [], [], [], {}
    for dataset in stage.datasets:
        vf = stage.valid_fraction
        spec = own_teacher(profile, dataset, stage.teacher)  # the table's teacher (None: the profile's), every run's
        resolved = table_teacher(profile, dataset)  # its size and schedule
        data = load_run_data(train_config(profile, dataset, valid_fraction=vf))
        runs_seconds, reused = {}, []

        def rows_of_run(which, label, seed, bits, plan, train):
            """One run's rows (its train seconds go to ``runs_seconds``): its folder's (trained, resumed
            or cached), or the committed record's where asked, the folder is absent and the record's
            identity is the one ``plan`` (its config and folder, resolved without training) would train with."""
            config, folder = plan
            name = folder.name
            if committed is not None and not folder.exists():
                got = committed.rows(which, dataset, name, label)
                if got is not None:
                    reused.append(name)
                    runs_seconds[name] = committed.train_seconds(dataset, name)
                    protocol = REFIT if name.endswith(REFIT_SUFFIX) else CARVE_OUT
                    return [{**r, "protocol": protocol}
                            for r in checked_rows(got, config, f"{which} record of run {name} ({label}, {dataset})")]
            m, out = train()
            runs_seconds[out.name] = m.get("train_seconds") or 0.0
            refit = name.endswith(REFIT_SUFFIX)
            metrics = comparison_metrics(out, data_all() if refit else data, stage.ks, stage.candidates)
            rows = _rows_of(label, seed, bits, metrics, stage.ks, out, REFIT if refit else CARVE_OUT)
            return [{**r, **identity_cells(config, out)} for r in rows]

        @functools.cache
        def data_all():
            """The refits' data: all of train (no validation split), the same test split."""
            return load_run_data(train_config(profile, dataset, valid_fraction=0.0))

        def refit_rows(label, seed, plan, init):
            """The rows of the refit of a carve-out run ``plan`` (its config and folder), from ``init``
            (the teacher's refit; None for the teacher): trained here, or the record's where asked."""
            config, folder = plan
            # the refit's identity (what a recorded row is checked against) does not depend on its kept
            # epoch, which only the carve-out run's folder holds: the whole schedule stands in for it
            planned = (refit_config(config, config.epochs, init=init), refit_folder(folder))
            return rows_of_run("runs", label, seed, 64 if init else 0, planned, lambda: refit_run(folder, init=init))

        def row_runs(label, seeds):
            """Table row ``label``'s runs at ``seeds`` (64 bits, its tuned settings)."""
            got = []
            for seed in seeds:
                got += rows_of_run("runs", label, seed, 64,
                                   variant_plan(profile, label, seed=seed, dataset=dataset, valid_fraction=vf,
                                                teacher=spec),
                                   lambda: variant_run(profile, label, seed=seed, dataset=dataset, valid_fraction=vf,
                                                       teacher=spec))
            return got

        sized = lightgcn_args(spec)
        lgcn_plan = lightgcn_plan(profile, dataset, valid_fraction=vf, **sized)
        lgcn_name = lgcn_plan[1].name
        teacher_rows = rows_of_run("runs", "lightgcn (continuous)", 0, 0, lgcn_plan,
                                   lambda: lightgcn_run(profile, dataset, progress=False, valid_fraction=vf, **sized))
        per_row = {label: row_runs(label, stage.seeds[:1]) for label in stage.rows}
        untrained = []
        for label, method in UNTRAINED_ROWS:
            b = resolved.dim if method == "sign" else 64
            plan = hash_plan(profile, method, bits=b, dataset=dataset, valid_fraction=vf, teacher=spec)
            untrained += [r for r in rows_of_run("runs", label, 0, b, plan, lambda: hash_run(
                profile, method, bits=b, dataset=dataset, valid_fraction=vf, teacher=spec)) if r["search"] != "continuous"]
        # the top rows, chosen on the seed-0 table's validation numbers, run the other seeds
        first = _summarize(pd.DataFrame([r for rs in per_row.values() for r in rs]), stage.ks)
        def top_of(s):
            return list(s.top_rows) if s.top_rows is not None else comparison_top_rows(first, s.top_hashrec)

        top, planned_top = [r for r in top_of(stage) if r in stage.rows], top_of(planned)
        for label in top:
            per_row[label] += row_runs(label, stage.seeds[1:])
        pending = {"rows": [r for r in planned.rows if r not in stage.rows], "seeds": list(planned.seeds),
                   "top_rows_seeds": [r for r in planned_top if r in stage.rows and (r not in top or seeds_left)],
                   "bits": [b for b in planned.bits if b not in stage.bits],
                   # rows whose grid was recorded before its step 5 (a still-learning winner's longer schedule)
                   "final_schedule": [r for r in final_schedule_pending(profile, dataset, teacher=spec)
                                      if r in stage.rows],
                   # tuned rows whose settings are not yet checked on the table's teacher (tune --table-teacher)
                   "retune": [r for r in teacher_tuning_pending(profile, dataset, spec) if r in stage.rows],
                   # BGCH and BiGeaR at their official budgets (scripts/published_budget.py) not yet recorded
                   "own_budget": own_budget_pending(profile, dataset, planned.own_budget_steps),
                   # the teacher-size record's choice, where the table is not yet built on it
                   "teacher": teacher_pending(profile, dataset, resolved)}
        runs = pd.DataFrame(teacher_rows + [r for label in stage.rows for r in per_row[label]] + untrained)
        runs.insert(0, "dataset", dataset)
        table = _summarize(runs, stage.ks).assign(dataset=dataset)
        best = comparison_best_row(table)
        refit_left = []  # refits the stage's refit_seeds leave out (pending)
        if stage.refit != "none":  # every choice made on the carve-out: the final models on all of train
            teacher_refit = refit_folder(lgcn_plan[1])
            refits = refit_rows("lightgcn (continuous)", 0, lgcn_plan, None)
            for label in ([best] if stage.refit == "best" else top):
                for seed in (stage.seeds if label in top else stage.seeds[:1]):
                    if stage.refit_seeds is not None and seed not in stage.refit_seeds:
                        refit_left.append(f"{label} seed {seed}")
                        continue
                    refits += refit_rows(label, seed, variant_plan(profile, label, seed=seed, dataset=dataset,
                                                                   valid_fraction=vf, teacher=spec), teacher_refit)
            runs = pd.concat([runs, pd.DataFrame(refits).assign(dataset=dataset)], ignore_index=True)
            table = _summarize(runs, stage.ks).assign(dataset=dataset)
        pending["refit"] = ([r for r in top if r != best] if stage.refit == "best" else []) + refit_left
        sweep = sweep_point(tuned_point(profile, best, dataset), stage.sweep_length_factor)
        for b in stage.bits:
            plan = variant_plan(profile, best, bits=b, dataset=dataset, valid_fraction=vf, point=sweep, teacher=spec)
            bit_rows += [{"dataset": dataset, **r} for r in rows_of_run("bits", best, 0, b, plan, lambda: variant_run(
                profile, best, bits=b, dataset=dataset, valid_fraction=vf, point=sweep, teacher=spec))
                if r["search"] != "continuous"]
        run_rows.append(runs)
        tables.append(table)
        carve = runs[runs.protocol == CARVE_OUT]
        teacher = {k: float(carve[carve.row == "lightgcn (continuous)"][k].iloc[0]) for k in ("recall@20", "recall@50")}
        savefig(plot_comparison_bits(pd.DataFrame([r for r in bit_rows if r["dataset"] == dataset]), teacher,
                                     _best_published(dataset)), f"comparison_bits_{dataset}", figures_dir(profile))
        carve_table = table[table.protocol == CARVE_OUT]
        pick = carve_table[(carve_table.row == best) & (carve_table.search == "hamming")].iloc[0]
        summaries[dataset] = {
            "best_row": best, "selected_on": "valid",
            "selection": ("hashrec-objective row with the highest mean valid Hamming recall@50 (validation carve-out) "
                          "among those whose codes Hamming distance alone ranks (scaled codes, BGCH and BiGeaR, carry a "
                          "float per item that popcount indexes cannot serve)"),
            "valid_fraction": vf, "candidates": stage.candidates, "ks": list(stage.ks),
            "teacher": teacher,
            "teacher_dim": resolved.dim,
            "teacher_epochs": resolved.epochs,
            "best_valid_hamming_recall@50": float(pick["valid_recall@50_mean"]),
            **{f"best_{s}_{m}": float(carve_table[(carve_table.row == best) & (carve_table.search == s)][f"{m}_mean"].iloc[0])
               for s in ("hamming", "hierarchical") for m in ("recall@50", "recall@100", "ndcg@50", "ndcg@100")},
            **refit_summary(table, runs, best),
            "lightgcn_train_seconds": runs_seconds.get(lgcn_name),
            "train_seconds": {r: float(v) for r, v in runs_seconds.items()},
            "pending": pending,
            "top_rows": top,
            "top_rows_rule": (f"given: {', '.join(stage.top_rows) or 'none'}" if stage.top_rows is not None else
                              f"every published recipe and the {stage.top_hashrec} rows of hashrec's objective with "
                              f"the best validation Hamming recall@50 at seed 0"),
            "reused_committed": sorted(reused),
            "settings": _settings_of(profile, dataset, stage.rows),
            "sweep_settings": sweep.to_json(),
        }
    runs = pd.concat(run_rows, ignore_index=True)
    table = pd.concat(tables, ignore_index=True)
    bits = pd.DataFrame(bit_rows)
    write_table(runs, "comparison_runs", profile)
    write_table(table, "comparison_table", profile)
    write_table(bits, "comparison_bits", profile)
    write_json(results_dir(profile) / "comparison_summary.json", summaries)
    published = pd.concat([published_rows(d) for d in stage.datasets], ignore_index=True)
    return {"table": table, "runs": runs, "bits": bits, "published": published, "summary": summaries}


def _best_published(dataset: str) -> dict:
    """``{"recall@50": (label, value)}``: the best published recall@50 of ``dataset`` (none: {})."""
    pub = published_rows(dataset)
    if pub.empty or "recall@50" not in pub or pub["recall@50"].isna().all():
        return {}
    best = pub.loc[pub["recall@50"].idxmax()]
    return {"recall@50": (f"{best['method']} (published, bits not stated)", float(best["recall@50"]))}


def sweep_point(point: GridPoint, length_factor: float | None) -> GridPoint:
    """The bits sweep's settings: the best row's tuned ``point`` with its schedule capped at
    ``length_factor`` (None: as tuned)."""
    if length_factor is None or point.length_factor <= length_factor:
        return point
    return replace(point, length_factor=length_factor)


def _settings_of(profile: str, dataset: str, rows) -> dict:
    """Each row's tuning-grid point on ``dataset`` (``make tune``'s winner), or ``"base"`` where that
    row was not tuned there."""
    winners = tuned_winners(profile, dataset)
    return {row: winners.get(row, "base") for row in rows}


def comparison_summary(profile: str, dataset: str):
    """``(path, record)``: where ``profile``'s comparison summary lies and what it holds of ``dataset``
    (None where the comparison has not run there), for the stages that follow its models."""
    path = results_dir(profile) / "comparison_summary.json"
    return path, (read_json(path).get(dataset) if path.exists() else None)


def _read(profile: str) -> dict:
    """The committed results of ``profile``'s comparison (:func:`.committed.read_comparison`) with
    the published numbers of its datasets."""
    record = read_comparison(profile)
    summary = record["summary"]
    published = pd.concat([published_rows(d) for d in summary], ignore_index=True) if summary else pd.DataFrame()
    return {**record, "published": published}


def comparison_view(table: pd.DataFrame, published: pd.DataFrame, search: str = "hamming",
                    metrics: tuple[str, ...] = ("recall@50", "recall@100", "ndcg@50", "ndcg@100"),
                    summary: dict | None = None) -> pd.DataFrame:
    """One frame for reading: every hashrec row of ``table`` in ``search`` (means over seeds, and
    the seeds), with the published number of the same method beside each metric (``pub_<metric>``,
    NaN where the paper has none), and the published rows with no hashrec row in ``table``
    (``"<method> (published only)"``).

    ``protocol`` (where the table has it): ``carve-out`` (trained on the carve-out, every choice made
    there) or ``refit`` (the same choices, retrained on all of train: :mod:`.refit`).

    ``summary`` (:func:`comparison_stage`'s, a dict per dataset): adds ``settings``, how each row's
    settings were chosen: ``"grid winner"`` (the validation grid ran for it), ``"base (not tuned)"``
    (it did not, so its gap to a tuned row is an upper bound), ``"teacher (profile settings)"`` (the
    LightGCN every LightGCN-based row starts from, at the profile's settings) or ``"none (untrained)"``
    (LSH, post-hoc sign)."""
    if table.empty:
        return pd.DataFrame()
    mine = table[(table.search == search) | (table.row == "lightgcn (continuous)")]
    mine = mine[mine.bits.isin([0, 64]) | (mine.row == "sign (post-hoc)")]
    view = mine[["dataset", "row", "family", "search", "bits", "seeds"] + (["protocol"] if "protocol" in mine else [])].copy()
    if summary is not None:
        def how(dataset, row):
            point = summary.get(dataset, {}).get("settings", {}).get(row)
            if point is None:
                return "teacher (profile settings)" if row == "lightgcn (continuous)" else "none (untrained)"
            return "base (not tuned)" if point == "base" else "grid winner"
        view["settings"] = [how(d, r) for d, r in zip(view.dataset, view.row)]
    for m in metrics:
        view[m] = mine[f"{m}_mean"].values
        view[f"{m}_std"] = mine[f"{m}_std"].values
    pub = published.dropna(subset=["row"]) if "row" in published else published.iloc[:0]
    for m in metrics:
        lookup = {(r["dataset"], r["row"]): r.get(m, np.nan) for _, r in pub.iterrows()}
        view[f"pub_{m}"] = [lookup.get((d, r), np.nan) for d, r in zip(view.dataset, view.row)]
    beside = published["row"].isin(set(view.row)) if "row" in published else pd.Series(False, index=published.index)
    unrun = published[~beside & published[list(metrics)].notna().any(axis=1)]
    extra = pd.DataFrame({"dataset": unrun.dataset, "row": unrun.method + " (published only)", "family": "published",
                          "search": search, **{f"pub_{m}": unrun[m] for m in metrics}})
    return pd.concat([view, extra], ignore_index=True)
