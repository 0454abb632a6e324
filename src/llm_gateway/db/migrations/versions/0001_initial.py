"""Initial schema: teams, users, virtual keys and the usage ledger.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_ROW_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _times() -> list[sa.Column[int]]:
    return [sa.Column("created_at", sa.BigInteger, nullable=False),
            sa.Column("updated_at", sa.BigInteger, nullable=False)]


def _budget() -> list[sa.Column[object]]:
    return [sa.Column("budget_usd", sa.Float, nullable=True),
            sa.Column("budget_period", sa.String(16), nullable=False, server_default="total")]


def upgrade() -> None:
    op.create_table(
        "gw_teams",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, server_default=""),
        *_budget(),
        sa.Column("metadata", sa.Text, nullable=False, server_default="{}"),
        *_times(),
    )
    op.create_table(
        "gw_users",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("email", sa.String(320), nullable=True),
        sa.Column("team_id", sa.String(64), nullable=True),
        *_budget(),
        sa.Column("max_keys", sa.Integer, nullable=True),
        sa.Column("token_hash", sa.String(64), nullable=True, unique=True),
        sa.Column("metadata", sa.Text, nullable=False, server_default="{}"),
        *_times(),
    )
    op.create_index("ix_gw_users_team", "gw_users", ["team_id"])
    op.create_table(
        "gw_keys",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("key_prefix", sa.String(16), nullable=False),
        sa.Column("alias", sa.String(200), nullable=True),
        sa.Column("user_id", sa.String(64), nullable=True),
        sa.Column("team_id", sa.String(64), nullable=True),
        sa.Column("models", sa.Text, nullable=True),
        *_budget(),
        sa.Column("rpm_limit", sa.Integer, nullable=True),
        sa.Column("tpm_limit", sa.Integer, nullable=True),
        sa.Column("expires_at", sa.BigInteger, nullable=True),
        sa.Column("metadata", sa.Text, nullable=False, server_default="{}"),
        sa.Column("blocked", sa.Boolean, nullable=False, server_default=sa.false()),
        *_times(),
    )
    op.create_index("ix_gw_keys_user", "gw_keys", ["user_id", "id"])
    op.create_index("ix_gw_keys_team", "gw_keys", ["team_id", "id"])
    op.create_table(
        "gw_usage",
        sa.Column("id", _ROW_ID, primary_key=True, autoincrement=True),
        sa.Column("ts", sa.BigInteger, nullable=False),
        sa.Column("request_id", sa.String(128), nullable=False),
        sa.Column("key_id", sa.String(64), nullable=True),
        sa.Column("user_id", sa.String(200), nullable=True),
        sa.Column("team_id", sa.String(64), nullable=True),
        sa.Column("model", sa.String(200), nullable=False, server_default=""),
        sa.Column("provider", sa.String(100), nullable=False, server_default=""),
        sa.Column("deployment", sa.String(300), nullable=False, server_default=""),
        sa.Column("endpoint", sa.String(100), nullable=False, server_default=""),
        sa.Column("prompt_tokens", sa.Integer, nullable=False, server_default="0"),
        sa.Column("completion_tokens", sa.Integer, nullable=False, server_default="0"),
        sa.Column("cached_tokens", sa.Integer, nullable=False, server_default="0"),
        sa.Column("reasoning_tokens", sa.Integer, nullable=False, server_default="0"),
        sa.Column("cost_usd", sa.Float, nullable=False, server_default="0"),
        sa.Column("latency_ms", sa.Float, nullable=False, server_default="0"),
        sa.Column("ttft_ms", sa.Float, nullable=False, server_default="0"),
        sa.Column("status", sa.Integer, nullable=False, server_default="0"),
        sa.Column("cache_hit", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("estimated", sa.Boolean, nullable=False, server_default=sa.false()),
    )
    op.create_index("ix_gw_usage_ts", "gw_usage", ["ts"])
    op.create_index("ix_gw_usage_key_ts", "gw_usage", ["key_id", "ts"])
    op.create_index("ix_gw_usage_user_ts", "gw_usage", ["user_id", "ts"])
    op.create_index("ix_gw_usage_team_ts", "gw_usage", ["team_id", "ts"])
    op.create_index("ix_gw_usage_model_ts", "gw_usage", ["model", "ts"])


def downgrade() -> None:
    for table in ("gw_usage", "gw_keys", "gw_users", "gw_teams"):
        op.drop_table(table)
