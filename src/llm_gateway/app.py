"""create_app: the only place that constructs the gateway's parts and wires them together."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from llm_gateway.accounting.tokens import TokenCounter
from llm_gateway.accounting.usage import UsageStage
from llm_gateway.api.health import HealthApi
from llm_gateway.api.openai import ENDPOINTS, OpenAIApi
from llm_gateway.pipeline.dispatch import Dispatcher
from llm_gateway.pipeline.stack import Pipeline, Stage
from llm_gateway.providers.base import Provider
from llm_gateway.providers.http import HttpClient
from llm_gateway.providers.registry import build_provider
from llm_gateway.routing.catalog import Catalog
from llm_gateway.server.router import Router
from llm_gateway.settings import GatewayConfig
from llm_gateway.telemetry.metrics import Registry
from llm_gateway.telemetry.recorder import CoreMetrics, MetricsStage

Hook = Callable[[], Awaitable[None]]


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
    on_startup: list[Hook] = field(default_factory=list)
    on_shutdown: list[Hook] = field(default_factory=list)

    async def startup(self) -> None:
        self.counter.preload()
        for hook in self.on_startup:
            await hook()

    async def shutdown(self) -> None:
        for hook in reversed(self.on_shutdown):
            await hook()
        self.client.close()


def create_app(config: GatewayConfig) -> Gateway:
    registry = Registry()
    core_metrics = CoreMetrics(registry)
    counter = TokenCounter()
    client = HttpClient()
    providers = {p.name: build_provider(p) for p in config.providers}
    catalog = Catalog(providers, config.models)

    stages: list[Stage] = [
        UsageStage(counter),  # first to settle: the stages after it read ctx.usage
        MetricsStage(core_metrics),
    ]
    pipeline = Pipeline(stages)
    dispatcher = Dispatcher(client)
    openai = OpenAIApi(catalog, pipeline, dispatcher, config.auth.user_header,
                       forward_client_auth=config.auth.master_key is None)
    health = HealthApi(list(providers.values()), registry)

    router = Router()
    for path in ENDPOINTS:
        router.add("POST", path, openai.endpoint)
    router.add("GET", "/v1/models", openai.models)
    router.add_prefix("/v1/", openai.other)
    router.add("GET", "/health", health.health)
    router.add("GET", "/ready", health.ready)
    router.add("GET", "/metrics", health.metrics)
    metrics_router = Router()
    metrics_router.add("GET", "/metrics", health.metrics)
    metrics_router.add("GET", "/health", health.health)

    return Gateway(config, router, metrics_router, registry, client, counter, providers, catalog, pipeline)
