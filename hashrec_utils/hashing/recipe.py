"""A method as a value: the frozen recipe a run's settings name, and what it can do.

:func:`recipe_of` reads a :class:`~hashrec_utils.training.TrainConfig` once and says which
encoder, estimator and objective the run uses, and :func:`build_hash_model` builds that model, so nothing downstream tests a method's name, prefix or suffix:
:func:`hashrec_utils.memory.estimate_peak_bytes` reads the objective's pool from it, the run's
identity (:mod:`hashrec_utils.training.identity`) the versions of its components.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..models import ENCODERS, make_encoder
from .codes import UNTRAINED, UNTRAINED_VERSIONS
from .estimators import ESTIMATORS, make_estimator, split_method
from .model import HashLayer, HashModel, TableEncoder
from .objectives import OBJECTIVES

__all__ = ["Recipe", "recipe_of", "build_hash_model"]


@dataclass(frozen=True)
class Recipe:
    """What a run is made of.

    ``encoder``: ``lightgcn`` or ``graphsage`` (trained here), or ``table`` (a
    :class:`~.model.TableEncoder` fine-tuned from the ``init`` run's embeddings); ``estimator``
    and ``objective``: names in :data:`~.estimators.ESTIMATORS` and
    :data:`~.objectives.OBJECTIVES` (``None`` for a continuous model); ``untrained``: ``lsh`` or
    ``sign`` for codes made without training (:data:`~.codes.UNTRAINED_VERSIONS`); ``freeze``:
    only the hash layer learns (two-stage ``_sp``); ``model_defaults``: :class:`~.model.HashModel`
    keywords the recipe implies, under the run's own ``hash_params`` (HashGNN as published: loss
    on the codes only, ``z = tanh(W e + b)`` as its continuous embedding; ``_nr``: no ranking
    loss); ``layers``: the encoder's depth where the recipe fixes it (else the config's ``n_layers``);
    ``own_encoder``: the recipe trains its own encoder end to end from scratch with the codes, as
    HashGNN publishes it (no table, no teacher, its own training settings).
    """

    encoder: str
    estimator: str | None = None
    objective: str | None = None
    untrained: str | None = None
    freeze: bool = False
    model_defaults: tuple = ()
    layers: int | None = None
    own_encoder: bool = False

    def n_layers(self, config) -> int:
        """The encoder's number of layers for ``config``."""
        return self.layers if self.layers is not None else config.n_layers

    def blocks(self, config) -> int:
        """How many embeddings of ``config.dim`` the encoder puts side by side: every layer's
        (``n_layers + 1``) for a :class:`~hashrec_utils.models.LayerConcatLightGCN`, else 1."""
        from ..models import LayerConcatLightGCN

        cls = ENCODERS.get(self.encoder)
        return self.n_layers(config) + 1 if cls is not None and issubclass(cls, LayerConcatLightGCN) else 1

    @property
    def hashed(self) -> bool:
        """Whether the run makes binary codes."""
        return self.estimator is not None or self.untrained is not None

    @property
    def trains(self) -> bool:
        """Whether the run trains (untrained codes are made from another run's embeddings)."""
        return self.untrained is None

    @property
    def scaled(self) -> bool:
        """Whether codes are scored ``α_u α_i ⟨b_u, b_i⟩`` (BGCH, BiGeaR): popcount alone cannot rank them."""
        return self.estimator is not None and ESTIMATORS[self.estimator].scaled

    @property
    def popcount_searchable(self) -> bool:
        """Whether Hamming distance alone ranks its codes (Faiss's binary indexes can serve them)."""
        return self.hashed and not self.scaled

    def components(self) -> dict[str, int]:
        """``{component: version}`` of what this recipe trains with (see :mod:`hashrec_utils.training.identity`)."""
        if self.untrained is not None:
            return {f"untrained.{self.untrained}": UNTRAINED_VERSIONS[self.untrained]}
        encoder = TableEncoder.version if self.encoder == "table" else ENCODERS[self.encoder].version
        out = {f"encoder.{self.encoder}": encoder}
        if self.estimator is not None:
            out.update({f"estimator.{self.estimator}": ESTIMATORS[self.estimator].version,
                        f"objective.{self.objective}": OBJECTIVES[self.objective].version,
                        "hash_layer": HashLayer.version, "hash_model": HashModel.version})
        return out


