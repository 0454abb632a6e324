"""GET /api/v1/providers/status: each deployment's health, in-flight requests and latency."""

from __future__ import annotations

import hmac

import orjson

from llm_gateway.errors import Unauthorized
from llm_gateway.routing.catalog import Catalog
from llm_gateway.routing.cooldown import Cooldowns
from llm_gateway.server.http import Request, Responder


class RoutingApi:
    def __init__(self, catalog: Catalog, cooldowns: Cooldowns, master_key: str | None) -> None:
        self.catalog = catalog
        self.cooldowns = cooldowns
        self.master_key = master_key

    async def status(self, request: Request, responder: Responder) -> None:
        if self.master_key is not None:
            given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
            if not hmac.compare_digest(given.encode(), self.master_key.encode()):
                raise Unauthorized("this endpoint needs the master key as a Bearer token")
        deployments = []
        for dep in self.catalog.deployments.values():
            state, left = self.cooldowns.state(dep)
            p95 = dep.p95_ttft(min_samples=1)
            deployments.append({
                "id": dep.id, "provider": dep.provider.name, "model": dep.model, "state": state,
                "healthy": state == "healthy", "cooldown_remaining_s": round(left, 3),
                "consecutive_failures": dep.fails_in_row, "in_flight": dep.in_flight,
                "requests": dep.requests, "failures": dep.failures,
                "ewma_ttft_ms": round(dep.ewma_ttft * 1000, 3),
                "p95_ttft_ms": round(p95 * 1000, 3) if p95 is not None else None,
            })
        models = {name: {"deployments": [d.id for d in route.deployments], "strategy": route.strategy.name,
                         "fallbacks": route.fallbacks + [r.name for r in route.chain],
                         "context_window_fallbacks": route.context_window_fallbacks}
                  for name, route in self.catalog.routes.items()}
        responder.send(200, orjson.dumps({"deployments": deployments, "models": models}))
