"""The throwaway PostgreSQL cluster that the records tests (and others) run against."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from support.postgres import PgServer, pg_server  # noqa: F401  (fixture)


def test_shared_cluster_gives_isolated_databases(pg_server: PgServer) -> None:  # noqa: F811
    a, b = pg_server.create_database(), pg_server.create_database()
    assert a != b and a.startswith("postgresql+psycopg://postgres@127.0.0.1:")
    engine = sa.create_engine(a)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE t (x int)"))
        conn.execute(sa.text("INSERT INTO t VALUES (1)"))
        assert conn.execute(sa.text("SELECT sum(x) FROM t")).scalar() == 1
        assert conn.execute(sa.text("SHOW fsync")).scalar() == "off"
    engine.dispose()
    engine = sa.create_engine(b)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT to_regclass('t')")).scalar() is None
    engine.dispose()


@pytest.mark.slow
def test_private_cluster_stops_and_starts_on_the_same_url() -> None:
    with PgServer.create() as pg:
        url = pg.create_database("keep")
        engine = sa.create_engine(url, pool_pre_ping=True)
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE t (x int)"))
            conn.execute(sa.text("INSERT INTO t VALUES (7)"))
        pg.stop()
        with pytest.raises(sa.exc.OperationalError), engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        pg.start()
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT x FROM t")).scalar() == 7
        engine.dispose()
