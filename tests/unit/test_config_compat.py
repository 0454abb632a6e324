"""Other gateways' config spellings: durations and sizes, camelCase renaming along the schema (free-form keys
kept), the Go seed's sections, LiteLLM's conversion, and config check's suggestions."""

from __future__ import annotations

import pytest

from llm_gateway.config import go_seed, litellm
from llm_gateway.config.durations import parse_duration, parse_size_mb
from llm_gateway.config.names import normalize, suggest
from llm_gateway.settings import CacheConfig, ConfigError, GatewayConfig, ServerConfig, parse_config


@pytest.mark.parametrize(("text", "seconds"), [
    (30, 30.0), ("30", 30.0), ("30s", 30.0), ("1m", 60.0), ("1h", 3600.0), ("250ms", 0.25), ("1h30m", 5400.0),
    ("1d", 86400.0), ("1.5s", 1.5)])
def test_durations(text: float | str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["soon", "1x", "m", "-1s", ""])
def test_not_durations(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


def test_sizes() -> None:
    assert parse_size_mb("256MB") == 256 and parse_size_mb("1GB") == 1024 and parse_size_mb("512kb") == 0.5
    assert parse_size_mb("1000") is None and parse_size_mb("big") is None


def test_normalize_renames_options_not_free_form_keys() -> None:
    hints: dict[str, str] = {}
    data = {"server": {"metricsPort": 0, "shutdownGraceS": "1m", "cors": {"allowedOrigins": ["*"]}},
            "providers": [{"name": "p", "type": "openai", "apiKey": "k", "headers": {"X-Trace-Id": "1"},
                           "options": {"apiVersion": "v"}, "timeouts": {"firstToken": "2m"}}],
            "cache": {"ttl": "1h", "maxSizeMb": "1GB", "models": {"gpt-4o": {"ttlS": 60}}}}
    out = normalize(data, GatewayConfig, "", hints)
    assert out["server"] == {"metrics_port": 0, "shutdown_grace_s": 60.0, "cors": {"allowed_origins": ["*"]}}
    provider = out["providers"][0]
    assert provider["api_key"] == "k" and provider["headers"] == {"X-Trace-Id": "1"}
    assert provider["options"] == {"apiVersion": "v"}  # provider-type options are not ours to rename
    assert provider["timeouts"] == {"first_token": 120.0}
    assert out["cache"] == {"ttl_s": 3600.0, "max_size_mb": 1024.0, "models": {"gpt-4o": {"ttl_s": 60}}}
    assert hints == {}


def test_both_spellings_at_once_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"server\.metricsPort: unknown option; did you mean 'metrics_port'"):
        parse_config({"server": {"metricsPort": 1, "metrics_port": 2}})


def test_suggestions() -> None:
    assert suggest("prot", ServerConfig) == "did you mean 'port'?"
    assert suggest("tll", CacheConfig) == "did you mean 'ttl_s'?"
    assert suggest("readTimout", ServerConfig).startswith("did you mean 'readTimeout'")
    assert suggest("zzzz", CacheConfig).startswith("valid here: enabled, backend")


def test_go_seed_sections() -> None:
    problems: list[str] = []
    out = go_seed.translate({
        "providers": [{"name": "anthropic", "priority": 2, "timeout": "90s"}, {"name": "openai", "priority": 1},
                      {"name": "my-vllm", "baseUrl": "http://h/v1"}, {"name": "mystery"}],
        "rateLimit": {"enabled": True, "perUser": {"tokensPerHour": 1000}},
        "logging": {"level": "WARN", "format": "text", "requestBody": True, "output": "stdout"},
        "metrics": {"enabled": False, "endpoint": "/stats"},
        "server": {"writeTimeout": "2m", "idleTimeout": "90s", "cors": True},
        "cache": {"maxSize": "64MB"},
        "routing": {"modelMappings": {"a": [{"provider": "openai", "model": "x"}, {"provider": "anthropic"}]}},
    }, problems)
    kinds = [p.get("type") for p in out["providers"]]
    assert kinds == ["anthropic", "openai", "openai-compatible", None]
    assert out["providers"][0]["timeouts"] == {"total": 90.0}
    assert out["providers"][1]["timeouts"] == {"total": 120.0}  # writeTimeout where no timeout is set
    assert out["routing"]["fallback_chain"] == ["openai", "anthropic"]  # by priority
    assert out["routing"]["model_targets"] == {"a": "openai"}
    assert out["routing"]["modelMappings"] == {"a": {"openai": "x", "anthropic": "a"}}
    assert out["limits"]["rules"] == [{"name": "user-per-hour", "scope": "user", "window": 3600, "tokens": 1000}]
    assert out["telemetry"] == {"log_level": "warning", "log_format": "console", "log_bodies": True}
    assert out["server"]["metrics_port"] == 0 and out["server"]["cors"] == {"enabled": True}
    assert out["server"]["keepalive_timeout_s"] == "90s" and out["cache"] == {"max_size_mb": 64.0}
    assert problems == ["metrics.endpoint: the gateway serves its metrics at /metrics only (got '/stats'); "
                        "remove endpoint or point the scraper at /metrics"]


def test_model_target_must_be_a_provider() -> None:
    with pytest.raises(ConfigError, match=r"routing\.modelMappings: unknown provider 'nope'"):
        parse_config({"providers": [{"name": "openai"}],
                      "routing": {"modelMappings": {"x": {"provider": "nope", "model": "y"}}}})


def test_litellm_leftovers_are_named() -> None:
    out = litellm.convert({
        "model_list": [{"model_name": "m", "litellm_params": {"model": "cohere/command-r"}},
                       {"model_name": "n", "litellm_params": {"model": "openai/x", "api_key": "os.environ/K",
                                                              "seed": 1}},
                       {"model_name": "n", "litellm_params": {"model": "openai/y", "rpm": 5}},
                       {"litellm_params": {}}],
        "litellm_settings": {"cache": True, "cache_params": {"type": "s3"}, "success_callback": ["langfuse"]},
        "router_settings": {"routing_strategy": "magic", "fallbacks": [{"n": ["gone"]}]}})
    assert out.config["providers"] == [{"name": "openai", "type": "openai", "api_key": "${K}"},
                                       {"name": "openai-2", "type": "openai"}]
    assert out.config["models"]["n"]["deployments"] == [{"provider": "openai", "model": "x"},
                                                        {"provider": "openai-2", "model": "y"}]
    assert out.config["limits"]["rules"][0]["requests"] == 5
    text = "\n".join(out.skipped)
    for needle in ("provider 'cohere' has no equivalent", "litellm_params seed", "model_list[3]: no model_name",
                   "cache_params.type 's3'", "litellm_settings.success_callback", "routing_strategy 'magic'",
                   "gone not in model_list"):
        assert needle in text
