"""Keys, users and teams in the database: blocking SQLAlchemy Core calls, run in a thread by async callers."""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import Connection, Engine, Row, Table, delete, func, insert, select, update

from llm_gateway.db.tables import keys, teams, users
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

USER_TOKEN_PREFIX = "sk-gwu-"


class UserHasKeys(Exception):
    """A user with keys is deleted only with `cascade`: its keys would otherwise outlive it."""

    def __init__(self, count: int) -> None:
        super().__init__(f"the user holds {count} key(s)")
        self.count = count


def _encode(values: dict[str, Any]) -> dict[str, Any]:
    out = dict(values)
    if "metadata" in out:
        out["metadata"] = orjson.dumps(out["metadata"] or {}).decode()
    if "models" in out:
        out["models"] = None if out["models"] is None else orjson.dumps(sorted(out["models"])).decode()
    if "guardrails" in out:
        out["guardrails"] = None if out["guardrails"] is None else orjson.dumps(list(out["guardrails"])).decode()
    return out


def _guardrails(value: str | None) -> tuple[str, ...] | None:
    return tuple(orjson.loads(value)) if value else None


def key_from_row(row: Row[Any]) -> KeyRecord:
    # Unpacked by position (select(keys) yields the table's column order): the cache loads every key at start.
    (key_id, key_hash, key_prefix, alias, user_id, team_id, models, budget_usd, budget_period, rpm_limit,
     tpm_limit, expires_at, metadata, blocked, created_at, updated_at, allow_overrides,
     allow_passthrough, guardrails) = tuple(row)
    return KeyRecord(
        id=key_id, key_hash=key_hash, key_prefix=key_prefix, alias=alias, user_id=user_id, team_id=team_id,
        models=frozenset(orjson.loads(models)) if models is not None else None, budget_usd=budget_usd,
        budget_period=budget_period, rpm_limit=rpm_limit, tpm_limit=tpm_limit, expires_at=expires_at,
        metadata=orjson.loads(metadata) if metadata and metadata != "{}" else {}, blocked=bool(blocked),
        created_at=created_at, updated_at=updated_at,
        allow_overrides=None if allow_overrides is None else bool(allow_overrides),
        allow_passthrough=None if allow_passthrough is None else bool(allow_passthrough),
        guardrails=_guardrails(guardrails))


def user_from_row(row: Row[Any]) -> UserRecord:
    m = row._mapping
    return UserRecord(id=m["id"], email=m["email"], team_id=m["team_id"], budget_usd=m["budget_usd"],
                      budget_period=m["budget_period"], max_keys=m["max_keys"], role=m["role"],
                      metadata=orjson.loads(m["metadata"] or "{}"), created_at=m["created_at"],
                      updated_at=m["updated_at"])


def team_from_row(row: Row[Any]) -> TeamRecord:
    m = row._mapping
    return TeamRecord(id=m["id"], name=m["name"], budget_usd=m["budget_usd"], budget_period=m["budget_period"],
                      metadata=orjson.loads(m["metadata"] or "{}"), created_at=m["created_at"],
                      updated_at=m["updated_at"], allow_overrides=bool(m["allow_overrides"]),
                      allow_passthrough=bool(m["allow_passthrough"]), guardrails=_guardrails(m["guardrails"]))


def _insert_key(conn: Connection, fields: dict[str, Any]) -> tuple[str, KeyRecord]:
    secret = new_secret(KEY_PREFIX)
    ts = now_ms()
    values = {"id": new_id("key"), "key_hash": hash_secret(secret), "key_prefix": secret[:10],
              "created_at": ts, "updated_at": ts, "metadata": {}, "blocked": False, **fields}
    conn.execute(insert(keys).values(**_encode(values)))
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

    def create_key_within_cap(self, user_id: str, cap: int, fields: dict[str, Any]) -> tuple[str, KeyRecord] | None:
        """A new key of `user_id`, or None when the user already holds `cap` keys.

        The count and the insert are one transaction that first takes a write lock (the user's row on
        PostgreSQL, the database's on SQLite), so concurrent creates, on any replica, take turns and each
        counts the keys committed before it.
        """
        with self.engine.connect() as conn:
            if conn.dialect.name == "sqlite":
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            else:
                conn.execute(select(users.c.id).where(users.c.id == user_id).with_for_update())
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
                         .values(**_encode(changes), updated_at=now_ms()))
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
        """A new user and its self-service token (returned once, stored hashed)."""
        token = new_secret(USER_TOKEN_PREFIX)
        ts = now_ms()
        values = {"id": new_id("user"), "metadata": {}, "created_at": ts, "updated_at": ts,
                  "token_hash": hash_secret(token), **fields}
        with self.engine.begin() as conn:
            conn.execute(insert(users).values(**_encode(values)))
        user = self.get_user(values["id"])
        assert user is not None
        return token, user

    def user_by_token(self, token: str) -> UserRecord | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(users).where(users.c.token_hash == hash_secret(token))).first()
        return user_from_row(row) if row is not None else None

    def create_team(self, fields: dict[str, Any]) -> TeamRecord:
        ts = now_ms()
        values = {"id": new_id("team"), "metadata": {}, "created_at": ts, "updated_at": ts, **fields}
        with self.engine.begin() as conn:
            conn.execute(insert(teams).values(**_encode(values)))
        team = self.get_team(values["id"])
        assert team is not None
        return team

    def get_user(self, user_id: str) -> UserRecord | None:
        row = self._get(users, user_id)
        return user_from_row(row) if row is not None else None

    def get_team(self, team_id: str) -> TeamRecord | None:
        row = self._get(teams, team_id)
        return team_from_row(row) if row is not None else None

    def list_users(self, after: str | None, limit: int, team_id: str | None = None) -> list[UserRecord]:
        query = self._page(users, after, limit)
        if team_id is not None:
            query = query.where(users.c.team_id == team_id)
        with self.engine.connect() as conn:
            return [user_from_row(r) for r in conn.execute(query)]

    def list_teams(self, after: str | None, limit: int) -> list[TeamRecord]:
        with self.engine.connect() as conn:
            return [team_from_row(r) for r in conn.execute(self._page(teams, after, limit))]

    def update_user(self, user_id: str, changes: dict[str, Any]) -> UserRecord | None:
        self._update(users, user_id, changes)
        return self.get_user(user_id)

    def update_team(self, team_id: str, changes: dict[str, Any]) -> TeamRecord | None:
        self._update(teams, team_id, changes)
        return self.get_team(team_id)

    def delete_user(self, user_id: str, cascade: bool = False) -> list[KeyRecord] | None:
        """Delete a user and, with `cascade`, its keys (returned, to evict them from caches); None: no such user.
        Without `cascade` a user that holds keys stays (UserHasKeys). The ledger keeps the user's rows."""
        with self.engine.begin() as conn:
            if not conn.execute(delete(users).where(users.c.id == user_id)).rowcount:
                return None
            owned = [key_from_row(r) for r in conn.execute(select(keys).where(keys.c.user_id == user_id))]
            if owned and not cascade:
                raise UserHasKeys(len(owned))  # rolls the user's deletion back
            conn.execute(delete(keys).where(keys.c.user_id == user_id))
        return owned

    def delete_team(self, team_id: str) -> bool:
        return self._delete(teams, team_id)

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
            conn.execute(update(table).where(table.c.id == row_id).values(**_encode(changes), updated_at=now_ms()))

    def _delete(self, table: Table, row_id: str) -> bool:
        with self.engine.begin() as conn:
            return bool(conn.execute(delete(table).where(table.c.id == row_id)).rowcount)
