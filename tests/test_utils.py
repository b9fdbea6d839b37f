"""Atomic writes and strict JSON: what every results file and checkpoint relies on."""
import json
import math

import numpy as np
import pandas as pd
import pytest

from hashrec_utils.utils import atomic_write, read_json, seed_everything, write_json


def test_write_json_turns_non_finite_into_null_and_stays_strict(tmp_path):
    frame = pd.DataFrame({"a": [1.0, np.nan], "b": [np.float32(np.inf), 2]})
    path = tmp_path / "r.json"
    write_json(path, {"rows": frame.to_dict(orient="records"), "x": np.float64(-np.inf), "arr": np.array([0.5, np.nan])})
    text = path.read_text()
    # strict JSON: no NaN/Infinity tokens (Typst's json() rejects them)
    parsed = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard constant {c}"))
    assert parsed == {"rows": [{"a": 1.0, "b": None}, {"a": None, "b": 2.0}], "x": None, "arr": [0.5, None]}
    assert read_json(path) == parsed


def test_atomic_write_leaves_old_file_and_no_temp_on_error(tmp_path):
    path = tmp_path / "out.txt"
    path.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_write(path, "w") as fh:
            fh.write("half")
            raise RuntimeError("interrupted")
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_seed_everything_repeats_numpy_and_torch_draws():
    import torch

    seed_everything(3)
    a = (np.random.rand(3), torch.rand(3))
    seed_everything(3)
    b = (np.random.rand(3), torch.rand(3))
    assert np.array_equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not math.isclose(float(a[1][0]), float(torch.rand(1)))
