"""The gateway's configuration: the YAML schema, `${VAR}` substitution, and validation errors with paths."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from llm_gateway.config import go_seed, litellm
from llm_gateway.config.durations import parse_duration as parse_duration  # also its older home
from llm_gateway.config.names import normalize
from llm_gateway.providers.openai_compat.presets import PRESET_NAMES

PROVIDER_TYPES = ("openai", "azure", "anthropic", "gemini", "bedrock", "vertex", "openai-compatible")
_BREAKS = re.compile(r"[\r\n\x00]")
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # an HTTP header name (RFC 9110 token)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CorsConfig(_Section):
    enabled: bool = False
    allowed_origins: list[str] = Field(default_factory=list, description='origins allowed to call, or ["*"]')
    allowed_headers: list[str] = Field(default_factory=lambda: ["authorization", "content-type", "x-api-key",
                                                                "anthropic-version", "x-request-id", "x-gateway"])
    allowed_methods: list[str] = Field(default_factory=lambda: ["GET", "POST", "DELETE", "PATCH", "PUT"])
    allow_credentials: bool = False
    max_age: int = Field(600, ge=0, description="seconds a browser may cache a preflight answer")


class TlsConfig(_Section):
    cert_file: str | None = None
    key_file: str | None = None
    key_password: str | None = None


class EdgeLimits(_Section):
    max_head_kb: int = Field(64, ge=8, le=16384, description="request line + headers; larger: 431")
    max_headers: int = Field(100, ge=8, le=100, description="header fields per request; more: 431")
    max_url_bytes: int = Field(8192, ge=256, description="path + query; longer: 414")
    head_timeout_s: float = Field(10.0, gt=0, description="time to receive the request head; then closed")
    body_timeout_s: float = Field(60.0, gt=0, description="time to receive the request body; then 408")


class ServerConfig(_Section):
    host: str = "0.0.0.0"
    port: int = Field(8080, ge=0, le=65535)
    metrics_port: int = Field(9090, ge=0, le=65535, description="0 turns the separate metrics listener off")
    max_body_mb: float = Field(32.0, gt=0, description="largest accepted request body")
    shutdown_grace_s: float = Field(30.0, ge=0, description="how long in-flight requests may finish on SIGTERM")
    keepalive_timeout_s: float = Field(75.0, gt=0)
    workers: int = Field(1, ge=1)
    busy_poll_us: int = Field(0, ge=0, le=1_000_000, description="no effect since the edge runs on granian "
                              "(accepted so that older configurations still load; a warning says so)")
    limits: EdgeLimits = Field(default_factory=EdgeLimits)
    tls: TlsConfig = Field(default_factory=TlsConfig)
    http2: bool = Field(False, description="also speak HTTP/2 (over TLS by ALPN, or prior knowledge in clear)")
    cors: CorsConfig = Field(default_factory=CorsConfig)
    model_path_routes: bool = Field(False, description="also serve /<model>/v1/<endpoint> as /v1/<endpoint> with "
                                    "that model (LLMGateway's layout)")


class TimeoutsConfig(_Section):
    connect: float = Field(10.0, gt=0)
    first_token: float = Field(600.0, gt=0, description="until the upstream's response head arrives")
    idle: float = Field(600.0, gt=0, description="longest silence between two chunks of a response")
    total: float = Field(3600.0, gt=0)


class ModelEntry(_Section):
    name: str = Field(description="the model name clients send")
    model: str | None = Field(None, description="the name the provider knows; defaults to `name`")
    price_as: str | None = Field(None, validation_alias=AliasChoices("price_as", "base_model"),
                                 description="the known model this one is priced as (e.g. an Azure deployment's "
                                 "base model)")
    pricing: PriceConfig | None = Field(None, description="this deployment's own price, USD per 1M tokens")


class ProviderConfig(_Section):
    name: str
    type: Literal["openai", "azure", "anthropic", "gemini", "bedrock", "vertex", "openai-compatible"]
    base_url: str | None = None
    api_key: str | None = None
    auth: Literal["api_key", "entra"] | None = Field(
        None, description="how the provider authenticates: `entra` gets Microsoft Entra ID tokens (Azure)")
    models: list[str | ModelEntry] = Field(
        default_factory=list,
        description='models served by this provider; "*" passes any model name through')
    headers: dict[str, str] = Field(default_factory=dict, description="extra headers sent upstream")
    timeouts: TimeoutsConfig = Field(default_factory=TimeoutsConfig)
    options: dict[str, Any] = Field(default_factory=dict, description="provider-type specific settings")
    proxy: str | None = Field(None, description="egress proxy URL (http:// or https://); default: HTTPS_PROXY / "
                              "HTTP_PROXY unless NO_PROXY names the host; `none`: connect directly")
    ca_file: str | None = Field(None, description="PEM file of the CAs trusted for this provider (instead of the "
                                "system's)")
    client_cert: str | None = Field(None, description="PEM client certificate (mutual TLS)")
    client_key: str | None = Field(None, description="PEM key of client_cert, when not in the same file")
    max_retries: int | None = Field(None, ge=0, le=10, description="retries of the routes to this provider's "
                                    "models (default: routing.retries.max_retries)")

    @field_validator("api_key", "base_url")
    @classmethod
    def _one_line(cls, value: str | None) -> str | None:
        # Written into upstream headers: a line break would end the header and start another.
        if value is not None and _BREAKS.search(value):
            raise ValueError("contains CR, LF or NUL (a trailing newline in the variable or file?)")
        return value

    @field_validator("headers")
    @classmethod
    def _header_lines(cls, value: dict[str, str]) -> dict[str, str]:
        for name, text in value.items():
            if not _TOKEN.fullmatch(name):
                raise ValueError(f"{name!r} is not a valid header name")
            if _BREAKS.search(text):
                raise ValueError(f"the value of {name!r} contains CR, LF or NUL")
        return value

    @field_validator("options")
    @classmethod
    def _option_lines(cls, value: dict[str, Any]) -> dict[str, Any]:
        for name, option in value.items():  # some go into upstream paths (api_version) or headers
            if isinstance(option, str) and _BREAKS.search(option):
                raise ValueError(f"option {name!r} contains CR, LF or NUL")
        return value

    @field_validator("proxy")
    @classmethod
    def _proxy_url(cls, value: str | None) -> str | None:
        if value is not None and value != "none" and not re.match(r"^https?://[^/\s]+/?$", value):
            raise ValueError("must be an http:// or https:// URL (scheme, host, port) or `none`")
        return value

    @field_validator("ca_file", "client_cert", "client_key")
    @classmethod
    def _readable_file(cls, value: str | None) -> str | None:
        if value is not None and not os.path.isfile(value):
            raise ValueError(f"no such file: {value}")
        return value

    @model_validator(mode="after")
    def _key_needs_cert(self) -> ProviderConfig:
        if self.client_key is not None and self.client_cert is None:
            raise ValueError("client_key is set without client_cert")
        return self

    @model_validator(mode="before")
    @classmethod
    def _preset_type(cls, data: Any) -> Any:
        """`type: groq` (any OpenAI-compatible preset) means `type: openai-compatible, options: {preset: groq}`."""
        if isinstance(data, dict) and data.get("type") in PRESET_NAMES:
            options = dict(data.get("options") or {})
            options.setdefault("preset", data["type"])
            data = {**data, "type": "openai-compatible", "options": options}
        return data

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^/\s]+\S*$", value):
            raise ValueError("must be an http:// or https:// URL (without spaces)")
        return value.rstrip("/") if value else value

    def model_entries(self) -> list[ModelEntry]:
        return [ModelEntry(name=m) if isinstance(m, str) else m for m in self.models]


class DeploymentConfig(_Section):
    provider: str
    model: str
    weight: float = Field(1.0, gt=0)
    name: str | None = Field(None, description="the deployment's id; defaults to provider/model")
    cost: float | None = Field(None, ge=0, description="price per 1M tokens, for the cost strategy")
    max_in_flight: int | None = Field(None, ge=1, description="skip this deployment while it has this many")
    timeouts: TimeoutsConfig | None = Field(None, description="overrides the provider's timeouts")
    price_as: str | None = Field(None, validation_alias=AliasChoices("price_as", "base_model"),
                                 description="the known model this deployment is priced as")
    pricing: PriceConfig | None = Field(None, description="this deployment's own price, USD per 1M tokens")


RoutingStrategy = Literal["weighted", "least-in-flight", "lowest-latency", "cost"]


class HedgeConfig(_Section):
    """Send the same request to the next deployment when the first token is late; keep the first answer."""

    enabled: bool = False
    delay_s: float = Field(1.0, gt=0, description="wait this long for a first token before hedging")
    use_p95: bool = Field(False, description="wait the deployment's p95 time to first token instead, once known")


class ModelGroupConfig(_Section):
    deployments: list[DeploymentConfig] = Field(min_length=1)
    fallbacks: list[str] = Field(default_factory=list)
    context_window_fallbacks: list[str] = Field(default_factory=list)
    strategy: RoutingStrategy = "weighted"
    retries: int | None = Field(None, ge=0, le=10, description="defaults to routing.retries.max_retries")
    hedge: HedgeConfig | None = None


class RetryConfig(_Section):
    max_retries: int = Field(0, ge=0, le=10, description="retries of a failed attempt before fallbacks")
    backoff_s: float = Field(0.1, ge=0, description="first backoff; doubles with each retry, with jitter")
    max_backoff_s: float = Field(5.0, ge=0)
    max_retry_after_s: float = Field(10.0, ge=0, description="a longer upstream Retry-After moves on instead")


class CooldownConfig(_Section):
    failures: int = Field(3, ge=1, description="consecutive failures that take a deployment out")
    cooldown_s: float = Field(30.0, gt=0, description="first cooldown; doubles while probes keep failing")
    max_cooldown_s: float = Field(300.0, gt=0)
    sync_interval_s: float = Field(1.0, gt=0, description="how often replicas read shared cooldowns (Redis)")
    redis_prefix: str = "llmgw:cooldown:"


class RoutingConfig(_Section):
    """Routing and resilience; also the seeds' `defaultProvider`, `modelMappings` and `fallbackChain`."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    default_provider: str | None = Field(None, alias="defaultProvider",
                                         description="serves model names nothing else serves")
    model_mappings: dict[str, dict[str, str]] = Field(
        default_factory=dict, alias="modelMappings",
        description="model name -> provider -> the name that provider knows")
    fallback_chain: list[str] = Field(default_factory=list, alias="fallbackChain",
                                      description="providers tried in order when one fails")
    model_targets: dict[str, str] = Field(default_factory=dict, description="model name -> the provider that "
                                          "serves it (the seeds' modelMappings `{provider, model}` form)")
    retries: RetryConfig = Field(default_factory=RetryConfig)
    cooldown: CooldownConfig = Field(default_factory=CooldownConfig)
    hedge: HedgeConfig = Field(default_factory=HedgeConfig)
    max_attempts: int = Field(10, ge=1, le=50, description="attempts of one request, fallbacks included")


