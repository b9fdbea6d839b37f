"""Notebook 04's stage: every index's accuracy against throughput, build cost and the scaled
catalogue; the setup and sweeps notebook 05 (:mod:`.tradeoff`) reads too.

Every search runs on the same users, embeddings and exclusion of train items
(:class:`RetrievalSetup`); the grids are one frozen :class:`RetrievalStage` per profile.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..config import figures_dir, results_dir, runs_dir
from ..profiles import ProfileView, RetrievalStage, Teacher
from ..data import InteractionData
from ..utils import write_json
from .rows import variant_run
from .runs import lightgcn_args, lightgcn_run, own_teacher, write_table


# --------------------------------------------------------------------------
# 04 · Faiss baselines and retrieval speed
# --------------------------------------------------------------------------


# Each profile's search grids (:class:`hashrec_utils.profiles.RetrievalStage`), by profile name.
RETRIEVAL_STAGE = ProfileView("retrieval")


@dataclass(frozen=True)
class RetrievalSetup:
    """What every search of notebooks 04-06 runs on: the test users of a dataset with their train items
    excluded, the teacher's (LightGCN's) embeddings, and the codes, the users' real-valued hash-layer
    outputs (``user_query``, asymmetric search's queries) and the fine-tuned embeddings of one hash model.
    ``teacher_run``, ``codes_run``: the run folders' names (the study's one model per dataset);
    ``truth``: the exact top-k with exclusion, ``truth_plain`` without (the ANN protocol)."""

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
    user_query: np.ndarray | None = None
    truth_plain: np.ndarray | None = None
    teacher_run: str = ""
    codes_run: str = ""


def retrieval_setup(profile: str, label: str | None = None, k: int = 20, dataset: str = "ml-1m",
                    valid_fraction: float | None = None, teacher: Teacher | None = None,
                    refit: bool = False) -> RetrievalSetup:
    """Load the trained LightGCN and hash model ``label`` (default: the best of notebook 03) of
    ``dataset`` (on that validation carve-out, as the comparison trains them); either is trained
    first when absent. The hash run's arrays are read from its ``embeddings.npz`` (a run scored
    before asymmetric search existed is re-scored first, which writes ``user_query`` there).
    ``teacher``: the teacher's size and schedule where not the profile's (the comparison's
    :class:`~hashrec_utils.profiles.Teacher`, ``_d<n>``/``_e<n>`` runs).
    ``refit``: search the refits of both runs instead (:mod:`.refit`: the carve-out's choices fixed,
    trained on all of train; the codes' refit starts from the teacher's), on all of train's split,
    trained here where absent — the comparison's final models, its reported result."""
    from ..metrics import rank_topk
    from ..settings import train_config
    from ..training.runs import load_run_data
    from ..utils import read_json

    label = label or read_json(results_dir(profile) / "hashing_summary.json")["best_estimator"]
    teacher = own_teacher(profile, dataset, teacher)
    _, base = lightgcn_run(profile, dataset, progress=False, valid_fraction=valid_fraction, **lightgcn_args(teacher))
    _, hashed = variant_run(profile, label, dataset=dataset, valid_fraction=valid_fraction, teacher=teacher)
    if refit:
        if valid_fraction is None:
            raise ValueError("refit=True: a refit is of a run on a validation carve-out; valid_fraction is None")
        from .refit import refit_run

        _, base = refit_run(base)
        _, hashed = refit_run(hashed, init=base)
        valid_fraction = 0.0
    carve = {} if valid_fraction is None else {"valid_fraction": valid_fraction}
    data = load_run_data(train_config(profile, dataset, **carve))
    users = np.flatnonzero(np.diff(data.test.indptr) > 0)
    emb, hemb = np.load(base / "embeddings.npz"), np.load(hashed / "embeddings.npz")
    exclude = data.train_full[users]
    truth = rank_topk(emb["user"][users], emb["item"], k, exclude=exclude)
    truth_plain = rank_topk(emb["user"][users], emb["item"], k)
    query = hemb["user_query"][users] if "user_query" in hemb else None
    return RetrievalSetup(data, users, emb["user"][users], emb["item"], label, hemb["user_codes"][users],
                          hemb["item_codes"], hemb["user"][users], hemb["item"], exclude, truth, query, truth_plain,
                          base.name, hashed.name)


