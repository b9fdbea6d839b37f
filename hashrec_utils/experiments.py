"""Study stages that the notebooks call: each loads, computes, writes results, returns tables.

A stage writes its numbers to ``results/<profile>/`` (atomic CSV/JSON, the
files the report reads) and its figures to ``figures/<profile>/``; the
notebook only shows what the stage returns.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .config import get_profile, results_dir
from . import settings as _settings
from .data import DATASETS, InteractionData, dataset_stats, load_dataset, subset_users
from .utils import atomic_write, write_json

__all__ = ["load_profile_datasets", "write_table", "data_prep"]


def write_table(frame: pd.DataFrame, name: str, profile: str) -> Path:
    """Write ``results/<profile>/<name>.csv`` and ``.json`` (records) atomically."""
    folder = results_dir(profile)
    path = folder / f"{name}.csv"
    with atomic_write(path, "w") as fh:
        frame.to_csv(fh, index=False)
    write_json(folder / f"{name}.json", frame.to_dict(orient="records"))
    return path


def collect_runs(profile: str, folders) -> list[dict]:
    """Record finished run folders in ``results/<profile>/runs.json`` (merged by run name).

    What the report quotes of runs that ``make all`` does not make (the ``full`` profile's
    Gowalla runs): each row is the run's name, its ``config.json`` (dataset, model, hash method,
    bits, seed, epochs, batch size, learning rate, ``code_version``; hash runs: the distillation weight),
    ``train_seconds``, ``best_epoch``, ``kept`` (which weights) and its metrics (``metrics.json``: test,
    and ``valid`` on the validation split; hash runs keep their ``continuous``/``hamming``/``hierarchical`` sections).
    A folder without ``metrics.json`` (unfinished) is one clear error, and nothing is written.
    """
    from .utils import read_json

    rows = []
    for folder in map(Path, folders):
        if not (folder / "metrics.json").exists() or not (folder / "config.json").exists():
            raise ValueError(f"{folder}: not a finished run (needs config.json and metrics.json)")
        config, metrics = read_json(folder / "config.json"), read_json(folder / "metrics.json")
        rows.append({"run": folder.name, **{k: config.get(k) for k in (
            "dataset", "model", "hash_method", "bits", "seed", "epochs", "batch_size", "lr", "lr_schedule",
            "n_layers", "dim", "code_version")}, "distill": (config.get("hash_params") or {}).get("distill", 0.0) if config.get("hash_method") else None,
            "train_seconds": metrics.get("train_seconds"), "best_epoch": metrics.get("best_epoch"), "kept": metrics.get("kept"),
            "metrics": metrics})
    path = results_dir(profile) / "runs.json"
    new = {r["run"] for r in rows}
    kept = [r for r in (read_json(path) if path.exists() else []) if r["run"] not in new]
    merged = sorted(kept + rows, key=lambda r: r["run"])
    write_json(path, merged)
    return merged


def environment() -> dict:
    """The machine and library versions a profile ran with (the report's set-up section)."""
    import os
    import platform

    import faiss
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), cpu)
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
            "faiss": faiss.__version__, "cuda": torch.cuda.is_available(),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def load_profile_datasets(profile: str, *, valid_fraction: float = 0.1, seed: int = 0) -> list[InteractionData]:
    """The datasets of a profile, sliced to ``max_users`` in ``quick``."""
    prof = get_profile(profile)
    return [
        subset_users(load_dataset(name, valid_fraction=valid_fraction, seed=seed), prof.max_users)
        for name in prof.datasets
    ]


def data_prep(profile: str) -> tuple[pd.DataFrame, list[InteractionData]]:
    """Statistics of each dataset of the profile (published splits, no valid carved).

    Writes ``results/<profile>/data_stats.{csv,json}`` and the log-log degree
    figure ``figures/<profile>/degree_distribution.{png,pdf}``.
    """
    from .plotting import plot_degree_distribution, savefig

    datasets = load_profile_datasets(profile, valid_fraction=0.0)
    stats = pd.DataFrame([dataset_stats(d) for d in datasets])
    write_table(stats, "data_stats", profile)
    write_json(results_dir(profile) / "environment.json", environment())
    fig = plot_degree_distribution(datasets)
    savefig(fig, "degree_distribution", profile)
    return stats, datasets


# --------------------------------------------------------------------------
# 02 · LightGCN baseline
# --------------------------------------------------------------------------

