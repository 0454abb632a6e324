"""Single sign-on: the audit table (sign-ins, sign-outs, refused credentials, role and team changes), the SAML
assertion ids used (replay protection), and `llm-gateway login`'s device authorizations.

Revision ID: sso
Revises: dashboard
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "sso"
down_revision = "dashboard"
branch_labels = None
depends_on = None

_ROW_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "gw_audit",
        sa.Column("id", _ROW_ID, primary_key=True, autoincrement=True),
        sa.Column("ts", sa.BigInteger, nullable=False),
        sa.Column("event", sa.String(32), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False, server_default="ok"),
        sa.Column("method", sa.String(16), nullable=False, server_default=""),
        sa.Column("provider", sa.String(64), nullable=False, server_default=""),
        sa.Column("subject", sa.String(320), nullable=True),
        sa.Column("user_id", sa.String(64), nullable=True),
        sa.Column("detail", sa.Text, nullable=False, server_default="{}"),
        sa.Column("client_ip", sa.String(64), nullable=True),
    )
    op.create_index("ix_gw_audit_ts", "gw_audit", ["ts"])
    op.create_index("ix_gw_audit_user_ts", "gw_audit", ["user_id", "ts"])
    op.create_table(
        "gw_saml_assertions",
        sa.Column("id", sa.String(256), primary_key=True),
        sa.Column("expires_at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_gw_saml_assertions_expires", "gw_saml_assertions", ["expires_at"])
    op.create_table(
        "gw_device_grants",
        sa.Column("user_code", sa.String(16), primary_key=True),
        sa.Column("device_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("expires_at", sa.BigInteger, nullable=False),
        sa.Column("user_id", sa.String(64), nullable=True),
        sa.Column("client_name", sa.String(200), nullable=False, server_default=""),
    )


def downgrade() -> None:
    op.drop_table("gw_device_grants")
    op.drop_table("gw_saml_assertions")
    op.drop_table("gw_audit")
