"""Revision 0002 (pull sources) upgrades a database made by 0001, on SQLite and PostgreSQL."""

from __future__ import annotations

import time

import pytest
from alembic import command
from sqlalchemy import text

from gridlens.store import Store
from gridlens.store.db import _alembic_config, current_revision, head_revision, make_engine
from gridlens.store.pulls import PullChange, pull_source
from tests.server.conftest import _reset_pg, pg_url  # noqa: F401 - fixture


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path) -> str:  # type: ignore[no-untyped-def]
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/old.db"
    u = str(request.getfixturevalue("pg_url"))
    _reset_pg(u)
    return u


def test_upgrade_from_0001_keeps_devices_and_adds_pulling(url: str) -> None:
    engine = make_engine(url)
    cfg = _alembic_config(engine)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0001")
    now = time.time()
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO devices (name, unit, roi, interval_s, created_at, updated_at) "
                "VALUES ('old', 'kWh', '{\"digits\": []}', 60, :t, :t)"
            ),
            {"t": now},
        )
    engine.dispose()
    store = Store.open(url)  # what `gridlens serve` and `gridlens db upgrade` do
    assert current_revision(store.engine) == head_revision()
    dev = store.device_by_name("old")
    assert pull_source(store, dev.id) is None
    store.update_device(dev.id, actor="t", pull=PullChange("http://cam.local/capture", 30))
    p = pull_source(store, dev.id)
    assert p is not None and (p.interval_s, p.fetches_total, p.failures) == (30, 0, 0)
    store.close()
