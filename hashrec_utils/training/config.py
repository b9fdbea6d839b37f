"""A training run's settings: one frozen, typed :class:`TrainConfig`, written to ``config.json``.

A profile and a dataset resolve into one at the top (:func:`hashrec_utils.settings.train_config`,
called by the CLI and the stages); everything below takes the resolved config.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields

from ..data import FORMATS
from ..evaluation import KS  # the cut-offs every run is scored at

__all__ = ["TrainConfig", "HashParams", "KEEP_RULES", "KS"]

KEEP_RULES = ("best_valid", "last")


@dataclass(frozen=True)
class HashParams(Mapping):
    """The hash model's settings of a run, typed: what ``hash_params`` holds (``--set hash_params=…``).

    Every field is optional (``None``: not set, so the recipe's or :class:`~hashrec_utils.hashing.HashModel`'s
    default holds). ``init``: a run folder whose ``embeddings.npz`` seeds the code table;
    ``warm_start``: a continuous run folder whose kept ego table (``model.pt``) starts the encoder trained
    end to end (BiGeaR's student, which objective ``bigear`` distils from that teacher);
    ``freeze``: only the hash layer learns; ``estimator``: the estimator's parameters (checked by
    :func:`~hashrec_utils.hashing.make_estimator`); the rest are :class:`~hashrec_utils.hashing.HashModel`
    keywords. A name that is no field is refused, so a typo cannot fall back to a default. It reads
    as the mapping of the fields that are set (``hp.get("init")``, ``dict(hp)``), which is also what
    ``config.json`` holds.
    """

    objective: str | None = None
    estimator: dict | None = None
    init: str | None = None
    warm_start: str | None = None
    freeze: bool | None = None
    hash_layer: str | None = None
    continuous: str | None = None
    n_negatives: int | None = None
    cont_weight: float | None = None
    hash_weight: float | None = None
    distill: float | None = None
    distill_tau: float | None = None
    scale: float | None = None
    lambda_rank: float | None = None
    margin: float | None = None
    n_triplets: int | None = None
    top_n: int | None = None
    tau_rank: float | None = None
    tau_recall: float | None = None
    candidates: int | None = None
    asymmetric: bool | None = None

    @classmethod
    def of(cls, value) -> "HashParams":
        """``value`` (a mapping, or already ``HashParams``) as ``HashParams``; one clear error for an unknown name."""
        if isinstance(value, HashParams):
            return value
        value = dict(value or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(value) - known)
        if unknown:
            raise ValueError(f"unknown hash_params {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return cls(**value)

    def _set(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}

    def __getitem__(self, key):
        value = getattr(self, key, None) if key in self.__dataclass_fields__ else None
        if value is None:
            raise KeyError(key)
        return value

    def __iter__(self):
        return iter(self._set())

    def __len__(self) -> int:
        return len(self._set())

    def __hash__(self) -> int:
        return hash(repr(self._set()))

    def to_json(self) -> dict:
        return self._set()


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run (written to ``config.json``).

    ``patience``: evaluations without a better valid recall@20 before
    stopping (0: never stop early). ``keep``: ``best_valid`` (the weights of
    the best validation epoch; the last epoch's when there is no valid split)
    or ``last``. ``lr_schedule``: ``constant``, or
    ``cosine``: ``lr · ½(1 + cos(π t / T))`` at step ``t`` of the
    ``T = epochs × steps per epoch`` (a function of the step count, so a
    resumed run follows the same schedule). ``stop_epoch``: stop after this epoch and keep its
    weights while every schedule still spans ``epochs`` (a refit on all of train of a run whose
    kept epoch was chosen on a validation carve-out: :mod:`hashrec_utils.experiments.refit`);
    ``None``: train all ``epochs``. ``max_users``: keep only the first users
    (the ``quick`` slice). ``bits``, ``hash_params`` (:class:`HashParams`): settings of the hash layer when
    ``hash_method`` is set (see :mod:`hashrec_utils.hashing`). ``data_format``: the
    format of a folder dataset's split files, ``auto`` or one of
    :data:`hashrec_utils.data.FORMATS` (``--format``).
    """

    dataset: str = "ml-1m"
    model: str = "lightgcn"
    dim: int = 64
    n_layers: int = 3
    lr: float = 1e-3
    lr_schedule: str = "constant"
    reg: float = 1e-4
    batch_size: int = 2048
    epochs: int = 100
    eval_every: int = 5
    patience: int = 5
    keep: str = "best_valid"
    valid_fraction: float = 0.1
    max_users: int | None = None
    seed: int = 0
    device: str | None = None
    hash_method: str | None = None
    bits: int = 64
    hash_params: HashParams = field(default_factory=HashParams)
    data_format: str = "auto"
    stop_epoch: int | None = None

    def __post_init__(self):
        object.__setattr__(self, "hash_params", HashParams.of(self.hash_params))
        if self.data_format not in ("auto", *FORMATS):
            raise ValueError(f"data_format must be 'auto' or one of {', '.join(FORMATS)}; got {self.data_format!r}")
        if self.lr_schedule not in ("constant", "cosine"):
            raise ValueError(f"lr_schedule must be constant or cosine; got {self.lr_schedule!r}")
        if self.lr <= 0 or self.batch_size <= 0 or self.epochs < 0 or self.eval_every <= 0 or self.dim <= 0:
            raise ValueError(f"need lr, batch_size, eval_every, dim > 0 and epochs >= 0; got lr={self.lr}, "
                             f"batch_size={self.batch_size}, eval_every={self.eval_every}, dim={self.dim}, epochs={self.epochs}")
        if self.hash_method is not None and (int(self.bits) != self.bits or self.bits <= 0 or self.bits % 8):
            raise ValueError(f"bits must be a positive multiple of 8; got {self.bits}")
        if self.stop_epoch is not None and not 1 <= self.stop_epoch <= self.epochs:
            raise ValueError(f"stop_epoch must lie in 1..epochs ({self.epochs}); got {self.stop_epoch}")
        if self.keep not in KEEP_RULES:
            raise ValueError(f"keep must be best_valid or last; got {self.keep!r}")

    def to_json(self) -> dict:
        """The settings as ``config.json`` holds them (``hash_params``: the fields that are set)."""
        return {f.name: getattr(self, f.name).to_json() if f.name == "hash_params" else getattr(self, f.name)
                for f in fields(self)}

