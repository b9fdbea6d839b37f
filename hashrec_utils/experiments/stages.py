"""Stages of notebooks 01-03: data statistics, the LightGCN baseline, the hashing table and sweeps.

A stage trains (or reuses) its runs through :mod:`.runs`, writes its numbers to
``results/<profile>/`` (atomic CSV/JSON, the files the report reads) and its figures to
``figures/<profile>/``, and returns the tables the notebook shows.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..config import figures_dir, results_dir
from ..profiles import ProfileView, get_profile
from ..data import InteractionData, dataset_stats
from ..utils import write_json
from .rows import RABITQ_ROW, TRANSFORM_ROW, popcount_searchable, row_family, variant_run
from .runs import (CURVE_ESTIMATORS, HASH_STAGE, SCHEDULES, environment, hash_run, lightgcn_run,
                   load_profile_datasets, write_table)


def data_prep(profile: str) -> tuple[pd.DataFrame, list[InteractionData]]:
    """Statistics of each dataset of the profile (published splits, no valid carved).

    Writes ``results/<profile>/data_stats.{csv,json}`` and the log-log degree
    figure ``figures/<profile>/degree_distribution.{png,pdf}``.
    """
    from ..plotting import plot_degree_distribution, savefig

    datasets = load_profile_datasets(profile, valid_fraction=0.0)
    stats = pd.DataFrame([dataset_stats(d) for d in datasets])
    write_table(stats, "data_stats", profile)
    write_json(results_dir(profile) / "environment.json", environment())
    fig = plot_degree_distribution(datasets)
    savefig(fig, "degree_distribution", figures_dir(profile))
    return stats, datasets


# --------------------------------------------------------------------------
# 02 · LightGCN baseline
# --------------------------------------------------------------------------

# Each profile's layer sweep and the epochs of each of its runs (None: the profile's), by profile name
# (:class:`hashrec_utils.profiles.Profile`: default runs 20 of its 80, to fit make all's budget).
LAYER_SWEEP = ProfileView("layer_sweep")
LAYER_SWEEP_EPOCHS = ProfileView("layer_sweep_epochs")


def _valid_columns(metrics: dict, section: str | None = None) -> dict:
    """``valid_<metric>@20`` of a run's ``valid`` block (one ``section`` of a hash run's), NaN without one."""
    valid = metrics.get("valid") or {}
    if section is not None:
        valid = valid.get(section) or {}
    return {f"valid_{m}@20": float(valid.get(f"{m}@20", np.nan)) for m in ("recall", "ndcg")}


def lightgcn_stage(profile: str) -> dict[str, pd.DataFrame]:
    """Notebook 02: the baseline on every dataset of the profile, the layer sweep, recall by user degree.

    Writes ``results/<profile>/lightgcn_{metrics,history,layers,degree}`` and the
    figures ``lightgcn_training``, ``lightgcn_layers``, ``lightgcn_degree``.
    """
    from ..metrics import degree_buckets, evaluate_by_group, rank_topk
    from ..plotting import plot_lightgcn_degree, plot_lightgcn_layers, plot_lightgcn_training, savefig
    from ..settings import train_config
    from ..training.runs import load_run_data

    rows, histories = [], []
    for dataset in get_profile(profile).datasets:
        metrics, out = lightgcn_run(profile, dataset)
        rows.append({"dataset": dataset, **{k: v for k, v in metrics.items() if k != "valid"}, **_valid_columns(metrics)})
        history = pd.read_csv(out / "history.csv")
        history.insert(0, "dataset", dataset)
        histories.append(history)
    table = pd.DataFrame(rows)
    history = pd.concat(histories, ignore_index=True)
    write_table(table, "lightgcn_metrics", profile)
    write_table(history, "lightgcn_history", profile)

    layer_rows = []
    for n_layers in LAYER_SWEEP[profile]:
        metrics, _ = lightgcn_run(profile, "ml-1m", n_layers=n_layers, epochs=LAYER_SWEEP_EPOCHS[profile])
        layer_rows.append({"n_layers": n_layers, "epochs": metrics["epochs_run"], **{k: metrics[k] for k in ("recall@20", "ndcg@20", "train_seconds", "best_epoch")},
                           "valid_recall@20": _valid_columns(metrics)["valid_recall@20"]})
    layers = pd.DataFrame(layer_rows)
    write_table(layers, "lightgcn_layers", profile)

    # recall@20 by user-degree quartile, ml-1m main run
    _, out = lightgcn_run(profile, "ml-1m", progress=False)
    data = load_run_data(train_config(profile, "ml-1m"))
    emb = np.load(out / "embeddings.npz")
    top = rank_topk(emb["user"], emb["item"], 20, exclude=data.train_full)
    bucket, labels = degree_buckets(data.train_full, 4)
    degree = pd.DataFrame(evaluate_by_group(top, data.test, bucket, labels, ks=(20,)))
    write_table(degree, "lightgcn_degree", profile)

    savefig(plot_lightgcn_training(history), "lightgcn_training", figures_dir(profile))
    savefig(plot_lightgcn_layers(layers), "lightgcn_layers", figures_dir(profile))
    savefig(plot_lightgcn_degree(degree), "lightgcn_degree", figures_dir(profile))
    return {"metrics": table, "history": history, "layers": layers, "degree": degree}


# --------------------------------------------------------------------------
# 03 · Learning to hash
# --------------------------------------------------------------------------


def candidates_sweep(profile: str, label: str, candidates: tuple[int, ...], seed: int = 0) -> list[dict]:
    """Hierarchical recall of one trained model (its saved codes and embeddings) for each C."""
    from ..metrics import evaluate_topk
    from ..retrieval import hierarchical_topk
    from ..settings import train_config
    from ..training.runs import load_run_data

    _, out = variant_run(profile, label, seed=seed)
    emb = np.load(out / "embeddings.npz")
    data = load_run_data(train_config(profile, "ml-1m"))
    rows = []
    for c in candidates:
        top = hierarchical_topk(emb["user_codes"], emb["item_codes"], emb["user"], emb["item"], 20, max(c, 20), data.train_full)
        m = evaluate_topk(top, data.test, ks=(20,))
        rows.append({"parameter": "candidates C", "value": c, "search": "hierarchical", **m})
    return rows


def _untrained_rows(profile: str, bits: int = 64) -> list[dict]:
    """Post-hoc sign of the trained embeddings and LSH (the no-training baselines), Hamming and
    hierarchical search: the ``sign``/``lsh`` runs of :func:`hash_run` (sign: one bit per dimension)."""
    from ..settings import train_config

    dim = train_config(profile, "ml-1m").dim
    rows = []
    for name, method, b in (("sign (post-hoc)", "sign", dim), ("lsh", "lsh", bits)):
        metrics, _ = hash_run(profile, method, bits=b)
        rows += [{"estimator": name, "seed": 0, **r} for r in _sections(metrics) if r["search"] != "continuous"]
    return rows


def _teacher_code_rows(profile: str, qb: int = 8, bits: int = 64) -> list[dict]:
    """The training-free codes of the teacher's embeddings, searched with its user embeddings (train
    items excluded), each at its bytes per item; their queries are real-valued against binary items, so
    their rows are of search mode ``asymmetric``:

    * Faiss's ``IndexRaBitQ`` (1 bit a dimension + its float factors, ``qb``-bit queries: its most
      accurate setting), the competitor of the learned codes;
    * hashrec's transform code (:func:`hashrec_utils.hashing.transform.fit_transform_code`: ``bits``
      bits allocated over the principal axes of the items, whitened by the users' second moment),
      searched by :class:`~hashrec_utils.retrieval.AsymmetricIndex`; fitted on the embeddings alone."""
    from ..evaluation import KS
    from ..hashing import pack_codes
    from ..hashing.transform import fit_transform_code
    from ..metrics import evaluate_topk
    from ..retrieval import AsymmetricIndex, make_index
    from ..settings import train_config
    from ..training.runs import load_run_data

    _, base = lightgcn_run(profile, "ml-1m", progress=False)
    emb = np.load(base / "embeddings.npz")
    user, item = emb["user"], emb["item"]
    data = load_run_data(train_config(profile, "ml-1m"))
    code = fit_transform_code(user, item, bits)
    rows = []
    for label, index, query in (
            (RABITQ_ROW, make_index("rabitq", qb=qb).build(item), user),
            (TRANSFORM_ROW, AsymmetricIndex(bits).build(pack_codes(code.codes)), code.query(user))):
        test = evaluate_topk(index.search(query, max(KS), data.train_full)[1], data.test, KS)
        valid = evaluate_topk(index.search(query, max(KS), data.train)[1], data.valid, KS) if data.valid.nnz else {}
        rows.append({"estimator": label, "seed": 0, "search": "asymmetric", **{k: v for k, v in test.items() if "@" in k},
                     **_valid_columns({"valid": valid}), "best_epoch": None,
                     "bytes_per_item": index.memory_bytes() / len(item)})
    return rows


def _sections(metrics: dict) -> list[dict]:
    """One row per search mode of a hash run: its test metrics, ``valid_recall@20``/``valid_ndcg@20``
    of the same mode on the validation split (what selections read) and the run's ``best_epoch``."""
    from ..evaluation import SEARCH_NAMES

    return [{"search": s, **{k: v for k, v in metrics[s].items() if "@" in k}, **_valid_columns(metrics, s),
             "best_epoch": metrics.get("best_epoch")}
            for s in SEARCH_NAMES if s in metrics]


