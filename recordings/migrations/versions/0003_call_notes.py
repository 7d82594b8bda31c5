"""Agents' wrap-up notes and dispositions (console), which 0002 did not create.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if "call_notes" in set(sa.inspect(op.get_bind()).get_table_names()):
        return  # made by an earlier UserStore before this migration existed
    op.create_table(
        "call_notes",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("call_id", sa.String(64), nullable=False),
        sa.Column("user", sa.String(64), nullable=False),
        sa.Column("disposition", sa.String(32), nullable=False),
        sa.Column("notes", sa.Text, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_call_notes_call_id", "call_notes", ["call_id"])


def downgrade() -> None:
    op.drop_index("ix_call_notes_call_id", table_name="call_notes")
    op.drop_table("call_notes")
