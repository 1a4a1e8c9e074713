"""Revision 0003 (command nonces) upgrades a database made by 0002, on SQLite and PostgreSQL:
commands still open get a nonce (so the new firmware can ack them), finished ones none."""

from __future__ import annotations

import re
import time

import pytest
from alembic import command
from sqlalchemy import inspect, text

from gridlens.store import Store
from gridlens.store.db import _alembic_config, current_revision, head_revision, make_engine
from tests.server.conftest import _reset_pg, pg_url  # noqa: F401 - fixture


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path) -> str:  # type: ignore[no-untyped-def]
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/old.db"
    u = str(request.getfixturevalue("pg_url"))
    _reset_pg(u)
    return u


def _migrate(url: str, revision: str, down: bool = False) -> None:
    engine = make_engine(url)
    cfg = _alembic_config(engine)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        (command.downgrade if down else command.upgrade)(cfg, revision)
    engine.dispose()


def test_upgrade_from_0002_gives_open_commands_a_nonce(url: str) -> None:
    _migrate(url, "0002")
    now = time.time()
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO devices (name, unit, roi, interval_s, created_at, updated_at) "
                "VALUES ('old', 'kWh', '{\"digits\": []}', 60, :t, :t)"
            ),
            {"t": now},
        )
        dev = conn.execute(text("SELECT id FROM devices")).scalar_one()
        for status in ("pending", "delivered", "acked", "expired"):
            conn.execute(
                text(
                    "INSERT INTO commands (device_id, action, state, status, created_by, "
                    "created_at, expires_at) VALUES (:d, 'relay', 'on', :s, 'ada', :t, :e)"
                ),
                {"d": dev, "s": status, "t": now, "e": now + 600},
            )
    engine.dispose()

    store = Store.open(url)  # what `gridlens serve` and `gridlens db upgrade` do
    assert current_revision(store.engine) == head_revision()  # 0003 and every later one
    with store.engine.connect() as conn:
        rows = dict(conn.execute(text("SELECT status, nonce FROM commands")).all())
    assert re.fullmatch(r"[0-9a-f]{32}", rows["pending"])
    assert re.fullmatch(r"[0-9a-f]{32}", rows["delivered"])
    assert rows["pending"] != rows["delivered"]
    assert rows["acked"] is None and rows["expired"] is None
    # an open command from before the upgrade is taken by the device with its nonce
    (cmd,) = store.take_pending(dev)
    assert cmd.nonce == rows["pending"]
    new = store.add_command(dev, "flash", state="off", actor="ada")
    assert new.nonce is not None and re.fullmatch(r"[0-9a-f]{32}", new.nonce)
    store.close()

    _migrate(url, "0002", down=True)  # and back
    engine = make_engine(url)
    cols = {c["name"] for c in inspect(engine).get_columns("commands")}
    assert "nonce" not in cols and "status" in cols
    engine.dispose()
