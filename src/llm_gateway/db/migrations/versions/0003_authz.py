"""Authorization: keys' and teams' allow_overrides / allow_passthrough; the ledger's upstream model and end user.

Revision ID: authz
Revises: ledger
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "authz"
down_revision = "ledger"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Keys: null means "as the key's team allows"; teams allow neither unless told.
    op.add_column("gw_keys", sa.Column("allow_overrides", sa.Boolean, nullable=True))
    op.add_column("gw_keys", sa.Column("allow_passthrough", sa.Boolean, nullable=True))
    op.add_column("gw_teams", sa.Column("allow_overrides", sa.Boolean, nullable=False, server_default=sa.false()))
    op.add_column("gw_teams", sa.Column("allow_passthrough", sa.Boolean, nullable=False,
                                        server_default=sa.false()))
    op.add_column("gw_usage", sa.Column("upstream_model", sa.String(300), nullable=False, server_default=""))
    op.add_column("gw_usage", sa.Column("end_user", sa.String(200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("gw_usage") as batch:
        batch.drop_column("end_user")
        batch.drop_column("upstream_model")
    with op.batch_alter_table("gw_teams") as batch:
        batch.drop_column("allow_passthrough")
        batch.drop_column("allow_overrides")
    with op.batch_alter_table("gw_keys") as batch:
        batch.drop_column("allow_passthrough")
        batch.drop_column("allow_overrides")
