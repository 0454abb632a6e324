"""create_app: the only place that constructs the gateway's parts and wires them together."""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.middleware.cors import CORSMiddleware

from llm_gateway.accounting.tokens import TokenCounter
from llm_gateway.accounting.usage import UsageStage
from llm_gateway.api.admin import admin_router
from llm_gateway.api.admin.wire import Auth
from llm_gateway.api.anthropic import MessagesApi
from llm_gateway.api.cache_admin import CacheAdminApi
from llm_gateway.api.cold import cold_app
from llm_gateway.api.compat_paths import CompatPaths
from llm_gateway.api.health import HealthApi
from llm_gateway.api.openai import ENDPOINTS, OpenAIApi
from llm_gateway.api.responses import ResponsesApi
from llm_gateway.api.routing import RoutingApi
from llm_gateway.cache.setup import build_cache
from llm_gateway.guardrails.stage import build_guardrails
from llm_gateway.keys.accounts import build_accounts
from llm_gateway.limits.stage import build_limit_stage
from llm_gateway.pipeline.dispatch import Dispatcher
from llm_gateway.pipeline.stack import Pipeline, Stage
from llm_gateway.providers.base import Provider
from llm_gateway.providers.credentials import Keeper
from llm_gateway.providers.egress import transport_for
from llm_gateway.providers.http import HttpClient, Origin
from llm_gateway.providers.registry import build_provider
from llm_gateway.responses.store import ResponseStore
from llm_gateway.routing.access import Policy
from llm_gateway.routing.catalog import Catalog
from llm_gateway.routing.cooldown import Cooldowns, build_cooldown_sync
from llm_gateway.routing.stage import RoutingStage
from llm_gateway.server.asgi import ASGIApp, Edge
from llm_gateway.server.origin import refuse_cross_site
from llm_gateway.server.router import Router
from llm_gateway.server.trim import IdleTrimmer, freeze_start_up
from llm_gateway.settings import CorsConfig, GatewayConfig, ServerConfig
from llm_gateway.telemetry.metrics import Registry
from llm_gateway.telemetry.setup import Telemetry
from llm_gateway.ui import dashboard_router

Hook = Callable[[], Awaitable[None]]
log = logging.getLogger("llm_gateway")


@dataclass
class Gateway:
    config: GatewayConfig
    router: Router
    metrics_router: Router
    registry: Registry
    client: HttpClient
    counter: TokenCounter
    providers: dict[str, Provider]
    catalog: Catalog
    pipeline: Pipeline
    edge: Edge
    asgi: ASGIApp  # the edge, wrapped in CORS when it is on
    metrics_asgi: ASGIApp
    on_startup: list[Hook] = field(default_factory=list)
    on_shutdown: list[Hook] = field(default_factory=list)
    telemetry: Telemetry | None = None
    _trimmer: IdleTrimmer | None = None

    async def startup(self) -> None:
        self.counter.preload()
        for hook in self.on_startup:
            await hook()
        if self.config.server.busy_poll_us:
            log.warning("server.busy_poll_us has no effect: since the edge moved to granian, polling on the event "
                        "loop's thread kept granian's I/O thread from running on the same core (p50 ~5x worse, "
                        "measured); remove the setting")
        edge = self.edge
        self._trimmer = IdleTrimmer(lambda: edge.in_flight, lambda: edge.peak_in_flight, self._reset_peak,
                                    self.client.shed_idle)
        self._trimmer.start()
        log.debug("start-up built %d objects for good: frozen out of garbage collection", freeze_start_up())

    def _reset_peak(self) -> None:
        self.edge.peak_in_flight = 0

    async def shutdown(self) -> None:
        if self._trimmer is not None:
            await self._trimmer.stop()
        self.pipeline.record()  # before the ledger, the access log and the exporters flush
        for hook in reversed(self.on_shutdown):
            await hook()
        self.client.close()


def with_cors(app: ASGIApp, cors: CorsConfig) -> ASGIApp:
    """Browsers on the allowed origins may call the gateway: preflights answered, `Access-Control-*` added."""
    if not cors.enabled:
        return app
    middleware: Any = CORSMiddleware(app, allow_origins=cors.allowed_origins, allow_methods=cors.allowed_methods,
                                     allow_headers=cors.allowed_headers, allow_credentials=cors.allow_credentials,
                                     expose_headers=["x-request-id"], max_age=cors.max_age)
    return middleware  # type: ignore[no-any-return]


