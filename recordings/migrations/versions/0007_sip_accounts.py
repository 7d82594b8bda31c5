"""Agents' desk-phone SIP accounts made in the console: the digest HA1 hashes, never the password
(recordings/sip_accounts.py).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sip_accounts",
        sa.Column("username", sa.String(64), primary_key=True),  # the SIP user name: the agent id
        sa.Column("realm", sa.String(64), nullable=False),  # the digest realm the hashes were made for
        sa.Column("ha1", sa.Text, nullable=False),  # JSON {algorithm: H(user:realm:password)}, sealed with the key
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(64), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("sip_accounts")
