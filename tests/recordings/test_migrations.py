"""The schema is made and upgraded by Alembic, on SQLite and on a real PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from support.postgres import PgServer, pg_server  # noqa: F401  (fixture)

from recordings import CallStore
from recordings.migrate import current, head, upgrade

TABLES = {"calls", "transcript_lines", "legs", "intents", "intent_slots", "dtmf", "queue_entries", "agent_sessions",
          "agent_states", "complaints", "users", "web_sessions", "audit_log", "call_sentiment", "routing_overrides",
          "sip_accounts", "alembic_version"}


def _exercise(store: CallStore) -> None:
    """Every write the records offer, then read back what readers see."""
    store.start_call("c1", sip_call_id="sip-1", caller="13800138000", called="95555")
    leg = store.add_leg("c1", "caller", sip_call_id="sip-1", peer="sip:13800138000@127.0.0.1", codec="PCMU")
    store.leg_answered(leg)
    store.add_line("c1", "caller", "My card 4111 1111 1111 1234 was stolen", 1.0, 2.0, language="en")
    store.add_intent("c1", "card_lost", confidence=0.9, slots={"card": "4111111111111234", "when": "today"})
    store.add_dtmf("c1", "1234", secret=True)
    store.add_dtmf("c1", "2")
    entry = store.queue_entered("c1", "general")
    store.queue_left(entry, "answered", agent="anna")
    session = store.agent_login("anna")
    store.agent_state("anna", "talking", session_id=session)
    store.agent_logout(session, "anna")
    ticket = store.add_complaint("fees", "Charged twice, card 4111 1111 1111 1234", call_id="c1")
    store.set_complaint_status(ticket, "in_progress")
    store.end_leg(leg, "remote_bye")
    store.end_call("c1", outcome="transferred", end_reason="remote_bye")

    assert store.get_transcript("c1")[0].text == "My card **** **** **** 1234 was stolen"
    [c] = store.complaints(call_id="c1")
    assert (c.ticket, c.category, c.status) == (ticket, "fees", "in_progress") and "1234" in c.text
    assert "4111" not in c.text
    with store.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT digits FROM dtmf ORDER BY secret DESC")).scalars().all() == ["****", "2"]
        assert conn.execute(sa.text("SELECT value FROM intent_slots WHERE name='card'")).scalar() == "************1234"
        row = conn.execute(sa.text("SELECT status, agent, wait_s FROM queue_entries")).one()
        assert row.status == "answered" and row.agent == "anna" and row.wait_s >= 0
        states = conn.execute(sa.text("SELECT state FROM agent_states ORDER BY at")).scalars().all()
        assert states == ["ready", "talking", "logged_out"]
        assert conn.execute(sa.text("SELECT ended_at FROM agent_sessions")).scalar() is not None
        assert conn.execute(sa.text("SELECT end_reason FROM legs")).scalar() == "remote_bye"


def test_sqlite_schema_is_migrated_and_every_record_kind_round_trips(tmp_path: Path) -> None:
    store = CallStore(f"sqlite:///{tmp_path / 'h.db'}")
    assert current(store.engine) == head()
    assert TABLES <= set(sa.inspect(store.engine).get_table_names())
    _exercise(store)
    store.close()


def test_database_made_by_create_all_before_migrations_is_upgraded_keeping_its_calls(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:  # the schema as the first releases made it (create_all, no alembic_version)
        conn.execute(sa.text("CREATE TABLE calls (id VARCHAR(64) PRIMARY KEY, sip_call_id VARCHAR(255) NOT NULL, "
                             "caller VARCHAR(128) NOT NULL, called VARCHAR(128) NOT NULL, language VARCHAR(8) NOT NULL,"
                             " started_at DATETIME NOT NULL, ended_at DATETIME, outcome VARCHAR(32), end_reason "
                             "VARCHAR(64), last_intent VARCHAR(64), queue VARCHAR(64), agent VARCHAR(128), queued_at "
                             "DATETIME, agent_answered_at DATETIME, recording_path TEXT, worker VARCHAR(64) NOT NULL)"))
        conn.execute(sa.text("CREATE TABLE transcript_lines (id INTEGER PRIMARY KEY, call_id VARCHAR(64) NOT NULL "
                             "REFERENCES calls(id) ON DELETE CASCADE, seq INTEGER NOT NULL, speaker VARCHAR(16) NOT "
                             "NULL, text TEXT NOT NULL, start_s FLOAT NOT NULL, end_s FLOAT, intent VARCHAR(64), "
                             "confidence FLOAT, language VARCHAR(8) NOT NULL)"))
        conn.execute(sa.text("INSERT INTO calls VALUES ('old', 's', '1001', '95555', 'zh', '2026-01-01 10:00:00', "
                             "NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 'w1')"))
        conn.execute(sa.text("INSERT INTO transcript_lines VALUES (1, 'old', 1, 'caller', '我的信用卡丢了', 0, 1, "
                             "NULL, NULL, 'zh')"))
    engine.dispose()
    store = CallStore(url)
    assert current(store.engine) == head()
    old = store.get_call("old")
    assert old is not None and old.caller == "1001" and not old.recording_deleted
    from recordings.search import search_calls

    assert [h.call_id for h in search_calls(store, "信用卡")] == ["old"]  # lines already there are indexed
    store.add_line("old", "system", "好的", 2.0)
    assert [ln.seq for ln in store.get_transcript("old")] == [1, 2]
    store.close()


def test_postgresql_schema_is_migrated_and_every_record_kind_round_trips(pg_server: PgServer) -> None:  # noqa: F811
    url = pg_server.create_database()
    store = CallStore(url)
    assert current(store.engine) == head()
    assert TABLES <= set(sa.inspect(store.engine).get_table_names())
    _exercise(store)
    assert upgrade(store.engine) == head()  # a second upgrade finds nothing to do
    store.close()
