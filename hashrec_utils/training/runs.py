"""Run folders: train into a folder, resume it, re-score it, refuse what another run wrote there.

A run folder holds ``config.json`` (the resolved :class:`~.config.TrainConfig` and the run's
``identity``, :mod:`.identity`), ``history.csv``, ``checkpoint.pt`` (resumable),
``model.pt`` (the kept weights), ``embeddings.npz`` (what search needs of them) and, last,
``metrics.json``, whose presence marks the run complete.

Identity, not code bytes, decides whether a folder is this run: its settings, the versions of
the components those settings use, the device and the major library versions. A docstring
edit, a rename or a moved function retrains nothing; a component whose output changes bumps its
version (the golden test, ``tests/training/test_golden.py``, fails until it does) and its runs train
again. Evaluation is versioned apart: a complete run whose ``metrics.json`` was scored by other
evaluation versions is re-scored from its kept weights, not retrained.
"""
from __future__ import annotations

import os
import shutil
import sys
from dataclasses import MISSING, fields
from pathlib import Path

import numpy as np
import torch

from .. import distributed
from ..data import InteractionData, load_dataset, subset_users
from ..evaluation import evaluate_arrays, model_arrays
from ..graph import build_graph
from ..hashing import recipe_of
from ..memory import check_memory
from ..settings import DataShape
from ..utils import atomic_write, default_device, read_json, seed_everything, write_json
from .config import KS, TrainConfig
from .identity import evaluation_identity, identity_differences, run_identity
from .loop import fit

__all__ = ["run", "rescore", "load_run_data", "run_config", "build_model", "ACCEPT_UNVERSIONED"]

# Set to 1 to adopt run folders written before config.json carried an ``identity`` (see run()).
ACCEPT_UNVERSIONED = "HASHREC_ACCEPT_UNVERSIONED"


def run_config(folder: str | os.PathLike) -> TrainConfig:
    """The :class:`TrainConfig` a run folder's ``config.json`` records (its ``identity`` and
    ``code_version`` are what trained it, not settings)."""
    saved = read_json(Path(folder) / "config.json")
    return TrainConfig(**{k: v for k, v in saved.items() if k not in ("identity", "code_version")})


def load_run_data(config: TrainConfig) -> InteractionData:
    """The data a run trains on: the dataset, valid carved with split seed 0, sliced to ``max_users``.

    The split does not depend on the model seed, so seeds compare on one split.
    """
    data = load_dataset(config.dataset, valid_fraction=config.valid_fraction, seed=0, format=config.data_format)
    return subset_users(data, config.max_users)


def build_model(config: TrainConfig, data: InteractionData) -> torch.nn.Module:
    """The model a config names: an encoder, with a hash layer when ``hash_method`` is set."""
    seed_everything(config.seed)
    if recipe_of(config).hashed:
        from ..hashing import build_hash_model

        return build_hash_model(config, data)
    from ..models import make_encoder

    return make_encoder(config.model, data.n_users, data.n_items, dim=config.dim,
                        n_layers=config.n_layers if config.model == "lightgcn" else None, reg=config.reg)


def _untrained_arrays(config: TrainConfig, data: InteractionData) -> dict:
    """``embeddings.npz`` of an ``lsh``/``sign`` run: the ``init`` run's embeddings and codes made from them."""
    from ..hashing import untrained_codes, untrained_queries

    init = config.hash_params.get("init")
    if not init:
        raise ValueError(f"hash_method {config.hash_method!r} makes codes from a trained run: "
                         "set hash_params['init'] to a LightGCN run folder (train --init DIR)")
    path = Path(init) / "embeddings.npz"
    if not path.exists():
        raise FileNotFoundError(f"{path}: the init run has no embeddings (is it finished?)")
    emb = np.load(path)
    user, item = emb["user"].astype(np.float32), emb["item"].astype(np.float32)
    if user.shape[0] != data.n_users or item.shape[0] != data.n_items:
        raise ValueError(f"{path} has {user.shape[0]} users, {item.shape[0]} items; the data has {data.n_users}, {data.n_items}")
    user_codes, item_codes = untrained_codes(config.hash_method, user, item, config.bits, config.seed)
    return {"user": user, "item": item, "user_codes": user_codes, "item_codes": item_codes,
            "user_query": untrained_queries(config.hash_method, user, config.bits, config.seed)}


def _check_same_run(out: Path, saved: dict, config: TrainConfig) -> None:
    """Refuse a folder whose config.json holds other settings (naming them)."""
    # a field added to TrainConfig after the run started counts at its default
    defaults = {f.name: f.default for f in fields(TrainConfig) if f.default is not MISSING}
    skip = ("device", "identity", "code_version")
    have = {k: v for k, v in {**defaults, **saved}.items() if k not in skip}
    wanted = {k: v for k, v in config.to_json().items() if k not in skip}
    if have != wanted:
        diff = sorted(k for k in set(have) | set(wanted) if have.get(k) != wanted.get(k))
        raise ValueError(f"{out} holds a different run (differs in {', '.join(diff)}); choose another --out")


