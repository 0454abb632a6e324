"""The dashboard: usage rollups kept by the ledger writer (filled from the ledger here), the request log's detail
columns and its status index, and the team-admin role of users.

Revision ID: dashboard
Revises: metadata
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from llm_gateway.usage.rollup import fold

revision = "dashboard"
down_revision = "metadata"
branch_labels = None
depends_on = None

SUMS = ("requests", "prompt_tokens", "completion_tokens", "cached_tokens", "reasoning_tokens", "errors",
        "cache_hits")


def upgrade() -> None:
    op.create_table(
        "gw_usage_rollup",
        sa.Column("period", sa.String(5), primary_key=True),
        sa.Column("dim", sa.String(8), primary_key=True),
        sa.Column("value", sa.String(300), primary_key=True),
        sa.Column("bucket", sa.BigInteger, primary_key=True),
        *(sa.Column(name, sa.BigInteger, nullable=False, server_default="0") for name in SUMS),
        sa.Column("cost_usd", sa.Float, nullable=False, server_default="0"),
        sa.Column("latency_ms", sa.Float, nullable=False, server_default="0"),
    )
    month = sa.text("period = 'month'")  # the hour and day upserts do not maintain it
    op.create_index("ix_gw_usage_rollup_cost", "gw_usage_rollup", ["dim", "bucket", "cost_usd"],
                    postgresql_where=month, sqlite_where=month)
    op.add_column("gw_usage", sa.Column("trace_id", sa.String(32), nullable=False, server_default=""))
    op.add_column("gw_usage", sa.Column("error", sa.String(300), nullable=False, server_default=""))
    op.add_column("gw_usage", sa.Column("attempts", sa.Integer, nullable=False, server_default="0"))
    op.add_column("gw_usage", sa.Column("attempt_log", sa.String(1000), nullable=False, server_default=""))
    op.create_index("ix_gw_usage_status_ts", "gw_usage", ["status", "ts"])
    op.add_column("gw_users", sa.Column("role", sa.String(16), nullable=False, server_default="user"))
    fold(op.get_bind(), "gw_usage")  # what the ledger holds already


def downgrade() -> None:
    with op.batch_alter_table("gw_users") as batch:
        batch.drop_column("role")
    op.drop_index("ix_gw_usage_status_ts", "gw_usage")
    with op.batch_alter_table("gw_usage") as batch:
        for name in ("attempt_log", "attempts", "error", "trace_id"):
            batch.drop_column(name)
    op.drop_table("gw_usage_rollup")