class JwtIssuerConfig(_Section):
    """An identity provider whose access tokens are accepted as API credentials (sso/jwt_auth.py)."""

    issuer: str
    audience: str | list[str] | None = Field(None, description="required `aud` (null: any)")
    jwks_url: str | None = Field(None, description="default: the issuer's discovery document's jwks_uri")
    user_claim: str = "sub"
    groups_claim: str = "groups"
    required_claims: list[str] = Field(default_factory=lambda: ["exp", "iat"])
    algorithms: list[str] = Field(default_factory=lambda: ["RS256", "ES256"])
    leeway_s: int = Field(30, ge=0, le=600)


class AuthConfig(_Section):
    master_key: str | None = Field(None, description="env LLM_GATEWAY_MASTER_KEY; when set, every call needs a key")
    user_header: str = "user"
    key_cache_ttl_s: float = Field(10.0, gt=0, description="how stale a cached virtual key may be before a re-read")
    max_keys_per_user: int = Field(10, ge=0, description="self-service keys a user may hold (users.max_keys wins)")
    budget_output_tokens: int = Field(
        1024, ge=1, description="completion tokens a budget reserves when a request sets no max_tokens")
    jwt: list[JwtIssuerConfig] = Field(default_factory=list, description="IdP access tokens as API credentials")