def _what_differs(differences: list[str] | None) -> str:
    return ("was written before runs carried an identity (component versions)" if differences is None
            else f"was trained with other versions ({'; '.join(differences)})")


def _stale_message(out: Path, differences: list[str] | None) -> str:
    return (f"{out} {_what_differs(differences)}: pass --retrain (run(..., retrain=True)) to move it aside to {out.name}.stale "
            f"and train again" + (f", or set {ACCEPT_UNVERSIONED}=1 to adopt it" if differences is None else ""))


def _arrays_of_run(config: TrainConfig, out: Path, data: InteractionData) -> dict:
    """A complete run's search arrays: from its kept weights (``model.pt``) where it has them, else
    from its ``embeddings.npz`` (untrained methods; runs saved before ``model.pt`` existed)."""
    if not recipe_of(config).trains:
        return _untrained_arrays(config, data)
    weights = out / "model.pt"
    if not weights.exists():
        return dict(np.load(out / "embeddings.npz"))
    device = torch.device(config.device or default_device())
    net = build_model(config, data).to(device)
    net.load_state_dict(torch.load(weights, map_location=device, weights_only=True))
    net.eval()
    return model_arrays(net, build_graph(data.train, device))


def _score(arrays: dict, data: InteractionData, config: TrainConfig) -> tuple[dict, dict | None]:
    """Test metrics (the one read of the test split) and validation metrics of a run's arrays
    (hierarchical search's C: the run's ``candidates``, as its hash model's, default 100)."""
    candidates = config.hash_params.get("candidates", 100)
    valid = evaluate_arrays(arrays, data.valid, data.train, KS, candidates) if data.valid.nnz else None
    return evaluate_arrays(arrays, data.test, data.train_full, KS, candidates), valid


def rescore(config: TrainConfig, out: str | os.PathLike, *, progress: bool = True) -> dict:
    """Score a complete run folder again with this code's evaluation (a new or changed search
    mode), from its kept weights, training nothing; ``metrics.json`` keeps its training fields
    and gets the new sections and ``evaluation`` identity, ``embeddings.npz`` the arrays this
    code's search reads (e.g. ``user_query``, which asymmetric search added)."""
    out = Path(out)
    old = read_json(out / "metrics.json")
    data = load_run_data(config)
    arrays = _arrays_of_run(config, out, data)
    metrics, valid = _score(arrays, data, config)
    meta = {k: old[k] for k in ("best_epoch", "kept_epoch", "kept", "train_seconds", "epochs_run") if k in old}
    with atomic_write(out / "embeddings.npz", "wb") as fh:  # what search needs, as this code takes it (a new key)
        np.savez(fh, **arrays)
    write_json(out / "metrics.json", {**metrics, "valid": valid, **meta, "evaluation": evaluation_identity()})
    if progress:
        print(f"{out}: re-scored with this code's evaluation (no training)", file=sys.stderr)
    return read_json(out / "metrics.json")


def _prepare(config: TrainConfig, data: InteractionData):
    """Everything that can refuse the run, done before anything is written: the memory check and
    the model (or an untrained method's codes)."""
    if not recipe_of(config).trains:
        return _untrained_arrays(config, data)
    check_memory(config, DataShape.of(data))  # refuse before anything is written, not an OOM kill later
    return build_model(config, data)


