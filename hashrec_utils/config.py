"""Profiles: the one switch that scales datasets, epochs and sweeps.

``quick``   seconds to a few minutes on a slice of real data (what nbval runs in CI).
``default`` the whole study on MovieLens-1M on a 2-core CPU (what ``make all`` runs).
``full``    MovieLens-1M and Gowalla at paper scale (a GPU makes it minutes).

Each stage derives its own settings from the profile name (for example
``hashrec_utils.settings.train_config(profile, dataset)``); this module holds
only what every stage shares.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "PROFILES", "Profile", "check_profile", "get_profile", "profile_from_env",
    "repo_root", "results_dir", "figures_dir", "runs_dir",
]

PROFILES = ("quick", "default", "full")


@dataclass(frozen=True)
class Profile:
    """Settings shared by every notebook of one profile.

    ``datasets``: names passed to :func:`hashrec_utils.data.load_dataset`.
    ``max_users``: when set, notebooks keep only the first ``max_users`` users
    of each dataset (the ``quick`` slice of real data). ``tradeoff_datasets``:
    the catalogues notebook 05 sweeps for accuracy against throughput (a
    profile may sweep a dataset whose full study it does not run: ``default``
    adds Gowalla's 40,981 items beside MovieLens-1M's 3,706, where hashing matters).
    """

    name: str
    datasets: tuple[str, ...]
    max_users: int | None
    seeds: tuple[int, ...]
    tradeoff_datasets: tuple[str, ...] = ()

    def __post_init__(self):
        if not self.tradeoff_datasets:
            object.__setattr__(self, "tradeoff_datasets", self.datasets)


_PROFILES = {
    "quick": Profile("quick", ("ml-1m",), max_users=600, seeds=(0,)),
    "default": Profile("default", ("ml-1m",), max_users=None, seeds=(0, 1, 2), tradeoff_datasets=("ml-1m", "gowalla")),
    "full": Profile("full", ("ml-1m", "gowalla"), max_users=None, seeds=(0, 1, 2)),
}


def check_profile(name: str) -> str:
    """Return ``name`` if it is a profile, else raise one clear ``ValueError``."""
    if name not in PROFILES:
        raise ValueError(f"profile must be one of {', '.join(PROFILES)}; got {name!r}")
    return name


def get_profile(name: str) -> Profile:
    return _PROFILES[check_profile(name)]


def profile_from_env(default: str = "quick") -> str:
    """The profile named by ``HASHREC_PROFILE``, else ``default``."""
    return check_profile(os.environ.get("HASHREC_PROFILE", default) or default)


def repo_root() -> Path:
    """The repository (``HASHREC_ROOT`` if set, else the parent of this package)."""
    env = os.environ.get("HASHREC_ROOT")
    return Path(env) if env else Path(__file__).resolve().parent.parent


def results_dir(profile: str) -> Path:
    """``results/<profile>/``: the small JSON/CSV files that figures and the report show."""
    return repo_root() / "results" / check_profile(profile)


def figures_dir(profile: str) -> Path:
    """``figures/<profile>/``: PNG + PDF of every figure."""
    return repo_root() / "figures" / check_profile(profile)


def runs_dir(profile: str) -> Path:
    """``runs/<profile>/``: per-run artifacts (git-ignored): checkpoints, embeddings, codes."""
    return repo_root() / "runs" / check_profile(profile)