class PriceTierConfig(_Section):
    """Prices that apply to every token of a request whose prompt is larger than `above` tokens."""

    above: int = Field(gt=0, description="prompt tokens (cached and written included) above which this tier applies")
    input: float = Field(ge=0)
    output: float = Field(ge=0)
    cached_input: float | None = Field(None, ge=0)
    cache_write: float | None = Field(None, ge=0)
    cache_write_1h: float | None = Field(None, ge=0)


class PriceConfig(_Section):
    """USD per 1M tokens. A class left out costs what its parent class costs: cached_input, cache_write,
    input_audio and input_image the input price, cache_write_1h the cache_write price, reasoning, output_audio
    and output_image the output price."""

    input: float = Field(ge=0)
    output: float = Field(0.0, ge=0)
    cached_input: float | None = Field(None, ge=0, description="prompt tokens read from the provider's cache")
    cache_write: float | None = Field(None, ge=0, description="prompt tokens written to the cache (5-minute)")
    cache_write_1h: float | None = Field(None, ge=0, description="prompt tokens written to the cache for 1 hour")
    reasoning: float | None = Field(None, ge=0)
    input_audio: float | None = Field(None, ge=0)
    output_audio: float | None = Field(None, ge=0)
    input_image: float | None = Field(None, ge=0)
    output_image: float | None = Field(None, ge=0)
    tiers: list[PriceTierConfig] = Field(default_factory=list, description="prices by prompt size")
    web_search: float | None = Field(None, ge=0, description="USD per 1,000 server-side web searches")


