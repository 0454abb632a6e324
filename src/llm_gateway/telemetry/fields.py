"""What observers (metrics, access log, traces) read from a RequestContext, defensively and never a secret.

Cost, keys, teams and cache results are filled in by stages other parts own; their exact shapes may vary
(a number or a cost record, a key record or a dict), so each reader here accepts the reasonable shapes and
falls back to "unknown" rather than failing a settle.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from llm_gateway.pipeline.context import RequestContext

CACHE_HIT = "hit"
CACHE_MISS = "miss"
_ALIAS_FIELDS = ("alias", "key_alias", "name")


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float, Decimal)):
        return float(value)
    for attr in ("total", "usd", "total_usd", "cost"):
        inner = getattr(value, attr, None)
        if isinstance(inner, (int, float, Decimal)) and not isinstance(inner, bool):
            return float(inner)
    return None


def cost_of(ctx: RequestContext) -> float | None:
    """The request's cost in USD, when the cost stage set one (`ctx.cost` or `ctx.extensions["cost"]`)."""
    value = getattr(ctx, "cost", None)
    if not value:
        value = ctx.extensions.get("cost", value)
    return _number(value) if value is not None else None


def key_alias_of(ctx: RequestContext) -> str:
    """The virtual key's alias or name; a bare string key is never returned (it may be the secret itself)."""
    key = ctx.key
    if key is None or isinstance(key, str):
        return ""
    for attr in _ALIAS_FIELDS:
        value = key.get(attr) if isinstance(key, dict) else getattr(key, attr, None)
        if isinstance(value, str) and value:
            return value
    ident = key.get("id") if isinstance(key, dict) else getattr(key, "id", None)
    return f"id:{ident}" if isinstance(ident, (str, int)) and not isinstance(ident, bool) else ""


def team_of(ctx: RequestContext) -> str:
    if ctx.team:
        return ctx.team if isinstance(ctx.team, str) else str(ctx.team)
    key = ctx.key
    if key is None or isinstance(key, str):
        return ""
    for attr in ("team", "team_alias", "team_id"):
        value = key.get(attr) if isinstance(key, dict) else getattr(key, attr, None)
        if isinstance(value, (str, int)) and not isinstance(value, bool) and value != "":
            return str(value)
    return ""


def cache_result(ctx: RequestContext) -> str:
    """"hit", "miss" or "" (no cache consulted), from whatever spelling the cache stage used."""
    status = ctx.cache_status
    if not status or not isinstance(status, str):
        return ""
    low = status.lower()
    if "hit" in low:
        return CACHE_HIT
    if "miss" in low:
        return CACHE_MISS
    return ""


def limit_scope_of(ctx: RequestContext) -> str:
    """The scope (key, user, team, model, ...) of the limit that rejected the request, if one did."""
    scope = ctx.extensions.get("limit_scope")
    return scope if isinstance(scope, str) else ""
