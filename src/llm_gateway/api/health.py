"""Liveness, readiness and the Prometheus scrape endpoints: the whole gateway's, and one process' own."""

from __future__ import annotations

import asyncio
import hmac
import time
from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel

from llm_gateway.errors import GatewayError, ServiceUnavailable, Unauthorized, UpstreamUnavailable
from llm_gateway.providers.base import Provider
from llm_gateway.providers.http import HttpClient, Origin, Timeouts
from llm_gateway.providers.wire import PreparedRequest
from llm_gateway.telemetry.metrics import Registry, merge

PROMETHEUS_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Reading another worker's series over loopback: it answers within milliseconds unless it is gone.
_SCRAPE_TIMEOUTS = Timeouts(connect=1.0, first_byte=2.0, idle=2.0, total=3.0)


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    status: str
    config: str
    providers: dict[str, str]


class HealthApi:
    def __init__(self, providers: list[Provider], registry: Registry, cache_seconds: float = 5.0, *,
                 worker_count: int = 1, workers: list[Origin] | None = None,
                 client: HttpClient | None = None, bearer_token: str | None = None) -> None:
        """`workers`: the metrics listeners of the gateway's other `worker_count - 1` processes (`--workers N`).
        `bearer_token`: when set, a scrape must send it (`metrics.bearer_token`), here and to the workers."""
        self.providers = providers
        self.registry = registry
        self.worker_count = worker_count
        self.workers = workers or []
        self.client = client or HttpClient()
        self.cache_seconds = cache_seconds
        self.bearer = bearer_token.encode() if bearer_token else None
        self._scrape_request = PreparedRequest("GET", "/metrics", [("authorization", f"Bearer {bearer_token}")]
                                               if bearer_token else [])
        self._checked_at = 0.0
        self._report: dict[str, str] = {}

    def router(self, whole: bool = True) -> APIRouter:
        """`/health`, `/metrics` (the whole gateway's, or with `whole` off this process' own) and `/ready`."""
        router = APIRouter(tags=["operations"])
        router.add_api_route("/health", self.health, methods=["GET"], response_model=Health,
                             summary="The process is up")
        router.add_api_route("/metrics", self.metrics_route if whole else self.own_metrics_route, methods=["GET"],
                             response_class=Response, summary="Prometheus series",
                             responses={200: {"content": {PROMETHEUS_TYPE: {}}}})
        if whole:
            router.add_api_route("/ready", self.ready, methods=["GET"], response_model=Readiness,
                                 responses={503: {"model": Readiness, "description": "not ready"}},
                                 summary="The config is loaded and every provider's host accepts connections")
        return router

    async def health(self) -> dict[str, str]:
        return {"status": "ok"}

    def check_scraper(self, request: Request) -> None:
        """With `metrics.bearer_token` set, a scrape must send it; compared in constant time."""
        if self.bearer is None:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), self.bearer):
            raise Unauthorized("/metrics needs the metrics bearer token", code="invalid_metrics_token",
                               headers={"www-authenticate": "Bearer"})

    async def metrics_route(self, request: Request) -> Response:
        self.check_scraper(request)
        return Response(await self.metrics(), media_type=PROMETHEUS_TYPE)

    async def own_metrics_route(self, request: Request) -> Response:
        self.check_scraper(request)
        return Response(self.own_metrics(), media_type=PROMETHEUS_TYPE)

    async def metrics(self) -> bytes:
        """The whole gateway's series: with several workers, each worker's own series added up.

        A worker that cannot be read fails the scrape (503) rather than answer with part of the sums, which a
        scraper would take for counters that went back.
        """
        own = self.registry.render()
        if self.worker_count == 1:
            return own
        if not self.workers:
            raise ServiceUnavailable(f"this gateway runs {self.worker_count} workers and adds up their metrics "
                                     "through their metrics listeners, which server.metrics_port 0 turns off")
        try:
            others = await asyncio.gather(*(self._scrape(origin) for origin in self.workers))
        except GatewayError as err:
            raise ServiceUnavailable(f"cannot read the metrics of every worker: {err.message}") from None
        return merge([own, *others])

    def own_metrics(self) -> bytes:
        """This process' own series (the metrics listener: with `--workers N`, worker i on metrics_port + i)."""
        return self.registry.render()

    async def _scrape(self, origin: Origin) -> bytes:
        response = await self.client.send(origin, self._scrape_request, _SCRAPE_TIMEOUTS, label="worker")
        body = await response.read()
        if response.status != 200:
            raise UpstreamUnavailable(f"the worker on port {origin.port} answered {response.status}")
        return body

    async def ready(self, response: Response) -> dict[str, Any]:
        if time.monotonic() - self._checked_at > self.cache_seconds:
            results = await asyncio.gather(*(self._probe(p) for p in self.providers))
            self._report = dict(zip((p.name for p in self.providers), results, strict=True))
            self._checked_at = time.monotonic()
        ok = all(v == "reachable" for v in self._report.values())
        response.status_code = 200 if ok else 503
        return {"status": "ready" if ok else "not ready", "config": "loaded", "providers": self._report}

    async def _probe(self, provider: Provider) -> str:
        problem = provider.credentials_problem()
        if problem is not None:
            return f"credentials {problem}"
        origin = provider.transport.reach(provider.origin) if provider.transport else provider.origin
        try:
            async with asyncio.timeout(2.0):
                _, writer = await asyncio.open_connection(origin.host, origin.port)
        except (OSError, TimeoutError) as exc:
            return f"unreachable: {getattr(exc, 'strerror', None) or type(exc).__name__}"
        writer.close()
        return "reachable"
