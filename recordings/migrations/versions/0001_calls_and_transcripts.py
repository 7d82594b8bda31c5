"""Calls and transcript lines (the schema as it was made by create_all before migrations).

Revision ID: 0001
Revises:
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    tables = set(sa.inspect(op.get_bind()).get_table_names())
    if "calls" not in tables:  # databases made before migrations already have both tables
        op.create_table(
            "calls",
            sa.Column("id", sa.String(64), primary_key=True),
            sa.Column("sip_call_id", sa.String(255), nullable=False),
            sa.Column("caller", sa.String(128), nullable=False),
            sa.Column("called", sa.String(128), nullable=False),
            sa.Column("language", sa.String(8), nullable=False),
            sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
            sa.Column("outcome", sa.String(32), nullable=True),
            sa.Column("end_reason", sa.String(64), nullable=True),
            sa.Column("last_intent", sa.String(64), nullable=True),
            sa.Column("queue", sa.String(64), nullable=True),
            sa.Column("agent", sa.String(128), nullable=True),
            sa.Column("queued_at", sa.DateTime(timezone=True), nullable=True),
            sa.Column("agent_answered_at", sa.DateTime(timezone=True), nullable=True),
            sa.Column("recording_path", sa.Text, nullable=True),
            sa.Column("worker", sa.String(64), nullable=False),
        )
    if "transcript_lines" not in tables:
        op.create_table(
            "transcript_lines",
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("call_id", sa.String(64), sa.ForeignKey("calls.id", ondelete="CASCADE"), nullable=False),
            sa.Column("seq", sa.Integer, nullable=False),
            sa.Column("speaker", sa.String(16), nullable=False),
            sa.Column("text", sa.Text, nullable=False),
            sa.Column("start_s", sa.Float, nullable=False),
            sa.Column("end_s", sa.Float, nullable=True),
            sa.Column("intent", sa.String(64), nullable=True),
            sa.Column("confidence", sa.Float, nullable=True),
            sa.Column("language", sa.String(8), nullable=False),
        )
        op.create_index("ix_transcript_call_seq", "transcript_lines", ["call_id", "seq"], unique=True)


def downgrade() -> None:
    op.drop_table("transcript_lines")
    op.drop_table("calls")
