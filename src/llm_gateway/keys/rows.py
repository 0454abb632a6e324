"""Database rows <-> the records keys/model.py defines: JSON columns encoded once, keys unpacked by position."""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import Row

from llm_gateway.keys.model import KeyRecord, TeamRecord, UserRecord


def encode(values: dict[str, Any]) -> dict[str, Any]:
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