class PricingConfig(_Section):
    """Prices: the bundled price database (genai-prices), overridden per model here and per deployment under
    `models:` / `providers[].models`. Model entries may also sit directly under `pricing:` (the older form)."""

    unknown: Literal["allow", "reject"] = Field(
        "allow", description="a request whose price is unknown: allow (counted as unpriced) or reject it at "
        "admission when the caller's key, user or team has a budget")
    models: dict[str, PriceConfig] = Field(
        default_factory=dict, description="price overrides by model name (or provider/model), USD per 1M tokens")

    @model_validator(mode="before")
    @classmethod
    def _flat_models(cls, data: Any) -> Any:
        if isinstance(data, dict) and any(k not in cls.model_fields for k in data):
            models = dict(data.get("models") or {})
            models.update({k: v for k, v in data.items() if k not in cls.model_fields})
            data = {**{k: v for k, v in data.items() if k in cls.model_fields}, "models": models}
        return data


class GenaiRateLimitConfig(_Section):
    """genai-gateway's per-user token limit (`--enable-rate-limiting`)."""

    enabled: bool = False
    window_minutes: float = Field(60, gt=0)
    max_tokens: int = Field(1000, ge=0)
    count: Literal["prompt", "completion", "total"] = "total"


class LimitRuleConfig(_Section):
    """One limit: requests and/or tokens per sliding window, for each subject of a scope."""

    name: str | None = Field(None, description="shown in 429 messages and metrics; defaults to scope/window")
    scope: Literal["global", "key", "user", "model", "key_model", "user_model", "end_user"]
    window: float | str | None = Field(None, description="sliding window: seconds or 30s, 1m, 1h, 1d (default 1m)")
    window_seconds: float | None = Field(None, gt=0, description="the window in seconds (instead of window)")
    requests: int | None = Field(None, ge=0, description="requests per window")
    tokens: int | None = Field(None, ge=0, description="tokens per window")
    count: Literal["prompt", "completion", "total"] = Field("total", description="which tokens count")
    models: list[str] | None = Field(None, description="only requests for these model names")

    @field_validator("window")
    @classmethod
    def _window(cls, value: float | str | None) -> float | str | None:
        if value is not None and parse_duration(value) <= 0:
            raise ValueError("must be positive")
        return value

    @model_validator(mode="after")
    def _something_limited(self) -> LimitRuleConfig:
        if self.requests is None and self.tokens is None:
            raise ValueError("set requests, tokens or both")
        if self.window is not None and self.window_seconds is not None:
            raise ValueError("set window or window_seconds, not both")
        return self

    @property
    def window_s(self) -> float:
        if self.window_seconds is not None:
            return self.window_seconds
        return parse_duration(self.window if self.window is not None else "1m")

    @property
    def id(self) -> str:
        return self.name or f"{self.scope}/{_num_text(self.window_s)}s"


def _num_text(value: float) -> str:
    return str(int(value)) if value == int(value) else str(value)


