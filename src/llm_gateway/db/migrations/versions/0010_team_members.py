"""Teams from several IdP groups: a user may belong to several teams (`gw_team_members`); `gw_users.team_id` stays
as the user's primary team (the default for its new keys), one of its memberships. Every user's `team_id` becomes
its first membership. Memberships the IdP's other mapped groups give are added at the user's next sign-in.

Revision ID: team_members
Revises: guardrails
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "team_members"
down_revision = "guardrails"
branch_labels = None
depends_on = None


def upgrade() -> None:
    members = op.create_table(
        "gw_team_members",
        sa.Column("user_id", sa.String(64), primary_key=True),
        sa.Column("team_id", sa.String(64), primary_key=True),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_gw_team_members_team", "gw_team_members", ["team_id", "user_id"])
    users = sa.table("gw_users", sa.column("id", sa.String), sa.column("team_id", sa.String),
                     sa.column("created_at", sa.BigInteger))
    op.execute(sa.insert(members).from_select(
        ["user_id", "team_id", "created_at"],
        sa.select(users.c.id, users.c.team_id, users.c.created_at).where(users.c.team_id.is_not(None))))


def downgrade() -> None:
    op.drop_table("gw_team_members")
