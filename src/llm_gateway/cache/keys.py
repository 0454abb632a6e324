"""Cache keys: the normalised request hashed, and the per-request decision whether to read and write the cache."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from llm_gateway.pipeline.context import RequestContext
from llm_gateway.providers.base import CHAT, COMPLETIONS, EMBEDDINGS
from llm_gateway.routing.catalog import Route
from llm_gateway.settings import CacheConfig

# Fields that never change the answer: who asks, how it is delivered, and the gateway's own extension.
IGNORED = frozenset({"model", "user", "stream", "stream_options", "x-gateway", "metadata", "store",
                     "service_tier", "safety_identifier", "prompt_cache_key"})
# Fields of the conversation itself; a semantic lookup compares them by meaning, everything else exactly.
CONVERSATION = frozenset({"messages", "prompt", "input"})
CACHEABLE = (CHAT, COMPLETIONS, EMBEDDINGS)


def resolved_model(route: Route | None, model: str) -> str:
    """The model after alias resolution: the one deployment's `provider/model`, else the route's name.

    A route that load-balances across several deployments keeps its own name: its answers are interchangeable
    by the operator's choice. The part of such a route that a key may reach names its deployments too: an answer
    that a deployment the key may not use gave is never served to it.
    """
    if route is None:
        return model
    deps = route.deployments
    if len(deps) == 1:
        return f"{deps[0].provider.name}/{deps[0].model}"
    if route.partial:
        return f"{route.name}[{','.join(sorted(f'{d.provider.name}/{d.model}' for d in deps))}]"
    return route.name


def digest(parts: Any) -> str:
    return hashlib.blake2b(orjson.dumps(parts, option=orjson.OPT_SORT_KEYS), digest_size=16).hexdigest()


def exact_key(endpoint: str, model: str, scope: str, body: dict[str, Any]) -> str:
    """32 hex digits over every field that can change the answer (sorted, so key order does not matter)."""
    params = {k: v for k, v in body.items() if k not in IGNORED}
    return digest([endpoint, model, scope, params])


def partition_key(endpoint: str, model: str, scope: str, body: dict[str, Any]) -> str:
    """The semantic cache's partition: all but the conversation must match exactly."""
    params = {k: v for k, v in body.items() if k not in IGNORED and k not in CONVERSATION}
    return digest([endpoint, model, scope, params])


def scope_of(kind: str, ctx: RequestContext) -> str:
    """Who may share an answer: everyone, one team, or one key."""
    if kind == "global":
        return ""
    key = ctx.key
    key_id = str(getattr(key, "id", "") or "") if key is not None else ""
    if kind == "team":
        team = ctx.team or (str(getattr(key, "team_id", "") or "") if key is not None else "")
        return f"team:{team}" if team else f"key:{key_id}"
    return f"key:{key_id}"


def _no_cache_flag(value: Any) -> bool:
    return value is False or (isinstance(value, str) and value.strip().lower() in ("false", "0", "no", "off"))


def request_options(ctx: RequestContext) -> dict[str, Any]:
    """The `x-gateway` cache options of a request, wherever the routing part left them."""
    out: dict[str, Any] = {}
    headers = ctx.request.headers
    if "x-gateway-cache" in headers:
        out["cache"] = headers["x-gateway-cache"]
    if "x-gateway-cache-ttl" in headers:
        out["cache_ttl"] = headers["x-gateway-cache-ttl"]
    opts = ctx.options  # routing.options.RequestOptions: the body field, already stripped before forwarding
    if opts is not None:
        if getattr(opts, "cache", None) is not None:
            out["cache"] = opts.cache
        extra = getattr(opts, "extra", None)
        if isinstance(extra, dict) and "cache_ttl" in extra:
            out["cache_ttl"] = extra["cache_ttl"]
    field = ctx.body.get("x-gateway")
    if isinstance(field, dict):
        for name in ("cache", "cache_ttl"):
            if name in field:
                out[name] = field[name]
    return out


class Decision:
    """What the cache may do with one request."""

    __slots__ = ("lookup", "reason", "store", "ttl")

    def __init__(self, lookup: bool, store: bool, ttl: float, reason: str = "") -> None:
        self.lookup = lookup
        self.store = store
        self.ttl = ttl
        self.reason = reason


def decide(ctx: RequestContext, config: CacheConfig, ttl: float) -> Decision:
    """Apply the controls: endpoint, stream shape, temperature bound, body/header/key opt-outs, TTL override."""
    if ctx.endpoint not in CACHEABLE or (ctx.stream and ctx.endpoint != CHAT):
        return Decision(False, False, ttl, "endpoint")
    body = ctx.body
    temperature = body.get("temperature")
    bound = config.max_temperature
    if bound is not None and isinstance(temperature, (int, float)) and temperature > bound:
        return Decision(False, False, ttl, "temperature")
    if body.get("n") not in (None, 1):
        return Decision(False, False, ttl, "n")
    key = ctx.key
    meta = getattr(key, "metadata", None) if key is not None else None
    if isinstance(meta, dict) and _no_cache_flag(meta.get("cache", True)):
        return Decision(False, False, ttl, "key")
    opts = request_options(ctx)
    cache_opt = opts.get("cache")
    if cache_opt is not None and _no_cache_flag(cache_opt):
        return Decision(False, False, ttl, "request")
    if isinstance(cache_opt, dict) and _no_cache_flag(cache_opt.get("enabled", True)):
        return Decision(False, False, ttl, "request")
    raw_ttl = opts.get("cache_ttl")
    if isinstance(cache_opt, dict) and "ttl" in cache_opt:
        raw_ttl = cache_opt["ttl"]
    if raw_ttl is not None:
        try:
            asked = float(raw_ttl)
        except (TypeError, ValueError):
            asked = -1.0
        if not asked > 0:  # zero, negative, not a number (NaN): not cached
            return Decision(False, False, ttl, "request")
        ttl = min(asked, config.max_ttl_s)
    control = ctx.request.headers.get("cache-control", "").lower()
    if control:
        if "no-store" in control:
            return Decision(False, False, ttl, "no-store")
        if "no-cache" in control:
            return Decision(False, True, ttl, "no-cache")  # fetch fresh, but keep the fresh answer
    return Decision(True, True, ttl)
