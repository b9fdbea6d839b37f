"""The golden test: every versioned component's tiny deterministic outputs against the committed ones.

An output that moves while its component's version does not fails here, naming the component and
where its version lives (``tests/training/golden_cases.py``); a refactor that moves no number passes.
"""
from __future__ import annotations

import json

from . import golden_cases


def test_every_component_reproduces_its_golden_outputs(tmp_path):
    expected = json.loads(golden_cases.EXPECTED.read_text())
    cases = golden_cases.all_cases(tmp_path)
    assert set(cases) == set(expected), "cases and tests/training/golden/expected.json differ: run python tests/training/golden_cases.py --update"
    problems = golden_cases.check(cases, expected)
    assert not problems, "\n".join(problems)


def test_a_changed_estimator_without_a_new_version_is_named(monkeypatch):
    """SignSwish's backward with another β, its version unchanged: the check names
    ``estimator.signswish`` and where to bump it; with the version bumped, it asks for the file."""
    from hashrec_utils.hashing import estimators

    expected = json.loads(golden_cases.EXPECTED.read_text())
    monkeypatch.setattr(estimators.SignSwishEstimator, "defaults", {"beta": 7.0})
    cases = {"estimator.signswish": golden_cases.estimator_case("signswish"),
             "estimator.ste": golden_cases.estimator_case("ste")}
    problems = golden_cases.check(cases, expected)
    assert len(problems) == 1 and problems[0].startswith("estimator.signswish: outputs moved")
    assert "estimator.signswish (version 1)" in problems[0]
    assert "the estimator class's `version` in hashrec_utils/hashing/estimators.py" in problems[0]
    monkeypatch.setattr(estimators.SignSwishEstimator, "version", 2)
    bumped = golden_cases.check({"estimator.signswish": golden_cases.estimator_case("signswish")}, expected)
    assert len(bumped) == 1 and "component versions changed" in bumped[0] and "--update" in bumped[0]
