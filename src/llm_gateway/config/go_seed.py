"""The Go `llm-gateway` seed's sections in our terms: `rateLimit` as limit rules, `logging` and `metrics`, the
providers' inferred `type`, `priority`, `timeout`, the server's `readTimeout`/`writeTimeout`/`cors`, `cache.maxSize`
and both forms of `routing.modelMappings`. Runs on the parsed YAML before validation; what it cannot map is left
for validation to refuse with its path."""

from __future__ import annotations

import logging
from typing import Any

from llm_gateway.config.durations import is_duration, parse_duration, parse_size_mb
from llm_gateway.config.names import snake
from llm_gateway.providers.foreign import type_from_name

log = logging.getLogger("llm_gateway.config")
# `requestsPerMinute: 60` -> 60 requests per 60 s
_RATES = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
_LEVELS = {"warn": "warning", "err": "error", "trace": "debug", "fatal": "error", "panic": "error"}
_FORMATS = {"text": "console", "console": "console", "pretty": "console", "json": "json"}


def _get(section: dict[str, Any], *names: str) -> Any:
    for name in names:
        if name in section:
            return section.pop(name)
    return None


def _section(data: dict[str, Any], name: str) -> dict[str, Any]:
    value = data.get(name)
    if not isinstance(value, dict):
        value = {}
        data[name] = value
    return value


def _providers(data: dict[str, Any]) -> None:
    providers = data.get("providers")
    if not isinstance(providers, list):
        return
    priorities: list[tuple[float, int, str]] = []
    write_timeout = data.pop("_write_timeout", None)
    for i, p in enumerate(providers):
        if not isinstance(p, dict) or not isinstance(p.get("name"), str):
            continue
        if "type" not in p:
            kind = type_from_name(p["name"])
            if kind is None and ("baseUrl" in p or "base_url" in p or "baseURL" in p):
                kind = "openai-compatible"
            if kind is not None:
                p["type"] = kind
        if "baseURL" in p:
            p["base_url"] = p.pop("baseURL")
        priority = p.pop("priority", None)
        if isinstance(priority, int | float):
            priorities.append((float(priority), i, p["name"]))
        timeout = p.pop("timeout", None)
        if timeout is None and write_timeout is not None:
            timeout = write_timeout
        if timeout is not None:
            timeouts = p.setdefault("timeouts", {})
            if isinstance(timeouts, dict):
                timeouts.setdefault("total", parse_duration(timeout) if is_duration(timeout) else timeout)
    routing = data.get("routing")
    has_chain = isinstance(routing, dict) and ("fallbackChain" in routing or "fallback_chain" in routing)
    if len(priorities) > 1 and not has_chain:  # the seed tries providers by priority: lowest number first
        _section(data, "routing")["fallback_chain"] = [name for _, _, name in sorted(priorities)]


def _mappings(data: dict[str, Any]) -> None:
    """`model: {provider: p, model: m}`, `model: p` and `model: p/m` name the provider that serves the model;
    `model: {p: m, ...}` (ours) only renames it for those providers."""
    routing = data.get("routing")
    if not isinstance(routing, dict):
        return
    key = "modelMappings" if "modelMappings" in routing else "model_mappings"
    mappings = routing.get(key)
    if not isinstance(mappings, dict):
        return
    ours: dict[str, Any] = {}
    targets: dict[str, str] = dict(routing.get("model_targets") or {})
    for model, target in mappings.items():
        entries: list[Any] = target if isinstance(target, list) else [target]
        renames: dict[str, Any] = {}
        for entry in entries:
            if isinstance(entry, str):
                provider, _, upstream = entry.partition("/")
                targets.setdefault(str(model), provider)
                renames[provider] = upstream or str(model)
            elif isinstance(entry, dict) and isinstance(entry.get("provider"), str) and set(entry) <= {
                    "provider", "model", "targetModel", "target_model"}:
                provider = entry["provider"]
                targets.setdefault(str(model), provider)
                renames[provider] = entry.get("model") or entry.get("targetModel") or entry.get(
                    "target_model") or str(model)
            elif isinstance(entry, dict):
                renames.update(entry)
            else:
                renames = target
        ours[model] = renames
    routing[key] = ours
    if targets:
        routing["model_targets"] = targets


def _rate_rules(scope: str, spec: Any, models: list[str] | None) -> list[dict[str, Any]]:
    if not isinstance(spec, dict):
        return []
    rules: list[dict[str, Any]] = []
    spec = {snake(k): v for k, v in spec.items()}
    if "requests" in spec or "tokens" in spec:  # already ours: {requests, tokens, window}
        return [{"scope": scope, **spec, **({"models": models} if models else {})}]
    for unit, seconds in _RATES.items():
        rule: dict[str, Any] = {}
        for kind in ("requests", "tokens"):
            value = spec.pop(f"{kind}_per_{unit}", None)
            if value is not None:
                rule[kind] = value
        if rule:
            suffix = f"-{'-'.join(models)}" if models else ""
            rules.append({"name": f"{scope}{suffix}-per-{unit}", "scope": scope, "window": seconds, **rule,
                          **({"models": models} if models else {})})
    return rules