def run(config: TrainConfig, out: str | os.PathLike = "runs/train", *, progress: bool = True,
        retrain: bool = False) -> dict:
    """Train ``config`` into ``out`` (the CLI's ``train``): resumes a partial run; a complete one is not redone.

    Writes ``config.json`` (the :class:`TrainConfig` and ``identity``), ``history.csv`` (epoch,
    loss, valid metrics, seconds), ``checkpoint.pt``, ``model.pt`` (the kept weights),
    ``embeddings.npz`` (``user``, ``item``; hash models add packed ``user_codes``,
    ``item_codes``, and a model's ``extra_arrays(graph)``) and, last, ``metrics.json``, whose
    presence marks the run complete: the kept model's test metrics at 10, 20, 50 (hash models:
    a section per search mode, :data:`hashrec_utils.evaluation.HASH_SEARCH_MODES`), ``valid``
    (the same on the validation split, train items excluded; ``null`` without one),
    ``best_epoch`` (chosen on validation), ``kept_epoch``, ``kept`` (the rule),
    ``train_seconds``, ``epochs_run`` and ``evaluation`` (the versions that scored it). Returns
    the metrics.

    ``hash_method`` ``lsh`` or ``sign`` trains nothing: codes of the ``hash_params["init"]``
    run's embeddings (no ``history.csv``, no checkpoint, ``train_seconds`` 0).

    A folder holding another config is refused. A folder whose identity differs from this
    code's (:func:`.identity.run_identity`: a component's version, the device, a library) is
    stale: refused naming what differs, unless ``retrain`` (then it is moved aside to
    ``<out>.stale`` and trained anew). A folder written before runs carried an identity is
    adopted when the environment sets ``HASHREC_ACCEPT_UNVERSIONED=1``. A complete run scored by
    other evaluation versions is re-scored (:func:`rescore`), not retrained.

    Before anything is written, the data is loaded, :func:`hashrec_utils.memory.check_memory`
    refuses (``MemoryBudgetError``) a trained run whose estimated peak exceeds the memory budget,
    and the model is built (bad ``bits``, a missing ``init``), so a refused run leaves nothing in ``out``.
    """
    out = Path(out)
    saved_config = out / "config.json"
    ident = run_identity(config)
    if saved_config.exists():
        saved = read_json(saved_config)
        _check_same_run(out, saved, config)
        if saved.get("identity") != ident:
            differences = identity_differences(saved["identity"], ident) if "identity" in saved else None
            if differences is None and os.environ.get(ACCEPT_UNVERSIONED) == "1":
                write_json(saved_config, {**{k: v for k, v in saved.items() if k != "code_version"}, "identity": ident})
                print(f"{out}: adopted a run written before runs carried an identity ({ACCEPT_UNVERSIONED}=1); "
                      f"config.json now holds this code's", file=sys.stderr)
            elif retrain:
                aside = out.with_name(f"{out.name}.stale")
                if aside.exists():
                    shutil.rmtree(aside)
                out.rename(aside)
                print(f"{out} {_what_differs(differences)}: moved aside to {aside.name}, training again", file=sys.stderr)
            else:
                raise ValueError(_stale_message(out, differences))
        if (out / "metrics.json").exists():
            if read_json(out / "metrics.json").get("evaluation") != evaluation_identity():
                return rescore(config, out, progress=progress)
            if progress:
                print(f"{out}: run complete (metrics.json exists); nothing to do")
            return read_json(out / "metrics.json")
    data = load_run_data(config)
    prepared = _prepare(config, data)
    out.mkdir(parents=True, exist_ok=True)
    if distributed.is_main():
        write_json(saved_config, {**config.to_json(), "identity": ident})
    if isinstance(prepared, dict):  # an untrained method's arrays
        metrics, valid = _score(prepared, data, config)
        meta = {"best_epoch": 0, "kept_epoch": 0, "kept": "untrained", "train_seconds": 0.0, "epochs_run": 0}
        with atomic_write(out / "embeddings.npz", "wb") as fh:
            np.savez(fh, **prepared)
        write_json(out / "metrics.json", {**metrics, "valid": valid, **meta, "evaluation": evaluation_identity()})
        return read_json(out / "metrics.json")
    result = fit(prepared, data, config, out / "checkpoint.pt", progress=progress)
    if not distributed.is_main():  # under torchrun, rank 0 evaluates and writes the results
        distributed.barrier()
        return {}
    with atomic_write(out / "history.csv", "w") as fh:
        result.history.to_csv(fh, index=False)
    net = result.model
    with atomic_write(out / "model.pt", "wb") as fh:
        torch.save(net.state_dict(), fh)
    net.eval()
    arrays = model_arrays(net, result.graph)  # what evaluation and any later re-score search
    metrics, valid = _score(arrays, data, config)
    meta = {"best_epoch": result.best_epoch, "kept_epoch": result.kept_epoch, "kept": result.kept,
            "train_seconds": float(result.history["seconds"].iloc[-1]) if len(result.history) else 0.0,
            "epochs_run": int(result.history["epoch"].iloc[-1]) if len(result.history) else 0}
    with atomic_write(out / "embeddings.npz", "wb") as fh:
        np.savez(fh, **arrays)
    _write_item_scale(arrays, data, out, progress)
    write_json(out / "metrics.json", {**metrics, "valid": valid, **meta, "evaluation": evaluation_identity()})
    distributed.barrier()
    return read_json(out / "metrics.json")


def _write_item_scale(arrays: dict, data: InteractionData, out: Path, progress: bool) -> None:
    """A hash run scored asymmetrically with a scale byte an item, its power chosen on validation
    (:mod:`hashrec_utils.item_scale`), into ``item_scale.json`` (before ``metrics.json``, which marks
    the run complete); nothing for runs without a validation split or real-valued queries."""
    from ..item_scale import FILE, item_scale

    if not data.valid.nnz or not all(k in arrays for k in ("user_query", "item_codes", "item")):
        return
    scaled = item_scale(arrays, data)
    write_json(out / FILE, scaled)
    if progress:
        print(f"{out}: asymmetric search with a scale byte an item (power {scaled['power']:g} of the item norm, chosen "
              f"on validation): test recall@20 {scaled['test']['recall@20']:.4f} (unscaled "
              f"{scaled['test_unscaled']['recall@20']:.4f})", file=sys.stderr)
