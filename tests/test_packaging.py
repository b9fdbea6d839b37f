"""The set-up contract: one list of pins, in pyproject.toml and environment.yml alike."""
from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def pyproject_pins() -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return project["dependencies"] + project["optional-dependencies"]["dev"]


def environment_pins() -> list[str]:
    lines = (ROOT / "environment.yml").read_text().splitlines()
    start = lines.index("  - pip:")
    return [m.group(1) for line in lines[start + 1 :] if (m := re.fullmatch(r"\s+- (\S+==\S+)", line))]


def test_environment_yml_pins_equal_pyproject():
    assert environment_pins() == pyproject_pins()


def test_every_dependency_is_pinned_and_torch_is_the_cpu_release():
    pins = pyproject_pins()
    assert all(re.fullmatch(r"[A-Za-z0-9_.\-]+==[0-9][0-9A-Za-z.]*", p) for p in pins), pins
    assert "torch==2.13.0" in pins  # a range would pull a multi-GB CUDA build


def test_required_packages_present():
    names = {p.split("==")[0] for p in pyproject_pins()}
    required = {"torch", "torch-geometric", "faiss-cpu", "numpy", "scipy", "pandas", "matplotlib", "seaborn",
                "tqdm", "jupyterlab", "ipywidgets", "papermill", "nbval", "pytest", "typst", "pypdf"}
    assert required <= names, required - names