LAYER_SWEEP = {"quick": (1, 2, 3), "default": (1, 2, 3, 4), "full": (1, 2, 3, 4)}
# Epochs of each layer-sweep run (None: the profile's): default runs 20 of its 80, to fit make all's budget.
LAYER_SWEEP_EPOCHS = {"quick": None, "default": 20, "full": None}


def lightgcn_run(profile: str, dataset: str = "ml-1m", seed: int = 0, n_layers: int = 3, progress: bool = True,
                 epochs: int | None = None) -> tuple[dict, Path]:
    """Train (or reuse) the LightGCN run of a profile; returns ``(metrics, run folder)``.

    A folder trained by other code (``code_version``) is moved aside and trained again."""
    from .config import runs_dir
    from .train import run

    name = Path(str(dataset)).name  # a folder dataset: its last component
    out = runs_dir(profile) / (f"lightgcn_{name}_L{n_layers}_s{seed}" + (f"_e{epochs}" if epochs else ""))
    overrides = {} if n_layers == 3 else {"n_layers": n_layers}
    if epochs:
        overrides["epochs"] = epochs
    metrics = run(dataset, model="lightgcn", profile=profile, seed=seed, out=out, overrides=overrides, progress=progress,
                  retrain=True)
    return metrics, out


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
    from .metrics import degree_buckets, evaluate_by_group, rank_topk
    from .plotting import plot_lightgcn_degree, plot_lightgcn_layers, plot_lightgcn_training, savefig
    from .train import load_run_data, train_config

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

    savefig(plot_lightgcn_training(history), "lightgcn_training", profile)
    savefig(plot_lightgcn_layers(layers), "lightgcn_layers", profile)
    savefig(plot_lightgcn_degree(degree), "lightgcn_degree", profile)
    return {"metrics": table, "history": history, "layers": layers, "degree": degree}


# --------------------------------------------------------------------------
# 03 · Learning to hash
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class HashStage:
    """Sweep sizes of notebook 03 for one profile.

    Hash models start from the profile's trained LightGCN: its final
    embeddings seed a table that is fine-tuned for the codes alone, while the
    LightGCN embeddings themselves stay frozen for continuous and hierarchical
    search (no propagation per step, so a run costs seconds). ``hashgnn`` is
    the exception, trained end to end from scratch with its GraphSAGE encoder,
    as published, and so are the other published rows (:data:`EXTRA_VARIANTS`: Luo & Wu's
    smooth recall + SignSwish and BGCH, each on a LightGCN encoder trained end to end for at
    most ``published_epochs``, early-stopped on validation). ``variants``/``variant_seeds``: the
    extra table rows and their seeds; ``sweep_epochs``: epochs of each run
    of the parameter analysis (λ, triplets, K).

    One protocol for every compared run (table rows, variants, fixed-p runs,
    sweeps): validation every ``eval_every`` epochs and after the last, and the
    weights ``keep`` chooses (``best_valid``: those of the best validation
    epoch); every selection (best estimator, the bits/C sweeps' base) reads
    validation numbers, the test split is read once per final model.
    """

    seeds: tuple[int, ...]
    epochs: int
    hashgnn_epochs: int
    lambdas: tuple[float, ...]
    triplets: tuple[int, ...]
    bits: tuple[int, ...]
    candidates: tuple[int, ...]
    sweep_epochs: int
    variants: tuple[str, ...] = ("guided_ste_sp", "hashgnn", "hashgnn_nr", "luo_wu", "bgch_published")
    variant_seeds: tuple[int, ...] = (0, 1, 2)
    published_epochs: int = 80
    eval_every: int = 2
    keep: str = "best_valid"
    estimators: tuple[str, ...] = ("ste", "guided_ste", "hashnet", "gumbel", "signswish", "bgch")


