"""Shared fixtures of the grid tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gridlens.grid import ieee15
from gridlens.grid.estimation import Study


def feeders_dir() -> Path | None:
    root = os.environ.get("GRIDLENS_DATA")
    if not root:
        return None
    p = Path(root) / "feeders"
    return p if p.is_dir() else None


@pytest.fixture(scope="session")
def feeders() -> Path:
    p = feeders_dir()
    if p is None:
        pytest.skip("GRIDLENS_DATA/feeders not found: set GRIDLENS_DATA to the shared data folder")
    return p


@pytest.fixture(scope="session")
def study15() -> Study:
    return Study.build(ieee15(pv_bus=14, pv_kw=100), 15, seed=0)
