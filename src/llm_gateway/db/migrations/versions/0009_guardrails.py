"""Guardrails: keys and teams name theirs (JSON lists); the ledger keeps each request's verdicts (JSON: guardrail,
stage, action, entity types; never text).

Revision ID: guardrails
Revises: sso
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "guardrails"
down_revision = "sso"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ("gw_usage", "gw_keys", "gw_teams"):
        op.add_column(table, sa.Column("guardrails", sa.Text, nullable=True))


def downgrade() -> None:
    for table in ("gw_usage", "gw_keys", "gw_teams"):
        with op.batch_alter_table(table) as batch:  # SQLite drops columns by copying the table
            batch.drop_column("guardrails")