_LAMBDAS = tuple(round(0.1 * i, 1) for i in range(11))
HASH_STAGE = {
    "quick": HashStage(seeds=(0,), epochs=4, hashgnn_epochs=2, lambdas=(0.0, 0.5, 1.0), triplets=(1, 5),
                       bits=(32, 64), candidates=(20, 50, 100), sweep_epochs=2, variant_seeds=(0,),
                       variants=("guided_ste_sp", "hashgnn", "hashgnn_nr", "luo_wu", "bgch_published"),
                       published_epochs=2),
    # sized for make all on two shared cores: one seed a row (the full profile runs three), the
    # parameter analysis at a few points
    "default": HashStage(seeds=(0,), epochs=10, hashgnn_epochs=16, lambdas=(0.0, 1.0), triplets=(1, 5),
                         bits=(32, 64, 128), candidates=(20, 50, 100, 200, 400), sweep_epochs=5,
                         variants=("guided_ste_sp", "hashgnn", "luo_wu", "bgch_published"), variant_seeds=(0,),
                         published_epochs=30),
    "full": HashStage(seeds=(0, 1, 2), epochs=20, hashgnn_epochs=40, lambdas=_LAMBDAS, triplets=(1, 2, 5, 10),
                      bits=(16, 32, 64, 128, 256), candidates=(20, 50, 100, 200, 400), sweep_epochs=10),
}

# Hash training shared by every table run (tuned on ml-1m default, see the README): cosine decay
# from a high learning rate; the batch (large, because a step's cost is the distinct users × items
# score matrix of the listwise loss, not the number of pairs) comes from the data's size:
# settings.HashSettings, 65,536 on ml-1m and Gowalla.
HASH_TRAIN = {"lr": 0.01, "lr_schedule": "cosine", "patience": 0}
# HashGNN end to end: its GraphSAGE encoder runs over the whole graph every step, so a step costs the
# graph, not the batch. The paper's batch of 256 (2,800 steps an epoch on ml-1m) is out of reach on two
# cores; 16,384 pairs at a constant lr 0.01 (44 steps an epoch) trained until validation plateaus
# (patience: 3 validations without a better Hamming recall@20, the best epoch kept). The old 88 steps
# at 65,536 with cosine decay to 0 stopped its continuous z at 0.44x LightGCN.
HASHGNN_TRAIN = {"lr": 0.01, "lr_schedule": "constant", "batch_size": 16384, "patience": 3}
# The objective of every table run unless a run says otherwise: softmax of the code scores over all
# items (ranks in Hamming space directly) plus the KL from LightGCN's own softmax over the items
# (distillation, weight 1, τ 1: the codes learn the continuous model's whole ranking, not only the
# train positives; on ml-1m signswish Hamming recall@20 0.198 → 0.214, on gowalla recall@50
# 0.186 → 0.216); the table learns codes only (cont_weight 0) and the LightGCN embeddings it
# started from stay frozen for continuous and hierarchical search, and teach.
TABLE_OBJECTIVE = {"objective": "softmax", "n_negatives": 0, "cont_weight": 0.0, "continuous": "init", "distill": 1.0}
# Catalogues too large for the all-items softmax (a step costs distinct users × items: 22 k × 41 k
# scores on gowalla, a minute and 17 GiB on two cores) take the softmax over a pool of items drawn
# per step and shared by the batch (losses.pooled_listwise_loss). The pool is derived from the
# data's size (settings.pool_size: the score cap and the memory budget), never from its name; this
# table is the pool each named source with published counts gets under the score cap alone (a
# record for readers and tests: no decision reads it).
SAMPLED_POOL = {name: pool for name, pool in (
    (name, _settings.pool_size(shape, _settings.HashSettings.of("full", shape, budget_bytes=float("inf")).batch_size,
                               float("inf")))
    for name, shape in ((n, _settings.dataset_shape(n, 0.1)) for n, src in DATASETS.items() if src.counts)) if pool}
# Hash epochs when the pool is sampled (any profile but quick): 10 on gowalla cost 6 min on two
# cores (13 steps of 65,536 pairs an epoch); without distillation 20 epochs overfit the train pairs
# (Hamming recall@50 0.186 after 10, 0.182 after 20).
SAMPLED_POOL_EPOCHS = 10
# Estimator schedules as fractions of training (settings.SCHEDULES), so one schedule serves any
# data size and run length: guided STE p × 0.95 over 50 stages, HashNet β 1 → 10, Gumbel τ × 0.9
# over 20 stages down to 0.05.
SCHEDULES = _settings.SCHEDULES
# Estimators whose validation curves notebook 03 draws (guided vs plain STE, HashGNN Fig. 4). It
# decides nothing about training: every run validates on HashStage.eval_every and keeps by
# HashStage.keep (hash_run), so any run's history.csv holds a curve.
CURVE_ESTIMATORS = ("ste", "guided_ste")


