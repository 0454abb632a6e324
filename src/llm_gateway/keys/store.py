"""Keys, users and teams in the database: blocking SQLAlchemy Core calls, run in a thread by async callers."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Engine, Row, Table, delete, func, insert, select, update

from llm_gateway.db.tables import keys, team_members, teams, ui_sessions, users
from llm_gateway.keys import members
from llm_gateway.keys.members import NotAMember, Plan, TeamsChanged
from llm_gateway.keys.model import (
    KEY_PREFIX,
    KeyRecord,
    TeamRecord,
    UserRecord,
    hash_secret,
    new_id,
    new_secret,
    now_ms,
)
from llm_gateway.keys.rows import encode, key_from_row, team_from_row, user_from_row

__all__ = ["NotAMember", "Store", "TeamsChanged", "UserHasKeys", "key_from_row"]

USER_TOKEN_PREFIX = "sk-gwu-"


class OwnerHasKeys(Exception):
    """An owner of keys (a user, a team) is deleted only with `cascade`."""

    def __init__(self, count: int) -> None:
        super().__init__(f"{count} key(s)")
        self.count = count


class TeamHasKeys(OwnerHasKeys):
    """Without `cascade` a team's keys would escape its budget and policies."""


class UserHasKeys(OwnerHasKeys):
    """Without `cascade` a user's keys would outlive it."""


def _delete_owner(conn: Connection, table: Table, owner: Any, owner_id: str, cascade: bool,
                  refusal: type[OwnerHasKeys]) -> list[KeyRecord] | None:
    """Delete the row `owner_id` of `table` and, with `cascade`, the keys whose `owner` column names it (returned);
    None: no such row. Keys without `cascade` raise `refusal`, which rolls the transaction back."""
    if not conn.execute(delete(table).where(table.c.id == owner_id)).rowcount:
        return None
    owned = [key_from_row(r) for r in conn.execute(select(keys).where(owner == owner_id))]
    if owned and not cascade:
        raise refusal(len(owned))
    conn.execute(delete(keys).where(owner == owner_id))
    return owned


def _insert_key(conn: Connection, fields: dict[str, Any]) -> tuple[str, KeyRecord]:
    secret = new_secret(KEY_PREFIX)
    ts = now_ms()
    values = {"id": new_id("key"), "key_hash": hash_secret(secret), "key_prefix": secret[:10],
              "created_at": ts, "updated_at": ts, "metadata": {}, "blocked": False, **fields}
    conn.execute(insert(keys).values(**encode(values)))
    row = conn.execute(select(keys).where(keys.c.id == values["id"])).one()
    return secret, key_from_row(row)