class LimitsConfig(_Section):
    per_user_tokens: GenaiRateLimitConfig = Field(default_factory=GenaiRateLimitConfig)
    rules: list[LimitRuleConfig] = Field(default_factory=list)
    backend: Literal["auto", "memory", "redis"] = Field(
        "auto", description="auto: Redis when redis.url is set, else memory")
    on_backend_error: Literal["open", "closed"] = Field(
        "open", description="Redis unavailable: open serves unchecked, closed answers 503")
    completion_estimate: int = Field(
        256, ge=0, description="completion tokens reserved when a request sets no max_tokens")
    buckets: int = Field(20, ge=1, le=600, description="sub-buckets per sliding window (its resolution)")
    redis_prefix: str = "llmgw:limits:"
    redis_timeout_s: float = Field(0.5, gt=0, description="per Redis call, connect included")
    retry_backend_after_s: float = Field(
        1.0, ge=0, description="after a Redis failure, skip Redis this long before trying again")
    redis_lease: int = Field(
        20, ge=0, le=100_000,
        description="requests' worth a Redis reservation may charge ahead per limit, handed out by this process "
                    "with no round trip; granted only far from the limit (0: every request asks Redis)")
    redis_lease_s: float = Field(
        2.0, gt=0, le=60, description="longest a lease is held before what is left goes back to Redis")

    @model_validator(mode="after")
    def _unique_ids(self) -> LimitsConfig:
        ids = [rule.id for rule in self.rules]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"rules: duplicate limit(s) {', '.join(dupes)}: give each a distinct name")
        return self


class DatabaseConfig(_Section):
    url: str = "sqlite:///llm-gateway.db"
    ledger_batch_size: int = Field(1000, ge=1, description="usage rows per write")
    ledger_flush_interval_s: float = Field(0.5, gt=0, description="longest wait before queued rows are written")
    connect_timeout_s: float = Field(5.0, gt=0, description="PostgreSQL: give up connecting after this long")
    statement_timeout_s: float = Field(30.0, ge=0, description="PostgreSQL: server-side statement and "
                                       "idle-in-transaction timeout, and the TCP user timeout (0: none)")
    ledger_write_timeout_s: float = Field(10.0, gt=0, description="a ledger batch write unanswered this long is "
                                          "abandoned (its connection closed) and retried with backoff")
    migrate_on_start: bool = Field(True, description="upgrade the schema when the gateway starts; false: refuse to "
                                   "start on an old schema (replicas: run `llm-gateway db upgrade` as its own step)")


class SentinelConfig(_Section):
    master_name: str = Field(min_length=1)
    nodes: list[str] = Field(min_length=1, description="the sentinels, host:port")
    password: str | None = Field(None, description="the sentinels' own password (the URL's is the primary's)")


class RedisConfig(_Section):
    url: str | None = None
    pool_size: int = Field(5, ge=1)
    sentinel: SentinelConfig | None = None
    cluster: bool = Field(False, description="Redis Cluster: url (and nodes) are the nodes first asked for the map")
    nodes: list[str] = Field(default_factory=list, description="Cluster: more nodes to ask, host:port")

    @model_validator(mode="after")
    def _topology(self) -> RedisConfig:
        if self.sentinel is not None and self.cluster:
            raise ValueError("choose sentinel or cluster, not both")
        if self.sentinel is not None and self.url is None:
            self.url = "redis://"  # credentials, db and TLS come from the URL; the sentinels name the host
        if self.cluster and self.url is None:
            if not self.nodes:
                raise ValueError("cluster: set url or nodes")
            self.url = f"redis://{self.nodes[0]}"
        return self

    @field_validator("url")
    @classmethod
    def _scheme(cls, url: str | None) -> str | None:
        # llm_gateway.redis_client speaks TCP (and TLS) only.
        if url and not url.lower().startswith(("redis://", "rediss://")):
            raise ValueError("must be a redis:// or rediss:// URL")
        return url


class ModelCacheConfig(_Section):
    """Per-model overrides of the cache settings (keyed by the model name clients send, or the resolved one)."""

    enabled: bool | None = None
    ttl_s: float | None = Field(None, gt=0)
    semantic: bool | None = None
    semantic_threshold: float | None = Field(None, gt=0, le=1)


class SemanticCacheConfig(_Section):
    enabled: bool = False
    embedding: str = Field("local", description='"local" (bundled ONNX MiniLM) or a model name served by this '
                                                 "gateway's providers")
    threshold: float = Field(0.88, gt=0, le=1, description="cosine similarity for a hit")
    scope: Literal["key", "team", "global"] = Field("key", description="answers are shared only within this")
    backend: Literal["memory", "pgvector"] = "memory"
    pg_url: str | None = Field(None, description="PostgreSQL with pgvector (postgresql://...); pgvector backend")
    pg_table: str = "llm_gateway_semantic_cache"
    max_entries: int = Field(10000, ge=1, description="per memory index; oldest go first")
    max_text_chars: int = Field(4000, ge=1, description="prompt text embedded (its end is kept)")


