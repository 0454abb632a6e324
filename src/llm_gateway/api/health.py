"""Liveness, readiness and the Prometheus scrape endpoint."""

from __future__ import annotations

import asyncio
import time

import orjson

from llm_gateway.providers.base import Provider
from llm_gateway.server.http import Request, Responder
from llm_gateway.telemetry.metrics import Registry

PROMETHEUS_TYPE = b"text/plain; version=0.0.4; charset=utf-8"


class HealthApi:
    def __init__(self, providers: list[Provider], registry: Registry, cache_seconds: float = 5.0) -> None:
        self.providers = providers
        self.registry = registry
        self.cache_seconds = cache_seconds
        self._checked_at = 0.0
        self._report: dict[str, str] = {}

    async def health(self, request: Request, responder: Responder) -> None:
        responder.send(200, b'{"status":"ok"}')

    async def metrics(self, request: Request, responder: Responder) -> None:
        responder.send(200, self.registry.render(), content_type=PROMETHEUS_TYPE)

    async def ready(self, request: Request, responder: Responder) -> None:
        if time.monotonic() - self._checked_at > self.cache_seconds:
            results = await asyncio.gather(*(self._probe(p) for p in self.providers))
            self._report = dict(zip((p.name for p in self.providers), results, strict=True))
            self._checked_at = time.monotonic()
        ok = all(v == "reachable" for v in self._report.values())
        body = {"status": "ready" if ok else "not ready", "config": "loaded", "providers": self._report}
        responder.send(200 if ok else 503, orjson.dumps(body))

    async def _probe(self, provider: Provider) -> str:
        origin = provider.origin
        try:
            async with asyncio.timeout(2.0):
                _, writer = await asyncio.open_connection(origin.host, origin.port)
        except (OSError, TimeoutError) as exc:
            return f"unreachable: {getattr(exc, 'strerror', None) or type(exc).__name__}"
        writer.close()
        return "reachable"
