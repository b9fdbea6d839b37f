"""``python -m hashrec_utils data NAME`` on the mirror, as a user runs it."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from .conftest import requires_mirror


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, HASHREC_DATA_ROOT="/nonexistent-hashrec-root")
    return subprocess.run([sys.executable, "-m", "hashrec_utils", *args], capture_output=True, text=True, env=env, timeout=300)


@requires_mirror
@pytest.mark.parametrize(
    "name, users, items, interactions, test",
    [("ml-1m", 6040, 3706, 1000209, 205425), ("gowalla", 29858, 40981, 1027370, 217242)],
)
def test_data_command_prints_the_published_counts(name, users, items, interactions, test):
    out = run_cli("data", name, "--json")
    assert out.returncode == 0, out.stderr
    stats = json.loads(out.stdout)
    assert (stats["users"], stats["items"], stats["interactions"], stats["test"]) == (users, items, interactions, test)
    assert stats["user_degree_p0"] <= stats["user_degree_p50"] <= stats["user_degree_p100"]


@requires_mirror
def test_data_command_table():
    out = run_cli("data", "ml-1m")
    assert out.returncode == 0, out.stderr
    assert "1,000,209" in out.stdout and "6,040" in out.stdout and "density" in out.stdout


def test_unknown_dataset_is_one_clear_error():
    out = run_cli("data", "no-such-set")
    assert out.returncode != 0
    assert "unknown dataset 'no-such-set'" in out.stderr


def test_tradeoff_refuses_a_dataset_the_profile_does_not_sweep():
    out = run_cli("tradeoff", "--profile", "default", "--dataset", "gowalla")
    assert out.returncode != 0
    assert "not swept by the default profile: gowalla" in out.stderr
