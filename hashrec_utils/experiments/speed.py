"""Stages of notebooks 04-05: every index's accuracy against throughput, build cost, the scaled
catalogue, and recall at fixed multiples of exact float search's throughput.

Every search runs on the same users, embeddings and exclusion of train items
(:class:`RetrievalSetup`); the grids are one frozen :class:`RetrievalStage` per profile.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..config import figures_dir, results_dir
from ..profiles import ProfileView, RetrievalStage, get_profile
from ..data import InteractionData
from ..utils import write_json
from .rows import variant_run
from .runs import lightgcn_run, write_table


# --------------------------------------------------------------------------
# 04 · Faiss baselines and retrieval speed
# --------------------------------------------------------------------------


# Each profile's search grids (:class:`hashrec_utils.profiles.RetrievalStage`), by profile name.
RETRIEVAL_STAGE = ProfileView("retrieval")


@dataclass(frozen=True)
class RetrievalSetup:
    """What every search of notebooks 04-06 runs on: the test users of ml-1m with their train items
    excluded, LightGCN's embeddings, and the codes (and fine-tuned embeddings) of a hash model."""

    data: InteractionData
    users: np.ndarray
    user_emb: np.ndarray
    item_emb: np.ndarray
    hash_label: str
    user_codes: np.ndarray
    item_codes: np.ndarray
    hash_user_emb: np.ndarray
    hash_item_emb: np.ndarray
    exclude: object
    truth: np.ndarray


def retrieval_setup(profile: str, label: str | None = None, k: int = 20, dataset: str = "ml-1m") -> RetrievalSetup:
    """Load the trained LightGCN and hash model ``label`` (default: the best of notebook 03) of
    ``dataset``; either is trained first when absent."""
    from ..metrics import rank_topk
    from ..settings import train_config
    from ..training.runs import load_run_data
    from ..utils import read_json

    label = label or read_json(results_dir(profile) / "hashing_summary.json")["best_estimator"]
    _, base = lightgcn_run(profile, dataset, progress=False)
    _, hashed = variant_run(profile, label, dataset=dataset)
    data = load_run_data(train_config(profile, dataset))
    users = np.flatnonzero(np.diff(data.test.indptr) > 0)
    emb, hemb = np.load(base / "embeddings.npz"), np.load(hashed / "embeddings.npz")
    exclude = data.train_full[users]
    truth = rank_topk(emb["user"][users], emb["item"], k, exclude=exclude)
    return RetrievalSetup(data, users, emb["user"][users], emb["item"], label, hemb["user_codes"][users],
                          hemb["item_codes"], hemb["user"][users], hemb["item"], exclude, truth)


RETRIEVAL_FAMILIES = ("float", "binary", "hierarchical")


