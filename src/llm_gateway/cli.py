"""The `llm-gateway` command: serve (flags and env vars over the config file) and operator subcommands."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from llm_gateway import __version__
from llm_gateway.config.commands import add_import_parser, run_import
from llm_gateway.db import commands as db_commands
from llm_gateway.keys.commands import COMMANDS as ACCOUNT_COMMANDS
from llm_gateway.keys.commands import add_parsers as add_account_parsers
from llm_gateway.keys.commands import run as run_account_command
from llm_gateway.providers.registry import build_provider
from llm_gateway.runner import run
from llm_gateway.settings import ConfigError, GatewayConfig, ProviderConfig, load_config_file
from llm_gateway.sso import login


@dataclass(frozen=True)
class Flag:
    flag: str
    env: str
    help: str
    type: Callable[[str], Any] = str
    default: Any = None
    switch: bool = False


def _log_format(text: str) -> str:
    value = text.strip().lower()
    if value not in ("json", "console"):
        raise argparse.ArgumentTypeError(f"not a log format: {text!r} (json or console)")
    return value


def _bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise argparse.ArgumentTypeError(f"not a boolean: {text!r}")


def _cache_backend(text: str) -> str:
    if text not in ("memory", "redis"):
        raise argparse.ArgumentTypeError("must be memory or redis")
    return text


# The genai-gateway flags, with its defaults, then ours. Every flag is also an environment variable.
FLAGS: tuple[Flag, ...] = (
    Flag("--openai-tls", "OPENAI_TLS", "use TLS to reach the single OpenAI-compatible upstream", _bool,
         False, switch=True),
    Flag("--openai-port", "OPENAI_PORT", "port of the single OpenAI-compatible upstream", int, 443),
    Flag("--openai-domain", "OPENAI_DOMAIN", "host of the single OpenAI-compatible upstream", str, "0.0.0.0"),
    Flag("--http-proxy-port", "HTTP_PROXY_PORT", "port the gateway listens on (alias: --port)", int, 8080),
    Flag("--http-proxy-metrics-port", "HTTP_PROXY_METRICS_PORT", "port of the separate /metrics listener "
         "(0: off)", int, 9090),
    Flag("--enable-rate-limiting", "ENABLE_RATE_LIMITING", "limit each user's tokens per window", _bool,
         False, switch=True),
    Flag("--rate-limiting-redis-connection-string", "RATE_LIMITING_REDIS_CONNECTION_STRING",
         "Redis URL for limit counters", str, "redis://127.0.0.1:6379/0"),
    Flag("--rate-limiting-redis-pool-size", "RATE_LIMITING_REDIS_POOL_SIZE", "Redis connection pool size",
         int, 5),
    Flag("--rate-limiting-window-duration-size-min", "RATE_LIMITING_WINDOW_DURATION_SIZE_MIN",
         "limit window in minutes", float, 60),
    Flag("--rate-limiting-max-prompt-tokens", "RATE_LIMITING_MAX_PROMPT_TOKENS",
         "tokens a user may use per window", int, 1000),
    Flag("--rate-limiting-user-header-key", "RATE_LIMITING_USER_HEADER_KEY",
         "request header that names the user", str, "user"),
    Flag("--config", "LLM_GATEWAY_CONFIG", "YAML configuration file", str, None),
    Flag("--host", "LLM_GATEWAY_HOST", "address to listen on", str, "0.0.0.0"),
    Flag("--log-level", "LLM_GATEWAY_LOG_LEVEL", "debug, info, warning or error", str, "info"),
    Flag("--log-format", "LLM_GATEWAY_LOG_FORMAT", "json or console (logs and the access log)", _log_format, None),
    Flag("--log-bodies", "LLM_GATEWAY_LOG_BODIES", "add request/response bodies to access log lines (redacted)",
         _bool, False, switch=True),
    Flag("--tracing", "LLM_GATEWAY_TRACING", "export OpenTelemetry traces (endpoint etc. from OTEL_* variables)",
         _bool, False, switch=True),
    Flag("--workers", "LLM_GATEWAY_WORKERS", "server processes sharing the port", int, 1),
    Flag("--busy-poll-us", "LLM_GATEWAY_BUSY_POLL_US", "no effect since the edge runs on granian (accepted so "
         "that older command lines still start; a warning says so)", int, 0),
    Flag("--master-key", "LLM_GATEWAY_MASTER_KEY", "admin key; when set every call needs a key (prefer the "
         "environment variable: flags show in the process list)", str, None),
    Flag("--database-url", "LLM_GATEWAY_DATABASE_URL", "keys and usage ledger database (sqlite:///… or "
         "postgresql://…)", str, None),
    Flag("--cache", "LLM_GATEWAY_CACHE", "answer repeated requests from the response cache", _bool, False,
         switch=True),
    Flag("--cache-backend", "LLM_GATEWAY_CACHE_BACKEND", "memory, or redis (the redis.url of the config)",
         _cache_backend, None),
    Flag("--cache-ttl", "LLM_GATEWAY_CACHE_TTL", "seconds a cached answer is kept", float, None),
)


def _dest(flag: str) -> str:
    return flag.lstrip("-").replace("-", "_")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="llm-gateway",
        description="An OpenAI- and Anthropic-compatible LLM gateway. Every option is also an environment "
                    "variable (shown in brackets); flags override the config file, which overrides defaults.")
    parser.add_argument("--version", action="version", version=f"llm-gateway {__version__}")
    for f in FLAGS:
        names = [f.flag, "--port"] if f.flag == "--http-proxy-port" else [f.flag]
        default_text = "" if f.default is None else f" (default: {f.default})"
        if f.switch:
            parser.add_argument(*names, dest=_dest(f.flag), action="store_const", const=True, default=None,
                                help=f"{f.help} [{f.env}]{default_text}")
        else:
            parser.add_argument(*names, dest=_dest(f.flag), type=f.type, default=None, metavar=f.env,
                                help=f"{f.help} [{f.env}]{default_text}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    config = sub.add_parser("config", help="configuration tools")
    config_sub = config.add_subparsers(dest="config_command", required=True, metavar="{check,import}")
    check = config_sub.add_parser("check", help="validate a config file and print each error with its path")
    check.add_argument("file")
    add_import_parser(config_sub)
    add_account_parsers(sub)
    db_commands.add_parsers(sub)
    login.add_parser(sub)
    return parser


def resolve(args: argparse.Namespace, env: dict[str, str]) -> dict[str, Any]:
    """Each flag's value and whether it was set: from the command line, else the environment, else None."""
    values: dict[str, Any] = {}
    for f in FLAGS:
        value = getattr(args, _dest(f.flag), None)
        if value is None and env.get(f.env, "") != "":
            try:
                value = f.type(env[f.env])
            except (ValueError, argparse.ArgumentTypeError) as exc:
                raise ConfigError([f"{f.env}: invalid value {env[f.env]!r}: {exc}"]) from None
        values[_dest(f.flag)] = value
    return values