class ResponsesConfig(_Section):
    """/v1/responses: what becomes of built-in tools a provider cannot run, and how long responses are kept."""

    builtin_tools: Literal["drop", "reject"] = Field(
        "drop", description="web_search, file_search, ... for a translated provider: dropped (named in "
                            "x-gateway-dropped-tools) or a 400")
    retention_days: float = Field(30.0, ge=0, description="stored responses older than this are deleted (0: kept)")
    default_max_output_tokens: int | None = Field(
        None, ge=1, description="max_output_tokens of a translated request that sets none (agents such as Codex "
                                "CLI set none; a model that does not stop then writes until its context is full)")


class CacheConfig(_Section):
    enabled: bool = False
    backend: Literal["memory", "redis"] = Field("memory", description="redis uses redis.url")
    max_size_mb: float = Field(256.0, gt=0, description="memory backend: total size of cached answers")
    ttl_s: float = Field(3600.0, gt=0)
    max_entries: int | None = Field(None, ge=1, description="memory backend: most answers kept (the Go seed's "
                                    "maxSize)")
    max_ttl_s: float = Field(86400.0, gt=0, description="upper bound of a per-request TTL")
    max_entry_kb: float = Field(1024.0, gt=0, description="larger answers are not cached")
    max_temperature: float | None = Field(None, ge=0, description="requests above it are not cached")
    cache_tool_calls: bool = Field(False, description="also cache answers that call tools")
    scope: Literal["global", "key", "team"] = Field("global", description="who shares exact-match answers")
    coalesce: bool = Field(True, description="concurrent identical requests wait for one upstream call")
    coalesce_timeout_s: float = Field(120.0, gt=0)
    redis_prefix: str = "llmgw:cache:"
    redis_timeout_s: float = Field(0.5, gt=0)
    models: dict[str, ModelCacheConfig] = Field(default_factory=dict)
    semantic: SemanticCacheConfig = Field(default_factory=SemanticCacheConfig)


class TracingConfig(_Section):
    """OpenTelemetry traces; unset fields fall back to the standard OTEL_* environment variables."""

    enabled: bool = Field(False, description="also turned on by OTEL_TRACES_EXPORTER=otlp; off costs nothing")
    exporter: Literal["otlp", "console", "none"] = "otlp"
    protocol: Literal["http/protobuf", "grpc"] | None = Field(
        None, description="default: OTEL_EXPORTER_OTLP_TRACES_PROTOCOL / OTEL_EXPORTER_OTLP_PROTOCOL / http/protobuf")
    endpoint: str | None = Field(None, description="default: OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT")
    headers: dict[str, str] = Field(default_factory=dict, description="sent with every export (e.g. auth)")
    service_name: str | None = Field(None, description="default: OTEL_SERVICE_NAME or llm-gateway")
    sample_ratio: float = Field(1.0, ge=0, le=1, description="share of new traces kept (parent decides otherwise)")
    capture_content: bool = Field(False, description="record prompts and completions (secrets redacted)")


class TelemetryConfig(_Section):
    log_format: Literal["json", "console"] = "json"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    access_log: bool = Field(True, description="one line per request")
    access_log_path: str | None = Field(None, description="file to append access lines to; default stdout")
    log_bodies: bool = Field(False, description="add request and response bodies (secrets redacted)")
    metrics_user_labels: bool = Field(False, description="per-user cost and token series (unbounded cardinality)")
    tracing: TracingConfig = Field(default_factory=TracingConfig)


class MetricsConfig(_Section):
    max_series: int = Field(10_000, ge=1, description="label sets kept per metric; the values of any more are "
                                                      "added to one series labelled `other`")
    bearer_token: str | None = Field(None, min_length=1, pattern=r"^[\x21-\x7e]+$",
                                     description="when set, /metrics on both ports needs 'Authorization: Bearer' "
                                                 "with it (env LLM_GATEWAY_METRICS_BEARER_TOKEN via ${...})")


class OidcProviderConfig(_Section):
    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    issuer: str
    client_id: str
    client_secret: str | None = None
    scopes: list[str] = Field(default_factory=lambda: ["openid", "email", "profile"])
    groups_claim: str = "groups"
    user_claim: str = "sub"
    label: str | None = Field(None, description="shown as 'Sign in with <label>' (default: name)")
    end_session: bool = Field(False, description="sign-out also ends the IdP session (end_session_endpoint)")