def hash_overrides(profile: str, method: str, *, model: str = "lightgcn", dataset: str = "ml-1m",
                   epochs: int | None = None, eval_every: int | None = None, init: str | Path | None = None,
                   shape: "_settings.DataShape | None" = None, budget_bytes: float | None = None,
                   end_to_end: bool = False, **hash_params) -> dict:
    """The :class:`~hashrec_utils.train.TrainConfig` overrides of a hash run in this study (the CLI's
    ``train --hash`` uses them too): :data:`HASH_TRAIN` (or :data:`HASHGNN_TRAIN`) with the batch of
    :class:`~hashrec_utils.settings.HashSettings`, the profile's epochs, and hash parameters
    :data:`TABLE_OBJECTIVE` + the pool + :data:`SCHEDULES` + ``hash_params``.
    One checkpoint rule for every run, whatever its estimator: validation every
    ``HASH_STAGE[profile].eval_every`` epochs and the weights kept by ``HASH_STAGE[profile].keep``
    (``eval_every`` overrides the period).

    Table runs start from ``init``, a LightGCN run folder; by default the profile's LightGCN run of
    ``dataset`` with seed 0 (trained first when absent). ``shape``: the data's
    :class:`~hashrec_utils.settings.DataShape` (default: :func:`~hashrec_utils.settings.dataset_shape`);
    when the all-items softmax (and its teacher cache) would not fit the score cap or
    ``budget_bytes`` (default :func:`~hashrec_utils.settings.memory_budget_bytes`), the softmax runs
    over a sampled pool of items, and such runs train :data:`SAMPLED_POOL_EPOCHS` epochs (not ``quick``).

    ``end_to_end``: a published recipe on its own LightGCN encoder trained from scratch (no table,
    no init, no distillation): LightGCN's own training settings of the profile (batch, lr, L2,
    patience), at most ``HASH_STAGE[profile].published_epochs`` epochs, ``hash_params`` as given.
    """
    from .hashing import split_method
    from .train import train_config

    if end_to_end:
        stage = HASH_STAGE[profile]
        base = train_config(profile, str(dataset), shape=shape)
        estimator = split_method(method)[0]
        params = dict(hash_params)
        params["estimator"] = {**_settings.HashSettings.schedule(estimator), **params.get("estimator", {})}
        return {"batch_size": base.batch_size, "lr": base.lr, "lr_schedule": base.lr_schedule, "reg": base.reg,
                "patience": base.patience, "epochs": epochs or stage.published_epochs,
                "eval_every": eval_every or stage.eval_every, "keep": stage.keep, "hash_params": params}

    stage = HASH_STAGE[profile]
    if shape is None:
        published = _settings.published_split(str(dataset))
        valid = _settings.LightGCNSettings.valid_fraction_for(profile, published)
        shape = _settings.dataset_shape(str(dataset), valid, get_profile(profile).max_users)
    params = dict(hash_params)
    distill = bool(params.get("distill", TABLE_OBJECTIVE["distill"]))
    chosen = _settings.HashSettings.of(profile, shape, budget_bytes=budget_bytes, distill=distill)
    pooled = model != "hashgnn" and "n_negatives" not in params and chosen.pooled
    epochs = epochs or (stage.hashgnn_epochs if model == "hashgnn" else
                        SAMPLED_POOL_EPOCHS if pooled and profile != "quick" else stage.epochs)
    estimator = split_method(method)[0]
    eval_every = eval_every or stage.eval_every
    params["estimator"] = {**_settings.HashSettings.schedule(estimator), **params.get("estimator", {})}
    if model != "hashgnn":
        if init is None:
            _, init = lightgcn_run(profile, dataset, progress=False)
        params = {**TABLE_OBJECTIVE, "n_negatives": chosen.n_negatives, "init": str(init), **params}
    return {**HASH_TRAIN, "batch_size": chosen.batch_size, **(HASHGNN_TRAIN if model == "hashgnn" else {}),
            "epochs": epochs, "eval_every": eval_every, "keep": stage.keep, "hash_params": params}