def url_host(host: str) -> str:
    """A host as it is written in a URL: an IPv6 address in brackets (`--openai-domain ::1`)."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def build_config(values: dict[str, Any], env: dict[str, str]) -> GatewayConfig:
    path = values["config"]
    cfg = load_config_file(path, env) if path else GatewayConfig()

    def given(name: str) -> Any:
        return values[name]

    def pick(name: str) -> Any:
        value = values[name]
        return value if value is not None else next(f.default for f in FLAGS if _dest(f.flag) == name)

    if given("host") is not None:
        cfg.server.host = given("host")
    if given("http_proxy_port") is not None:
        cfg.server.port = given("http_proxy_port")
    if given("http_proxy_metrics_port") is not None:
        cfg.server.metrics_port = given("http_proxy_metrics_port")
    if given("workers") is not None:
        cfg.server.workers = given("workers")
    if given("busy_poll_us") is not None:
        cfg.server.busy_poll_us = given("busy_poll_us")
    if given("log_level") is not None:
        cfg.telemetry.log_level = given("log_level")
    if given("log_format") is not None:
        cfg.telemetry.log_format = given("log_format")
    if given("log_bodies"):
        cfg.telemetry.log_bodies = True
    if given("tracing"):
        cfg.telemetry.tracing.enabled = True
    if given("master_key") is not None:
        cfg.auth.master_key = given("master_key")
    if given("database_url") is not None:
        cfg.database.url = given("database_url")
    if given("cache"):
        cfg.cache.enabled = True
    if given("cache_backend") is not None:
        cfg.cache.backend = given("cache_backend")
        if cfg.cache.backend == "redis" and not cfg.redis.url:
            cfg.redis.url = pick("rate_limiting_redis_connection_string")
    if given("cache_ttl") is not None:
        cfg.cache.ttl_s = given("cache_ttl")
    if given("rate_limiting_user_header_key") is not None:
        cfg.auth.user_header = given("rate_limiting_user_header_key")
    if given("enable_rate_limiting"):
        genai = cfg.limits.per_user_tokens
        genai.enabled = True
        genai.window_minutes = pick("rate_limiting_window_duration_size_min")
        genai.max_tokens = pick("rate_limiting_max_prompt_tokens")
        cfg.redis.url = pick("rate_limiting_redis_connection_string")
        cfg.redis.pool_size = pick("rate_limiting_redis_pool_size")
    upstream_given = any(given(n) is not None for n in ("openai_domain", "openai_port", "openai_tls"))
    if upstream_given or not cfg.providers:
        tls = bool(pick("openai_tls"))
        base_url = f"{'https' if tls else 'http'}://{url_host(pick('openai_domain'))}:{pick('openai_port')}/v1"
        name = "upstream" if any(p.name == "openai" for p in cfg.providers) else "openai"
        cfg.providers.append(ProviderConfig(name=name, type="openai-compatible", base_url=base_url,
                                            models=["*"], options={"passthrough": True}))
    # Re-validate the merged result so flag values meet the same rules as file values.
    return GatewayConfig.model_validate(cfg.model_dump())


def provider_problems(cfg: GatewayConfig) -> list[str]:
    """What only each provider type knows is wrong (e.g. a `vertex` provider without a project)."""
    problems = []
    for provider in cfg.providers:
        try:
            build_provider(provider)
        except ValueError as exc:
            problems.append(str(exc))
    return problems


def config_check(path: str, env: dict[str, str]) -> int:
    try:
        cfg = load_config_file(path, env)
    except ConfigError as exc:
        print(f"{path}: {len(exc.problems)} problem(s)", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    problems = provider_problems(cfg)
    if problems:
        print(f"{path}: {len(problems)} problem(s)", file=sys.stderr)
        for problem in problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    print(f"{path}: OK ({len(cfg.providers)} provider(s), {len(cfg.models)} model alias(es))")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    env = dict(os.environ)
    if args.command == "config":
        return run_import(args) if args.config_command == "import" else config_check(args.file, env)
    if args.command == "login":  # a client of a gateway: no configuration of its own
        return login.run(args)
    try:
        cfg = build_config(resolve(args, env), env)
        problems = provider_problems(cfg)
        if problems:
            raise ConfigError(problems)
    except ConfigError as exc:
        print("llm-gateway: invalid configuration:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return 2
    if args.command in ACCOUNT_COMMANDS:
        return run_account_command(args, cfg.database.url)
    if args.command in db_commands.COMMANDS:
        return db_commands.run(args, cfg.database.url)
    return run(cfg)


if __name__ == "__main__":
    sys.exit(main())