class SamlProviderConfig(_Section):
    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    metadata_url: str | None = None
    metadata_file: str | None = None
    entity_id: str = Field(description="the IdP's entity id")
    sp_entity_id: str | None = Field(None, description="default: <base>/ui/sso/saml/<name>/metadata")
    groups_attribute: str = "groups"
    user_attribute: str | None = Field(None, description="default: the NameID")
    label: str | None = None
    sp_cert_file: str | None = Field(None, description="signs the SP's requests (optional)")
    sp_key_file: str | None = None

    @model_validator(mode="after")
    def _one_metadata(self) -> SamlProviderConfig:
        if (self.metadata_url is None) == (self.metadata_file is None):
            raise ValueError("give exactly one of metadata_url and metadata_file")
        return self


class SsoConfig(_Section):
    oidc: list[OidcProviderConfig] = Field(default_factory=list)
    saml: list[SamlProviderConfig] = Field(default_factory=list)
    group_mapping: dict[str, str] = Field(default_factory=dict, description="IdP group -> 'admin' or a team id")
    public_url: str | None = Field(None, description="the gateway's URL as browsers see it (callbacks)")
    key_ttl_s: int = Field(12 * 3600, ge=60, description="lifetime of a `llm-gateway login` key")

    @property
    def enabled(self) -> bool:
        return bool(self.oidc or self.saml)
GuardrailType = Literal["pii", "secrets", "prompt_injection", "webhook", "llm_judge", "regex", "keywords"]
GuardrailMode = Literal["pre_call", "during_call", "post_call"]


class GuardrailConfig(_Section):
    """One guardrail (docs/guardrails.md): what it looks for, and what it does when it finds it."""

    name: str = Field(min_length=1, max_length=100)
    type: GuardrailType
    action: Literal["mask", "block", "reversible", "log_only"] = "block"
    mode: list[GuardrailMode] = Field(default_factory=lambda: list[GuardrailMode](["pre_call"]),
                                      description="pre_call, during_call (beside the upstream call), post_call")
    entities: list[str] | None = Field(None, description="pii: the Presidio entity types (default: a set)")
    score_threshold: float = Field(0.4, ge=0, le=1, description="pii: lowest Presidio score that counts")
    threshold: float = Field(0.9, ge=0, le=1, description="prompt_injection: the score that counts as an attack")
    patterns: list[str] = Field(default_factory=list, description="regex: the patterns")
    keywords: list[str] = Field(default_factory=list, description="keywords: words matched case-insensitively")
    url: str | None = Field(None, description="webhook: where the texts are posted")
    headers: dict[str, str] = Field(default_factory=dict, description="webhook: extra request headers")
    timeout_s: float = Field(2.0, gt=0, description="webhook and llm_judge: how long to wait")
    on_error: Literal["open", "closed"] = Field("closed", description="webhook / llm_judge failing: pass or block")
    model: str | None = Field(None, description="llm_judge: a model this gateway serves")
    prompt: str | None = Field(None, description="llm_judge: the instructions; the judge answers ALLOW or BLOCK")
    window_chars: int = Field(64, ge=8, le=4096, description="post_call on streams: the look-behind buffer")

    @model_validator(mode="after")
    def _fits(self) -> GuardrailConfig:
        kind, action = self.type, self.action
        if action in ("mask", "reversible") and kind not in ("pii", "secrets", "regex", "keywords", "webhook"):
            raise ValueError(f"guardrail {self.name}: {kind} can block or log_only, not {action}")
        if action in ("mask", "reversible") and "during_call" in self.mode:
            raise ValueError(f"guardrail {self.name}: during_call runs beside the upstream call, so it can only "
                             "block or log_only")
        if kind == "webhook" and not self.url:
            raise ValueError(f"guardrail {self.name}: a webhook needs url")
        if kind == "llm_judge" and not (self.model and self.prompt):
            raise ValueError(f"guardrail {self.name}: llm_judge needs model and prompt")
        if kind in ("regex", "keywords") and not (self.patterns or self.keywords):
            raise ValueError(f"guardrail {self.name}: {kind} needs patterns or keywords")
        if kind == "regex":
            for pattern in self.patterns:
                try:
                    re.compile(pattern)
                except re.error as exc:
                    raise ValueError(f"guardrail {self.name}: pattern {pattern!r}: {exc}") from None
        return self


class GuardrailPolicyConfig(_Section):
    """Which guardrails run where, merged gateway -> team -> key -> model (teams and keys: `guardrails`)."""

    default: list[str] = Field(default_factory=list)
    teams: dict[str, list[str]] = Field(default_factory=dict)
    keys: dict[str, list[str]] = Field(default_factory=dict, description="by key id or alias")
    models: dict[str, list[str]] = Field(default_factory=dict)


