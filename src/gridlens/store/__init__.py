"""Persistence: SQLAlchemy models, Alembic migrations and the queries the server needs.

SQLite (WAL) is the default (``sqlite:///gridlens.db``); PostgreSQL works with
``postgresql+psycopg://user@host/db``. Times are UTC epoch seconds.
"""

from __future__ import annotations

from gridlens.store.db import DEFAULT_DB, DatabaseError, make_engine, normalize_url, upgrade
from gridlens.store.pulls import PullChange
from gridlens.store.repo import (
    COMMANDS,
    NewReading,
    Principal,
    Store,
    command_dict,
    device_dict,
    reading_dict,
)
from gridlens.store.series import consumption

__all__ = [
    "COMMANDS",
    "DEFAULT_DB",
    "DatabaseError",
    "NewReading",
    "Principal",
    "PullChange",
    "Store",
    "command_dict",
    "consumption",
    "device_dict",
    "make_engine",
    "normalize_url",
    "reading_dict",
    "upgrade",
]
