"""Usage reports from the ledger: totals and groups (key, user, team, model, provider, day) over a time range."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, Engine, Integer, String, and_, case, cast, func, select
from sqlalchemy.dialects.postgresql import JSONB

from llm_gateway.db.tables import usage
from llm_gateway.errors import BadRequest

DAY_MS = 86_400_000
GROUPS: dict[str, ColumnElement[Any]] = {
    "key": usage.c.key_id, "user": usage.c.user_id, "team": usage.c.team_id, "model": usage.c.model,
    "provider": usage.c.provider, "day": usage.c.ts // DAY_MS,
}
# token classes reported next to the totals (each is part of prompt_tokens or completion_tokens)
DETAILS = ("cached_tokens", "cache_write_tokens", "reasoning_tokens")
FILTERS = {"key_id": usage.c.key_id, "user_id": usage.c.user_id, "team_id": usage.c.team_id,
           "model": usage.c.model, "provider": usage.c.provider}


# the Go seed's users read these at the top level; they are also under `totals`
TOP_LEVEL = ("total_requests", "total_tokens", "total_cost", "cache_hits", "cache_misses")
METADATA_KEY = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def metadata_value(engine: Engine, key: str) -> ColumnElement[Any]:
    """The value of one key of the rows' `x-gateway.metadata`, as text (NULL where it is absent)."""
    if not METADATA_KEY.match(key):
        raise BadRequest("a metadata key is 1-64 letters, digits, '_' or '-'", param="group_by")
    column = usage.c.request_metadata
    if engine.dialect.name == "postgresql":
        return func.jsonb_extract_path_text(cast(column, JSONB), key)
    return cast(func.json_extract(column, f'$."{key}"'), String)


def _aggregates() -> list[ColumnElement[Any]]:
    hits = func.coalesce(func.sum(cast(usage.c.cache_hit, Integer)), 0)
    return [
        func.count().label("total_requests"),
        func.coalesce(func.sum(usage.c.prompt_tokens), 0).label("prompt_tokens"),
        func.coalesce(func.sum(usage.c.completion_tokens), 0).label("completion_tokens"),
        func.coalesce(func.sum(usage.c.cost_usd), 0.0).label("total_cost"),
        hits.label("cache_hits"),
        func.coalesce(func.sum(case((usage.c.status >= 400, 1), else_=0)), 0).label("errors"),
        *(func.coalesce(func.sum(usage.c[name]), 0).label(name) for name in DETAILS),
        # recorded at $0 because no price was known (a cache hit costs 0 for a reason)
        func.coalesce(func.sum(case((and_(usage.c.price_source == "", usage.c.cache_hit == False,  # noqa: E712
                                          usage.c.prompt_tokens + usage.c.completion_tokens > 0), 1),
                                    else_=0)), 0).label("unpriced_requests"),
    ]


def _shape(m: Any) -> dict[str, Any]:
    requests, prompt, completion = int(m["total_requests"]), int(m["prompt_tokens"]), int(m["completion_tokens"])
    hits = int(m["cache_hits"])
    return {"total_requests": requests, "total_tokens": prompt + completion, "prompt_tokens": prompt,
            "completion_tokens": completion, "total_cost": round(float(m["total_cost"]), 9),
            "cache_hits": hits, "cache_misses": requests - hits, "errors": int(m["errors"]),
            **{name: int(m[name]) for name in DETAILS}, "unpriced_requests": int(m["unpriced_requests"])}


def usage_report(engine: Engine, start_ms: int, end_ms: int, group_by: str | None = None,
                 filters: dict[str, str] | None = None, limit: int = 100, offset: int = 0,
                 metadata: tuple[str, str] | None = None) -> dict[str, Any]:
    """`{start, end, totals, groups?}`; groups are ordered by cost (by day for `day`) and paginated. `group_by`
    may also be `metadata.KEY`; `metadata` keeps the rows whose metadata has KEY equal to the value."""
    conditions = [usage.c.ts >= start_ms, usage.c.ts < end_ms,
                  *(FILTERS[name] == value for name, value in (filters or {}).items())]
    if metadata is not None:
        conditions.append(metadata_value(engine, metadata[0]) == metadata[1])
    where = and_(*conditions)
    out: dict[str, Any] = {"start": start_ms, "end": end_ms}
    with engine.connect() as conn:
        totals = _shape(conn.execute(select(*_aggregates()).where(where)).one()._mapping)
        out.update({name: totals[name] for name in TOP_LEVEL})
        out["totals"] = totals
        if group_by is not None:
            if group_by.startswith("metadata."):
                column = metadata_value(engine, group_by.removeprefix("metadata.")).label("group")
            else:
                column = GROUPS[group_by].label("group")
            order = column if group_by == "day" else func.sum(usage.c.cost_usd).desc()
            query = (select(column, *_aggregates()).where(where).group_by(column)
                     .order_by(order, column).limit(limit).offset(offset))
            groups = []
            for row in conn.execute(query):
                value = row._mapping["group"]
                if group_by == "day":
                    value = time.strftime("%Y-%m-%d", time.gmtime(int(value) * 86400))
                groups.append({group_by: value, **_shape(row._mapping)})
            out["group_by"] = group_by
            out["groups"] = groups
    return out


def spend_since(engine: Engine, group: str, start_ms: int, owner: str | None = None) -> dict[str, float]:
    """Cost per key, user or team (or of the one `owner`) since `start_ms` (budgets load their period's spend)."""
    column = GROUPS[group]
    query = (select(column, func.sum(usage.c.cost_usd))
             .where(usage.c.ts >= start_ms, column.is_not(None) if owner is None else column == owner)
             .group_by(column))
    with engine.connect() as conn:
        return {str(owner): float(total or 0.0) for owner, total in conn.execute(query)}


def timestamp_ms(value: str, name: str) -> int:
    """Epoch milliseconds, or an ISO 8601 date/time (UTC unless it says otherwise)."""
    if value.isascii() and value.isdigit():  # "³".isdigit() is True too, and int() refuses it
        return int(value)
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest(f"{name} must be epoch milliseconds or an ISO 8601 date", param=name) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp() * 1000)
