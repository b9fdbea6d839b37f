"""Run management of the study: the settings of every compared run, written once, and the run folders.

:data:`HASH_STAGE` (one frozen :class:`HashStage` per profile), :data:`HASH_TRAIN`,
:data:`TABLE_OBJECTIVE`, :data:`.rows.EXTRA_VARIANTS` and the schedules resolve into one
:class:`~hashrec_utils.training.TrainConfig` per run (:func:`hash_overrides`); :func:`lightgcn_run`
and :func:`hash_run` train a run or reuse its folder (a folder trained by other code is trained
again). What each table row is and the settings it runs at: :mod:`.rows`. Results files:
:func:`write_table`, :func:`collect_runs`.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..config import results_dir
from ..profiles import HashStage, ProfileView, Teacher, get_profile
from .. import settings as _settings
from ..data import DATASETS, InteractionData, load_dataset, subset_users
from ..utils import atomic_write, write_json


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
    bits, seed, epochs, batch size, learning rate, ``identity``; hash runs: the distillation weight),
    ``train_seconds``, ``best_epoch``, ``kept`` (which weights) and its metrics (``metrics.json``: test,
    and ``valid`` on the validation split; hash runs keep their ``continuous``/``hamming``/``hierarchical`` sections).
    A folder without ``metrics.json`` (unfinished) is one clear error, and nothing is written.
    """
    from ..utils import read_json

    rows = []
    for folder in map(Path, folders):
        if not (folder / "metrics.json").exists() or not (folder / "config.json").exists():
            raise ValueError(f"{folder}: not a finished run (needs config.json and metrics.json)")
        config, metrics = read_json(folder / "config.json"), read_json(folder / "metrics.json")
        rows.append({"run": folder.name, **{k: config.get(k) for k in (
            "dataset", "model", "hash_method", "bits", "seed", "epochs", "batch_size", "lr", "lr_schedule",
            "n_layers", "dim", "identity")}, "distill": (config.get("hash_params") or {}).get("distill", 0.0) if config.get("hash_method") else None,
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



def valid_tag(valid_fraction: float | None) -> str:
    """The folder suffix of a run on a validation carve-out other than its source's default
    (``"_v10"`` for 10 %; ``""`` for the default)."""
    return "" if valid_fraction is None else f"_v{round(100 * valid_fraction):d}"


def lightgcn_run_name(dataset: str, seed: int = 0, n_layers: int = 3, epochs: int | None = None,
                      valid_fraction: float | None = None, *, dim: int | None = None) -> str:
    """The folder name :func:`lightgcn_run` trains into (under ``runs/<profile>/``); ``_d<n>`` where
    the embedding size is set (``dim``) rather than the profile's."""
    name = Path(str(dataset)).name  # a folder dataset: its last component
    return (f"lightgcn_{name}_L{n_layers}_s{seed}" + (f"_d{dim}" if dim else "") + (f"_e{epochs}" if epochs else "")
            + valid_tag(valid_fraction))


def hash_run_name(method: str, *, seed: int = 0, bits: int = 64, model: str = "lightgcn", tag: str = "",
                  dataset: str = "ml-1m", valid_fraction: float | None = None, teacher_seed: int = 0,
                  teacher: Teacher | None = None) -> str:
    """The folder name :func:`hash_run` trains into (under ``runs/<profile>/``); ``_t<n>`` after the
    seed where the run starts from the LightGCN of seed ``teacher_seed`` n ≠ 0, then the
    :attr:`~hashrec_utils.profiles.Teacher.tag` of a ``teacher`` other than the profile's
    (``_d<n>``: its size, ``_e<n>``: its schedule)."""
    carve = valid_tag(valid_fraction)[1:] + ("_" if valid_fraction is not None else "")
    prefix = ("hash_" if dataset == "ml-1m" else f"hash_{dataset}_") + carve
    tags = (f"_t{teacher_seed}" if teacher_seed else "") + (teacher.tag if teacher else "")
    return f"{prefix}{model}_{method}_b{bits}_s{seed}{tags}" + (f"_{tag}" if tag else "")


def own_teacher(profile: str, dataset: str, teacher: Teacher | None) -> Teacher | None:
    """``teacher`` with what equals the profile's own (its embedding size, its LightGCN schedule)
    unset, None where nothing is left: a teacher set to the profile's keeps the folder names (no
    ``_d<n>``/``_e<n>``) and the runs it always had."""
    from ..settings import train_config

    if teacher is None:
        return None
    own = train_config(profile, str(dataset))
    dim = teacher.dim if teacher.dim != own.dim else None
    epochs = teacher.epochs if teacher.epochs != own.epochs else None
    return Teacher(dim, epochs) if dim or epochs else None


def lightgcn_plan(profile: str, dataset: str = "ml-1m", seed: int = 0, n_layers: int = 3,
                  epochs: int | None = None, valid_fraction: float | None = None, *, dim: int | None = None):
    """The ``(TrainConfig, run folder)`` of :func:`lightgcn_run`, resolved without training anything."""
    from ..config import runs_dir
    from ..settings import train_config

    own = own_teacher(profile, dataset, Teacher(dim, epochs)) or Teacher()  # the profile's own, given, is unset
    dim, epochs = own.dim, own.epochs
    out = runs_dir(profile) / lightgcn_run_name(dataset, seed, n_layers, epochs, valid_fraction, dim=dim)
    overrides = {} if n_layers == 3 else {"n_layers": n_layers}
    if epochs:
        overrides["epochs"] = epochs
    if dim:
        overrides["dim"] = dim
    if valid_fraction is not None:
        overrides["valid_fraction"] = valid_fraction
    return train_config(profile, str(dataset), model="lightgcn", seed=seed, **overrides), out


def lightgcn_run(profile: str, dataset: str = "ml-1m", seed: int = 0, n_layers: int = 3, progress: bool = True,
                 epochs: int | None = None, valid_fraction: float | None = None, *,
                 dim: int | None = None) -> tuple[dict, Path]:
    """Train (or reuse) the LightGCN run of a profile; returns ``(metrics, run folder)``.

    ``valid_fraction``: carve that share of train as validation where the profile's default would
    not (a published split; the folder gets :func:`valid_tag`'s suffix). ``dim``: the embedding size
    where it is not the profile's (the teacher-size choice; the folder gets ``_d<dim>``); ``epochs``:
    the schedule's length (the folder gets ``_e<epochs>``); either, given as the profile's own, is
    named and trained as unset.
    A folder trained by other component versions (its ``identity``) is moved aside and trained again."""
    from ..training.runs import run

    config, out = lightgcn_plan(profile, dataset, seed, n_layers, epochs, valid_fraction, dim=dim)
    return run(config, out, progress=progress, retrain=True), out




# Each profile's notebook-03 grid (:class:`hashrec_utils.profiles.HashStage`), by profile name.
HASH_STAGE = ProfileView("hash")

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
# Hash epochs when the pool is sampled (any profile but quick; Profile.sampled_pool_epochs): 10 on
# gowalla cost 6 min on two cores (13 steps of 65,536 pairs an epoch).
SAMPLED_POOL_EPOCHS = get_profile("full").sampled_pool_epochs
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
                   end_to_end: bool = False, lr_factor: float = 1.0, length_factor: float = 1.0,
                   valid_fraction: float | None = None, teacher_seed: int = 0, teacher: Teacher | None = None,
                   **hash_params) -> dict:
    """The :class:`~hashrec_utils.training.TrainConfig` overrides of a hash run in this study (the CLI's
    ``train --hash`` uses them too): :data:`HASH_TRAIN` (or :data:`HASHGNN_TRAIN`) with the batch of
    :class:`~hashrec_utils.settings.HashSettings`, the profile's epochs, and hash parameters
    :data:`TABLE_OBJECTIVE` + the pool + :data:`SCHEDULES` + ``hash_params``.
    One checkpoint rule for every run, whatever its estimator: validation every
    ``HASH_STAGE[profile].eval_every`` epochs and the weights kept by ``HASH_STAGE[profile].keep``
    (``eval_every`` overrides the period).

    Table runs start from ``init``, a LightGCN run folder; by default the profile's LightGCN run of
    ``dataset`` with seed ``teacher_seed`` (:func:`default_init`: its path only — resolving settings trains
    nothing; :func:`train_default_init` trains it where a run needs it). ``shape``: the data's
    :class:`~hashrec_utils.settings.DataShape` (default: :func:`~hashrec_utils.settings.dataset_shape`);
    when the all-items softmax (and its teacher cache) would not fit the score cap or
    ``budget_bytes`` (default :func:`~hashrec_utils.settings.memory_budget_bytes`), the softmax runs
    over a sampled pool of items, and such runs train the profile's ``sampled_pool_epochs`` (not ``quick``).

    ``end_to_end``: a published recipe on its own LightGCN encoder trained from scratch (no table,
    no init, no distillation): LightGCN's own training settings of the profile (batch, lr, L2,
    patience), at most ``HASH_STAGE[profile].published_epochs`` epochs, ``hash_params`` as given.

    ``lr_factor``, ``length_factor``: the tuning grid's axes (:mod:`.tuning`): the learning rate and
    the number of epochs (so every schedule, a fraction of training, too) times these factors.

    ``valid_fraction``: the share of train carved as validation where the profile's default would
    carve none (a published split, :mod:`.comparison`); the init is then the LightGCN run on the
    same carve-out (:func:`lightgcn_run` with it), so nothing a run selects on was trained on.
    ``teacher``: the default init is that LightGCN (its size and schedule, :class:`~hashrec_utils.profiles.Teacher`)
    and the run's tables take its size (the hash layer maps it to ``bits``); a run without a teacher
    ignores it.
    """
    from ..hashing import recipe_of
    from ..settings import train_config
    from ..training import TrainConfig

    recipe = recipe_of(TrainConfig(model=model, hash_method=method, hash_params=dict(hash_params)))

    if shape is None:
        published = _settings.published_split(str(dataset))
        valid = _settings.LightGCNSettings.valid_fraction_for(profile, published) if valid_fraction is None else valid_fraction
        shape = _settings.dataset_shape(str(dataset), valid, get_profile(profile).max_users)
    carve = {} if valid_fraction is None else {"valid_fraction": valid_fraction}
    if end_to_end:
        stage = HASH_STAGE[profile]
        base = train_config(profile, str(dataset), shape=shape, **carve)
        params = dict(hash_params)
        params["estimator"] = {**_settings.HashSettings.schedule(recipe.estimator), **params.get("estimator", {})}
        return _scaled({"batch_size": base.batch_size, "lr": base.lr, "lr_schedule": base.lr_schedule, "reg": base.reg,
                        "patience": base.patience, "epochs": epochs or stage.published_epochs,
                        "eval_every": eval_every or stage.eval_every, "keep": stage.keep, "hash_params": params,
                        **carve}, lr_factor, length_factor)

    prof = get_profile(profile)
    stage = prof.hash
    params = dict(hash_params)
    distill = bool(params.get("distill", TABLE_OBJECTIVE["distill"]))
    own = recipe.own_encoder  # HashGNN as published: its encoder from scratch, no table, no teacher
    teacher = None if own else teacher
    sized = {"dim": teacher.dim} if teacher and teacher.dim else {}
    chosen = _settings.HashSettings.of(profile, shape, budget_bytes=budget_bytes, distill=distill, **sized)
    pooled = not own and "n_negatives" not in params and chosen.pooled
    epochs = epochs or (stage.hashgnn_epochs if own else
                        prof.sampled_pool_epochs if pooled and prof.sampled_pool_epochs else stage.epochs)
    eval_every = eval_every or stage.eval_every
    params["estimator"] = {**_settings.HashSettings.schedule(recipe.estimator), **params.get("estimator", {})}
    if not own:
        if init is None:
            init = default_init(profile, dataset, valid_fraction, seed=teacher_seed, teacher=teacher)
        params = {**TABLE_OBJECTIVE, "n_negatives": chosen.n_negatives, "init": str(init), **params}
    return _scaled({**HASH_TRAIN, "batch_size": chosen.batch_size, **(HASHGNN_TRAIN if own else {}),
                    "epochs": epochs, "eval_every": eval_every, "keep": stage.keep, "hash_params": params, **carve,
                    **sized}, lr_factor, length_factor)


def default_init(profile: str, dataset: str = "ml-1m", valid_fraction: float | None = None, seed: int = 0,
                 teacher: Teacher | None = None) -> Path:
    """The folder of the profile's LightGCN run of ``dataset`` with ``seed`` (and the ``teacher``'s
    size and schedule where set; what :func:`lightgcn_run` trains into), a table run's default ``init``."""
    return lightgcn_plan(profile, dataset, seed, valid_fraction=valid_fraction, **lightgcn_args(teacher))[1]


def lightgcn_args(teacher: Teacher | None) -> dict:
    """:func:`lightgcn_run`'s (and :func:`lightgcn_plan`'s) ``dim`` and ``epochs`` of ``teacher`` (none:
    the profile's; what equals the profile's own is named as unset there)."""
    return {"dim": teacher.dim, "epochs": teacher.epochs} if teacher else {}


def train_default_init(profile: str, dataset: str, overrides: dict, valid_fraction: float | None = None,
                       seed: int = 0, teacher: Teacher | None = None) -> None:
    """Train (or reuse) the LightGCN run that ``overrides`` start from when it is the profile's
    default one of ``seed`` and ``teacher`` (:func:`default_init`); an ``init`` the caller chose is left as it is."""
    init = (overrides.get("hash_params") or {}).get("init")
    if init is not None and Path(init) == default_init(profile, dataset, valid_fraction, seed=seed, teacher=teacher):
        lightgcn_run(profile, dataset, seed=seed, progress=False, valid_fraction=valid_fraction, **lightgcn_args(teacher))


def _scaled(overrides: dict, lr_factor: float, length_factor: float) -> dict:
    """``overrides`` with its learning rate × ``lr_factor`` and its epochs × ``length_factor`` (at least 1)."""
    if lr_factor <= 0 or length_factor <= 0:
        raise ValueError(f"lr_factor and length_factor must be positive; got {lr_factor}, {length_factor}")
    if lr_factor != 1.0:
        overrides["lr"] = overrides["lr"] * lr_factor
    if length_factor != 1.0:
        overrides["epochs"] = max(1, round(overrides["epochs"] * length_factor))
    return overrides


def hash_run(profile: str, method: str, *, seed: int = 0, bits: int = 64, model: str = "lightgcn", tag: str = "",
             epochs: int | None = None, eval_every: int | None = None, progress: bool = False, dataset: str = "ml-1m",
             valid_fraction: float | None = None, teacher_seed: int = 0, teacher: Teacher | None = None,
             **hash_params) -> tuple[dict, Path]:
    """Train (or reuse) one hash model of notebook 03; returns ``(metrics, run folder)``.

    ``metrics`` has the sections ``continuous``, ``hamming``, ``hierarchical``.
    ``hash_params`` override :data:`TABLE_OBJECTIVE` and :data:`SCHEDULES`. The folder is
    ``runs/<profile>/hash_<model>_<method>_b<bits>_s<seed>[_<tag>]`` on ml-1m and
    ``hash_<dataset>_<model>_…`` on another dataset (what ``train --hash`` makes with that ``--out``).

    Every run follows the stage's protocol: validation every ``HASH_STAGE[profile].eval_every``
    epochs (``eval_every`` overrides) and the weights ``HASH_STAGE[profile].keep`` picks.
    ``lsh``/``sign`` train nothing: codes of the profile's LightGCN run (seed 0) of ``dataset``.
    ``valid_fraction``: train on that validation carve-out (see :func:`hash_overrides`; the folder
    gets :func:`valid_tag`'s suffix after the dataset). ``teacher_seed``: start from the LightGCN run
    of that seed (the whole pipeline's seed; ``_t<n>`` in the folder name), trained here if absent;
    ``teacher``: of that size and schedule (:class:`~hashrec_utils.profiles.Teacher`, :func:`hash_overrides`;
    the profile's own: as unset).
    A folder trained by other component versions (its ``identity``) is moved aside and trained again.
    """
    from ..training.runs import run

    teacher = own_teacher(profile, dataset, teacher)
    config, out = hash_plan(profile, method, seed=seed, bits=bits, model=model, tag=tag, epochs=epochs,
                            eval_every=eval_every, dataset=dataset, valid_fraction=valid_fraction,
                            teacher_seed=teacher_seed, teacher=teacher, **hash_params)
    # a run without a teacher (no init) trains none, whatever teacher says
    train_default_init(profile, dataset, config.to_json(), valid_fraction, seed=teacher_seed, teacher=teacher)
    return run(config, out, progress=progress, retrain=True), out


def _named_teacher(config, teacher: Teacher | None) -> Teacher | None:
    """``teacher`` where the run starts from one (its hash parameters name an init), else None: a run
    without one is named and trained as it always was."""
    return teacher if teacher and (config.hash_params or {}).get("init") is not None else None


def hash_plan(profile: str, method: str, *, seed: int = 0, bits: int = 64, model: str = "lightgcn", tag: str = "",
              epochs: int | None = None, eval_every: int | None = None, dataset: str = "ml-1m",
              valid_fraction: float | None = None, teacher_seed: int = 0, teacher: Teacher | None = None,
              **hash_params):
    """The ``(TrainConfig, run folder)`` of :func:`hash_run`, resolved without training anything (a
    table run's ``init`` is named, :func:`default_init`, not trained; ``teacher``: its size and schedule)."""
    from ..config import runs_dir
    from ..settings import train_config
    from ..hashing import UNTRAINED

    stage = HASH_STAGE[profile]
    teacher = own_teacher(profile, dataset, teacher)
    if method in UNTRAINED:
        init = default_init(profile, dataset, valid_fraction, seed=teacher_seed, teacher=teacher)
        overrides = {"epochs": 0, "hash_params": {"init": str(init), **hash_params}}
        if teacher and teacher.dim:
            overrides["dim"] = teacher.dim
        if valid_fraction is not None:
            overrides["valid_fraction"] = valid_fraction
    else:
        overrides = hash_overrides(profile, method, model=model, dataset=dataset, epochs=epochs,
                                   eval_every=eval_every or stage.eval_every, valid_fraction=valid_fraction,
                                   teacher_seed=teacher_seed, teacher=teacher, **hash_params)
        overrides["keep"] = stage.keep
    config = train_config(profile, str(dataset), model=model, hash_method=method, bits=bits, seed=seed, **overrides)
    out = runs_dir(profile) / hash_run_name(method, seed=seed, bits=bits, model=model, tag=tag, dataset=dataset,
                                            valid_fraction=valid_fraction, teacher_seed=teacher_seed,
                                            teacher=_named_teacher(config, teacher))
    return config, out
