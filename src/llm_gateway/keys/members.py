"""Team memberships: the teams a user is in (`gw_team_members`) and its primary team (`gw_users.team_id`), kept one
of them, and the keys a user holds through a team it leaves, blocked in the same transaction.

The rule every writer keeps: `team_id` is one of the user's teams, or null only when the user is in no team. It is
the default team of the user's new keys and the team a team admin manages (keys/roles.py). The team-admin role
belongs to the team it was given for: when the primary team changes, the role goes back to `user` in the same
write (an admin may give it again, for the new team), so that leaving a team never makes its admin the admin of
another. Changes take the same
per-user write lock as creating a key within the user's cap (store.py), so a key is never made in a team that a
concurrent change is taking away.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, delete, insert, select, update

from llm_gateway.db.tables import keys, team_members, users
from llm_gateway.keys.model import KeyRecord, now_ms
from llm_gateway.keys.roles import TEAM_ADMIN, USER
from llm_gateway.keys.rows import encode, key_from_row

# (current teams, current primary) -> (the teams wanted, in order of preference for the primary; a primary asked for)
Plan = Callable[[list[str], str | None], tuple[Sequence[str], str | None]]


class NotAMember(Exception):
    """A key asked for in a team the user is not in."""

    def __init__(self, team_id: str) -> None:
        super().__init__(f"you are not a member of team {team_id!r}")
        self.team_id = team_id


@dataclass(frozen=True, slots=True)
class TeamsChanged:
    teams: tuple[str, ...]  # the user's teams afterwards, primary first
    primary: str | None
    joined: tuple[str, ...] = ()
    left: tuple[str, ...] = ()
    blocked: tuple[KeyRecord, ...] = field(default=())  # put them in the key cache
    moved: bool = False  # the primary team changed
    demoted: bool = False  # a team admin whose primary team changed: a plain user now

    @property
    def nothing(self) -> bool:
        return not (self.joined or self.left or self.blocked or self.moved)

    def demotion(self) -> dict[str, str]:
        """The audit row's detail when `demoted`."""
        return demotion(f"primary team changed to {self.primary}")


def demotion(reason: str) -> dict[str, str]:
    return {"role": USER, "previous": TEAM_ADMIN, "reason": reason}


def primary_first(primary: str | None, teams: list[str]) -> list[str]:
    return ([primary] if primary in teams else []) + [t for t in teams if t != primary]


def lock_user(conn: Connection, user_id: str) -> None:
    """The per-user write lock: the user's row on PostgreSQL, the database's on SQLite (opens the transaction)."""
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    else:
        conn.execute(select(users.c.id).where(users.c.id == user_id).with_for_update())


def teams_of(conn: Connection, user_id: str) -> list[str]:
    query = select(team_members.c.team_id).where(team_members.c.user_id == user_id).order_by(team_members.c.team_id)
    return [t for (t,) in conn.execute(query)]


def teams_of_users(conn: Connection, user_ids: Iterable[str]) -> dict[str, list[str]]:
    ids = list(user_ids)
    out: dict[str, list[str]] = {u: [] for u in ids}
    if ids:
        query = (select(team_members.c.user_id, team_members.c.team_id).where(team_members.c.user_id.in_(ids))
                 .order_by(team_members.c.user_id, team_members.c.team_id))
        for user_id, team_id in conn.execute(query):
            out[user_id].append(team_id)
    return out


def is_member(conn: Connection, user_id: str, team_id: str) -> bool:
    return conn.execute(select(team_members.c.user_id).where(
        team_members.c.user_id == user_id, team_members.c.team_id == team_id)).first() is not None


