"""Notebook 05's stage: accuracy at a fixed query throughput, measured as ANN search is measured.

One model per dataset across the study (:func:`tradeoff_models`): on ml-1m the LightGCN teacher and
notebook 03's validation-chosen codes; on a comparison dataset (Gowalla, ``full``) the comparison's
teacher and its validation-chosen best row, seed 0 — the runs the comparison's record holds, at its
teacher size, and their refits on all of train where the comparison's result is the refit
(:func:`comparison_refit`) — named in the summary (``teacher_run``, ``codes_run``), so the tradeoff
follows when either changes.

Every method is swept from its fastest to its most accurate setting (:func:`.speed.retrieval_sweeps`),
each search timed ``repeats`` times (``qps`` the median with exclusion, the recommender's figure and
the headline; ``qps_plain`` the median at plain ``k``, the ANN-benchmarks convention; ``qps_min``,
``qps_max`` the spread), threads pinned, the load average recorded. The multiples are of the
*fastest* exact search measured in the same run — hashrec's GEMM or the torch formula, whichever
this machine flatters — so they do not depend on which exact search wins where. Two accuracy
figures per point, named apart: ``recall_ratio`` = the point's test recall@20 / exact search's (the
recommendation figure: "keeps 0.97× of exact") and ``recall_vs_exact`` = the share of exact
search's top-20 it returns (the ANN figure).
"""
from __future__ import annotations

import os

import numpy as np
import pandas as pd

from ..config import figures_dir, results_dir, runs_dir
from ..profiles import get_profile
from ..utils import read_json, write_json
from .runs import write_table
from .speed import RETRIEVAL_STAGE, RetrievalSetup, catalogue_stage, retrieval_setup, retrieval_sweeps

__all__ = ["EXACT_METHODS", "tradeoff_models", "tradeoff_stage", "fixed_throughput", "latency_table", "headline"]

EXACT_METHODS = ("Exact float (GEMM)", "Exact float (torch)")
# a comparison dataset's sampled catalogues stop at 10^6 items: at 10^7 every method costs minutes on two cores
CATALOGUE_MAX_ITEMS = 10**6
LATENCY_TARGETS = (0.95, 0.99)  # batch-1 latency at each method's points nearest these recall ratios


def tradeoff_models(profile: str, dataset: str) -> tuple[str, float | None]:
    """The codes a dataset's tradeoff searches, and the validation carve-out they were trained on.

    ml-1m: notebook 03's best estimator (``hashing_summary.json``). Another dataset: the best row
    of this profile's comparison (``comparison_summary.json``) on the comparison's carve-out."""
    if dataset == "ml-1m":
        return read_json(results_dir(profile) / "hashing_summary.json")["best_estimator"], None
    from .comparison import COMPARISON, comparison_summary

    summary, record = comparison_summary(profile, dataset)
    if not record or "best_row" not in record:
        raise ValueError(f"the {dataset} tradeoff searches the comparison's models: run notebook 07 "
                         f"(compare --profile {profile}) first; {summary} holds no best row of {dataset}")
    return record["best_row"], COMPARISON[profile].valid_fraction


def comparison_refit(profile: str, dataset: str) -> bool:
    """Whether the comparison's result on ``dataset`` is its refit (its summary has a ``refit`` block:
    the teacher and the best row retrained on all of train), so that the speed study searches those
    final models rather than their carve-out runs."""
    from .comparison import comparison_summary

    record = comparison_summary(profile, dataset)[1]
    return bool(record and record.get("refit"))