def _rate_limit(data: dict[str, Any]) -> None:
    section = _get(data, "rateLimit", "rate_limit", "rateLimiting")
    if not isinstance(section, dict) or section.get("enabled") is False:
        return
    rules: list[dict[str, Any]] = []
    rules += _rate_rules("global", section.get("global"), None)
    per_key = section.get("perKey", section.get("per_key"))
    rules += _rate_rules("key", per_key, None)
    if per_key and not (isinstance(data.get("auth"), dict) and data["auth"].get("master_key")):
        log.warning("rateLimit.perKey limits each virtual key; without a master key there are none, so it limits "
                    "nothing: use perUser to limit by the user header")
    rules += _rate_rules("user", section.get("perUser", section.get("per_user")), None)
    per_model = section.get("perModel", section.get("per_model"))
    if isinstance(per_model, dict):
        for model, spec in per_model.items():
            rules += _rate_rules("model", spec, [str(model)])
    limits = _section(data, "limits")
    limits["rules"] = [*(limits.get("rules") or []), *rules]


def _logging(data: dict[str, Any]) -> None:
    section = _get(data, "logging", "log")
    if not isinstance(section, dict):
        return
    telemetry = _section(data, "telemetry")
    level = _get(section, "level")
    if isinstance(level, str):
        telemetry["log_level"] = _LEVELS.get(level.lower(), level.lower())
    fmt = _get(section, "format")
    if isinstance(fmt, str):
        telemetry["log_format"] = _FORMATS.get(fmt.lower(), fmt)
    bodies = _get(section, "requestBody", "request_body", "logRequestBody", "bodies")
    if bodies is not None:
        telemetry["log_bodies"] = bodies
    output = _get(section, "output", "file")
    if isinstance(output, str) and output.lower() not in ("", "stdout", "stderr", "console"):
        telemetry["access_log_path"] = output  # a file: the request lines go there
    for key, value in section.items():  # left for validation: unknown under telemetry, with a hint
        telemetry[key] = value


def _metrics(data: dict[str, Any], problems: list[str]) -> None:
    section = data.get("metrics")
    if not isinstance(section, dict):
        return
    enabled = section.pop("enabled", None)
    if enabled is False:
        _section(data, "server").setdefault("metrics_port", 0)
    endpoint = _get(section, "endpoint", "path")
    if endpoint is not None and endpoint != "/metrics":
        problems.append(f"metrics.endpoint: the gateway serves its metrics at /metrics only (got {endpoint!r}); "
                        "remove endpoint or point the scraper at /metrics")


def _server(data: dict[str, Any]) -> None:
    server = data.get("server")
    if not isinstance(server, dict):
        return
    read = _get(server, "readTimeout", "read_timeout")
    if read is not None:
        limits = server.setdefault("limits", {})
        if isinstance(limits, dict):
            seconds = parse_duration(read) if is_duration(read) or isinstance(read, int | float) else read
            limits.setdefault("body_timeout_s", seconds)
            if isinstance(seconds, float) and seconds < 10:
                limits.setdefault("head_timeout_s", seconds)
    write = _get(server, "writeTimeout", "write_timeout")
    if write is not None:  # a response may take this long: the providers' total timeout, where none is set
        data["_write_timeout"] = write
    idle = _get(server, "idleTimeout", "idle_timeout")
    if idle is not None:
        server.setdefault("keepalive_timeout_s", idle)
    cors = server.get("cors")
    if isinstance(cors, bool):
        server["cors"] = {"enabled": cors}
    elif isinstance(cors, dict) and "enabled" not in cors:
        cors["enabled"] = True


def _cache(data: dict[str, Any]) -> None:
    cache = data.get("cache")
    if not isinstance(cache, dict):
        return
    size = _get(cache, "maxSize", "max_size")
    if isinstance(size, int):
        cache["max_entries"] = size
    elif isinstance(size, str) and parse_size_mb(size) is not None:
        cache["max_size_mb"] = parse_size_mb(size)
    elif size is not None:
        cache["maxSize"] = size  # refused by validation, with its path


def translate(data: dict[str, Any], problems: list[str]) -> dict[str, Any]:
    """The Go seed's configuration (or ours: then nothing changes) in our schema's terms."""
    data = dict(data)
    _rate_limit(data)
    _logging(data)
    _metrics(data, problems)
    _server(data)
    _cache(data)
    _providers(data)
    data.pop("_write_timeout", None)
    _mappings(data)
    return data
