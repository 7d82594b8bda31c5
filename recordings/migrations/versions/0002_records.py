"""Legs, intents and slots, DTMF, queue entries, agent sessions and states, complaints, console users and
the audit log; calls.recording_deleted; the transcript full-text index (FTS5 on SQLite, tsvector + GIN on
PostgreSQL), filled from the lines already stored.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def _calls_fk(ondelete: str = "CASCADE", nullable: bool = False) -> sa.Column:
    return sa.Column("call_id", sa.String(64), sa.ForeignKey("calls.id", ondelete=ondelete), nullable=nullable)


def upgrade() -> None:
    bind = op.get_bind()
    insp = sa.inspect(bind)
    tables = set(insp.get_table_names())

    if "recording_deleted" not in {c["name"] for c in insp.get_columns("calls")}:
        # A plain ADD COLUMN: a batch (copy-and-drop) of calls on SQLite would cascade-delete its lines.
        op.add_column("calls", sa.Column("recording_deleted", sa.Boolean, nullable=False, server_default=sa.false()))
    if "ix_calls_started_at" not in {i["name"] for i in insp.get_indexes("calls")}:
        op.create_index("ix_calls_started_at", "calls", ["started_at"])

    op.create_table(
        "legs",
        sa.Column("id", sa.String(32), primary_key=True),
        _calls_fk(),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("sip_call_id", sa.String(255), nullable=False),
        sa.Column("peer", sa.String(255), nullable=False),
        sa.Column("codec", sa.String(16), nullable=False),
        sa.Column("started_at", TZ, nullable=False),
        sa.Column("answered_at", TZ, nullable=True),
        sa.Column("ended_at", TZ, nullable=True),
        sa.Column("end_reason", sa.String(64), nullable=True),
    )
    op.create_index("ix_legs_call_id", "legs", ["call_id"])

    op.create_table(
        "intents",
        sa.Column("id", sa.String(32), primary_key=True),
        _calls_fk(),
        sa.Column("at", TZ, nullable=False),
        sa.Column("intent", sa.String(64), nullable=False),
        sa.Column("confidence", sa.Float, nullable=True),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("line_seq", sa.Integer, nullable=True),
    )
    op.create_index("ix_intents_call_id", "intents", ["call_id"])
    op.create_index("ix_intents_intent", "intents", ["intent"])
    op.create_table(
        "intent_slots",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("intent_id", sa.String(32), sa.ForeignKey("intents.id", ondelete="CASCADE"), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("value", sa.Text, nullable=False),
    )
    op.create_index("ix_intent_slots_intent_id", "intent_slots", ["intent_id"])

    op.create_table(
        "dtmf",
        sa.Column("id", sa.String(32), primary_key=True),
        _calls_fk(),
        sa.Column("at", TZ, nullable=False),
        sa.Column("digits", sa.String(64), nullable=False),
        sa.Column("secret", sa.Boolean, nullable=False),
    )
    op.create_index("ix_dtmf_call_id", "dtmf", ["call_id"])

    op.create_table(
        "queue_entries",
        sa.Column("id", sa.String(32), primary_key=True),
        _calls_fk(),
        sa.Column("queue", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("queued_at", TZ, nullable=False),
        sa.Column("left_at", TZ, nullable=True),
        sa.Column("wait_s", sa.Float, nullable=True),
        sa.Column("agent", sa.String(128), nullable=True),
    )
    op.create_index("ix_queue_entries_call_id", "queue_entries", ["call_id"])
    op.create_index("ix_queue_entries_queue", "queue_entries", ["queue"])
    op.create_index("ix_queue_entries_queued_at", "queue_entries", ["queued_at"])

    op.create_table(
        "agent_sessions",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("agent", sa.String(128), nullable=False),
        sa.Column("started_at", TZ, nullable=False),
        sa.Column("ended_at", TZ, nullable=True),
    )
    op.create_index("ix_agent_sessions_agent", "agent_sessions", ["agent"])
    op.create_table(
        "agent_states",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("session_id", sa.String(32), sa.ForeignKey("agent_sessions.id", ondelete="CASCADE"), nullable=True),
        sa.Column("agent", sa.String(128), nullable=False),
        sa.Column("at", TZ, nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("reason", sa.String(64), nullable=False),
    )
    op.create_index("ix_agent_states_session_id", "agent_states", ["session_id"])
    op.create_index("ix_agent_states_agent", "agent_states", ["agent"])

    op.create_table(
        "complaints",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("ticket", sa.String(32), nullable=False, unique=True),
        _calls_fk("SET NULL", nullable=True),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("category", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("text", sa.Text, nullable=False),
    )
    op.create_index("ix_complaints_call_id", "complaints", ["call_id"])
    op.create_index("ix_complaints_created_at", "complaints", ["created_at"])
    op.create_index("ix_complaints_category", "complaints", ["category"])

    # Console users (recordings/users.py); its UserStore may have made them already.
    if "users" not in tables:
        op.create_table(
            "users",
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("name", sa.String(64), nullable=False, unique=True),
            sa.Column("role", sa.String(16), nullable=False),
            sa.Column("password_hash", sa.Text, nullable=False),
            sa.Column("lang", sa.String(8), nullable=False),
            sa.Column("failed_logins", sa.Integer, nullable=False),
            sa.Column("locked_until", TZ, nullable=True),
            sa.Column("created_at", TZ, nullable=False),
        )
    if "web_sessions" not in tables:
        op.create_table(
            "web_sessions",
            sa.Column("id", sa.String(64), primary_key=True),
            sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
            sa.Column("csrf", sa.String(64), nullable=False),
            sa.Column("kind", sa.String(8), nullable=False),
            sa.Column("created_at", TZ, nullable=False),
            sa.Column("last_seen", TZ, nullable=False),
        )
        op.create_index("ix_web_sessions_user_id", "web_sessions", ["user_id"])
    if "audit_log" not in tables:
        op.create_table(
            "audit_log",
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("at", TZ, nullable=False),
            sa.Column("user", sa.String(64), nullable=False),
            sa.Column("action", sa.String(32), nullable=False),
            sa.Column("target", sa.String(255), nullable=False),
            sa.Column("detail", sa.Text, nullable=False),
        )
        op.create_index("ix_audit_log_at", "audit_log", ["at"])

    _create_search_index(bind)


def _create_search_index(bind: sa.Connection) -> None:
    from recordings.textsearch import index_terms

    if bind.dialect.name == "sqlite":
        # Contentless: the terms are not stored twice; rowid = transcript_lines.id.
        op.execute("CREATE VIRTUAL TABLE IF NOT EXISTS transcript_fts USING fts5(terms, content='')")
        insert = sa.text("INSERT INTO transcript_fts(rowid, terms) VALUES (:id, :terms)")
    elif bind.dialect.name == "postgresql":
        op.create_table(
            "transcript_search",
            sa.Column("line_id", sa.Integer, sa.ForeignKey("transcript_lines.id", ondelete="CASCADE"),
                      primary_key=True),
            sa.Column("call_id", sa.String(64), nullable=False),  # a copy: calls are found without the lines
            sa.Column("tsv", sa.dialects.postgresql.TSVECTOR, nullable=False),
        )
        op.execute("CREATE INDEX ix_transcript_search_tsv ON transcript_search USING gin (tsv)")
        insert = sa.text("INSERT INTO transcript_search(line_id, call_id, tsv) "
                         "VALUES (:id, :call_id, to_tsvector('simple', :terms))")
    else:  # other databases: search falls back to LIKE over the text
        return
    rows = bind.execute(sa.text("SELECT id, call_id, text FROM transcript_lines ORDER BY id")).all()
    batch = [{"id": r.id, "call_id": r.call_id, "terms": index_terms(r.text)} for r in rows]
    for i in range(0, len(batch), 5000):
        bind.execute(insert, batch[i : i + 5000])


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        op.execute("DROP TABLE IF EXISTS transcript_fts")
    elif bind.dialect.name == "postgresql":
        op.drop_table("transcript_search")
    for table in ("complaints", "agent_states", "agent_sessions", "queue_entries", "dtmf", "intent_slots",
                  "intents", "legs"):
        op.drop_table(table)
    op.drop_index("ix_calls_started_at", "calls")
    op.drop_column("calls", "recording_deleted")