def recipe_of(config) -> Recipe:
    """The :class:`Recipe` a config names (one clear error for an unknown estimator, objective or encoder).

    ``model == "hashgnn"``: HashGNN as published (GraphSAGE, its own objective, the estimator of
    ``hash_method``, guided STE by default); a ``hash_method`` with ``hash_params["init"]``: a
    table fine-tuned from that run (objective ``bpr`` unless ``hash_params`` names one); without
    ``init``: ``model`` trained end to end with the hash layer; ``lsh``/``sign``: untrained codes;
    no ``hash_method``: the continuous ``model``.
    """
    hp = dict(config.hash_params or {})
    if config.hash_method in UNTRAINED:
        return Recipe("init", untrained=config.hash_method)
    if config.hash_method is None and config.model != "hashgnn":
        if config.model not in ENCODERS:
            raise ValueError(f"unknown encoder {config.model!r}; choose one of {', '.join(ENCODERS)}")
        return Recipe(config.model)
    method, implied = split_method(config.hash_method or "guided_ste")
    hp = {**implied, **hp}
    if method not in ESTIMATORS:
        raise ValueError(f"unknown estimator {method!r}; choose one of {', '.join(ESTIMATORS)}")
    defaults, layers = {}, None
    if config.model == "hashgnn":  # HashGNN as published: its GraphSAGE (2 layers), its objective, codes only
        encoder, objective, layers = "graphsage", hp.get("objective", "hashgnn"), 2
        defaults = {"cont_weight": 0.0, "continuous": "hash"}
    else:
        encoder = "table" if hp.get("init") else config.model
        objective = hp.get("objective", "bpr")
        if encoder != "table" and encoder not in ENCODERS:
            raise ValueError(f"unknown encoder {encoder!r}; choose one of {', '.join(ENCODERS)}")
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}; got {objective!r}")
    defaults.update({k: v for k, v in implied.items() if k != "freeze"})
    return Recipe(encoder, method, objective, freeze=bool(hp.get("freeze", False)),
                  model_defaults=tuple(sorted(defaults.items())), layers=layers, own_encoder=config.model == "hashgnn")


def build_hash_model(config, data) -> HashModel:
    """The hash model a :class:`~hashrec_utils.training.TrainConfig` names, built from its
    :class:`Recipe` (:func:`recipe_of`: encoder, estimator, objective).

    ``config.hash_params``: ``estimator`` (dict of estimator parameters), ``init`` (a run folder
    whose ``embeddings.npz`` seeds a :class:`~.model.TableEncoder`), ``freeze``, and any
    :class:`~.model.HashModel` keyword (over the recipe's own defaults, :attr:`Recipe.model_defaults`).
    The encoder is the recipe's: ``graphsage`` (HashGNN as published), ``lightgcn`` trained end to
    end, or the ``init`` table (fine-tuned, or frozen with ``freeze``).
    """
    recipe = recipe_of(config)
    hp = {**dict(recipe.model_defaults), **dict(config.hash_params)}
    estimator = make_estimator(recipe.estimator, **hp.pop("estimator", {}))
    init = hp.pop("init", None)
    warm = hp.pop("warm_start", None)
    hp.pop("freeze", None)
    hp["objective"] = recipe.objective
    if recipe.encoder == "table":
        emb = np.load(f"{init}/embeddings.npz")
        if emb["user"].shape[0] != data.n_users or emb["item"].shape[0] != data.n_items:
            raise ValueError(f"{init}/embeddings.npz has {emb['user'].shape[0]} users, {emb['item'].shape[0]} items; "
                             f"the data has {data.n_users}, {data.n_items}")
        encoder = TableEncoder(emb["user"], emb["item"])
    else:
        encoder = make_encoder(recipe.encoder, data.n_users, data.n_items, dim=config.dim,
                               n_layers=recipe.n_layers(config), reg=config.reg)
    if warm is not None:
        _warm_start(encoder, warm)
    model = HashModel(encoder, config.bits, estimator, reg=config.reg, freeze_encoder=recipe.freeze, **hp)
    if recipe.objective == "bigear":
        if warm is None:
            raise ValueError("objective 'bigear' distils a teacher: set hash_params warm_start=<the teacher's run folder>")
        from ..graph import build_graph
        from .objectives import bigear_teacher_top

        with torch.no_grad():  # the student starts as the teacher: its layers are the teacher's
            users, items = encoder.embeddings(build_graph(data.train))
        model.teacher_top = bigear_teacher_top(users, items, getattr(encoder, "blocks", 1))
    return model


def _warm_start(encoder, folder) -> None:
    """Copy the ego table of the continuous run ``folder`` (its kept ``model.pt``) into ``encoder``;
    one clear error when the run has none or its shape differs."""
    path = Path(folder) / "model.pt"
    if not path.exists():
        raise FileNotFoundError(f"warm_start: {path} does not exist (a complete continuous run holds its kept weights there)")
    state = torch.load(path, map_location="cpu", weights_only=True)
    table = state.get("embedding.weight")
    target = getattr(encoder, "embedding", None)
    if table is None or target is None:
        raise ValueError(f"warm_start: {path} has no ego table 'embedding.weight' for a {type(encoder).__name__}")
    if tuple(table.shape) != tuple(target.weight.shape):
        raise ValueError(f"warm_start: {path} holds a {tuple(table.shape)} ego table; the encoder's is {tuple(target.weight.shape)}")
    with torch.no_grad():
        target.weight.copy_(table)
