"""Atomic writes and strict JSON: what every results file and checkpoint relies on."""
import json
import math
import os
import subprocess
import sys

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


_MALLINFO_PROBE = r"""
import ctypes, ctypes.util, sys
import numpy as np
from hashrec_utils.utils import keep_freed_memory

class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.mallinfo2.restype = MallInfo2

def mapped_during_allocation():
    before = libc.mallinfo2().hblkhd
    block = np.ones(64 << 20, dtype=np.uint8)  # 64 MiB, over glibc's largest mmap threshold
    during = libc.mallinfo2().hblkhd
    del block
    return during - before

applied = keep_freed_memory(sys.argv[1] == "on")
print(applied, mapped_during_allocation())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_keep_freed_memory_serves_large_blocks_from_the_heap(tmp_path):
    """On: a 64 MiB block comes from the heap (no mmap), so its memory is reused after free;
    off (glibc's defaults): it is mmapped; HASHREC_MALLOC=system leaves glibc alone."""
    probe = tmp_path / "probe.py"
    probe.write_text(_MALLINFO_PROBE)
    env = {**os.environ, "HASHREC_MALLOC": ""}

    def run(arg, **extra):
        out = subprocess.run([sys.executable, str(probe), arg], env={**env, **extra}, capture_output=True, text=True, check=True)
        applied, mapped = out.stdout.split()
        return applied == "True", int(mapped)

    assert run("on") == (True, 0)
    applied, mapped = run("off")
    assert applied and mapped >= 64 << 20
    applied, mapped = run("on", HASHREC_MALLOC="system")
    assert not applied and mapped >= 64 << 20
