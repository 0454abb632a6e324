"""The ledger keeps each request's guardrail verdicts (JSON: guardrail, stage, action, entity types; never text).

Revision ID: guardrails
Revises: prices
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "guardrails"
down_revision = "prices"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("gw_usage", sa.Column("guardrails", sa.Text, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("gw_usage") as batch:  # SQLite drops columns by copying the table
        batch.drop_column("guardrails")