class Store:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # -- keys
    def create_key(self, fields: dict[str, Any]) -> tuple[str, KeyRecord]:
        """A new key; the secret is returned once and only its hash is kept."""
        with self.engine.begin() as conn:
            return _insert_key(conn, fields)

    def create_key_within_cap(self, user_id: str, cap: int, fields: dict[str, Any],
                              member: bool = False) -> tuple[str, KeyRecord] | None:
        """A new key of `user_id`, or None when the user already holds `cap` keys. With `member`, the key's
        `team_id` (when set) must be one of the user's teams (NotAMember otherwise).

        The count, the check and the insert are one transaction that first takes the user's write lock
        (keys/members.py), so concurrent creates and team changes, on any replica, take turns and each counts the
        keys committed before it.
        """
        with self.engine.connect() as conn:
            members.lock_user(conn, user_id)
            team = fields.get("team_id")
            if member and team is not None and not members.is_member(conn, user_id, team):
                conn.rollback()
                raise NotAMember(team)
            held = conn.execute(select(func.count()).select_from(keys).where(keys.c.user_id == user_id)).scalar_one()
            if int(held) >= cap:
                conn.rollback()
                return None
            created = _insert_key(conn, {**fields, "user_id": user_id})
            conn.commit()
        return created

    def get_key(self, key_id: str) -> KeyRecord | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(keys).where(keys.c.id == key_id)).first()
        return key_from_row(row) if row is not None else None

    def key_by_hash(self, key_hash: str) -> KeyRecord | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(keys).where(keys.c.key_hash == key_hash)).first()
        return key_from_row(row) if row is not None else None

    def list_keys(self, after: str | None, limit: int, *, user_id: str | None = None,
                  team_id: str | None = None) -> list[KeyRecord]:
        query = select(keys).order_by(keys.c.id).limit(limit)
        if after:
            query = query.where(keys.c.id > after)
        if user_id is not None:
            query = query.where(keys.c.user_id == user_id)
        if team_id is not None:
            query = query.where(keys.c.team_id == team_id)
        with self.engine.connect() as conn:
            return [key_from_row(r) for r in conn.execute(query)]

    def count_keys(self, user_id: str) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(keys)
                                    .where(keys.c.user_id == user_id)).scalar_one())

    def update_key(self, key_id: str, changes: dict[str, Any]) -> KeyRecord | None:
        with self.engine.begin() as conn:
            conn.execute(update(keys).where(keys.c.id == key_id)
                         .values(**encode(changes), updated_at=now_ms()))
            row = conn.execute(select(keys).where(keys.c.id == key_id)).first()
        return key_from_row(row) if row is not None else None

    def rotate_key(self, key_id: str) -> tuple[str, KeyRecord, str] | None:
        """A new secret for the same key record; returns it, the record and the old hash (to evict)."""
        old = self.get_key(key_id)
        if old is None:
            return None
        secret = new_secret(KEY_PREFIX)
        record = self.update_key(key_id, {"key_hash": hash_secret(secret), "key_prefix": secret[:10]})
        assert record is not None
        return secret, record, old.key_hash

    def delete_key(self, key_id: str) -> KeyRecord | None:
        old = self.get_key(key_id)
        if old is not None:
            with self.engine.begin() as conn:
                conn.execute(delete(keys).where(keys.c.id == key_id))
        return old

    def all_keys(self, limit: int) -> list[KeyRecord]:
        with self.engine.connect() as conn:
            return [key_from_row(r) for r in conn.execute(select(keys).order_by(keys.c.id).limit(limit)).all()]

    # -- users and teams
    def create_user(self, fields: dict[str, Any]) -> tuple[str, UserRecord]:
        """A new user and its self-service token (returned once, stored hashed); its `team_id` is its first team."""
        token = new_secret(USER_TOKEN_PREFIX)
        ts = now_ms()
        values = {"id": new_id("user"), "metadata": {}, "created_at": ts, "updated_at": ts,
                  "token_hash": hash_secret(token), **fields}
        with self.engine.begin() as conn:
            conn.execute(insert(users).values(**encode(values)))
            if values.get("team_id"):
                conn.execute(insert(team_members).values(user_id=values["id"], team_id=values["team_id"],
                                                         created_at=ts))
        user = self.get_user(values["id"])
        assert user is not None
        return token, user

    def rotate_user_token(self, user_id: str) -> str | None:
        """A new self-service token for the user (returned once, stored hashed); the old one stops at once, and so
        do the dashboard sessions it opened. None: no such user."""
        token = new_secret(USER_TOKEN_PREFIX)
        with self.engine.begin() as conn:
            changed = conn.execute(update(users).where(users.c.id == user_id).values(
                token_hash=hash_secret(token), updated_at=now_ms())).rowcount
            if not changed:
                return None
            conn.execute(delete(ui_sessions).where((ui_sessions.c.user_id == user_id) &
                                                   (ui_sessions.c.method == "user_token")))
        return token

    def user_by_token(self, token: str) -> UserRecord | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(users).where(users.c.token_hash == hash_secret(token))).first()
        return user_from_row(row) if row is not None else None

    def create_team(self, fields: dict[str, Any]) -> TeamRecord:
        ts = now_ms()
        values = {"id": new_id("team"), "metadata": {}, "created_at": ts, "updated_at": ts, **fields}
        with self.engine.begin() as conn:
            conn.execute(insert(teams).values(**encode(values)))
        team = self.get_team(values["id"])
        assert team is not None
        return team

    def get_user(self, user_id: str) -> UserRecord | None:
        row = self._get(users, user_id)
        return user_from_row(row) if row is not None else None

    def get_team(self, team_id: str) -> TeamRecord | None:
        row = self._get(teams, team_id)
        return team_from_row(row) if row is not None else None

    def existing_teams(self, team_ids: list[str]) -> set[str]:
        with self.engine.connect() as conn:
            return {t for (t,) in conn.execute(select(teams.c.id).where(teams.c.id.in_(team_ids)))}

    def list_users(self, after: str | None, limit: int, team_id: str | None = None) -> list[UserRecord]:
        """A page of users; with `team_id`, the team's members (whichever team is their primary one)."""
        query = self._page(users, after, limit)
        if team_id is not None:
            query = query.join(team_members, (team_members.c.user_id == users.c.id)
                               & (team_members.c.team_id == team_id))
        with self.engine.connect() as conn:
            return [user_from_row(r) for r in conn.execute(query)]

    def list_teams(self, after: str | None, limit: int) -> list[TeamRecord]:
        with self.engine.connect() as conn:
            return [team_from_row(r) for r in conn.execute(self._page(teams, after, limit))]

    def teams_of(self, user_id: str) -> list[str]:
        """The user's teams (by id; keys/members.py). Its primary team is `UserRecord.team_id`."""
        with self.engine.connect() as conn:
            return members.teams_of(conn, user_id)

    def teams_of_users(self, user_ids: list[str]) -> dict[str, list[str]]:
        with self.engine.connect() as conn:
            return members.teams_of_users(conn, user_ids)

    def change_teams(self, user_id: str, plan: Plan, blocked_by: str,
                     also_block: frozenset[str] = frozenset()) -> TeamsChanged | None:
        """Set a user's teams as `plan` says, block the keys it holds through teams it left (keys/members.py);
        None when there is no such user. A sign-in that changes nothing (the usual case) takes no write lock."""
        with self.engine.connect() as conn:
            planned = members.apply(conn, user_id, plan, blocked_by, also_block, write=False)
        if planned is None or planned.nothing:
            return planned
        with self.engine.connect() as conn:
            members.lock_user(conn, user_id)
            changed = members.apply(conn, user_id, plan, blocked_by, also_block)
            conn.commit()
        return changed

    def update_user(self, user_id: str, changes: dict[str, Any]) -> UserRecord | None:
        """`team_id` moves the user from its primary team to that one (its other teams stay): use change_teams to
        see the keys that blocks."""
        changes = dict(changes)
        if "team_id" in changes:
            team = changes.pop("team_id")
            user = self.get_user(user_id)
            if user is not None and user.team_id != team:
                self.change_teams(user_id, members.move_primary(team), "admin")
        self._update(users, user_id, changes)
        return self.get_user(user_id)

    def update_team(self, team_id: str, changes: dict[str, Any]) -> TeamRecord | None:
        self._update(teams, team_id, changes)
        return self.get_team(team_id)

    def delete_user(self, user_id: str, cascade: bool = False) -> list[KeyRecord] | None:
        """Delete a user and, with `cascade`, its keys (returned, to evict them from caches); None: no such user.
        Without `cascade` a user that holds keys stays (UserHasKeys). The ledger keeps the user's rows. Its
        dashboard sessions end with it (a new user of the same id does not inherit them)."""
        with self.engine.begin() as conn:
            owned = _delete_owner(conn, users, keys.c.user_id, user_id, cascade, UserHasKeys)
            if owned is None:
                return None
            conn.execute(delete(team_members).where(team_members.c.user_id == user_id))
            conn.execute(delete(ui_sessions).where(ui_sessions.c.user_id == user_id))
        return owned

    def delete_team(self, team_id: str, cascade: bool = False,
                    demoted: list[str] | None = None) -> list[KeyRecord] | None:
        """Delete a team, its memberships and, with `cascade`, its keys (returned, to evict them from caches);
        None: no such team. Without `cascade` a team that has keys stays (TeamHasKeys): they would go on without
        its budget, guardrails and policies. Its members whose primary team it was get their next team; its team
        admins among them become plain users (their ids are added to `demoted`)."""
        with self.engine.begin() as conn:
            owned = _delete_owner(conn, teams, keys.c.team_id, team_id, cascade, TeamHasKeys)
            if owned is None:
                return None
            conn.execute(delete(team_members).where(team_members.c.team_id == team_id))
            gone = members.primary_team_gone(conn, team_id)
        if demoted is not None:
            demoted.extend(gone)
        return owned

    def permitted_teams(self) -> list[TeamRecord]:
        """Teams that allow overrides or pass-through: what the authorization policy keeps in memory."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(teams).where(teams.c.allow_overrides.is_(True) |
                                                    teams.c.allow_passthrough.is_(True)))
            return [team_from_row(r) for r in rows]

    def guarded_teams(self) -> list[TeamRecord]:
        """Teams that name guardrails: what the guardrail policy keeps in memory."""
        with self.engine.connect() as conn:
            return [team_from_row(r) for r in conn.execute(select(teams).where(teams.c.guardrails.is_not(None)))]

    def budgeted(self) -> tuple[list[UserRecord], list[TeamRecord]]:
        """Users and teams that have a budget: the only ones the budget check needs in memory."""
        with self.engine.connect() as conn:
            u = [user_from_row(r) for r in conn.execute(select(users).where(users.c.budget_usd.is_not(None)))]
            t = [team_from_row(r) for r in conn.execute(select(teams).where(teams.c.budget_usd.is_not(None)))]
        return u, t

    # -- generic row helpers
    def _get(self, table: Table, row_id: str) -> Row[Any] | None:
        with self.engine.connect() as conn:
            return conn.execute(select(table).where(table.c.id == row_id)).first()

    @staticmethod
    def _page(table: Table, after: str | None, limit: int) -> Any:
        query = select(table).order_by(table.c.id).limit(limit)
        return query.where(table.c.id > after) if after else query

    def _update(self, table: Table, row_id: str, changes: dict[str, Any]) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(table).where(table.c.id == row_id).values(**encode(changes), updated_at=now_ms()))
