"""The cache's flags and environment variables, and its configuration section."""

from __future__ import annotations

import pytest

from llm_gateway.cli import build_config, build_parser, resolve
from llm_gateway.settings import ConfigError, parse_config


def config_from(argv: list[str], env: dict[str, str] | None = None) -> object:
    return build_config(resolve(build_parser().parse_args(argv), env or {}), env or {})


def test_flags_and_env() -> None:
    cfg = config_from(["--cache", "--cache-ttl", "30"])
    assert cfg.cache.enabled and cfg.cache.ttl_s == 30 and cfg.cache.backend == "memory"  # type: ignore[attr-defined]
    cfg = config_from([], {"LLM_GATEWAY_CACHE": "true", "LLM_GATEWAY_CACHE_BACKEND": "redis"})
    assert cfg.cache.enabled and cfg.cache.backend == "redis"  # type: ignore[attr-defined]
    assert cfg.redis.url == "redis://127.0.0.1:6379/0"  # type: ignore[attr-defined]
    assert not config_from([]).cache.enabled  # type: ignore[attr-defined]
    with pytest.raises(ConfigError):
        config_from([], {"LLM_GATEWAY_CACHE_BACKEND": "disk"})


def test_config_section_is_checked_with_paths() -> None:
    cfg = parse_config({"cache": {"enabled": True, "models": {"m": {"ttl_s": 5, "semantic_threshold": 0.9}},
                                  "semantic": {"enabled": True, "scope": "team"}}}, {})
    assert cfg.cache.models["m"].ttl_s == 5 and cfg.cache.semantic.scope == "team"
    with pytest.raises(ConfigError) as exc:
        parse_config({"cache": {"backend": "disk", "semantic": {"threshold": 2}, "bogus": 1}}, {})
    problems = "\n".join(exc.value.problems)
    assert "cache.backend" in problems and "cache.semantic.threshold" in problems and "cache.bogus" in problems


def test_services_the_cache_needs() -> None:
    with pytest.raises(ConfigError, match=r"redis needs redis\.url"):
        parse_config({"cache": {"enabled": True, "backend": "redis"}}, {})
    with pytest.raises(ConfigError, match="pgvector needs"):
        parse_config({"cache": {"enabled": True, "semantic": {"enabled": True, "backend": "pgvector"}}}, {})
    parse_config({"cache": {"enabled": True, "backend": "redis"}, "redis": {"url": "redis://127.0.0.1/1"}}, {})
