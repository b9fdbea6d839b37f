"""One command for a user's own data: ``python -m hashrec_utils study --dataset FOLDER``.

The study of the paper, shrunk to one dataset the user brings:

1. **train** LightGCN once on the folder's train split, then one hash run per
   recipe of :data:`RECIPES` (SignSwish, guided STE), each a code table
   fine-tuned from that LightGCN run (:func:`hashrec_utils.experiments.hash_overrides`);
   runs live in ``runs/<name>/<profile>/…`` so a rerun resumes or reuses them;
2. **select** on the *validation* split only: every run's saved embeddings and
   codes are ranked for every user with ``train`` excluded and scored on
   ``valid``; the recipe with the higher Hamming recall@20 wins (ties: the
   first in :data:`RECIPES`);
3. **test once**: for the chosen recipe, exact continuous search (LightGCN),
   Hamming search and hierarchical search (Hamming top-``C`` re-ranked by
   ``⟨e_u, e_i⟩``, ``C`` in :data:`CANDIDATES`) rank every user with a test
   item, ``train + valid`` excluded; each search's ids are scored on ``test``
   exactly once. Throughput: ``queries/s = n_test_users / t``, ``t`` the best
   of ``repeats`` ``time.perf_counter`` timings of one search of all test
   users, with torch's and numba's thread pools pinned to ``threads``;
4. **write** ``results/<name>/`` (``study_runs.json``, ``study_table.csv/json``,
   ``study_summary.json``), ``figures/<name>/study_tradeoff`` and
   ``study_ratio`` (PNG + PDF) and ``report/study-<name>.pdf`` from
   ``report/study.typ``, which reads those JSON files.

Bytes per item: ``4·d`` for a float embedding, ``K/8`` for a ``K``-bit code;
hierarchical search keeps both (codes to scan, floats to re-rank).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .config import PROFILES, check_profile
from .metrics import evaluate_topk
from .study_report import StudyPaths, build_study_report, study_figures, study_paths
from .utils import atomic_write, read_json, write_json

__all__ = ["StudySettings", "StudyPaths", "study", "build_study_report", "dataset_name", "study_paths", "RECIPES", "CANDIDATES"]

RECIPES = ("signswish", "guided_ste")
CANDIDATES = (100, 200)
KS = (20, 50)
FORMATS = ("auto", "lightgcn", "edges", "grouplens", "netflix")


@dataclass(frozen=True)
class StudySettings:
    """Everything that defines one study (resolved once, from the CLI or a notebook).

    ``folder``: the user's dataset folder (``train`` and ``test`` files, optionally
    ``valid``). ``format``: how to read them (``auto`` detects). ``overrides``:
    :class:`~hashrec_utils.training.TrainConfig` fields applied to every run on top of
    the profile's settings (e.g. ``{"epochs": 2}``). ``threads``: size of the
    thread pools while searches are timed. ``repeats``: timings per search (best kept).
    """

    folder: str
    profile: str = "default"
    format: str = "auto"
    bits: int = 64
    seed: int = 0
    recipes: tuple[str, ...] = RECIPES
    candidates: tuple[int, ...] = CANDIDATES
    threads: int = 2
    repeats: int = 3
    overrides: dict = field(default_factory=dict)
    progress: bool = True

    def __post_init__(self):
        check_profile(self.profile)
        if self.format not in FORMATS:
            raise ValueError(f"format must be one of {', '.join(FORMATS)}; got {self.format!r}")
        if self.bits <= 0 or self.bits % 8:
            raise ValueError(f"bits must be a positive multiple of 8; got {self.bits}")
        if not self.recipes:
            raise ValueError("recipes must name at least one hash estimator")
        if any(c < max(KS) for c in self.candidates):
            raise ValueError(f"candidates must each be at least {max(KS)} (the deepest cut-off); got {self.candidates}")
        if self.threads <= 0 or self.repeats <= 0:
            raise ValueError(f"threads and repeats must be positive; got {self.threads}, {self.repeats}")
        if not Path(self.folder).is_dir():
            raise ValueError(f"dataset folder {self.folder!r} does not exist (give a folder holding train and test files)")


def dataset_name(folder: str | Path) -> str:
    """The folder's last component, made safe for a file name: runs of characters other than
    letters, digits, ``.``, ``_``, ``-`` become ``_``; a name equal to a profile
    (``quick``, ``default``, ``full``, whose results folders the main study owns) gets ``-data``."""
    raw = Path(folder).resolve().name
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", raw).strip("._-") or "dataset"
    return f"{name}-data" if name in PROFILES else name


def _log(settings: StudySettings, message: str) -> None:
    if settings.progress:
        print(f"[study] {message}", flush=True)


# --------------------------------------------------------------------------
# Runs
# --------------------------------------------------------------------------

def _tag(settings: StudySettings) -> str:
    """Folder-name suffix for what else changes a run: the format the data was read with (the runs
    of a converted copy train on another folder) and a short fingerprint of the overrides."""
    tag = "" if settings.format == "auto" else f"_{settings.format}"
    if settings.overrides:
        text = json.dumps(settings.overrides, sort_keys=True, default=str)
        tag += "_o" + hashlib.sha1(text.encode()).hexdigest()[:8]
    return tag


def _canonical_folder(settings: StudySettings, runs: Path) -> str:
    """The dataset argument every run gets: the user's folder with ``format="auto"``; otherwise
    a copy in LightGCN lines under ``runs/<name>/data`` (the format read once, here), so runs
    need no format of their own."""
    if settings.format == "auto":
        return str(Path(settings.folder).resolve())
    from . import data as data_mod

    try:  # load_dataset(format=) where it exists; the split-folder reader otherwise
        data = data_mod.load_dataset(settings.folder, valid_fraction=0.0, format=settings.format)
    except TypeError:
        data = data_mod.load_split_folder(settings.folder, format=settings.format)
    target = runs / "data"
    parts = [("train", data.train), ("test", data.test)] + ([("valid", data.valid)] if data.valid.nnz else [])
    for part, matrix in parts:
        matrix = sp.csr_matrix(matrix)
        lines = []
        for u in range(matrix.shape[0]):
            row = matrix.indices[matrix.indptr[u] : matrix.indptr[u + 1]]
            if len(row):
                lines.append(" ".join(map(str, [data.user_ids[u], *data.item_ids[np.sort(row)]])))
        text = "\n".join(lines) + "\n"
        path = target / f"{part}.txt"
        if not path.exists() or path.read_text() != text:
            with atomic_write(path, "w") as fh:
                fh.write(text)
    return str(target)


def _train_runs(settings: StudySettings, dataset: str, runs: Path) -> dict[str, Path]:
    """Train (or reuse) LightGCN and one hash run per recipe; returns ``{label: run folder}``."""
    from .experiments import hash_overrides
    from .settings import train_config
    from .training.runs import run

    tag = _tag(settings)
    folders = {"lightgcn": runs / settings.profile / f"lightgcn_s{settings.seed}{tag}"}
    _log(settings, f"training LightGCN → {folders['lightgcn']}")
    run(train_config(settings.profile, dataset, model="lightgcn", seed=settings.seed, **dict(settings.overrides)),
        folders["lightgcn"], progress=settings.progress)
    for method in settings.recipes:
        out = runs / settings.profile / f"hash_{method}_b{settings.bits}_s{settings.seed}{tag}"
        _log(settings, f"training hash recipe {method} ({settings.bits} bits) from LightGCN → {out}")
        overrides = {**hash_overrides(settings.profile, method, model="lightgcn", dataset=dataset,
                                      init=str(folders["lightgcn"])), **settings.overrides}
        run(train_config(settings.profile, dataset, model="lightgcn", hash_method=method, bits=settings.bits,
                         seed=settings.seed, **overrides), out, progress=settings.progress)
        folders[method] = out
    return folders


def _load_data(run_folder: Path):
    """The split the runs trained on: the dataset of the run's ``config.json``, valid carved with
    split seed 0 and its ``valid_fraction``, sliced to its ``max_users`` (as :func:`hashrec_utils.training.run` does)."""
    from .data import load_dataset, subset_users

    config = read_json(run_folder / "config.json")
    data = load_dataset(config["dataset"], valid_fraction=config["valid_fraction"], seed=0)
    return subset_users(data, config.get("max_users"))


def _embeddings(folder: Path, n_users: int, n_items: int) -> dict[str, np.ndarray]:
    with np.load(folder / "embeddings.npz") as npz:
        arrays = {k: npz[k] for k in npz.files}
    if arrays["user"].shape[0] != n_users or arrays["item"].shape[0] != n_items:
        raise ValueError(f"{folder}/embeddings.npz holds {arrays['user'].shape[0]} users × {arrays['item'].shape[0]} "
                         f"items but the dataset has {n_users} × {n_items}: the run was trained on other data")
    return arrays


# --------------------------------------------------------------------------
# Searches
# --------------------------------------------------------------------------

@contextlib.contextmanager
def _pinned_threads(threads: int) -> Iterator[None]:
    """torch's and numba's pools (and BLAS/OpenMP via threadpoolctl) at ``threads`` while timing."""
    import numba
    import torch

    old_torch, old_numba = torch.get_num_threads(), numba.get_num_threads()
    torch.set_num_threads(threads)
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    try:
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:  # optional: torch and numba are what the searches use
            limit = contextlib.nullcontext()
        else:
            limit = threadpool_limits(threads)
        with limit:
            yield
    finally:
        torch.set_num_threads(old_torch)
        numba.set_num_threads(old_numba)


def _searches(settings: StudySettings, lgcn: dict, hashed: dict, k: int, rows: np.ndarray):
    """``[(search, candidates or None, bytes per item, fn(exclude) -> ids (len(rows), k))]``; the
    queries (rows ``rows``) are sliced here, outside the timed calls."""
    from .retrieval import continuous_topk, hamming_topk, hierarchical_topk

    q_emb, q_codes, q_hemb = lgcn["user"][rows], hashed["user_codes"][rows], hashed["user"][rows]
    d = lgcn["item"].shape[1]
    code_bytes = hashed["item_codes"].shape[1]
    out = [("continuous", None, 4 * d, lambda ex: continuous_topk(q_emb, lgcn["item"], k, exclude=ex)),
           ("hamming", None, code_bytes, lambda ex: hamming_topk(q_codes, hashed["item_codes"], k, exclude=ex))]
    for c in settings.candidates:
        out.append(("hierarchical", c, code_bytes + 4 * hashed["item"].shape[1],
                    lambda ex, c=c: hierarchical_topk(q_codes, hashed["item_codes"], q_hemb, hashed["item"], k,
                                                      candidates=c, exclude=ex)))
    return out


def _validate(arrays: dict, data) -> dict:
    """Validation metrics of one run: every user ranked with ``train`` excluded, scored on ``valid``."""
    from .retrieval import continuous_topk, hamming_topk

    out = {"continuous": evaluate_topk(continuous_topk(arrays["user"], arrays["item"], max(KS), exclude=data.train),
                                       data.valid, ks=KS)}
    if "item_codes" in arrays:
        out["hamming"] = evaluate_topk(hamming_topk(arrays["user_codes"], arrays["item_codes"], max(KS),
                                                    exclude=data.train), data.valid, ks=KS)
    return {section: {k: v for k, v in m.items() if k.split("@")[0] in ("recall", "ndcg")} for section, m in out.items()}


def _time_search(fn, exclude, repeats: int) -> tuple[float, np.ndarray]:
    """Best of ``repeats`` wall-clock seconds of ``fn(exclude)``, and the ids it returned."""
    best, ids = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        ids = fn(exclude)
        best = min(best, time.perf_counter() - start)
    return best, ids


# --------------------------------------------------------------------------
# The study
# --------------------------------------------------------------------------

def study(settings: StudySettings) -> dict:
    """Run the whole study of :mod:`hashrec_utils.study` for ``settings``; returns the summary
    (also in ``results/<name>/study_summary.json``) with the paths written under ``"files"``."""
    name = dataset_name(settings.folder)
    paths = study_paths(name)
    _log(settings, f"dataset {settings.folder} → name {name!r}, profile {settings.profile}, {settings.bits} bits")
    dataset = _canonical_folder(settings, paths.runs)

    # 1. train
    folders = _train_runs(settings, dataset, paths.runs)
    data = _load_data(folders["lightgcn"])
    if data.valid.nnz == 0:
        raise ValueError(f"{settings.folder}: the split has no validation interactions to choose a recipe on "
                         "(valid_fraction is 0 for this dataset and profile)")
    arrays = {label: _embeddings(folder, data.n_users, data.n_items) for label, folder in folders.items()}

    # 2. select on validation
    _log(settings, "validation: ranking every user with train excluded, scoring on valid")
    runs_table = []
    for label, folder in folders.items():
        valid = _validate(arrays[label], data)
        runs_table.append({"run": label, "kind": "lightgcn" if label == "lightgcn" else "hash",
                           "folder": str(folder), "valid": valid})
    hash_runs = [r for r in runs_table if r["kind"] == "hash"]
    chosen = max(hash_runs, key=lambda r: r["valid"]["hamming"]["recall@20"])  # first wins a tie
    for r in runs_table:
        r["chosen"] = r is chosen
    _log(settings, "validation Hamming recall@20: " + ", ".join(
        f"{r['run']} {r['valid']['hamming']['recall@20']:.4f}" for r in hash_runs) + f" → {chosen['run']}")
    write_json(paths.results / "study_runs.json", runs_table)

    # 3. test once, timed
    test_users = np.flatnonzero(np.diff(data.test.indptr) > 0)
    exclude = sp.csr_matrix(data.train_full[test_users])
    lgcn, hashed = arrays["lightgcn"], arrays[chosen["run"]]
    rows = []
    with _pinned_threads(settings.threads):
        for search, c, nbytes, fn in _searches(settings, lgcn, hashed, max(KS), test_users):
            label = search if c is None else f"{search} (C={c})"
            seconds, ids = _time_search(fn, exclude, settings.repeats)
            metrics = evaluate_topk(ids, data.test, ks=KS, users=test_users)  # the one read of the test split
            rows.append({"method": "LightGCN" if search == "continuous" else chosen["run"], "search": search,
                         "candidates": c, "label": label, "recall@20": metrics["recall@20"],
                         "ndcg@20": metrics["ndcg@20"], "recall@50": metrics["recall@50"],
                         "queries_per_s": len(test_users) / seconds, "seconds": seconds,
                         "bytes_per_item": int(nbytes)})
            _log(settings, f"test {label}: recall@20 {metrics['recall@20']:.4f}, "
                           f"{rows[-1]['queries_per_s']:,.0f} queries/s")
    table = pd.DataFrame(rows)
    exact = float(table.loc[table["search"] == "continuous", "recall@20"].iloc[0])
    table["ratio_vs_exact"] = table["recall@20"] / exact if exact > 0 else np.nan
    write_json(paths.results / "study_table.json", table.to_dict(orient="records"))
    with atomic_write(paths.results / "study_table.csv", "w") as fh:
        table.to_csv(fh, index=False)

    # 4. summary, figures, report
    from .data import dataset_stats

    stats = dataset_stats(data)
    lgcn_config = read_json(folders["lightgcn"] / "config.json")
    hamming = table[table["search"] == "hamming"].iloc[0]
    summary = {
        "name": name, "folder": str(Path(settings.folder).resolve()), "profile": settings.profile,
        "bits": settings.bits, "seed": settings.seed, "overrides": settings.overrides,
        "threads": settings.threads, "repeats": settings.repeats, "n_test_users": int(len(test_users)),
        "dataset": {k: stats[k] for k in ("users", "items", "interactions", "train", "valid", "test", "density",
                                          "user_degree_p50", "item_degree_p50")},
        "max_users": lgcn_config.get("max_users"), "embedding_dim": int(lgcn["item"].shape[1]),
        "lightgcn_epochs": lgcn_config["epochs"],
        "chosen_recipe": chosen["run"],
        "selection": {r["run"]: r["valid"]["hamming"] for r in hash_runs},
        "lightgcn_valid_recall@20": runs_table[0]["valid"]["continuous"]["recall@20"],
        "lightgcn_recall@20": exact,
        "hamming_recall@20": float(hamming["recall@20"]),
        "best_hamming_ratio": float(hamming["ratio_vs_exact"]),
        "hamming_speedup": float(hamming["queries_per_s"] / table.loc[table["search"] == "continuous",
                                                                      "queries_per_s"].iloc[0]),
    }
    write_json(paths.results / "study_summary.json", summary)
    _log(settings, "figures")
    figures = study_figures(table, name, paths.figures, settings.bits)
    _log(settings, "report")
    pdf = build_study_report(name)
    _log(settings, f"done: {paths.results}, {paths.figures}, {pdf}")
    return {**summary, "files": {"results": str(paths.results), "figures": [str(p) for p in figures],
                                 "report": str(pdf)}}
