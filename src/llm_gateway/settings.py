"""The gateway's configuration: the YAML schema, `${VAR}` substitution, and validation errors with paths."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

PROVIDER_TYPES = ("openai", "azure", "anthropic", "gemini", "bedrock", "openai-compatible")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ServerConfig(_Section):
    host: str = "0.0.0.0"
    port: int = Field(8080, ge=0, le=65535)
    metrics_port: int = Field(9090, ge=0, le=65535, description="0 turns the separate metrics listener off")
    max_body_mb: float = Field(32.0, gt=0, description="largest accepted request body")
    shutdown_grace_s: float = Field(30.0, ge=0, description="how long in-flight requests may finish on SIGTERM")
    keepalive_timeout_s: float = Field(75.0, gt=0)
    workers: int = Field(1, ge=1)


class TimeoutsConfig(_Section):
    connect: float = Field(10.0, gt=0)
    first_token: float = Field(600.0, gt=0, description="until the upstream's response head arrives")
    idle: float = Field(600.0, gt=0, description="longest silence between two chunks of a response")
    total: float = Field(3600.0, gt=0)


class ModelEntry(_Section):
    name: str = Field(description="the model name clients send")
    model: str | None = Field(None, description="the name the provider knows; defaults to `name`")


class ProviderConfig(_Section):
    name: str
    type: Literal["openai", "azure", "anthropic", "gemini", "bedrock", "openai-compatible"]
    base_url: str | None = None
    api_key: str | None = None
    models: list[str | ModelEntry] = Field(
        default_factory=list,
        description='models served by this provider; "*" passes any model name through')
    headers: dict[str, str] = Field(default_factory=dict, description="extra headers sent upstream")
    timeouts: TimeoutsConfig = Field(default_factory=TimeoutsConfig)
    options: dict[str, Any] = Field(default_factory=dict, description="provider-type specific settings")

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^/\s]+", value):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/") if value else value

    def model_entries(self) -> list[ModelEntry]:
        return [ModelEntry(name=m) if isinstance(m, str) else m for m in self.models]


class DeploymentConfig(_Section):
    provider: str
    model: str
    weight: float = Field(1.0, gt=0)


class ModelGroupConfig(_Section):
    deployments: list[DeploymentConfig] = Field(min_length=1)
    fallbacks: list[str] = Field(default_factory=list)


class AuthConfig(_Section):
    master_key: str | None = None
    user_header: str = "user"


class GenaiRateLimitConfig(_Section):
    """genai-gateway's per-user token limit (`--enable-rate-limiting`)."""

    enabled: bool = False
    window_minutes: float = Field(60, gt=0)
    max_tokens: int = Field(1000, ge=0)
    count: Literal["prompt", "completion", "total"] = "total"


class LimitsConfig(_Section):
    per_user_tokens: GenaiRateLimitConfig = Field(default_factory=GenaiRateLimitConfig)


class DatabaseConfig(_Section):
    url: str = "sqlite:///llm-gateway.db"


class RedisConfig(_Section):
    url: str | None = None
    pool_size: int = Field(5, ge=1)


class TelemetryConfig(_Section):
    log_format: Literal["json", "console"] = "json"
    log_level: Literal["debug", "info", "warning", "error"] = "info"


class GatewayConfig(_Section):
    server: ServerConfig = Field(default_factory=ServerConfig)
    providers: list[ProviderConfig] = Field(default_factory=list)
    models: dict[str, ModelGroupConfig] = Field(default_factory=dict)
    auth: AuthConfig = Field(default_factory=AuthConfig)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    database: DatabaseConfig = Field(default_factory=DatabaseConfig)
    redis: RedisConfig = Field(default_factory=RedisConfig)
    telemetry: TelemetryConfig = Field(default_factory=TelemetryConfig)

    @model_validator(mode="after")
    def _references(self) -> GatewayConfig:
        names = [p.name for p in self.providers]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"providers: duplicate provider name(s) {', '.join(dupes)}")
        for alias, group in self.models.items():
            for i, dep in enumerate(group.deployments):
                if dep.provider not in names:
                    raise ValueError(f"models.{alias}.deployments[{i}].provider: unknown provider "
                                     f"{dep.provider!r} (known: {', '.join(names) or 'none'})")
            for fb in group.fallbacks:
                if fb not in self.models:
                    raise ValueError(f"models.{alias}.fallbacks: unknown model alias {fb!r}")
        return self


class ConfigError(Exception):
    """A configuration that cannot be used; `problems` lists `path: message` lines."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def substitute_env(node: Any, env: dict[str, str], path: str, problems: list[str]) -> Any:
    """Replace `${VAR}` and `${VAR:-default}` in every string of a parsed YAML tree."""
    if isinstance(node, dict):
        return {k: substitute_env(v, env, f"{path}.{k}" if path else str(k), problems) for k, v in node.items()}
    if isinstance(node, list):
        return [substitute_env(v, env, f"{path}[{i}]", problems) for i, v in enumerate(node)]
    if isinstance(node, str) and "${" in node:
        def repl(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in env and env[name] != "":
                return env[name]
            if default is not None:
                return default
            problems.append(f"{path}: environment variable {name} is not set (use ${{{name}:-default}} "
                            "for a default)")
            return ""
        return _VAR.sub(repl, node)
    return node


def _loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("str", "ModelEntry") and out.endswith("]"):
            continue
        else:
            out += f".{part}" if out else str(part)
    return out


def parse_config(raw: dict[str, Any], env: dict[str, str] | None = None) -> GatewayConfig:
    problems: list[str] = []
    data = substitute_env(raw, dict(os.environ) if env is None else env, "", problems)
    if problems:
        raise ConfigError(problems)
    try:
        return GatewayConfig.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            where = _loc(err["loc"]) or "(top level)"
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = "unknown option"
            problems.append(msg if msg.startswith(("providers:", "models.")) else f"{where}: {msg}")
        raise ConfigError(problems) from None


def load_config_file(path: str | Path, env: dict[str, str] | None = None) -> GatewayConfig:
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror}"]) from None
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "?"
        raise ConfigError([f"{path}: invalid YAML at {where}: {getattr(exc, 'problem', exc)}"]) from None
    if not isinstance(raw, dict):
        raise ConfigError([f"{path}: the top level must be a mapping"])
    return parse_config(raw, env)
