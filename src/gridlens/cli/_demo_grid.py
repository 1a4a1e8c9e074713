"""The demo's feeder: its simulated meters on the IEEE 15-bus feeder, with virtual µPMUs."""

from __future__ import annotations

from pathlib import Path


def seed_grid(db_url: str, server_url: str, token: str, folder: Path) -> None:
    """Put the demo's meters on a feeder once their history is seeded (idempotent)."""
