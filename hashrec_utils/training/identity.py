"""A run's identity: what can change its numbers, and nothing else.

``run_identity(config)`` = the versions of the components the run's settings use (the split,
the encoder, the estimator, the objective, the hash layer and model, the training loop; see
:meth:`hashrec_utils.hashing.Recipe.components`), the device kind and the major library
versions (``torch``, ``numpy``, ``numba``, ``faiss``). With the resolved settings it is what
``config.json`` holds; a folder is this run when both are equal (:func:`~.runs.run`), and the
committed records carry the same identity so that reusing them is checked, not trusted
(:mod:`hashrec_utils.experiments.committed`).

Each component carries its version beside its code (``Estimator.version``,
``Objective.version``, ``LightGCN.version``, :data:`hashrec_utils.data.SPLIT_VERSION`,
:data:`.loop.LOOP_VERSION`, :data:`hashrec_utils.evaluation.METRICS_VERSION`, each kernel's
``VERSION``). A docstring edit, a rename, or code moved between modules changes none of them,
so it retrains nothing; a change to what a component computes must bump its version, or the
golden test (``tests/training/test_golden.py``) fails naming the component.

Evaluation is versioned apart (:func:`evaluation_identity`, written to ``metrics.json``): a new
or changed search mode re-scores saved runs without retraining them.
"""
from __future__ import annotations

import importlib
from pathlib import Path

import torch

from ..utils import default_device, read_json

__all__ = ["where_versioned", "LIBRARIES", "library_versions", "device_kind", "training_components", "run_identity",
           "evaluation_identity", "identity_differences", "format_components", "parse_components"]

LIBRARIES = ("torch", "numpy", "numba", "faiss")


def library_versions() -> dict[str, str]:
    """``{library: "major.minor"}`` of :data:`LIBRARIES` (a patch release changes no number we keep)."""
    out = {}
    for name in LIBRARIES:
        version = getattr(importlib.import_module(name), "__version__", "unknown")
        out[name] = ".".join(version.split("+")[0].split(".")[:2])
    return out


def device_kind(config) -> str:
    """The kind of device a config trains on (``cpu``, ``cuda``, ``mps``)."""
    return torch.device(config.device or default_device()).type


def training_components(config) -> dict[str, int]:
    """``{component: version}`` of everything that decides what ``config`` trains to, sorted.

    A run that starts from another run's embeddings (``hash_params["init"]``: a fine-tuned table,
    untrained codes; ``hash_params["warm_start"]``: an encoder started from a teacher's ego table) adds
    that run's training components as ``init.<component>``, read from its ``config.json``, so a
    retrained teacher makes the runs built on it stale too."""
    from ..data import SPLIT_VERSION
    from ..hashing import recipe_of
    from .loop import LOOP_VERSION

    recipe = recipe_of(config)
    out = {"split": SPLIT_VERSION, **recipe.components()}
    if recipe.trains:
        out["loop"] = LOOP_VERSION
    init = config.hash_params.get("init") or config.hash_params.get("warm_start")
    if init and (Path(init) / "config.json").exists():
        teacher = (read_json(Path(init) / "config.json").get("identity") or {}).get("components") or {}
        out.update({f"init.{k}": v for k, v in teacher.items() if not k.startswith("init.")})
    return dict(sorted(out.items()))


def run_identity(config) -> dict:
    """What ``config.json`` holds beside the settings: ``components``, ``device``, ``libraries``."""
    return {"components": training_components(config), "device": device_kind(config), "libraries": library_versions()}


def evaluation_identity() -> dict:
    """What ``metrics.json`` holds as ``evaluation``: the versions that scored the run."""
    from ..evaluation import evaluation_components

    return {"components": evaluation_components(), "libraries": library_versions()}


def identity_differences(old: dict, new: dict) -> list[str]:
    """What differs between two identities, one phrase each: ``estimator.signswish 1 → 2``,
    ``objective.bpr (new)``, ``device cuda → cpu``, ``torch 2.12 → 2.13``."""
    out = []
    for key in ("components", "libraries"):
        a, b = old.get(key) or {}, new.get(key) or {}
        for name in sorted(set(a) | set(b)):
            if a.get(name) != b.get(name):
                out.append(f"{name} {a[name]} → {b[name]}" if name in a and name in b
                           else f"{name} ({'new' if name in b else 'gone'})")
    if old.get("device") != new.get("device"):
        out.append(f"device {old.get('device')} → {new.get('device')}")
    return out


def format_components(components: dict) -> str:
    """``{"loop": 1, "split": 1}`` → ``"loop=1 split=1"`` (libraries likewise, ``torch=2.13``):
    one cell of a committed record."""
    return " ".join(f"{k}={v}" for k, v in sorted(components.items()))


def parse_components(text: str, *, versions: bool = True) -> dict:
    """The inverse of :func:`format_components` (``versions``: integer component versions, else
    library version strings); a clear error on a malformed cell."""
    out = {}
    for part in str(text).split():
        name, sep, version = part.partition("=")
        if not sep or not version or (versions and not version.isdigit()):
            raise ValueError(f"not a component version {part!r} (expected name={'integer' if versions else 'version'}) "
                             f"in {text!r}")
        out[name] = int(version) if versions else version
    return out


# where each kind of component keeps its version (for the golden test's messages)
_WHERE = (
    ("estimator.", "the estimator class's `version` in hashrec_utils/hashing/estimators.py"),
    ("objective.", "the Objective's `version=` in OBJECTIVES, hashrec_utils/hashing/objectives.py"),
    ("encoder.table", "TableEncoder.version in hashrec_utils/hashing/model.py"),
    ("encoder.", "the encoder class's `version` in hashrec_utils/models.py"),
    ("hash_layer", "HashLayer.version in hashrec_utils/hashing/model.py"),
    ("hash_model", "HashModel.version in hashrec_utils/hashing/model.py"),
    ("untrained.", "UNTRAINED_VERSIONS in hashrec_utils/hashing/codes.py"),
    ("split", "SPLIT_VERSION in hashrec_utils/data/core.py"),
    ("loop", "LOOP_VERSION in hashrec_utils/training/loop.py"),
    ("metrics", "METRICS_VERSION in hashrec_utils/evaluation.py"),
    ("search.", "the SearchMode's `version=` in HASH_SEARCH_MODES, hashrec_utils/evaluation.py"),
    ("kernel.", "VERSION in the kernel's module under hashrec_utils/retrieval/ (KERNEL_VERSIONS)"),
)


def where_versioned(component: str) -> str:
    """``component`` and where its version lives, e.g. ``estimator.ste: the estimator class's `version` in …``."""
    for prefix, where in _WHERE:
        if component.startswith(prefix):
            return f"{component}: {where}"
    return f"{component}: (unknown component)"