def hash_run(profile: str, method: str, *, seed: int = 0, bits: int = 64, model: str = "lightgcn", tag: str = "",
             epochs: int | None = None, eval_every: int | None = None, progress: bool = False, dataset: str = "ml-1m",
             **hash_params) -> tuple[dict, Path]:
    """Train (or reuse) one hash model of notebook 03; returns ``(metrics, run folder)``.

    ``metrics`` has the sections ``continuous``, ``hamming``, ``hierarchical``.
    ``hash_params`` override :data:`TABLE_OBJECTIVE` and :data:`SCHEDULES`. The folder is
    ``runs/<profile>/hash_<model>_<method>_b<bits>_s<seed>[_<tag>]`` on ml-1m and
    ``hash_<dataset>_<model>_…`` on another dataset (what ``train --hash`` makes with that ``--out``).

    Every run follows the stage's protocol: validation every ``HASH_STAGE[profile].eval_every``
    epochs (``eval_every`` overrides) and the weights ``HASH_STAGE[profile].keep`` picks.
    ``lsh``/``sign`` train nothing: codes of the profile's LightGCN run (seed 0) of ``dataset``.
    A folder trained by other code (``code_version``) is moved aside and trained again.
    """
    from .config import runs_dir
    from .train import UNTRAINED_METHODS, run

    stage = HASH_STAGE[profile]
    if method in UNTRAINED_METHODS:
        _, init = lightgcn_run(profile, dataset, progress=False)
        overrides = {"epochs": 0, "hash_params": {"init": str(init), **hash_params}}
    else:
        overrides = hash_overrides(profile, method, model=model, dataset=dataset, epochs=epochs,
                                   eval_every=eval_every or stage.eval_every, **hash_params)
        overrides["keep"] = stage.keep
    prefix = "hash_" if dataset == "ml-1m" else f"hash_{dataset}_"
    out = runs_dir(profile) / (f"{prefix}{model}_{method}_b{bits}_s{seed}" + (f"_{tag}" if tag else ""))
    metrics = run(dataset, model=model, hash_method=method, bits=bits, profile=profile, seed=seed, out=out,
                  overrides=overrides, progress=progress, retrain=True)
    return metrics, out


# Variants beyond the plain estimators: label -> (estimator, model, hash_params)
EXTRA_VARIANTS = {
    "guided_ste_sp": ("guided_ste", "lightgcn", {"freeze": True}),
    "hashgnn": ("guided_ste", "hashgnn", {}),
    "hashgnn_nr": ("guided_ste", "hashgnn", {"lambda_rank": 0.0}),
    # Luo & Wu (shared/papers/003): their smooth recall loss and SignSwish estimator, without hashrec's
    # distillation, on the same LightGCN-initialised code table as hashrec's rows. The abstract leaves
    # the encoder set-up, N, the kernels' widths and β open. Trained from scratch end to end, the
    # outer kernel σ((N − r̂)/τ) is saturated at 0 while positives rank in the thousands (quick slice:
    # recall@20 0.007 after 2 epochs) and the all-items rank costs ~8 s a step on ml-1m; from the
    # trained table it learns. The rank r̂ is estimated on a pool of 1,024 items scaled to the
    # catalogue (an unbiased estimate of the sum over all items); N = 50 (the paper's smallest cut-off),
    # β = 5, τ_rank = 1, and τ_recall = 10 chosen on validation over {1, 10} (quick slice, valid
    # Hamming recall@20 0.0743 against 0.0788).
    "luo_wu": ("signswish", "lightgcn", {"objective": "recall", "n_negatives": 1024, "distill": 0.0,
                                         "top_n": 50, "tau_recall": 10.0}),
    # BGCH as its official code (hashing.BGCH): scaled codes scored α_u α_i ⟨b_u, b_i⟩, its Fourier
    # estimator with 8 terms (its MovieLens setting), bias-free hash layer, its BPR objective, on a
    # LightGCN encoder trained end to end. Not reproduced: its concatenation of every layer's codes.
    "bgch_published": ("bgch", "lightgcn", {"end_to_end": True, "objective": "bgch", "cont_weight": 0.0,
                                            "hash_layer": "linear_nobias", "n_negatives": 1,
                                            "estimator": {"n_terms": 8}}),
}


def variant_run(profile: str, label: str, *, seed: int = 0, bits: int = 64, progress: bool = False,
                dataset: str = "ml-1m") -> tuple[dict, Path]:
    """:func:`hash_run` of a table row's label: an estimator name or one of :data:`EXTRA_VARIANTS`."""
    method, model, params = EXTRA_VARIANTS.get(label, (label, "lightgcn", {}))
    return hash_run(profile, method, seed=seed, bits=bits, model=model, tag=label if label != method else "",
                    progress=progress, dataset=dataset, **params)


