"""The ledger keeps each request's `x-gateway.metadata` (JSON text), for reports grouped by one of its keys.

Revision ID: metadata
Revises: responses
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "metadata"
down_revision = "responses"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("gw_usage", sa.Column("request_metadata", sa.Text, nullable=True))  # no rewrite: NULL default


def downgrade() -> None:
    with op.batch_alter_table("gw_usage") as batch:
        batch.drop_column("request_metadata")
