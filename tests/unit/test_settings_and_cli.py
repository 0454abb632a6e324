"""Config parsing, ${VAR} substitution, error paths, and flag/env precedence."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from llm_gateway.cli import build_config, build_parser, resolve
from llm_gateway.settings import ConfigError, load_config_file, parse_config


def test_env_substitution_with_defaults() -> None:
    raw = {"providers": [{"name": "o", "type": "openai", "api_key": "${KEY}",
                          "base_url": "${BASE:-http://127.0.0.1:9/v1}", "models": ["*"]}]}
    cfg = parse_config(raw, {"KEY": "sk-x"})
    assert cfg.providers[0].api_key == "sk-x"
    assert cfg.providers[0].base_url == "http://127.0.0.1:9/v1"


def test_errors_carry_paths() -> None:
    raw = {"server": {"port": "eighty", "bogus": 1},
           "providers": [{"name": "a", "type": "nope", "base_url": "ftp://x"}, {"name": "b", "type": "openai",
                                                                               "api_key": "${MISSING}"}]}
    with pytest.raises(ConfigError) as exc:
        parse_config(raw, {})
    assert exc.value.problems == ["providers[1].api_key: environment variable MISSING is not set "
                                  "(use ${MISSING:-default} for a default)"]
    with pytest.raises(ConfigError) as exc:
        parse_config({**raw, "providers": raw["providers"][:1]}, {})
    text = "\n".join(exc.value.problems)
    assert "server.port: Input should be a valid integer" in text
    assert "server.bogus: unknown option" in text
    assert "providers[0].type: Input should be 'openai'" in text
    assert "providers[0].base_url: must be an http:// or https:// URL" in text


def test_unknown_provider_reference_in_models() -> None:
    raw = {"providers": [{"name": "a", "type": "openai"}],
           "models": {"fast": {"deployments": [{"provider": "zz", "model": "m"}]}}}
    with pytest.raises(ConfigError) as exc:
        parse_config(raw, {})
    assert "models.fast.deployments[0].provider: unknown provider 'zz'" in exc.value.problems[0]


def _config(argv: list[str], env: dict[str, str]):  # type: ignore[no-untyped-def]
    return build_config(resolve(build_parser().parse_args(argv), env), env)


def test_redis_url_must_be_tcp_or_tls() -> None:
    assert parse_config({"redis": {"url": "rediss://u:p@cache:6380/2"}}, {}).redis.url == "rediss://u:p@cache:6380/2"
    with pytest.raises(ConfigError) as exc:
        parse_config({"redis": {"url": "unix:///tmp/redis.sock"}}, {})
    assert exc.value.problems == ["redis.url: must be a redis:// or rediss:// URL"]


def test_genai_flags_make_a_single_upstream() -> None:
    cfg = _config(["--openai-tls", "--openai-domain", "api.openai.com"], {})
    (p,) = cfg.providers
    assert p.base_url == "https://api.openai.com:443/v1" and p.models == ["*"]
    assert cfg.server.port == 8080 and cfg.server.metrics_port == 9090


def test_env_vars_and_flag_precedence(tmp_path: Path) -> None:
    conf = tmp_path / "g.yaml"
    conf.write_text("server:\n  port: 7000\nauth:\n  user_header: x-team-user\n")
    env = {"OPENAI_DOMAIN": "10.0.0.1", "OPENAI_PORT": "8000", "HTTP_PROXY_PORT": "7100",
           "LLM_GATEWAY_CONFIG": str(conf), "ENABLE_RATE_LIMITING": "true",
           "RATE_LIMITING_MAX_PROMPT_TOKENS": "50"}
    cfg = _config(["--port", "7200"], env)
    assert cfg.server.port == 7200  # flag over env over file
    assert cfg.providers[0].base_url == "http://10.0.0.1:8000/v1"
    assert cfg.auth.user_header == "x-team-user"
    assert cfg.limits.per_user_tokens.enabled and cfg.limits.per_user_tokens.max_tokens == 50
    assert cfg.redis.url == "redis://127.0.0.1:6379/0"
    assert _config([], {**env, "HTTP_PROXY_PORT": ""}).server.port == 7000


def test_busy_polling_from_the_file_the_environment_or_the_flag(tmp_path: Path) -> None:
    conf = tmp_path / "g.yaml"
    conf.write_text("server:\n  busy_poll_us: 2000\n")
    assert _config([], {}).server.busy_poll_us == 0  # off unless asked for
    assert _config(["--config", str(conf)], {}).server.busy_poll_us == 2000
    assert _config(["--config", str(conf)], {"LLM_GATEWAY_BUSY_POLL_US": "500"}).server.busy_poll_us == 500
    assert _config(["--busy-poll-us", "0"], {"LLM_GATEWAY_BUSY_POLL_US": "500"}).server.busy_poll_us == 0
    with pytest.raises(ConfigError) as exc:
        parse_config({"server": {"busy_poll_us": -1}}, {})
    assert exc.value.problems[0].startswith("server.busy_poll_us: Input should be greater than or equal to 0")


def test_bad_env_value_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="OPENAI_PORT: invalid value 'x'"):
        _config([], {"OPENAI_PORT": "x"})


def test_config_check_command(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("providers:\n  - name: local\n    type: openai-compatible\n    base_url: http://127.0.0.1:1/v1\n"
                    "    models: [a]\n")
    bad = tmp_path / "bad.yaml"
    bad.write_text("providers:\n  - name: local\n    type: openai-compat\n")
    run = [sys.executable, "-m", "llm_gateway", "config", "check"]
    ok = subprocess.run([*run, str(good)], capture_output=True, text=True)
    assert ok.returncode == 0 and "OK (1 provider(s)" in ok.stdout
    ko = subprocess.run([*run, str(bad)], capture_output=True, text=True)
    assert ko.returncode == 1
    assert "providers[0].type: Input should be" in ko.stderr
    broken = tmp_path / "broken.yaml"
    broken.write_text("providers: [\n")
    assert "invalid YAML at line" in subprocess.run([*run, str(broken)], capture_output=True, text=True).stderr
    assert load_config_file(good).providers[0].name == "local"


def test_version_and_help() -> None:
    out = subprocess.run([sys.executable, "-m", "llm_gateway", "--version"], capture_output=True, text=True)
    assert out.stdout.strip() == "llm-gateway 0.1.0"
    help_text = subprocess.run([sys.executable, "-m", "llm_gateway", "--help"], capture_output=True, text=True).stdout
    for flag in ("--openai-tls", "--rate-limiting-user-header-key", "RATE_LIMITING_REDIS_POOL_SIZE", "--config",
                 "--port", "--log-level"):
        assert flag in help_text
