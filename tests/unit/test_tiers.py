"""The suite's tiers: each a folder of tests/, a marker its tests carry and a name the
pytest configuration registers, so that ``pytest -m <tier>`` runs exactly one of them."""

from __future__ import annotations

import pytest

from tests.conftest import TIERS
from tests.support.processes import ROOT


def test_each_folder_of_tests_is_a_tier_and_each_tier_a_folder() -> None:
    tests = ROOT / "tests"
    folders = {path.relative_to(tests).parts[0] for path in tests.rglob("test_*.py")}
    assert folders == set(TIERS)


def test_each_tier_is_a_registered_marker(request: pytest.FixtureRequest) -> None:
    registered = [line.split(":", 1)[0] for line in request.config.getini("markers")]
    assert set(TIERS) <= set(registered)
    assert "--strict-markers" in request.config.getini("addopts")


def test_a_test_carries_the_marker_of_its_folder(request: pytest.FixtureRequest) -> None:
    marks = [mark.name for mark in request.node.iter_markers() if mark.name in TIERS]
    assert marks == ["unit"]
