"""Dashboard sessions held by the server (ui/session.py): the signed cookie names a row of `gw_ui_sessions` (by the
SHA-256 of a random id), so signing out ends every copy of the cookie, on every replica. Cookies signed before this
revision name no row: their holders sign in again.

Revision ID: ui_sessions
Revises: team_members
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "ui_sessions"
down_revision = "team_members"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "gw_ui_sessions",
        sa.Column("id_hash", sa.String(64), primary_key=True),
        sa.Column("user_id", sa.String(64), nullable=True),
        sa.Column("method", sa.String(200), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("last_seen", sa.BigInteger, nullable=False),
        sa.Column("expires_at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_gw_ui_sessions_user", "gw_ui_sessions", ["user_id"])
    op.create_index("ix_gw_ui_sessions_expires", "gw_ui_sessions", ["expires_at"])


def downgrade() -> None:
    op.drop_table("gw_ui_sessions")
