"""Admin changes to queues and agents made in the console, laid over the YAML at start-up.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "routing_overrides",
        sa.Column("kind", sa.String(8), primary_key=True),  # "queue" or "agent"
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("data", sa.Text, nullable=False),  # JSON (routing/admin.py)
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(64), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("routing_overrides")