class GatewayConfig(_Section):
    server: ServerConfig = Field(default_factory=ServerConfig)
    providers: list[ProviderConfig] = Field(default_factory=list)
    models: dict[str, ModelGroupConfig] = Field(default_factory=dict)
    routing: RoutingConfig = Field(default_factory=RoutingConfig)
    auth: AuthConfig = Field(default_factory=AuthConfig)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    database: DatabaseConfig = Field(default_factory=DatabaseConfig)
    pricing: PricingConfig = Field(default_factory=PricingConfig)
    redis: RedisConfig = Field(default_factory=RedisConfig)
    cache: CacheConfig = Field(default_factory=CacheConfig)
    telemetry: TelemetryConfig = Field(default_factory=TelemetryConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    responses: ResponsesConfig = Field(default_factory=ResponsesConfig)
    sso: SsoConfig = Field(default_factory=SsoConfig)
    guardrails: list[GuardrailConfig] = Field(default_factory=list)
    guardrail_policy: GuardrailPolicyConfig = Field(default_factory=GuardrailPolicyConfig)

    @model_validator(mode="after")
    def _cache_services(self) -> GatewayConfig:
        if self.cache.enabled and self.cache.backend == "redis" and not self.redis.url:
            raise ValueError("cache.backend: redis needs redis.url")
        semantic = self.cache.semantic
        if self.cache.enabled and semantic.backend == "pgvector" and not (
                semantic.pg_url or self.database.url.startswith("postgres")):
            raise ValueError("cache.semantic.backend: pgvector needs cache.semantic.pg_url or a PostgreSQL "
                             "database.url")
        return self

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
            for fb in group.context_window_fallbacks:
                if fb not in self.models:
                    raise ValueError(f"models.{alias}.context_window_fallbacks: unknown model alias {fb!r}")
        routing = self.routing
        for where, name in [("defaultProvider", routing.default_provider), *(
                ("fallbackChain", p) for p in routing.fallback_chain), *(
                ("modelMappings", p) for m in routing.model_mappings.values() for p in m), *(
                ("modelMappings", p) for p in routing.model_targets.values())]:
            if name is not None and name not in names:
                raise ValueError(f"routing.{where}: unknown provider {name!r} (known: {', '.join(names) or 'none'})")
        return self

    @model_validator(mode="after")
    def _guardrail_names(self) -> GatewayConfig:
        names = [g.name for g in self.guardrails]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"guardrails: duplicate name(s) {', '.join(dupes)}")
        policy = self.guardrail_policy
        for where, listed in [("default", policy.default), *((f"teams.{k}", v) for k, v in policy.teams.items()),
                              *((f"keys.{k}", v) for k, v in policy.keys.items()),
                              *((f"models.{k}", v) for k, v in policy.models.items())]:
            for name in listed:
                if name not in names:
                    raise ValueError(f"guardrail_policy.{where}: unknown guardrail {name!r}")
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
    if isinstance(node, str) and node.startswith("os.environ/"):
        name = node.removeprefix("os.environ/")
        problems.append(f"{path}: {node!r} is LiteLLM's way to name a variable: write ${{{name}}} instead (or "
                        "convert the whole file with `llm-gateway config import litellm FILE`)")
        return node
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
    if litellm.is_litellm(raw):  # a LiteLLM proxy config, taken as `config import litellm` would write it
        raw = litellm.convert(raw).config
        problems.append("(a LiteLLM config: the paths below are those of `llm-gateway config import litellm FILE`)")
    preface = len(problems)
    data = substitute_env(raw, dict(os.environ) if env is None else env, "", problems)
    if len(problems) > preface:
        raise ConfigError(problems)
    hints: dict[str, str] = {}
    data = normalize(go_seed.translate(data, problems), GatewayConfig, "", hints)
    if len(problems) > preface:
        raise ConfigError(problems)
    try:
        return GatewayConfig.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            where = _loc(err["loc"]) or "(top level)"
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = f"unknown option; {hints[where]}" if where in hints else "unknown option"
            elif where.endswith(".type") and err["type"] == "missing" and where.startswith("providers["):
                msg = ("Field required: the type cannot be told from the provider's name; one of "
                       + ", ".join(PROVIDER_TYPES))
            problems.append(msg if msg.startswith(("providers:", "models.", "routing.")) else f"{where}: {msg}")
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
