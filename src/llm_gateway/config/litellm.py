"""A LiteLLM proxy config (`model_list`, `litellm_settings`, `router_settings`, `general_settings`) as ours: what
`llm-gateway config import litellm FILE` writes, and what `--config` reads when given such a file directly.
What has no equivalent is listed in `skipped`, with the reason."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from llm_gateway.providers.foreign import LITELLM_TYPES, litellm_base_url, litellm_model, litellm_options

LITELLM_KEYS = ("model_list", "litellm_settings", "general_settings", "router_settings")
_ENV = re.compile(r"^os\.environ/([A-Za-z_][A-Za-z0-9_]*)$")
_STRATEGIES = {"simple-shuffle": "weighted", "least-busy": "least-in-flight", "latency-based-routing":
               "lowest-latency", "cost-based-routing": "cost", "usage-based-routing": "least-in-flight",
               "usage-based-routing-v2": "least-in-flight"}
# litellm_params that name where a deployment is, not what is sent: they make the provider
_PLACE = ("api_base", "api_key", "api_version", "aws_region_name", "aws_access_key_id", "aws_secret_access_key",
          "aws_session_token", "vertex_project", "vertex_location", "organization")


@dataclass
class Conversion:
    config: dict[str, Any]
    skipped: list[str] = field(default_factory=list)


def is_litellm(raw: dict[str, Any]) -> bool:
    return any(k in raw for k in LITELLM_KEYS)


def env_refs(node: Any) -> Any:
    """`os.environ/VAR` -> `${VAR}` throughout."""
    if isinstance(node, dict):
        return {k: env_refs(v) for k, v in node.items()}
    if isinstance(node, list):
        return [env_refs(v) for v in node]
    if isinstance(node, str):
        match = _ENV.match(node.strip())
        if match:
            return "${" + match.group(1) + "}"
    return node


class _Builder:
    def __init__(self) -> None:
        self.providers: dict[tuple[Any, ...], dict[str, Any]] = {}
        self.models: dict[str, dict[str, Any]] = {}
        self.rates: dict[str, dict[str, int]] = {}  # model_name -> requests / tokens a minute, summed
        self.skipped: list[str] = []

    def provider(self, kind: str, params: dict[str, Any], prefix: str) -> str:
        place = tuple((k, str(params.get(k))) for k in _PLACE)
        found = self.providers.get((kind, place))
        if found is not None:
            return str(found["name"])
        taken = {p["name"] for p in self.providers.values()}
        base = prefix.replace("_", "-")
        name = base if base not in taken else next(f"{base}-{i}" for i in range(2, 1000) if f"{base}-{i}" not in taken)
        entry: dict[str, Any] = {"name": name, "type": kind}
        if params.get("api_base"):
            entry["base_url"] = litellm_base_url(prefix, str(params["api_base"]))
        if params.get("api_key"):
            entry["api_key"] = params["api_key"]
        options = litellm_options(kind, params)
        if prefix.startswith("vertex_ai") and (params.get("vertex_project") or params.get("vertex_location")):
            self.skipped.append(f"{name}: vertex_project / vertex_location: Vertex AI is reached through the "
                                "Gemini API here; set api_key to a Gemini API key")
        if options:
            entry["options"] = options
        if kind == "openai" and params.get("api_base"):
            entry["type"] = "openai-compatible"
        self.providers[(kind, place)] = entry
        return name

    def deployment(self, i: int, item: Any) -> None:
        where = f"model_list[{i}]"
        if not isinstance(item, dict) or not isinstance(item.get("model_name"), str):
            self.skipped.append(f"{where}: no model_name")
            return
        alias = item["model_name"]
        params = item.get("litellm_params") or {}
        model = params.get("model") if isinstance(params, dict) else None
        if not isinstance(model, str):
            self.skipped.append(f"{where} ({alias}): no litellm_params.model")
            return
        prefix, sep, upstream = model.partition("/")
        if not sep:
            prefix, upstream = ("openai", model)
        kind = LITELLM_TYPES.get(prefix)
        if kind is None and params.get("api_base"):
            kind = "openai-compatible"
        if kind is None:
            self.skipped.append(f"{where} ({alias}): provider {prefix!r} has no equivalent here")
            return
        name = self.provider(kind, params, prefix)
        dep: dict[str, Any] = {"provider": name, "model": upstream}
        if isinstance(params.get("weight"), int | float):
            dep["weight"] = params["weight"]
        info = item.get("model_info") or {}
        if isinstance(info, dict) and info.get("base_model"):
            dep["price_as"] = litellm_model(str(info["base_model"]))
        if params.get("timeout") is not None or params.get("stream_timeout") is not None:
            dep["timeouts"] = {"total": params.get("timeout") or 600}
            if params.get("stream_timeout") is not None:
                dep["timeouts"]["first_token"] = params["stream_timeout"]
        group = self.models.setdefault(alias, {"deployments": []})
        group["deployments"].append(dep)
        for theirs, unit in (("rpm", "requests"), ("tpm", "tokens")):  # LiteLLM refuses past the sum of them
            if isinstance(params.get(theirs), int):
                rates = self.rates.setdefault(alias, {})
                rates[unit] = rates.get(unit, 0) + params[theirs]
        left = sorted(k for k in params if k not in (*_PLACE, "model", "weight", "timeout", "stream_timeout", "rpm",
                                                     "tpm"))
        if left:
            self.skipped.append(f"{where} ({alias}): litellm_params {', '.join(left)}: not carried over (set "
                                "per request, or under providers[].options)")


def _fallbacks(spec: Any, key: str, models: dict[str, dict[str, Any]], skipped: list[str]) -> None:
    for entry in spec if isinstance(spec, list) else []:
        if not isinstance(entry, dict):
            continue
        for alias, targets in entry.items():
            group = models.get(alias)
            known = [t for t in (targets or []) if t in models]
            unknown = [t for t in (targets or []) if t not in models]
            if group is None:
                skipped.append(f"{key}: {alias!r} is not a model_name in model_list")
                continue
            group.setdefault(key, []).extend(known)
            if unknown:
                skipped.append(f"{key} of {alias!r}: {', '.join(map(str, unknown))} not in model_list")


def _cache(settings: dict[str, Any], out: dict[str, Any], skipped: list[str]) -> None:
    if not settings.get("cache"):
        return
    params = settings.get("cache_params") or {}
    kind = params.get("type", "local")
    cache: dict[str, Any] = {"enabled": True}
    if params.get("ttl") is not None:
        cache["ttl_s"] = params["ttl"]
    if params.get("namespace"):
        cache["redis_prefix"] = f"{params['namespace']}:"
    if kind in ("redis", "redis-semantic"):
        if params.get("url"):
            out["redis"] = {"url": params["url"]}
        else:
            auth = f":{params['password']}@" if params.get("password") else ""
            host = params.get("host", "127.0.0.1")
            out["redis"] = {"url": f"redis://{auth}{host}:{params.get('port', 6379)}/0"}
    if kind == "redis":
        cache["backend"] = "redis"
    elif kind == "redis-semantic":
        cache["semantic"] = {"enabled": True, "threshold": params.get("similarity_threshold", 0.8)}
        skipped.append("cache_params.type redis-semantic: the semantic index is kept in memory (or pgvector), "
                       "exact answers in Redis; embeddings by the bundled local model")
        cache["backend"] = "redis"
    elif kind != "local":
        skipped.append(f"cache_params.type {kind!r}: no such cache here; memory is used")
    for key in sorted(set(params) - {"type", "ttl", "namespace", "host", "port", "password", "url",
                                     "similarity_threshold",
                                     "redis_semantic_cache_embedding_model"}):
        skipped.append(f"cache_params.{key}: not carried over")
    out["cache"] = cache


def _router(router: dict[str, Any], lite: dict[str, Any], b: _Builder, out: dict[str, Any]) -> None:
    """Retries, cooldowns, the routing strategy, fallbacks and timeouts."""
    routing: dict[str, Any] = {}
    retries = router.get("num_retries", lite.get("num_retries"))
    if retries is not None:
        routing["retries"] = {"max_retries": min(int(retries), 10)}
    if router.get("retry_after") is not None:
        routing.setdefault("retries", {})["backoff_s"] = router["retry_after"]
    cooldown = {k: router[t] for k, t in (("failures", "allowed_fails"), ("cooldown_s", "cooldown_time"))
                if router.get(t) is not None}
    if cooldown:
        routing["cooldown"] = cooldown
    if routing:
        out["routing"] = routing
    strategy = router.get("routing_strategy")
    if strategy is not None:
        ours = _STRATEGIES.get(strategy)
        if ours is None:
            b.skipped.append(f"router_settings.routing_strategy {strategy!r}: unknown; weighted is used")
        else:
            for group in b.models.values():
                group["strategy"] = ours
    for key in ("fallbacks", "context_window_fallbacks"):
        _fallbacks(router.get(key) or lite.get(key), key, b.models, b.skipped)
    timeout = router.get("timeout", lite.get("request_timeout"))
    if timeout is not None:
        for provider in b.providers.values():
            provider["timeouts"] = {"total": timeout}


def convert(raw: dict[str, Any]) -> Conversion:
    raw = env_refs(raw)
    b = _Builder()
    for i, item in enumerate(raw.get("model_list") or []):
        b.deployment(i, item)
    out: dict[str, Any] = {}
    lite = raw.get("litellm_settings") or {}
    router = raw.get("router_settings") or {}
    general = raw.get("general_settings") or {}
    _router(router, lite, b, out)
    _cache(lite, out, b.skipped)
    if router.get("redis_host") and "redis" not in out:
        auth = f":{router['redis_password']}@" if router.get("redis_password") else ""
        out["redis"] = {"url": f"redis://{auth}{router['redis_host']}:{router.get('redis_port', 6379)}/0"}
    if general.get("master_key"):
        out["auth"] = {"master_key": general["master_key"]}
    if general.get("database_url"):
        out["database"] = {"url": general["database_url"]}
    if lite.get("drop_params"):
        b.skipped.append("litellm_settings.drop_params: already how the gateway behaves (providers[].options."
                         "unsupported_params: drop)")
    handled = {"litellm_settings": {"drop_params", "cache", "cache_params", "num_retries", "request_timeout",
                                    "fallbacks", "context_window_fallbacks"},
               "router_settings": {"routing_strategy", "num_retries", "retry_after", "allowed_fails",
                                   "cooldown_time", "fallbacks", "context_window_fallbacks", "timeout", "redis_host",
                                   "redis_port", "redis_password"},
               "general_settings": {"master_key", "database_url"}}
    for section, done in handled.items():
        for key in sorted(set(raw.get(section) or {}) - done):
            b.skipped.append(f"{section}.{key}: no equivalent here; not carried over")
    if raw.get("environment_variables"):
        b.skipped.append("environment_variables: set them in the gateway's environment instead")
    for key in sorted(set(raw) - {*LITELLM_KEYS, "environment_variables"}):
        b.skipped.append(f"{key}: not a LiteLLM section this importer knows; not carried over")
    if b.rates:
        out["limits"] = {"rules": [{"name": f"{alias}-per-minute", "scope": "model", "models": [alias],
                                    "window": "1m", **rates} for alias, rates in b.rates.items()]}
    config = {"providers": list(b.providers.values()), "models": b.models, **out}
    return Conversion(config, b.skipped)
