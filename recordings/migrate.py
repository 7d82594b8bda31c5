"""Schema migrations, run programmatically: no alembic.ini is needed at run time.

    upgrade(engine)          # to the newest revision (CallStore does this at start-up)
    current(engine)          # the database's revision, or None before the first migration
    head()                   # the newest revision this code knows
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
_PG_LOCK = 0x686F746C  # "hotl": one worker migrates at a time, the others wait and find nothing to do


def engine_for(url: str) -> Engine:
    """An engine for a database URL (the folder of a SQLite file is made if missing)."""
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).expanduser().parent.mkdir(parents=True, exist_ok=True)
    return create_engine(url)


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


@functools.cache
def head() -> str:
    """The newest revision shipped with this code."""
    rev = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert rev is not None
    return rev


def current(engine: Engine) -> str | None:
    """The revision the database is at (None: never migrated)."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> str | None:
    """Brings the schema to `revision`; a database already there costs one query. Returns the revision."""
    if revision == "head" and current(engine) == head():
        return head()
    cfg = alembic_config()
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK})
        before = MigrationContext.configure(conn).get_current_revision()
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
        after = MigrationContext.configure(conn).get_current_revision()
    if before != after:
        log.info("database %s: schema %s -> %s", engine.url.render_as_string(hide_password=True), before, after)
    return after
