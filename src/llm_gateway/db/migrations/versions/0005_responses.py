"""Stored responses of /v1/responses, for `previous_response_id`, GET, DELETE and input_items.

Revision ID: responses
Revises: prices
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "responses"
down_revision = "prices"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "gw_responses",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("owner", sa.String(200), nullable=False, server_default=""),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("previous_response_id", sa.String(64), nullable=True),
        sa.Column("model", sa.String(200), nullable=False, server_default=""),
        sa.Column("input", sa.Text, nullable=False, server_default="[]"),
        sa.Column("response", sa.Text, nullable=False, server_default="{}"),
    )
    op.create_index("ix_gw_responses_created", "gw_responses", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_gw_responses_created", "gw_responses")
    op.drop_table("gw_responses")
