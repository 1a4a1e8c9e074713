"""The store on its own: migrations match the models, consumption from counters, secrets."""

from __future__ import annotations

import numpy as np
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from gridlens.errors import ConflictError, ParameterError
from gridlens.store import Store, consumption
from gridlens.store.db import current_revision, head_revision, make_engine, normalize_url
from gridlens.store.models import Base
from gridlens.store.security import hash_password, verify_password
from gridlens.store.timeutil import iso, parse_time
from tests.server.conftest import _pg_reason, pg_url  # noqa: F401 - fixture

pytestmark = []


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path) -> str:  # type: ignore[no-untyped-def]
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/s.db"
    u = str(request.getfixturevalue("pg_url"))
    from tests.server.conftest import _reset_pg

    _reset_pg(u)
    return u


def test_migrations_create_exactly_the_models(url: str) -> None:
    store = Store.open(url)
    assert current_revision(store.engine) == head_revision()
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []
    Store.open(url).close()  # idempotent
    store.close()


def test_sqlite_runs_in_wal_mode(tmp_path) -> None:  # type: ignore[no-untyped-def]
    eng = make_engine(f"sqlite:///{tmp_path}/w.db")
    with eng.connect() as c:
        assert c.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert c.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_postgresql_pool_survives_killed_connections(
    pg_url: str,  # noqa: F811 - fixture
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Idle pooled connections whose backend died (a database restart) are pinged and
    replaced before use; busy ones are not pinged (no round trip per checkout)."""
    import psycopg

    from gridlens.store import db
    from tests.server.conftest import _reset_pg

    _reset_pg(pg_url)
    store = Store.open(pg_url)
    store.add_user("before", role="viewer")

    def kill_pool() -> None:
        with psycopg.connect(pg_url.replace("+psycopg", ""), autocommit=True) as c:
            c.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )

    kill_pool()
    monkeypatch.setattr(db, "PING_IDLE_S", 3600.0)  # recently used: trusted, not pinged
    with pytest.raises(Exception, match=r"terminat|closed|connection"):
        store.add_user("lost", role="viewer")
    store.engine.dispose()
    store.add_user("fresh", role="viewer")
    kill_pool()
    monkeypatch.setattr(db, "PING_IDLE_S", 0.0)  # idle: pinged, replaced, works
    store.add_user("after", role="viewer")
    from sqlalchemy import select

    from gridlens.store.models import User

    with store.session() as s:
        assert set(s.scalars(select(User.name))) == {"before", "fresh", "after"}
    store.close()


def test_urls() -> None:
    assert normalize_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalize_url("x.db") == "sqlite:///x.db"
    with pytest.raises(ParameterError, match="only sqlite"):
        make_engine("mysql://u@h/db")
    with pytest.raises(ParameterError, match="does not exist"):
        make_engine("sqlite:////no/such/folder/x.db")


def test_users_and_tokens(url: str) -> None:
    store = Store.open(url)
    _user, pw, token = store.add_user("maker", role="operator")
    assert len(pw) >= 12 and token.startswith("glu_")
    with pytest.raises(ConflictError):
        store.add_user("maker")
    with pytest.raises(ParameterError, match="role"):
        store.add_user("x", role="god")
    with pytest.raises(ParameterError, match="name"):
        store.add_user("../etc")
    p = store.resolve(token)
    assert p is not None and p.name == "maker" and p.can("operator") and not p.can("admin")
    assert store.check_password("maker", pw) is not None
    assert store.check_password("maker", pw + "x") is None
    assert store.check_password("nobody", pw) is None
    store.revoke(token)
    assert store.resolve(token) is None
    store.close()


def test_password_hash_is_salted() -> None:
    a, b = hash_password("correct horse"), hash_password("correct horse")
    assert a != b and verify_password("correct horse", a) and not verify_password("wrong", a)
    assert not verify_password("x", "garbage")


def test_consumption_splits_deltas_across_buckets() -> None:
    t = np.array([0.0, 1800.0, 5400.0, 7200.0])
    v = np.array([10.0, 11.0, 13.0, 13.5])
    starts, e = consumption(t, v, 3600.0)
    assert starts.tolist() == [0.0, 3600.0]
    # 0..1800: 1 kWh; 1800..5400: 2 kWh split half/half; 5400..7200: 0.5
    assert e.tolist() == pytest.approx([2.0, 1.5])
    starts, e = consumption(t, v, 3600.0, since=-3600.0, until=10800.0)
    assert np.isnan(e[0]) and np.isnan(e[-1]) and e[1:3].tolist() == pytest.approx([2.0, 1.5])
    assert consumption(np.empty(0), np.empty(0), 3600.0)[0].size == 0


def test_time_parsing() -> None:
    assert parse_time("2026-11-21T10:00:00Z") == parse_time("2026-11-21T11:00:00+01:00")
    assert parse_time("1763719200") == 1763719200.0
    assert iso(1763719200.0) == "2025-11-21T10:00:00Z"
    with pytest.raises(ParameterError, match="not a time"):
        parse_time("soon")


def test_names_end_where_they_seem_to(url: str) -> None:
    store = Store.open(url)
    with pytest.raises(ParameterError, match="must be 1-64 characters"):
        store.add_device("abc\n", {"digits": [{"x": 0, "y": 0, "w": 4, "h": 4}], "decimals": 0})
    store.close()


def test_an_ack_detail_with_nul_is_stored_without_it(url: str) -> None:
    # an MQTT ack's detail reaches the store unchecked; PostgreSQL keeps no NUL in text
    store = Store.open(url)
    dev, _ = store.add_device("nul", {"digits": [{"x": 0, "y": 0, "w": 4, "h": 4}], "decimals": 0})
    cmd = store.add_command(dev.id, "flash", state="on", actor="t")
    store.take_pending(dev.id)
    c = store.ack_command(dev.id, cmd.id, ok=True, detail="done\x00!", via="mqtt")
    assert c.ack_detail == "done!"
    store.close()