RETRIEVAL_FAMILIES = ("float", "rabitq", "binary", "asymmetric", "hierarchical")

# Faiss's k-means asks for 39 training points per centroid and warns below that.
MIN_POINTS_PER_CENTROID = 39


def ivf_nlist(n_items: int) -> int:
    """IVF cells from the catalogue's size: about ``2 sqrt(n)``, at most 256, and never more than
    ``n / 39`` (every centroid of Faiss's k-means gets its 39 training points)."""
    return int(max(1, min(256, 2 * np.sqrt(n_items), n_items // MIN_POINTS_PER_CENTROID)))


def pq_nbits(n_items: int) -> int:
    """Bits of each PQ sub-quantiser: 8 (256 centroids) where the catalogue trains them with 39 points
    each, else the most that does (``2^nbits * 39 <= n``)."""
    return int(max(1, min(8, np.floor(np.log2(max(n_items // MIN_POINTS_PER_CENTROID, 2))))))


def retrieval_sweeps(profile: str, setup: RetrievalSetup, label_suffix: str = "",
                     families: tuple[str, ...] = RETRIEVAL_FAMILIES) -> pd.DataFrame:
    """Recall-throughput sweep of every index of ``families`` on one setup, each from its fastest to its
    most accurate setting (the parameters each sweeps are columns of its rows):

    * ``float``: the teacher's embeddings — exact search (hashrec's GEMM and the torch formula, both
      timed: the fixed multiples take the faster), Faiss Flat, HNSW (``M``, ``efConstruction``,
      ``efSearch``), NSG (``search_L``), IVF-Flat and IVF-PQ (``nprobe``; ``nlist`` and PQ's bits from
      the catalogue's size, :func:`ivf_nlist`, :func:`pq_nbits`);
    * ``rabitq``: Faiss's RaBitQ family on the same embeddings (``qb``; IVF ``nprobe``; HNSW
      ``efSearch``; IVF and HNSW also with float re-ranking, ``refine``);
    * ``binary``: the codes — hashrec's Hamming scan and Faiss's binary indexes;
    * ``asymmetric``: the users' real-valued hash-layer outputs against the item codes — a full scan,
      and behind an inverted file over the embeddings (``nprobe``; code-only, and re-ranked by the
      float inner product, ``candidates``: :class:`~hashrec_utils.retrieval.IVFAsymmetricIndex`);
    * ``hierarchical``: Hamming candidates (and asymmetric ones) re-ranked, ``C`` from ``k`` up.
    """
    unknown = set(families) - set(RETRIEVAL_FAMILIES)
    if unknown or not families:
        raise ValueError(f"families must be a non-empty subset of {RETRIEVAL_FAMILIES}; got {tuple(families)}")
    from ..bench import TorchExactIndex, sweep
    from ..retrieval import make_index

    st = RETRIEVAL_STAGE[profile]
    test = setup.data.test[setup.users]
    k = setup.truth.shape[1]
    common = dict(truth=setup.truth, k=k, test=test, exclude=setup.exclude, repeats=st.repeats,
                  truth_plain=setup.truth_plain, latency_queries=st.latency_queries, timing_queries=st.timing_queries)
    n = setup.item_emb.shape[0]
    nlist = ivf_nlist(n)
    probes = [p for p in st.ivf_nprobe if p <= nlist]
    bits = setup.item_codes.shape[1] * 8
    runs = {
        "float": [
            ("Exact float (GEMM)", "exact", [{}]),
            ("Exact float (torch)", "exact_torch", [{}]),
            ("Faiss Flat", "flat_ip", [{}]),
            ("HNSW", "hnsw", [{"M": m, "efConstruction": c, "efSearch": ef}
                              for m in st.hnsw_M for c in st.hnsw_efc for ef in st.hnsw_ef]),
            ("NSG", "nsg", [{"R": 32, "search_L": L} for L in st.nsg_L]),
            ("IVF-Flat", "ivf_flat", [{"nlist": nlist, "nprobe": p} for p in probes]),
            *[(f"IVF-PQ m={m}", "ivf_pq", [{"nlist": nlist, "m": m, "nbits": pq_nbits(n), "nprobe": p} for p in probes])
              for m in st.pq_m],
        ],
        "rabitq": [
            ("RaBitQ", "rabitq", [{"qb": qb} for qb in st.rabitq_qb]),
            ("RaBitQ FastScan", "rabitq_fastscan", [{"qb": qb} for qb in st.rabitq_qb]),
            ("IVF-RaBitQ", "ivf_rabitq", [{"nlist": nlist, "nprobe": p} for p in probes]),
            ("IVF-RaBitQ FastScan", "ivf_rabitq_fastscan", [{"nlist": nlist, "nprobe": p} for p in probes]),
            ("IVF-RaBitQ + refine", "ivf_rabitq", [{"nlist": nlist, "refine": True, "nprobe": p} for p in probes]),
            ("HNSW-RaBitQ + refine", "hnsw_rabitq", [{"refine": True, "efSearch": ef} for ef in st.hnsw_ef]),
        ],
        "binary": [
            ("hashrec Hamming", "hamming", [{}]),
            ("Faiss BinaryFlat", "binary_flat", [{}]),
            ("Faiss BinaryHNSW", "binary_hnsw", [{"M": 16, "efSearch": ef} for ef in st.binary_ef]),
            ("Faiss BinaryIVF", "binary_ivf", [{"nlist": nlist, "nprobe": p} for p in probes]),
            ("Faiss BinaryMultiHash", "binary_multihash",
             [{"nhash": 2, "b": min(24, bits // 2), "nflip": f} for f in st.multihash_nflip]),
        ],
    }
    frames = []
    for family in ("float", "rabitq", "binary"):
        if family not in families:
            continue
        codes = family == "binary"
        queries, items = (setup.user_codes, setup.item_codes) if codes else (setup.user_emb, setup.item_emb)
        for method, name, grid in runs[family]:
            if name == "exact_torch":
                factory = lambda **p: TorchExactIndex(st.threads)  # noqa: E731
            else:
                factory = lambda name=name, **p: make_index(name, **({"bits": bits} if codes else {}),  # noqa: E731
                                                            threads=st.threads, **p)
            label = method + (label_suffix if codes else "")
            frames.append(sweep(factory, grid, queries, items=items, method=label, **common).assign(family=family))
    if "asymmetric" in families and setup.user_query is not None:
        factory = lambda **p: make_index("asymmetric", bits=bits, threads=st.threads)  # noqa: E731
        frames.append(sweep(factory, [{}], setup.user_query, items=setup.item_codes,
                            method="hashrec asymmetric" + label_suffix, **common).assign(family="asymmetric"))
        # the coarse stage: an inverted file over the embeddings whose lists hold the codes (code-only, re-ranked)
        factory = lambda **p: make_index("ivf_asymmetric", bits=bits, threads=st.threads, **p)  # noqa: E731
        pairs = dict(queries=(setup.user_query, setup.hash_user_emb), items=(setup.item_codes, setup.hash_item_emb))
        for method, depths in (("hashrec IVF-asymmetric", [None]),
                               ("hashrec IVF-asymmetric + re-rank", [c for c in st.candidates if c > k][1::2])):
            grid = [{"nlist": nlist, "nprobe": p, "candidates": c} for c in depths for p in probes]
            frames.append(sweep(factory, grid, method=method + label_suffix, **pairs, **common)
                          .assign(family="asymmetric"))
    if "hierarchical" in families:
        cs = [c for c in st.candidates if c >= k]
        sources = [("hashrec hierarchical", "hamming", setup.user_codes)]
        if setup.user_query is not None:
            sources.append(("hashrec hierarchical (asymmetric candidates)", "asymmetric", setup.user_query))
        for method, source, first in sources:
            factory = lambda source=source, **p: make_index("hierarchical", bits=bits, threads=st.threads,  # noqa: E731
                                                            source=source, **p)
            frames.append(sweep(factory, [{"candidates": c} for c in cs], (first, setup.hash_user_emb),
                                items=(setup.item_codes, setup.hash_item_emb), method=method + label_suffix,
                                **common).assign(family="hierarchical"))
    return pd.concat(frames, ignore_index=True)


# Scaling sizes beyond a notebook's reach (10^7 items: minutes per method on two cores), measured by
# ``benchmarks/bench_scaling.py --profile P`` into results/<P>/<SCALING_LARGE>.csv.
SCALING_LARGE = "retrieval_scaling_large"


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
    """Notebook 04: recall-throughput curves of every index on ml-1m, build time and memory, and the
    sampled catalogues.

    Writes ``results/<profile>/retrieval_{sweep,build,scaling}`` and ``retrieval_scaling_summary.json``
    and the figures ``retrieval_curves`` and ``retrieval_scaling``. The catalogues keep the trained
    model's geometry without duplicates (:func:`hashrec_utils.catalogue.catalogue_sweep`): a Gaussian
    mixture of the best estimator's items ``[embedding, table row]``, sampled to ``scaling_sizes``,
    coded through the trained hash layer, queried by real users; the summary holds each size's
    ``near_duplicate_share`` and, per method, the fastest setting reaching 0.9 and 0.95 of the exact
    top-20 (:func:`hashrec_utils.catalogue.operating_points`).
    """
    from ..plotting import plot_retrieval_curves, savefig

    st = RETRIEVAL_STAGE[profile]
    setup = retrieval_setup(profile)
    df = retrieval_sweeps(profile, setup)
    write_table(df, "retrieval_sweep", profile)
    build = df.groupby("method", sort=False).agg(build_s=("build_s", "max"), bytes_per_item=("bytes_per_item", "first"),
                                                 best_recall=("recall@20", "max"), max_qps=("qps", "max")).reset_index()
    write_table(build, "retrieval_build", profile)
    savefig(plot_retrieval_curves(df), "retrieval_curves", figures_dir(profile))
    scale, summary = catalogue_stage(profile, setup)
    return {"sweep": df, "build": build, "scaling": scale, "scaling_summary": summary}


def catalogue_stage(profile: str, setup: RetrievalSetup, dataset: str = "ml-1m",
                    max_items: int | None = None) -> tuple[pd.DataFrame, dict]:
    """The sampled catalogues of one setup's codes run (:func:`hashrec_utils.catalogue.catalogue_sweep`,
    sizes ``scaling_sizes`` up to ``max_items``): writes ``results/<profile>/retrieval_scaling<suffix>``,
    ``retrieval_scaling_summary<suffix>.json`` (naming the run, the real catalogue it was fitted to and,
    per method, the fastest setting reaching 0.9 and 0.95 of the exact top-20) and the figure
    ``retrieval_scaling<suffix>`` (suffix ``_<dataset>`` beyond ml-1m)."""
    from ..catalogue import catalogue_sweep, load_hash_run, operating_points
    from ..plotting import plot_scaling, savefig

    st = RETRIEVAL_STAGE[profile]
    suffix = "" if dataset == "ml-1m" else f"_{dataset}"
    sizes = [n for n in st.scaling_sizes if max_items is None or n <= max_items]
    run = load_hash_run(runs_dir(profile) / setup.codes_run)  # the run retrieval_setup trained or reused
    # two timings a point at catalogue scale (10^6 items: a minute a method); the tradeoffs repeat st.repeats times
    rows, summary = catalogue_sweep(run, sizes, threads=st.threads, repeats=min(st.repeats, 2))
    scale = scaling_table(profile, rows) if dataset == "ml-1m" else rows
    write_table(scale, f"retrieval_scaling{suffix}", profile)
    write_json(results_dir(profile) / f"retrieval_scaling_summary{suffix}.json",
               {**summary, "dataset": dataset, "codes_run": setup.codes_run, "teacher_run": setup.teacher_run,
                "fitted_items": int(len(run["item"])), "operating_points": operating_points(rows)})
    savefig(plot_scaling(rows), f"retrieval_scaling{suffix}", figures_dir(profile))
    return scale, summary
