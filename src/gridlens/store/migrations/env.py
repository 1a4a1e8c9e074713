"""Alembic environment: gridlens calls it programmatically (``gridlens.store.db.upgrade``)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from gridlens.store.models import Base

config = context.config
target_metadata = Base.metadata


def _run(connection: object) -> None:
    context.configure(
        connection=connection,  # type: ignore[arg-type]
        target_metadata=target_metadata,
        render_as_batch=True,  # SQLite ALTER TABLE goes through table copies
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


conn = config.attributes.get("connection")
if conn is not None:
    _run(conn)
else:  # plain `alembic` command line use
    engine = create_engine(config.get_main_option("sqlalchemy.url") or "sqlite:///gridlens.db")
    with engine.begin() as c:
        _run(c)