def candidates_sweep(profile: str, label: str, candidates: tuple[int, ...], seed: int = 0) -> list[dict]:
    """Hierarchical recall of one trained model (its saved codes and embeddings) for each C."""
    from .metrics import evaluate_topk
    from .retrieval import hierarchical_topk
    from .train import load_run_data, train_config

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
    from .train import load_run_data, train_config

    dim = train_config(profile, "ml-1m").dim
    rows = []
    for name, method, b in (("sign (post-hoc)", "sign", dim), ("lsh", "lsh", bits)):
        metrics, _ = hash_run(profile, method, bits=b)
        rows += [{"estimator": name, "seed": 0, **r} for r in _sections(metrics) if r["search"] != "continuous"]
    return rows


def _sections(metrics: dict) -> list[dict]:
    """One row per search mode of a hash run: its test metrics, ``valid_recall@20``/``valid_ndcg@20``
    of the same mode on the validation split (what selections read) and the run's ``best_epoch``."""
    return [{"search": s, **{k: v for k, v in metrics[s].items() if "@" in k}, **_valid_columns(metrics, s),
             "best_epoch": metrics.get("best_epoch")}
            for s in ("continuous", "hamming", "hierarchical")]


def summarize(frame: pd.DataFrame, by: list[str], metrics: tuple[str, ...] = ("recall@20", "ndcg@20")) -> pd.DataFrame:
    """Mean and standard deviation (ddof=1; 0 for one seed) of ``metrics`` over seeds, per group
    (a mean is NaN where no row of the group has the number, e.g. no validation split)."""
    agg = frame.groupby(by, sort=False)[list(metrics)].agg(["mean", "std"])
    agg.columns = [f"{m}_{s}" for m, s in agg.columns]
    agg["seeds"] = frame.groupby(by, sort=False).size()
    std = [c for c in agg.columns if c.endswith("_std")]
    agg[std] = agg[std].fillna(0.0)  # one seed; a mean stays NaN where no run has the number
    return agg.reset_index()


# Rows that run a published method under its own objective (the families of notebook 03's table).
PUBLISHED_ROWS = ("hashgnn", "hashgnn_nr", "luo_wu", "bgch_published")


def row_family(label: str) -> str:
    """Which family of notebook 03's table a row belongs to: ``as published`` (a method under its own
    paper's objective: :data:`PUBLISHED_ROWS`), ``hashrec
    objective`` (an estimator under hashrec's table objective), ``untrained`` or ``continuous``."""
    if label in ("sign (post-hoc)", "lsh"):
        return "untrained"
    if label.startswith("lightgcn"):
        return "continuous"
    return "as published" if label in PUBLISHED_ROWS else "hashrec objective"


