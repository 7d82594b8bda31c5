"""Promised callbacks, kept in the database so a worker restart (or a crash) does not lose them
(recordings/callbacks.py, hotline/callback.py).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "callbacks",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("call_id", sa.String(64), sa.ForeignKey("calls.id", ondelete="CASCADE"), nullable=False),
        sa.Column("queue", sa.String(64), nullable=False),
        sa.Column("number", sa.Text, nullable=False),  # sealed (AES-GCM) with the recording key when it is set
        sa.Column("number_hint", sa.String(32), nullable=False),  # last digits only, for lists
        sa.Column("language", sa.String(8), nullable=False),
        sa.Column("context", sa.Text, nullable=False),  # the screen pop's context, JSON, sealed like the number
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("queued_at", sa.DateTime(timezone=True), nullable=False),  # the caller's place: queue arrival
        sa.Column("priority", sa.Integer, nullable=False),
        sa.Column("place", sa.Integer, nullable=False),  # 1-based position when the callback was taken
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),  # pending dialling connected done failed expired
        sa.Column("reason", sa.String(64), nullable=True),
        sa.Column("node", sa.String(64), nullable=False),  # the worker that owns it (calls.worker's rule)
        sa.Column("queue_entry", sa.String(32), nullable=True),  # the call's queue record, open until it ends
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_callbacks_call_id", "callbacks", ["call_id"])
    op.create_index("ix_callbacks_state_node", "callbacks", ["state", "node"])


def downgrade() -> None:
    op.drop_index("ix_callbacks_state_node", table_name="callbacks")
    op.drop_index("ix_callbacks_call_id", table_name="callbacks")
    op.drop_table("callbacks")
