"""Where a profile's files live: ``results/``, ``figures/``, ``runs/`` under the repository,
and the profile a notebook opened in JupyterLab runs (``HASHREC_PROFILE``).

The profiles themselves (every number each one chooses) are :mod:`hashrec_utils.profiles`;
their names are re-exported here.
"""
from __future__ import annotations

import os
from pathlib import Path

from .profiles import PROFILES, Profile, check_profile, get_profile

__all__ = [
    "PROFILES", "Profile", "check_profile", "get_profile", "profile_from_env",
    "repo_root", "results_dir", "figures_dir", "runs_dir",
]


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
