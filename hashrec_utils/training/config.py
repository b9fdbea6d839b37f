"""A training run's settings: one frozen, typed :class:`TrainConfig`, written to ``config.json``.

A profile and a dataset resolve into one at the top (:func:`hashrec_utils.settings.train_config`,
called by the CLI and the stages); everything below takes the resolved config.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from ..data import FORMATS

__all__ = ["TrainConfig", "KEEP_RULES", "KS"]

KS = (10, 20, 50)
KEEP_RULES = ("best_valid", "last")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run (written to ``config.json``).

    ``patience``: evaluations without a better valid recall@20 before
    stopping (0: never stop early). ``keep``: ``best_valid`` (the weights of
    the best validation epoch; the last epoch's when there is no valid split)
    or ``last``. ``lr_schedule``: ``constant``, or
    ``cosine``: ``lr · ½(1 + cos(π t / T))`` at step ``t`` of the
    ``T = epochs × steps per epoch`` (a function of the step count, so a
    resumed run follows the same schedule). ``max_users``: keep only the first users
    (the ``quick`` slice). ``hash_*``: settings of the hash layer when
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
    hash_params: dict = field(default_factory=dict)
    data_format: str = "auto"

    def __post_init__(self):
        if self.data_format not in ("auto", *FORMATS):
            raise ValueError(f"data_format must be 'auto' or one of {', '.join(FORMATS)}; got {self.data_format!r}")
        if self.lr_schedule not in ("constant", "cosine"):
            raise ValueError(f"lr_schedule must be constant or cosine; got {self.lr_schedule!r}")
        if self.lr <= 0 or self.batch_size <= 0 or self.epochs < 0 or self.eval_every <= 0 or self.dim <= 0:
            raise ValueError(f"need lr, batch_size, eval_every, dim > 0 and epochs >= 0; got lr={self.lr}, "
                             f"batch_size={self.batch_size}, eval_every={self.eval_every}, dim={self.dim}, epochs={self.epochs}")
        if self.hash_method is not None and (int(self.bits) != self.bits or self.bits <= 0 or self.bits % 8):
            raise ValueError(f"bits must be a positive multiple of 8; got {self.bits}")
        if self.keep not in KEEP_RULES:
            raise ValueError(f"keep must be best_valid or last; got {self.keep!r}")

    def to_json(self) -> dict:
        return asdict(self)

