"""Each call's caller sentiment (dialog/sentiment.py scores, hotline/sentiment_live.py writes).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "call_sentiment",
        sa.Column("call_id", sa.String(64), primary_key=True),
        sa.Column("score", sa.Float, nullable=False),
        sa.Column("minimum", sa.Float, nullable=False),
        sa.Column("lines", sa.Integer, nullable=False),
        sa.Column("label", sa.String(16), nullable=False),
        sa.Column("angry", sa.Boolean, nullable=False, server_default="0"),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_call_sentiment_angry", "call_sentiment", ["angry"])


def downgrade() -> None:
    op.drop_index("ix_call_sentiment_angry", table_name="call_sentiment")
    op.drop_table("call_sentiment")