def worker_metrics(server: ServerConfig, worker: int) -> list[Origin]:
    """The metrics listeners of the other worker processes: worker i listens on metrics_port + i."""
    if server.workers < 2 or not server.metrics_port:
        return []
    host = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(server.host, server.host)
    return [Origin("http", host, server.metrics_port + i) for i in range(server.workers) if i != worker]


def create_app(config: GatewayConfig, worker: int = 0) -> Gateway:
    """The gateway of one process; `worker` is its index among the `server.workers` processes."""
    registry = Registry(config.metrics.max_series)
    telemetry = Telemetry(config, registry)
    counter = TokenCounter()
    client = HttpClient()
    providers = {p.name: build_provider(p) for p in config.providers}
    for provider in providers.values():  # behind an egress proxy or with its own TLS: the library transport
        provider.transport = transport_for(provider.config, provider.origin, os.environ)
    catalog = Catalog(providers, config.models, config.routing)
    cooldowns = Cooldowns(config.routing.cooldown)

    # keys, budgets, prices and the ledger on database.url; what each key may reach, decided on the catalog
    accounts = build_accounts(config, registry, Policy(catalog))
    accounts.prices.preload(catalog.deployments.values())  # prices resolved now, not on a first request
    stages: list[Stage] = [
        UsageStage(counter),  # first to settle: the stages after it read ctx.usage
        accounts.cost_stage,  # settles second: ctx.cost for budgets and the ledger (admits nothing)
        accounts.auth_stage,  # the first to admit (the two above only settle): sets ctx.key, checks budgets
        RoutingStage(cooldowns),  # gives back the deployment's in-flight slot
    ]
    limit_stage = build_limit_stage(config, registry, counter)
    if limit_stage is not None:
        # Admits after authentication (it reads ctx.key); settles after UsageStage (it reads ctx.usage).
        stages.append(limit_stage)
    cache_stage = build_cache(config, registry, catalog, client)
    if cache_stage is not None:
        stages.append(cache_stage)  # admits after limits: an answer from the cache still counts against them
    # None: none configured, none run
    guardrail_stage = build_guardrails(config, registry, catalog, client, accounts.team_guardrails)
    if guardrail_stage is not None:
        stages.append(guardrail_stage)  # after the cache: its key is the client's own text, not the masked one
    stages.append(accounts.ledger_stage)  # records what the stages before it decided
    stages.extend(telemetry.stages)  # keep last: metrics, access log and traces read what every stage set
    pipeline = Pipeline(stages)
    registry.before_render.append(pipeline.record)  # a scrape sees every request that has ended
    dispatcher = Dispatcher(client, catalog, cooldowns, config.routing)
    dispatcher.on_attempt = telemetry.attempts.on_attempt
    if telemetry.tracing is not None:
        dispatcher.trace_headers = telemetry.tracing.upstream_headers
        accounts.ledger_stage.trace_of = telemetry.tracing.trace_id_of
    openai = OpenAIApi(catalog, pipeline, dispatcher, config.auth.user_header,
                       forward_client_auth=config.auth.master_key is None)
    openai.access_of = accounts.auth_stage.access_of
    telemetry.core.in_flight.read_from(lambda: openai.in_flight)
    health = HealthApi(list(providers.values()), registry, worker_count=config.server.workers,
                       workers=worker_metrics(config.server, worker), client=client,
                       bearer_token=config.metrics.bearer_token)

    router = Router()
    for path in ENDPOINTS:
        router.add("POST", path, openai.endpoint)
    messages = MessagesApi(openai, catalog, counter)
    router.add("POST", "/v1/messages", messages.create)
    router.add("POST", "/v1/messages/count_tokens", messages.count_tokens)
    router.add("GET", "/v1/models", openai.models)
    responses = ResponsesApi(openai, ResponseStore(accounts.engine), accounts.auth_stage.identify,
                             config.responses.builtin_tools == "reject", config.responses.retention_days * 86400,
                             config.responses.default_max_output_tokens)
    router.add("POST", "/v1/responses", responses.create)
    router.add("GET", "/v1/responses/{response_id}", responses.retrieve)
    router.add("DELETE", "/v1/responses/{response_id}", responses.delete)
    router.add("GET", "/v1/responses/{response_id}/input_items", responses.input_items)
    compat = CompatPaths(openai, counter, config.server.model_path_routes)
    router.add_prefix("/v1/models/", compat.model)
    router.add("POST", "/extras/tokenize/count", compat.tokenize_count)
    router.add_prefix("/v1/", openai.other)
    auth = Auth(config.auth.master_key, accounts.store)  # the cold paths: one key parsing for every route
    routing_api, cache_api = RoutingApi(catalog, cooldowns), CacheAdminApi(cache_stage, catalog)
    sign_in: list[tuple[str, str]] = []
    cold_routers = [health.router(), admin_router(accounts, catalog, auth), routing_api.router(auth),
                    cache_api.router(auth)]
    if config.sso.enabled or config.auth.jwt:
        from llm_gateway.sso.setup import build_sso  # noqa: PLC0415  (the [sso] extra, only when configured)
        sso = build_sso(config, accounts)
        cold_routers.append(sso.router)
        sign_in = sso.buttons
    cold_routers.append(dashboard_router(accounts, catalog, routing_api, cache_api, auth, sign_in=sign_in))
    cold = cold_app(cold_routers)
    metrics_router = Router()  # the metrics port serves only cold paths: /metrics (this process' own), /health

    srv = config.server
    edge = Edge(router, srv.limits, int(srv.max_body_mb * 1024 * 1024), cold=cold)
    edge.shutdown_grace_s = srv.shutdown_grace_s
    edge.also_hot = compat.hot  # Azure's and LLMGateway's paths
    metrics_edge = Edge(metrics_router, srv.limits, 1024 * 1024, watch_prefix="/-",
                        cold=cold_app([health.router(whole=False)], documented=False))
    served = with_cors(edge, srv.cors)
    if config.auth.master_key is None:  # keyless: no web page may make a browser call it
        served = refuse_cross_site(served, srv.cors.allowed_origins if srv.cors.enabled else [])
    gateway = Gateway(config, router, metrics_router, registry, client, counter, providers, catalog, pipeline,
                      edge, served, metrics_edge)
    edge.startup_hooks.append(gateway.startup)
    edge.shutdown_hooks.append(gateway.shutdown)
    gateway.telemetry = telemetry
    telemetry.metrics.watch_ledger_backlog(accounts.ledger.backlog)
    gateway.on_startup.append(accounts.start)
    gateway.on_startup.append(responses.start)  # after accounts.start: the schema is up to date
    gateway.on_shutdown.append(accounts.stop)  # flushes the ledger after the server drained its requests
    gateway.on_shutdown.append(responses.stop)  # hooks run in reverse: before the database closes
    gateway.on_shutdown.extend(p.transport.aclose for p in providers.values() if p.transport is not None)
    gateway.on_shutdown.insert(0, telemetry.close)  # hooks run in reverse: telemetry flushes last
    refreshers = [p.refresher for p in providers.values() if p.refresher is not None]
    if refreshers:  # cloud credentials: fetched at start-up, then refreshed in the background
        keeper = Keeper(refreshers)
        gateway.on_startup.append(keeper.start)
        gateway.on_shutdown.append(keeper.stop)
    cooldown_sync = build_cooldown_sync(config.redis.url, cooldowns, catalog, config.routing.cooldown,
                                        config.redis)
    if cooldown_sync is not None:
        gateway.on_startup.append(cooldown_sync.start)
        gateway.on_shutdown.append(cooldown_sync.stop)
    if limit_stage is not None:
        gateway.on_startup.append(limit_stage.start)
        gateway.on_shutdown.append(limit_stage.close)
    if cache_stage is not None:
        gateway.on_shutdown.append(cache_stage.close)
    if guardrail_stage is not None:
        gateway.on_shutdown.append(guardrail_stage.close)
    return gateway