def tradeoff_stage(profile: str, datasets: tuple[str, ...] | None = None) -> dict:
    """Notebook 05: every dataset of the profile's ``tradeoff_datasets`` (or those of ``datasets``, e.g.
    ``python -m hashrec_utils tradeoff --profile full --dataset gowalla``).

    Writes ``results/<profile>/tradeoff_{points,fixed,fixed_plain,latency}<suffix>`` and
    ``tradeoff_summary<suffix>.json``, figure ``tradeoff<suffix>`` (suffix ``_<dataset>`` beyond
    ml-1m); beyond ml-1m also the sampled catalogues fitted to that dataset's items
    (:func:`.speed.catalogue_stage`, ``retrieval_scaling<suffix>``). ml-1m reuses notebook 04's sweep. Returns ml-1m's tables, the others under ``datasets``.
    """
    from .comparison import COMPARISON

    planned = get_profile(profile).tradeoff_datasets
    unknown = sorted(set(datasets or ()) - set(planned))
    if unknown:
        raise ValueError(f"datasets: not swept by the {profile} profile: {', '.join(unknown)} (its: {', '.join(planned)})")
    result = {}
    for dataset in datasets or planned:
        label, carve = tradeoff_models(profile, dataset)
        # beyond ml-1m: the comparison's models, from its teacher, refit where its result is the refit
        setup = retrieval_setup(profile, label, dataset=dataset, valid_fraction=carve,
                                teacher=None if dataset == "ml-1m" else COMPARISON[profile].teacher,
                                refit=dataset != "ml-1m" and comparison_refit(profile, dataset))
        sweep_csv = results_dir(profile) / "retrieval_sweep.csv"
        points = pd.read_csv(sweep_csv) if dataset == "ml-1m" and sweep_csv.exists() else retrieval_sweeps(profile, setup)
        tables = _tradeoff(profile, dataset, points, setup)
        if dataset == "ml-1m":
            result.update(tables)
        else:
            # the sampled catalogues fitted to this (larger) real catalogue's trained items
            tables["scaling"], tables["scaling_summary"] = catalogue_stage(profile, setup, dataset, CATALOGUE_MAX_ITEMS)
            result.setdefault("datasets", {})[dataset] = tables
    result.setdefault("datasets", {})
    return result


def fixed_throughput(points: pd.DataFrame, exact_qps: float, multiples, *, qps: str = "qps",
                     metric: str = "recall@20") -> pd.DataFrame:
    """At each multiple of ``exact_qps``, the best ``metric`` each method reaches at ``qps`` at least
    that (NaN: never that fast), with the winning point's settings; ``multiple_of_exact`` as given.
    Methods in the sweep's order (family by family), not alphabetically."""
    from ..bench import at_fixed_throughput

    frame = points.assign(qps=points[qps]) if qps != "qps" else points
    targets = {float(m) * exact_qps: float(m) for m in multiples}
    fixed = at_fixed_throughput(frame, list(targets), metric=metric)
    fixed.insert(1, "multiple_of_exact", fixed["target_qps"].map(targets))
    order = {m: i for i, m in enumerate(dict.fromkeys(points["method"]))}  # the sweep's order: by family
    fixed = fixed.assign(_order=fixed["method"].map(order)).sort_values(["_order", "multiple_of_exact"], kind="stable")
    return fixed.drop(columns="_order").reset_index(drop=True)


def latency_table(points: pd.DataFrame, targets=LATENCY_TARGETS) -> pd.DataFrame:
    """Per method and target recall ratio, its operating point nearest the target (the faster of two
    equally near): the point's settings, ``recall_ratio``, ``qps`` and batch-1 ``latency_p50_ms``/``p99``."""
    rows = []
    for method, group in points.groupby("method", sort=False):
        group = group[group["recall_ratio"].notna()]
        if group.empty or "latency_p50_ms" not in group:
            continue
        for target in targets:
            gap = (group["recall_ratio"] - target).abs()
            best = group.loc[gap[gap == gap.min()].index].sort_values("qps").iloc[-1]
            rows.append({"method": method, "target_recall_ratio": target, **best.to_dict()})
    return pd.DataFrame(rows)


def _hashrec(method: str) -> bool:
    return str(method).startswith("hashrec")


def headline(dataset: str, fixed: pd.DataFrame, exact_qps: float, exact_method: str) -> str:
    """One sentence from the fixed-throughput table: the largest multiple at which hashrec keeps at least
    0.97× of exact recall@20, and the best other approximate method there (or hashrec's best at 2× if it
    never does)."""
    ours_mask = fixed["method"].map(_hashrec).astype(bool)
    ok = fixed[ours_mask & (fixed["recall_ratio"] >= 0.97)]
    multiples = sorted(fixed["multiple_of_exact"].unique())
    m = float(ok["multiple_of_exact"].max()) if len(ok) else next((x for x in multiples if x >= 2), multiples[-1])
    at = fixed[(fixed["multiple_of_exact"] == m) & fixed["recall@20"].notna()]
    hashrec = at["method"].map(_hashrec).astype(bool)
    ours = at[hashrec].sort_values("recall@20")
    others = at[~hashrec & ~at["method"].isin(EXACT_METHODS)].sort_values("recall@20")
    exact = f"{m:g}× the fastest exact search ({exact_method}, {exact_qps:,.0f} queries/s with exclusion)"
    if ours.empty:
        return f"On {dataset}, no hashrec search reaches {exact}."
    o = ours.iloc[-1]
    text = (f"On {dataset}, at {exact} hashrec's best point ({o['method']}) keeps {o['recall_ratio']:.3f}× of exact "
            f"search's recall@20 ({o['recall@20']:.4f})")
    if len(ok) == 0:
        text += " — below 0.97× at every multiple from 2× up"
    if others.empty:
        return text + "; no other approximate method is that fast."
    t = others.iloc[-1]
    return text + f"; the best other approximate method there, {t['method']}, keeps {t['recall_ratio']:.3f}×."


