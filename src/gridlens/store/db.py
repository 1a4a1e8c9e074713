"""Engines and schema migrations for SQLite (default, WAL) and PostgreSQL (psycopg 3)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DisconnectionError, OperationalError

from gridlens.errors import InputError, ParameterError

DEFAULT_DB = "sqlite:///gridlens.db"
MIGRATIONS = Path(__file__).with_name("migrations")
_PG_MIGRATION_LOCK = 0x67726964  # pg_advisory_lock key: two servers never migrate at once


class DatabaseError(InputError):
    """The database cannot be reached or is not a gridlens database."""


def normalize_url(url: str | None) -> str:
    """``postgresql://`` and ``postgres://`` mean psycopg 3; a bare path means SQLite."""
    url = (url or os.environ.get("GRIDLENS_DB") or DEFAULT_DB).strip()
    if "://" not in url:
        return f"sqlite:///{url}"
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def make_engine(url: str | None = None, *, pool_size: int = 8) -> Engine:
    """An engine for ``url`` (default ``$GRIDLENS_DB`` or ``sqlite:///gridlens.db``).

    SQLite gets WAL journaling, ``synchronous=NORMAL`` (durable across a process crash),
    foreign keys and a 30 s busy timeout so several server processes can share the file.
    """
    url = normalize_url(url)
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ParameterError(
            f"--db {url!r} is not a database URL; use sqlite:///path.db or "
            "postgresql+psycopg://user@host/dbname"
        ) from None
    backend = parsed.get_backend_name()
    kwargs: dict[str, Any] = {}
    if backend == "sqlite":
        db = parsed.database or ""
        if db and db != ":memory:":
            parent = Path(db).expanduser().resolve().parent
            if not parent.is_dir():
                raise ParameterError(f"--db {url!r}: folder {parent} does not exist")
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        engine = create_engine(url, **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    if backend == "postgresql":
        kwargs.update(pool_size=pool_size, max_overflow=pool_size)
        engine = create_engine(url, **kwargs)
        _ping_when_idle(engine)
        return engine
    raise ParameterError(f"--db {url!r}: only sqlite:// and postgresql+psycopg:// are supported")


PING_IDLE_S = 5.0
"""A pooled PostgreSQL connection idle longer than this is pinged before use [s]."""


def _ping_when_idle(engine: Engine) -> None:
    """Pessimistic disconnect handling without a round trip per checkout.

    SQLAlchemy's ``pool_pre_ping`` pings on every checkout: on a busy server that is one
    extra round trip per statement group (2 of the 4 an upload made). A connection that was
    handed back less than :data:`PING_IDLE_S` ago was working then, so only connections idle
    for longer are pinged; a failed ping raises ``DisconnectionError`` and the pool retries
    with a fresh connection (after a database restart, for example). A connection that
    breaks while busy fails its statement and is discarded, as with ``pool_pre_ping``.
    """

    @event.listens_for(engine, "checkin")
    def _checkin(_dbapi_conn: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checkout(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get("idle_since")
        if since is None or time.monotonic() - since <= PING_IDLE_S:
            return
        try:
            ok = engine.dialect.do_ping(dbapi_conn)
        except Exception as exc:
            raise DisconnectionError("pooled connection is gone") from exc
        if not ok:
            raise DisconnectionError("pooled connection is gone")


def _alembic_config(engine: Engine) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False))
    return cfg


def upgrade(engine: Engine) -> None:
    """Bring the schema to the newest revision (idempotent, safe with concurrent servers)."""
    from alembic import command

    cfg = _alembic_config(engine)
    try:
        with engine.begin() as conn:
            if engine.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
    except OperationalError as exc:
        raise DatabaseError(
            f"cannot open the database {_safe(engine)}: {_first_line(exc)}"
        ) from None


def current_revision(engine: Engine) -> str | None:
    """The schema revision in the database, or None when it was never migrated."""
    try:
        with engine.connect() as conn:
            if not inspect(conn).has_table("alembic_version"):
                return None
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except OperationalError as exc:
        raise DatabaseError(
            f"cannot open the database {_safe(engine)}: {_first_line(exc)}"
        ) from None


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    cfg_script = ScriptDirectory(str(MIGRATIONS))
    head = cfg_script.get_current_head()
    assert head is not None
    return head


def _safe(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=True)


def _first_line(exc: BaseException) -> str:
    msg = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return msg[0] if msg else type(exc).__name__
