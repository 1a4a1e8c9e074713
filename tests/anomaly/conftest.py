"""Shared fixtures of the anomaly tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def anomaly_dir() -> Path | None:
    root = os.environ.get("GRIDLENS_DATA")
    if not root:
        return None
    p = Path(root) / "anomaly"
    return p if p.is_dir() else None


@pytest.fixture(scope="session")
def anomaly_data() -> Path:
    p = anomaly_dir()
    if p is None:
        pytest.skip("GRIDLENS_DATA/anomaly not found: set GRIDLENS_DATA to the shared data folder")
    return p
