"""Shared fixtures. Tests that need real data use the offline mirror named by
``HASHREC_DATA_DIR`` (CI sets it) and skip, saying so, where it is absent."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

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


# A hand-checkable interaction matrix: 4 users x 5 items; item 4 has no interaction
# (an isolated node); every edge of the normalised adjacency weighs 1/2.
TOY = sp.csr_matrix(np.array([
    [1, 1, 0, 0, 0],
    [0, 1, 1, 0, 0],
    [1, 0, 0, 1, 0],
    [0, 0, 1, 1, 0],
], dtype=np.float32))
