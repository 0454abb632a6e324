"""Liveness, readiness and the Prometheus scrape endpoints: the whole gateway's, and one process' own."""

from __future__ import annotations

import asyncio
import time

import orjson

from llm_gateway.errors import GatewayError, ServiceUnavailable, UpstreamUnavailable
from llm_gateway.providers.base import Provider
from llm_gateway.providers.http import HttpClient, Origin, Timeouts
from llm_gateway.providers.wire import PreparedRequest
from llm_gateway.server.http import Request, Responder
from llm_gateway.telemetry.metrics import Registry, merge

PROMETHEUS_TYPE = b"text/plain; version=0.0.4; charset=utf-8"
# Reading another worker's series over loopback: it answers within milliseconds unless it is gone.
_SCRAPE_TIMEOUTS = Timeouts(connect=1.0, first_byte=2.0, idle=2.0, total=3.0)
_SCRAPE = PreparedRequest("GET", "/metrics")


class HealthApi:
    def __init__(self, providers: list[Provider], registry: Registry, cache_seconds: float = 5.0, *,
                 worker_count: int = 1, workers: list[Origin] | None = None,
                 client: HttpClient | None = None) -> None:
        """`workers`: the metrics listeners of the gateway's other `worker_count - 1` processes (`--workers N`)."""
        self.providers = providers
        self.registry = registry
        self.worker_count = worker_count
        self.workers = workers or []
        self.client = client or HttpClient()
        self.cache_seconds = cache_seconds
        self._checked_at = 0.0
        self._report: dict[str, str] = {}

    async def health(self, request: Request, responder: Responder) -> None:
        responder.send(200, b'{"status":"ok"}')

    async def metrics(self, request: Request, responder: Responder) -> None:
        """The whole gateway's series: with several workers, each worker's own series added up.

        A worker that cannot be read fails the scrape (503) rather than answer with part of the sums, which a
        scraper would take for counters that went back.
        """
        own = self.registry.render()
        if self.worker_count == 1:
            responder.send(200, own, content_type=PROMETHEUS_TYPE)
            return
        if not self.workers:
            raise ServiceUnavailable(f"this gateway runs {self.worker_count} workers and adds up their metrics "
                                     "through their metrics listeners, which server.metrics_port 0 turns off")
        try:
            others = await asyncio.gather(*(self._scrape(origin) for origin in self.workers))
        except GatewayError as err:
            raise ServiceUnavailable(f"cannot read the metrics of every worker: {err.message}") from None
        responder.send(200, merge([own, *others]), content_type=PROMETHEUS_TYPE)

    async def own_metrics(self, request: Request, responder: Responder) -> None:
        """This process' own series (the metrics listener: with `--workers N`, worker i on metrics_port + i)."""
        responder.send(200, self.registry.render(), content_type=PROMETHEUS_TYPE)

    async def _scrape(self, origin: Origin) -> bytes:
        response = await self.client.send(origin, _SCRAPE, _SCRAPE_TIMEOUTS, label="worker")
        body = await response.read()
        if response.status != 200:
            raise UpstreamUnavailable(f"the worker on port {origin.port} answered {response.status}")
        return body

    async def ready(self, request: Request, responder: Responder) -> None:
        if time.monotonic() - self._checked_at > self.cache_seconds:
            results = await asyncio.gather(*(self._probe(p) for p in self.providers))
            self._report = dict(zip((p.name for p in self.providers), results, strict=True))
            self._checked_at = time.monotonic()
        ok = all(v == "reachable" for v in self._report.values())
        body = {"status": "ready" if ok else "not ready", "config": "loaded", "providers": self._report}
        responder.send(200 if ok else 503, orjson.dumps(body))

    async def _probe(self, provider: Provider) -> str:
        origin = provider.transport.reach(provider.origin) if provider.transport else provider.origin
        try:
            async with asyncio.timeout(2.0):
                _, writer = await asyncio.open_connection(origin.host, origin.port)
        except (OSError, TimeoutError) as exc:
            return f"unreachable: {getattr(exc, 'strerror', None) or type(exc).__name__}"
        writer.close()
        return "reachable"