def apply(conn: Connection, user_id: str, plan: Plan, blocked_by: str, also_block: frozenset[str] = frozenset(),
          write: bool = True) -> TeamsChanged | None:
    """Set the user's teams to what `plan` wants, within the caller's transaction (after `lock_user`). Keys the user
    holds through a team it leaves, or through a team of `also_block` it is not in, are blocked. None: no user.
    With `write` False: what it would change, changing nothing (no lock needed)."""
    rows = conn.execute(select(users.c.team_id, users.c.role, team_members.c.team_id).select_from(users.outerjoin(
        team_members, team_members.c.user_id == users.c.id)).where(users.c.id == user_id)
        .order_by(team_members.c.team_id)).all()
    if not rows:
        return None
    primary, role, current = rows[0][0], rows[0][1], [team for _, _, team in rows if team is not None]
    wanted, asked = plan(current, primary)
    target = list(dict.fromkeys(wanted))
    joined = [t for t in target if t not in current]
    left = sorted(set(current) - set(target))
    if asked in target:
        new_primary: str | None = asked
    else:
        new_primary = primary if primary in target else (target[0] if target else None)
    blocked = _held_through(conn, user_id, (set(left) | set(also_block)) - set(target))
    ordered = ([new_primary] if new_primary else []) + [t for t in target if t != new_primary]
    moved = new_primary != primary
    changed = TeamsChanged(tuple(ordered), new_primary, tuple(joined), tuple(left), tuple(blocked), moved,
                           moved and role == TEAM_ADMIN)
    if not write:
        return changed
    if left:
        conn.execute(delete(team_members).where(team_members.c.user_id == user_id,
                                                team_members.c.team_id.in_(left)))
    if joined:
        ts = now_ms()
        conn.execute(insert(team_members), [{"user_id": user_id, "team_id": t, "created_at": ts} for t in joined])
    if moved:
        conn.execute(update(users).where(users.c.id == user_id).values(
            team_id=new_primary, role=USER if changed.demoted else role, updated_at=now_ms()))
    _block(conn, blocked, blocked_by)
    return changed


def primary_team_gone(conn: Connection, team_id: str) -> list[str]:
    """After team `team_id` is deleted: its members whose primary team it was move to their next team, and those
    of them who were its team admins become plain users; returns the ids of those demoted."""
    moved = {u: r for u, r in conn.execute(select(users.c.id, users.c.role).where(users.c.team_id == team_id))}
    for user_id, rest in teams_of_users(conn, moved).items():
        conn.execute(update(users).where(users.c.id == user_id).values(
            team_id=rest[0] if rest else None, role=USER if moved[user_id] == TEAM_ADMIN else moved[user_id],
            updated_at=now_ms()))
    return sorted(u for u, r in moved.items() if r == TEAM_ADMIN)


def _held_through(conn: Connection, user_id: str, teams: set[str]) -> list[KeyRecord]:
    """The user's keys of `teams` that still work."""
    if not teams:
        return []
    return [key_from_row(r) for r in conn.execute(select(keys).where(
        keys.c.user_id == user_id, keys.c.team_id.in_(sorted(teams)), keys.c.blocked.is_(False)))]


def _block(conn: Connection, found: Iterable[KeyRecord], reason: str) -> None:
    ts = now_ms()
    for key in found:
        metadata: dict[str, Any] = {**key.metadata, "blocked_by": f"{reason}: left team {key.team_id}"}
        conn.execute(update(keys).where(keys.c.id == key.id).values(
            **encode({"blocked": True, "metadata": metadata}), updated_at=ts))
        key.blocked, key.metadata, key.updated_at = True, metadata, ts


def move_primary(team_id: str | None) -> Plan:
    """The admin API's `team_id` on a user (as before teams were many): leave the primary team for `team_id`."""
    def plan(current: list[str], primary: str | None) -> tuple[list[str], str | None]:
        rest = [t for t in current if t != primary]
        return ([team_id] if team_id else []) + rest, team_id
    return plan


def exactly(teams: Sequence[str], primary: str | None = None) -> Plan:
    """Exactly `teams` (the admin API's PUT); the primary stays when it is still one of them, unless asked."""
    def plan(current: list[str], old: str | None) -> tuple[Sequence[str], str | None]:
        return teams, primary
    return plan
