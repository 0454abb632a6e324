"""The ledger keeps each token class apart (cache writes by TTL, audio and image tokens) and where its price came
from.

Revision ID: prices
Revises: authz
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "prices"
down_revision = "authz"
branch_labels = None
depends_on = None

TOKEN_COLUMNS = ("cache_write_tokens", "cache_write_1h_tokens", "prompt_audio_tokens", "prompt_image_tokens",
                 "completion_audio_tokens", "completion_image_tokens")


def upgrade() -> None:
    # ADD COLUMN with a constant default: no table rewrite on PostgreSQL 11+ or SQLite, so old ledgers upgrade fast
    for name in TOKEN_COLUMNS:
        op.add_column("gw_usage", sa.Column(name, sa.Integer, nullable=False, server_default="0"))
    op.add_column("gw_usage", sa.Column("price_source", sa.String(200), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("gw_usage") as batch:  # SQLite drops columns by copying the table
        for name in (*TOKEN_COLUMNS, "price_source"):
            batch.drop_column(name)