def _tradeoff(profile: str, dataset: str, points: pd.DataFrame, setup: RetrievalSetup) -> dict[str, pd.DataFrame]:
    """Frontier, fixed-throughput tables (both protocols), latency, summary and figure of one dataset's sweep."""
    from ..plotting import pareto_frontier, plot_tradeoff, savefig

    st = RETRIEVAL_STAGE[profile]
    suffix = "" if dataset == "ml-1m" else f"_{dataset}"
    points = points.copy()
    exact_rows = points[points["method"].isin(EXACT_METHODS)]
    if exact_rows.empty:
        raise ValueError(f"the {dataset} sweep has no exact search row ({', '.join(EXACT_METHODS)})")
    fastest = exact_rows.loc[exact_rows["qps"].idxmax()]
    exact_qps, exact_method = float(fastest["qps"]), str(fastest["method"])
    exact_recall = float(points.loc[points.method == EXACT_METHODS[0], "recall@20"].max())
    exact_plain = float(exact_rows["qps_plain"].max())
    points["recall_ratio"] = points["recall@20"] / exact_recall
    front = pareto_frontier(points, "qps", "recall@20")
    points["pareto"] = points.index.isin(front.index)
    write_table(points, f"tradeoff_points{suffix}", profile)
    fixed = fixed_throughput(points, exact_qps, st.multiples)
    fixed["recall_ratio"] = fixed["recall@20"] / exact_recall
    memory = points.groupby("method", sort=False)["bytes_per_item"].first()
    fixed["bytes_per_item"] = fixed["method"].map(memory)
    write_table(fixed, f"tradeoff_fixed{suffix}", profile)
    plain = fixed_throughput(points, exact_plain, st.multiples, qps="qps_plain", metric="recall_vs_exact_plain") \
        if "recall_vs_exact_plain" in points else pd.DataFrame()
    if len(plain):
        write_table(plain, f"tradeoff_fixed_plain{suffix}", profile)
    latency = latency_table(points)
    if len(latency):
        write_table(latency, f"tradeoff_latency{suffix}", profile)
    frontier = {f"{m:g}": sorted(fixed[(fixed.multiple_of_exact == m) & fixed["recall@20"].notna()]
                                 .nlargest(1, "recall@20")["method"]) for m in st.multiples}
    run_metrics = read_json(runs_dir(profile) / setup.codes_run / "metrics.json")
    teacher_metrics = read_json(runs_dir(profile) / setup.teacher_run / "metrics.json")
    hamming = points[points.method.str.startswith("hashrec Hamming")]
    summary = {
        "dataset": dataset, "teacher_run": setup.teacher_run, "codes_run": setup.codes_run,
        "best_estimator": setup.hash_label, "exact_method": exact_method, "exact_qps": exact_qps,
        "exact_qps_plain": exact_plain,
        "exact_gemm_qps": float(points.loc[points.method == EXACT_METHODS[0], "qps"].max()),
        "torch_reference_qps": float(points.loc[points.method == EXACT_METHODS[1], "qps"].max())
        if (points.method == EXACT_METHODS[1]).any() else None,
        "exact_recall@20": exact_recall, "teacher_test_recall@20": float(teacher_metrics["recall@20"]),
        "codes_test_hamming_recall@20": float(run_metrics["hamming"]["recall@20"]),
        "sweep_hamming_recall@20": float(hamming["recall@20"].max()) if len(hamming) else None,
        "codes_test_asymmetric_recall@20": float(run_metrics["asymmetric"]["recall@20"])
        if "asymmetric" in run_metrics else None,
        "multiples": [float(m) for m in st.multiples], "most_accurate_at_multiple": frontier,
        "pareto_methods": sorted(set(front["method"])), "threads": st.threads, "repeats": st.repeats,
        "load_average": list(os.getloadavg()), "users": int(len(setup.users)),
        "headline": headline(dataset, fixed, exact_qps, exact_method),
    }
    write_json(results_dir(profile) / f"tradeoff_summary{suffix}.json", summary)
    savefig(plot_tradeoff(points, title=f"{dataset}: accuracy against throughput ({st.threads} threads, with exclusion)",
                          exact_qps=exact_qps),
            f"tradeoff{suffix}", figures_dir(profile))
    return {"points": points, "fixed": fixed, "fixed_plain": plain, "latency": latency, "pareto": front,
            "summary": summary}