def retrieval_sweeps(profile: str, setup: RetrievalSetup, label_suffix: str = "",
                     families: tuple[str, ...] = RETRIEVAL_FAMILIES) -> pd.DataFrame:
    """Recall-throughput sweep of every index of ``families`` on one setup: ``float`` (continuous
    LightGCN embeddings: exact, HNSW, NSG, IVF), ``binary`` (the codes: hashrec and Faiss binary
    indexes), ``hierarchical`` (Hamming candidates re-ranked, C swept)."""
    unknown = set(families) - set(RETRIEVAL_FAMILIES)
    if unknown or not families:
        raise ValueError(f"families must be a non-empty subset of {RETRIEVAL_FAMILIES}; got {tuple(families)}")
    from ..bench import sweep
    from ..retrieval import make_index

    st = RETRIEVAL_STAGE[profile]
    test = setup.data.test[setup.users]
    common = dict(truth=setup.truth, k=20, test=test, exclude=setup.exclude, repeats=st.repeats)
    n = setup.item_emb.shape[0]
    nlist = int(max(8, min(256, 2 * np.sqrt(n))))
    bits = setup.item_codes.shape[1] * 8
    float_runs = [
        ("Exact float (GEMM)", "exact", [{}]),
        ("Faiss Flat", "flat_ip", [{}]),
        ("HNSW", "hnsw", [{"M": 32, "efSearch": ef} for ef in st.hnsw_ef]),
        ("NSG", "nsg", [{"R": 32, "search_L": L} for L in st.nsg_L]),
        ("IVF-Flat", "ivf_flat", [{"nlist": nlist, "nprobe": p} for p in st.ivf_nprobe if p <= nlist]),
        *[(f"IVF-PQ m={m}", "ivf_pq", [{"nlist": nlist, "m": m, "nprobe": p} for p in st.ivf_nprobe if p <= nlist]) for m in st.pq_m],
    ]
    binary_runs = [
        ("hashrec Hamming", "hamming", [{}]),
        ("Faiss BinaryFlat", "binary_flat", [{}]),
        ("Faiss BinaryHNSW", "binary_hnsw", [{"M": 16, "efSearch": ef} for ef in st.binary_ef]),
        ("Faiss BinaryIVF", "binary_ivf", [{"nlist": nlist, "nprobe": p} for p in st.ivf_nprobe if p <= nlist]),
        ("Faiss BinaryMultiHash", "binary_multihash", [{"nhash": 2, "b": min(24, bits // 2), "nflip": f} for f in st.multihash_nflip]),
    ]
    frames = []
    for method, name, grid in float_runs if "float" in families else ():
        factory = lambda name=name, **p: make_index(name, threads=st.threads, **p)  # noqa: E731
        frames.append(sweep(factory, grid, setup.user_emb, items=setup.item_emb, method=method, **common).assign(family="float"))
    for method, name, grid in binary_runs if "binary" in families else ():
        factory = lambda name=name, **p: make_index(name, bits=bits, threads=st.threads, **p)  # noqa: E731
        frames.append(sweep(factory, grid, setup.user_codes, items=setup.item_codes, method=method + label_suffix, **common).assign(family="binary"))
    if "hierarchical" in families:
        factory = lambda **p: make_index("hierarchical", bits=bits, threads=st.threads, **p)  # noqa: E731
        frames.append(sweep(factory, [{"candidates": c} for c in st.candidates], (setup.user_codes, setup.hash_user_emb),
                            items=(setup.item_codes, setup.hash_item_emb),
                            method="hashrec hierarchical" + label_suffix, **common).assign(family="hierarchical"))
    return pd.concat(frames, ignore_index=True)


# Scaling sizes beyond a notebook's reach (10^7 items: minutes per method on two cores), measured by
# ``benchmarks/bench_scaling.py --profile P`` into results/<P>/<SCALING_LARGE>.csv.
SCALING_LARGE = "retrieval_scaling_large"


# Noise of the resampled catalogue, in units of each embedding dimension's std: copies of trained items
# with small noise (0.05) are near-duplicates, and the exact top-20 among ~30 copies of each item is a
# coin toss no code can call; 0.5 keeps the trained clusters but makes the items distinct.
SCALING_NOISE = 0.5


def scaling_table(profile: str, measured: pd.DataFrame) -> pd.DataFrame:
    """Notebook 04's scaling rows plus the benchmark's rows at larger sizes (column ``source``)."""
    table = measured if "source" in measured else measured.assign(source="notebook 04")
    large = results_dir(profile) / f"{SCALING_LARGE}.csv"
    if large.exists():
        extra = pd.read_csv(large)
        extra = extra[extra["items"] > table["items"].max()].assign(source="benchmarks/bench_scaling.py")
        table = pd.concat([table, extra], ignore_index=True)
    return table


def faiss_stage(profile: str) -> dict[str, pd.DataFrame]:
    """Notebook 04: recall-throughput curves of every index on ml-1m, build time and memory, scaling.

    Writes ``results/<profile>/retrieval_{sweep,build,scaling}`` and the figures
    ``retrieval_curves`` and ``retrieval_scaling``. The scaling panel keeps the trained model's
    geometry (:func:`hashrec_utils.catalogue.catalogue_sweep`): the best estimator's items resampled
    to ``scaling_sizes`` with noise ``SCALING_NOISE`` × each dimension's std, their codes through the
    trained hash layer, queried by real users; the table also holds larger sizes measured the same
    way by ``benchmarks/bench_scaling.py --profile`` (:func:`scaling_table`).
    """
    from ..catalogue import catalogue_sweep, load_hash_run
    from ..plotting import plot_retrieval_curves, plot_scaling, savefig

    st = RETRIEVAL_STAGE[profile]
    setup = retrieval_setup(profile)
    df = retrieval_sweeps(profile, setup)
    write_table(df, "retrieval_sweep", profile)
    build = df.groupby("method", sort=False).agg(build_s=("build_s", "max"), bytes_per_item=("bytes_per_item", "first"),
                                                 best_recall=("recall@20", "max"), max_qps=("qps", "max")).reset_index()
    write_table(build, "retrieval_build", profile)
    run = load_hash_run(variant_run(profile, setup.hash_label)[1])
    scale = scaling_table(profile, catalogue_sweep(run, st.scaling_sizes, threads=st.threads, noise=SCALING_NOISE,
                                                   repeats=st.repeats))
    write_table(scale, "retrieval_scaling", profile)
    savefig(plot_retrieval_curves(df), "retrieval_curves", figures_dir(profile))
    savefig(plot_scaling(scale), "retrieval_scaling", figures_dir(profile))
    return {"sweep": df, "build": build, "scaling": scale}


# --------------------------------------------------------------------------
# 05 · Efficiency against effectiveness
# --------------------------------------------------------------------------

THROUGHPUT_MULTIPLES = (1, 5, 20)


def tradeoff_stage(profile: str) -> dict:
    """Notebook 05: recall@20 against queries per second for every method, Pareto frontier marked,
    recall at fixed multiples of exact float search's throughput, memory per item.

    ml-1m reads notebook 04's sweep (best estimator's codes) and adds the guided-STE codes; it writes
    ``results/<profile>/tradeoff_{points,fixed}`` and ``tradeoff_summary.json``, figure ``tradeoff``.
    Every other catalogue of the profile's ``tradeoff_datasets`` (Gowalla in ``default`` and ``full``)
    is swept here from its LightGCN and hash runs (trained first when absent), with the estimator
    chosen on MovieLens-1M's validation split (Gowalla's published split has none): the same files
    with the suffix ``_<dataset>``, returned under ``"datasets"``.
    """
    from ..utils import read_json

    best = read_json(results_dir(profile) / "hashing_summary.json")["best_estimator"]
    result = _tradeoff(profile, "ml-1m", pd.read_csv(results_dir(profile) / "retrieval_sweep.csv"), best)
    result["datasets"] = {
        dataset: _tradeoff(profile, dataset, retrieval_sweeps(profile, retrieval_setup(profile, best, dataset=dataset)), best)
        for dataset in get_profile(profile).tradeoff_datasets if dataset != "ml-1m"}
    return result


def _tradeoff(profile: str, dataset: str, sweep_df: pd.DataFrame, best: str) -> dict[str, pd.DataFrame]:
    """Frontier, fixed-throughput table and figure of one dataset's sweep (best estimator's codes),
    with the guided-STE codes' binary and hierarchical sweeps added. Throughput multiples are of
    ``exact_qps``, the exact GEMM index's queries/s with exclusion (row "Exact float (GEMM)"); the
    summary also holds ``torch_reference_qps``, the torch formula
    (:func:`hashrec_utils.bench.torch_reference_topk`) timed in this run on the same data."""
    import time

    exact_method = "Exact float (GEMM)"  # the exact baseline row of retrieval_sweeps

    from ..bench import at_fixed_throughput
    from ..plotting import pareto_frontier, plot_tradeoff, savefig

    suffix = "" if dataset == "ml-1m" else f"_{dataset}"
    sweep_df = sweep_df.copy()
    sweep_df["method"] = sweep_df["method"].where(sweep_df["family"] == "float", sweep_df["method"] + f" [{best}]")
    frames = [sweep_df]
    if best != "guided_ste" and dataset == "ml-1m":  # the second estimator's codes: on the study's own dataset
        frames.append(retrieval_sweeps(profile, retrieval_setup(profile, "guided_ste", dataset=dataset),
                                       label_suffix=" [guided_ste]", families=("binary", "hierarchical")))
    points = pd.concat(frames, ignore_index=True)
    front = pareto_frontier(points, "qps", "recall@20")
    points["pareto"] = points.index.isin(front.index)
    write_table(points, f"tradeoff_points{suffix}", profile)
    exact_qps = float(points.loc[points.method == exact_method, "qps"].max())
    fixed = at_fixed_throughput(points, [m * exact_qps for m in THROUGHPUT_MULTIPLES])
    fixed.insert(1, "multiple_of_exact", fixed["target_qps"] / exact_qps)
    fixed["multiple_of_exact"] = fixed["multiple_of_exact"].round().astype(int)
    memory = points.groupby("method", sort=False)["bytes_per_item"].first()
    fixed["bytes_per_item"] = fixed["method"].map(memory)
    write_table(fixed, f"tradeoff_fixed{suffix}", profile)
    exact_recall = float(points.loc[points.method == exact_method, "recall@20"].max())
    # The peer of exact float search, timed in this run on the same users, embeddings and exclusion.
    from ..bench import torch_reference_topk

    st = RETRIEVAL_STAGE[profile]
    setup = retrieval_setup(profile, best, dataset=dataset)
    seconds = float("inf")
    for _ in range(max(1, st.repeats)):
        start = time.perf_counter()
        torch_reference_topk(setup.user_emb, setup.item_emb, 20, setup.exclude, threads=st.threads)
        seconds = min(seconds, time.perf_counter() - start)
    torch_qps = len(setup.users) / seconds
    write_json(results_dir(profile) / f"tradeoff_summary{suffix}.json", {
        "dataset": dataset, "exact_qps": exact_qps, "torch_reference_qps": torch_qps,
        "exact_recall@20": exact_recall, "best_estimator": best,
        "pareto_methods": sorted(set(front["method"])),
    })
    savefig(plot_tradeoff(points, title=f"{dataset}: accuracy against throughput (2 threads)"), f"tradeoff{suffix}", figures_dir(profile))
    return {"points": points, "fixed": fixed, "pareto": front}

