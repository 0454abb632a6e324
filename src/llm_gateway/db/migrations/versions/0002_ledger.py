"""The ledger's batch markers: a batch whose commit went unanswered is not written twice when it is retried.

Revision ID: ledger
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "ledger"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "gw_ledger_batches",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("ts", sa.BigInteger, nullable=False),
        sa.Column("row_count", sa.Integer, nullable=False),
    )
    op.create_index("ix_gw_ledger_batches_ts", "gw_ledger_batches", ["ts"])


def downgrade() -> None:
    op.drop_table("gw_ledger_batches")
