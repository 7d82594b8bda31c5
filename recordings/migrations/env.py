"""Alembic environment: the connection comes from recordings.migrate (config.attributes["connection"])."""

from __future__ import annotations

from alembic import context

from recordings.models import Base

config = context.config
connection = config.attributes.get("connection")
if connection is None:  # pragma: no cover - `alembic` on the command line with sqlalchemy.url set
    from sqlalchemy import create_engine

    engine = create_engine(config.get_main_option("sqlalchemy.url") or "sqlite://")
    connection = engine.connect()

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    # No batch mode: on SQLite it copies and drops a table, and dropping calls cascades to its lines.
)
with context.begin_transaction():
    context.run_migrations()