def _estimator_table(profile: str, lightgcn: dict) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Notebook 03's table: every estimator and variant of ``HASH_STAGE[profile]`` over its seeds,
    LightGCN, sign and LSH; returns ``(runs, table, curves)`` (``table``: :func:`summarize` of the
    runs with ``valid_recall@20_mean``, what :func:`best_estimator` reads)."""
    stage = HASH_STAGE[profile]
    rows, curves = [], []
    for label in (*stage.estimators, *stage.variants):
        for seed in (stage.seeds if label in stage.estimators else stage.variant_seeds):
            metrics, out = variant_run(profile, label, seed=seed)
            rows += [{"estimator": label, "seed": seed, **r} for r in _sections(metrics)]
            if label in CURVE_ESTIMATORS or (row_family(label) == "as published" and seed == stage.variant_seeds[0]):
                h = pd.read_csv(out / "history.csv")
                h.insert(0, "seed", seed)
                h.insert(0, "estimator", label)
                curves.append(h)
    rows += [{"estimator": "lightgcn (continuous)", "search": "continuous", "seed": 0,
              **{k: v for k, v in lightgcn.items() if "@" in k}, **_valid_columns(lightgcn),
              "best_epoch": lightgcn.get("best_epoch")}]
    rows += _untrained_rows(profile)
    runs = pd.DataFrame(rows)
    table = summarize(runs, ["estimator", "search"], ("recall@20", "ndcg@20", "recall@50", "valid_recall@20"))
    table["recall@20_vs_lightgcn"] = table["recall@20_mean"] / lightgcn["recall@20"]
    table.insert(1, "family", table["estimator"].map(row_family))
    curve = pd.concat(curves, ignore_index=True) if curves else pd.DataFrame()
    return runs, table, curve


def hashing_stage(profile: str) -> dict[str, pd.DataFrame]:
    """Notebook 03: every estimator × search mode over seeds, guided vs plain STE, fixed vs decaying p,
    and the parameter analysis (λ, triplets per node, bits, candidates C).

    Writes ``results/<profile>/hashing_*.csv|json`` and the ``hashing_*`` figures.
    """
    from .plotting import (plot_hashing_curves, plot_hashing_params, plot_hashing_table, plot_published_curves,
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
    })
    savefig(plot_hashing_curves(curve), "hashing_curves", profile)
    savefig(plot_published_curves(published), "hashing_published_curves", profile)
    savefig(plot_hashing_table(table), "hashing_table", profile)
    savefig(plot_hashing_params(param_table), "hashing_params", profile)
    return {"table": table, "runs": runs, "curves": curve, "p": p_table, "params": param_table}


def popcount_searchable(label: str) -> bool:
    """Whether a row's codes are ranked by Hamming distance alone, so popcount indexes serve them.

    Scaled codes (BGCH, BiGeaR: ``α_u α_i ⟨b_u, b_i⟩``, ``Estimator.scaled``) carry a float per item
    that reorders items of equal distance; the table scores them that way, but the speed study's
    binary indexes cannot, so they are not candidates for its codes."""
    from .hashing import ESTIMATORS, split_method

    method = EXTRA_VARIANTS.get(label, (label,))[0]
    cls = ESTIMATORS.get(split_method(method)[0])
    return cls is not None and not getattr(cls, "scaled", False)


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


# --------------------------------------------------------------------------
# 04 · Faiss baselines and retrieval speed
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class RetrievalStage:
    """Search-parameter grids of notebook 04 and the scaling sizes."""

    hnsw_ef: tuple[int, ...]
    nsg_L: tuple[int, ...]
    ivf_nprobe: tuple[int, ...]
    pq_m: tuple[int, ...]
    binary_ef: tuple[int, ...]
    multihash_nflip: tuple[int, ...]
    candidates: tuple[int, ...]
    scaling_sizes: tuple[int, ...]
    threads: int = 2
    repeats: int = 3


RETRIEVAL_STAGE = {
    # Graph search depths (efSearch, search_L) start at k = 20: Faiss widens a beam below k to k anyway.
    "quick": RetrievalStage((20, 64), (20, 64), (1, 8), (8,), (20, 64), (1,), (50, 100), (10**4,), repeats=1),
    "default": RetrievalStage((20, 32, 64, 128, 256), (20, 32, 64, 128, 256), (1, 2, 4, 8, 16, 32, 64), (8, 16),
                              (20, 32, 64, 128, 256), (0, 1, 2, 3), (20, 50, 100, 200, 400, 800), (10**4, 10**5, 10**6),
                              repeats=2),
    "full": RetrievalStage((20, 32, 64, 128, 256), (20, 32, 64, 128, 256), (1, 2, 4, 8, 16, 32, 64), (8, 16),
                           (20, 32, 64, 128, 256), (0, 1, 2, 3), (20, 50, 100, 200, 400, 800), (10**4, 10**5, 10**6, 10**7)),
}


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
    from .metrics import rank_topk
    from .train import load_run_data, train_config
    from .utils import read_json

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
    from .bench import sweep
    from .retrieval import make_index

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
    from .catalogue import catalogue_sweep, load_hash_run
    from .plotting import plot_retrieval_curves, plot_scaling, savefig

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
    savefig(plot_retrieval_curves(df), "retrieval_curves", profile)
    savefig(plot_scaling(scale), "retrieval_scaling", profile)
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
    from .utils import read_json

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

    from .bench import at_fixed_throughput
    from .plotting import pareto_frontier, plot_tradeoff, savefig

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
    from .bench import torch_reference_topk

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
    savefig(plot_tradeoff(points, title=f"{dataset}: accuracy against throughput (2 threads)"), f"tradeoff{suffix}", profile)
    return {"points": points, "fixed": fixed, "pareto": front}
