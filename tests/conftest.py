"""Shared fixtures. Tests that need real data use the offline mirror named by
``HASHREC_DATA_DIR`` (CI sets it) and skip, saying so, where it is absent."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

MIRROR_REASON = "needs the offline dataset mirror: set HASHREC_DATA_DIR (CI sets it to ../shared/datasets)"


def mirror_dir() -> Path | None:
    env = os.environ.get("HASHREC_DATA_DIR")
    if env and (Path(env) / "ml-1m" / "train.txt").is_file():
        return Path(env)
    return None


requires_mirror = pytest.mark.skipif(mirror_dir() is None, reason=MIRROR_REASON)


@pytest.fixture(scope="session")
def ml1m():
    """MovieLens-1M from the mirror, published split, no valid carved."""
    if mirror_dir() is None:
        pytest.skip(MIRROR_REASON)
    from hashrec_utils.data import load_dataset

    return load_dataset("ml-1m", root=Path("/nonexistent-hashrec-root"), valid_fraction=0.0, download=False)