def summarize(frame: pd.DataFrame, by: list[str], metrics: tuple[str, ...] = ("recall@20", "ndcg@20")) -> pd.DataFrame:
    """Mean and standard deviation (ddof=1) of ``metrics`` over seeds, per group, and ``seeds``
    (n). One seed has no spread: its std is NaN (printed as nothing, never "± 0"); a mean is NaN
    where no row of the group has the number (e.g. no validation split)."""
    agg = frame.groupby(by, sort=False)[list(metrics)].agg(["mean", "std"])
    agg.columns = [f"{m}_{s}" for m, s in agg.columns]
    agg["seeds"] = frame.groupby(by, sort=False).size()
    return agg.reset_index()


# Rows that run a published method under its own objective (the families of notebook 03's table).


def _estimator_table(profile: str, lightgcn: dict) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Notebook 03's table: every estimator and variant of ``HASH_STAGE[profile]`` over its seeds,
    LightGCN, sign and LSH; returns ``(runs, table, curves)`` (``table``: :func:`summarize` of the
    runs with ``valid_recall@20_mean``, what :func:`best_estimator` reads)."""
    stage = HASH_STAGE[profile]
    rows, curves = [], []
    for label in stage.rows:
        for seed in _seeds_of(stage, label):
            metrics, out = variant_run(profile, label, seed=seed)
            rows += [{"estimator": label, "seed": seed, "teacher_seed": 0, **r} for r in _sections(metrics)]
            if label in CURVE_ESTIMATORS or (row_family(label) == "as published" and seed == stage.variant_seeds[0]):
                h = pd.read_csv(out / "history.csv")
                h.insert(0, "seed", seed)
                h.insert(0, "estimator", label)
                curves.append(h)
    for label in top_rows(profile, rows):  # the whole pipeline's other seeds, teacher included
        for seed in (s for s in stage.top_seeds if s not in _seeds_of(stage, label)):
            metrics, _ = variant_run(profile, label, seed=seed, teacher_seed=seed)
            rows += [{"estimator": label, "seed": seed, "teacher_seed": seed, **r} for r in _sections(metrics)]
    rows += [{"estimator": "lightgcn (continuous)", "search": "continuous", "seed": 0,
              **{k: v for k, v in lightgcn.items() if "@" in k}, **_valid_columns(lightgcn),
              "best_epoch": lightgcn.get("best_epoch")}]
    rows += _untrained_rows(profile)
    rows += _teacher_code_rows(profile)
    runs = pd.DataFrame(rows)
    table = summarize(runs, ["estimator", "search"], ("recall@20", "ndcg@20", "recall@50", "valid_recall@20"))
    table["recall@20_vs_lightgcn"] = table["recall@20_mean"] / lightgcn["recall@20"]
    table.insert(1, "family", table["estimator"].map(row_family))
    curve = pd.concat(curves, ignore_index=True) if curves else pd.DataFrame()
    return runs, table, curve


def _seeds_of(stage, label: str) -> tuple[int, ...]:
    """The seeds every profile runs row ``label`` at (``seeds`` for an estimator, else ``variant_seeds``)."""
    return stage.seeds if label in stage.estimators else stage.variant_seeds


def top_rows(profile: str, rows: list[dict]) -> list[str]:
    """The ``HASH_STAGE[profile].top_n`` rows that run ``top_seeds``: the trained rows whose codes
    popcount serves (:func:`best_estimator`'s candidates) with the best validation Hamming recall@20
    at seed 0, best first; none where the profile has no ``top_seeds``. Test numbers choose nothing."""
    stage = HASH_STAGE[profile]
    if not stage.top_seeds:
        return []
    seed0 = pd.DataFrame([r for r in rows if r["seed"] == 0 and r["search"] == "hamming"])
    seed0 = seed0[seed0.estimator.isin(stage.rows) & seed0.estimator.map(popcount_searchable)
                  & seed0["valid_recall@20"].notna()]
    return seed0.sort_values("valid_recall@20", ascending=False, kind="stable").estimator.head(stage.top_n).tolist()


def hashing_stage(profile: str) -> dict[str, pd.DataFrame]:
    """Notebook 03: every estimator × search mode over seeds, guided vs plain STE, fixed vs decaying p,
    and the parameter analysis (λ, triplets per node, bits, candidates C).

    Writes ``results/<profile>/hashing_*.csv|json`` and the ``hashing_*`` figures.
    """
    from ..plotting import (plot_hashing_curves, plot_hashing_params, plot_hashing_table, plot_published_curves,
                           savefig)

    stage = HASH_STAGE[profile]
    lightgcn, _ = lightgcn_run(profile, "ml-1m", progress=False)
    runs, table, curve = _estimator_table(profile, lightgcn)
    cont = lightgcn["recall@20"]
    write_table(runs, "hashing_runs", profile)
    write_table(table, "hashing_table", profile)
    published = curve[curve.estimator.map(row_family) == "as published"]
    curve = curve[curve.estimator.isin(CURVE_ESTIMATORS)]
    write_table(curve, "hashing_curves", profile)
    write_table(published, "hashing_published_curves", profile)

    # (b) fixed p against the decaying schedule
    p_rows = []
    stages = SCHEDULES["guided_ste"]["stages"]
    for label, est in ((f"decaying p (1 → ×0.95, {stages} stages)", {}), ("fixed p = 0.5", {"p0": 0.5, "decay": 1.0})):
        for seed in stage.seeds:  # the decaying rows are the table's guided-STE runs
            m, _ = (hash_run(profile, "guided_ste", seed=seed, tag="fixedp", estimator=est) if est
                    else variant_run(profile, "guided_ste", seed=seed))
            p_rows += [{"schedule": label, "seed": seed, **r} for r in _sections(m)]
    p_table = summarize(pd.DataFrame(p_rows), ["schedule", "search"], ("recall@20", "ndcg@20", "valid_recall@20"))
    write_table(p_table, "hashing_p", profile)

    # (d) parameter analysis, seed 0, HashGNN's objective (no distillation) on the LightGCN encoder
    params = []
    for lam in stage.lambdas:
        m, _ = hash_run(profile, "guided_ste", tag=f"lam{lam}", epochs=stage.sweep_epochs,
                        objective="hashgnn", distill=0.0, lambda_rank=lam)
        params += [{"parameter": "λ", "value": lam, **r} for r in _sections(m) if r["search"] != "continuous"]
    for t in stage.triplets:
        m, _ = hash_run(profile, "guided_ste", tag=f"trip{t}", epochs=stage.sweep_epochs,
                        objective="hashgnn", distill=0.0, n_triplets=t)
        params += [{"parameter": "triplets per node", "value": t, **r} for r in _sections(m) if r["search"] != "continuous"]
    best = best_estimator(table)
    for b in stage.bits:
        m, _ = variant_run(profile, best, bits=b)
        params += [{"parameter": "bits K", "value": b, **r} for r in _sections(m) if r["search"] != "continuous"]
    params += candidates_sweep(profile, best, stage.candidates)
    param_table = pd.DataFrame(params)
    write_table(param_table, "hashing_params", profile)
    best_row = table[(table.estimator == best) & (table.search == "hamming")]
    write_json(results_dir(profile) / "hashing_summary.json", {
        "best_estimator": best, "selected_on": "valid",
        "selection": "highest mean over seeds of valid Hamming recall@20 (validation split, train items excluded)",
        "best_valid_hamming_recall@20": float(best_row["valid_recall@20_mean"].iloc[0]),
        "lightgcn_recall@20": cont,
        "best_hamming_recall@20": float(table[(table.estimator == best) & (table.search == "hamming")]["recall@20_mean"].iloc[0]),
        "best_hierarchical_recall@20": float(table[(table.estimator == best) & (table.search == "hierarchical")]["recall@20_mean"].iloc[0]),
        **_mode_of_best(table, best, "asymmetric"),
        **_mode_of_best(table, RABITQ_ROW, "asymmetric", key="rabitq"),
        "rabitq_bytes_per_item": float(runs.loc[runs.estimator == RABITQ_ROW, "bytes_per_item"].iloc[0]),
        **_mode_of_best(table, TRANSFORM_ROW, "asymmetric", key="transform"),
        **_best_on_valid(table, "asymmetric"),
        "transform_bytes_per_item": float(runs.loc[runs.estimator == TRANSFORM_ROW, "bytes_per_item"].iloc[0]),
        "code_bytes_per_item": 64 / 8,
        **_top_rows_summary(profile, runs),
    })
    savefig(plot_hashing_curves(curve), "hashing_curves", figures_dir(profile))
    savefig(plot_published_curves(published), "hashing_published_curves", figures_dir(profile))
    savefig(plot_hashing_table(table), "hashing_table", figures_dir(profile))
    savefig(plot_hashing_params(param_table), "hashing_params", figures_dir(profile))
    tuning_csv = results_dir(profile) / "tuning.csv"  # make tune's grid (committed), when the profile was tuned
    tuning = pd.read_csv(tuning_csv) if tuning_csv.exists() else pd.DataFrame()
    return {"table": table, "runs": runs, "curves": curve, "p": p_table, "params": param_table, "tuning": tuning}


def _top_rows_summary(profile: str, runs: pd.DataFrame) -> dict:
    """``top_rows`` (the rows that ran ``top_seeds``, :func:`top_rows`), the rule, and each seed's
    LightGCN teacher's test recall@20 (``teacher_recall@20_by_seed``); empty without ``top_seeds``."""
    stage = HASH_STAGE[profile]
    top = top_rows(profile, runs.to_dict("records"))
    if not top:
        return {}
    teachers = {str(s): float(lightgcn_run(profile, "ml-1m", seed=s, progress=False)[0]["recall@20"]) for s in stage.top_seeds}
    return {"top_rows": top, "top_seeds": list(stage.top_seeds), "teacher_recall@20_by_seed": teachers,
            "top_rows_rule": (f"the {stage.top_n} trained rows whose codes popcount serves with the best validation "
                              f"Hamming recall@20 at seed 0; each seed s of theirs is the whole pipeline's "
                              f"(LightGCN teacher of seed s, then hash training of seed s)")}


def _best_on_valid(table: pd.DataFrame, search: str) -> dict:
    """The row with the highest validation recall@20 in mode ``search`` (every row scored so, trained or
    not), and its test recall@20: ``best_<search>_row``, ``best_<search>_row_recall@20``."""
    rows = table[(table.search == search) & table["valid_recall@20_mean"].notna()]
    if not len(rows):
        return {}
    top = rows.loc[rows["valid_recall@20_mean"].idxmax()]
    return {f"best_{search}_row": str(top.estimator), f"best_{search}_row_recall@20": float(top["recall@20_mean"]),
            f"best_{search}_row_valid_recall@20": float(top["valid_recall@20_mean"])}


def _mode_of_best(table: pd.DataFrame, best: str, search: str, key: str | None = None) -> dict:
    """``<key>_recall@20`` (default ``best_<search>``) of row ``best`` in mode ``search``, where it was scored so."""
    row = table[(table.estimator == best) & (table.search == search)]
    return {f"{key or f'best_{search}'}_recall@20": float(row["recall@20_mean"].iloc[0])} if len(row) else {}


def best_estimator(table: pd.DataFrame) -> str:
    """The trained estimator with the highest mean **validation** Hamming recall@20
    (``valid_recall@20_mean``, from each run's ``valid`` block); test numbers choose nothing.
    Candidates are the rows whose codes popcount search can serve (:func:`popcount_searchable`):
    the chosen codes are the ones notebooks 04-06 search. Ties go to the first row. A table without
    validation numbers is one clear error."""
    trained = table[(table.search == "hamming") & ~table.estimator.isin(["sign (post-hoc)", "lsh", "lightgcn (continuous)"])]
    trained = trained[trained.estimator.map(popcount_searchable)]
    if "valid_recall@20_mean" not in trained or trained["valid_recall@20_mean"].isna().all():
        raise ValueError("best_estimator needs validation numbers (column valid_recall@20_mean, the runs' valid blocks): "
                         "the runs have no validation split")
    return str(trained.loc[trained["valid_recall@20_mean"].idxmax(), "estimator"])
