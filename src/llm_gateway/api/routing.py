"""GET /api/v1/providers/status: each deployment's health, in-flight requests and latency."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Security
from pydantic import BaseModel

from llm_gateway.api.admin.schemas import ERRORS
from llm_gateway.api.admin.wire import MASTER_SCHEME, Auth
from llm_gateway.routing.catalog import Catalog
from llm_gateway.routing.cooldown import Cooldowns


class ProvidersStatus(BaseModel):
    deployments: list[dict[str, Any]]
    models: dict[str, dict[str, Any]]


class RoutingApi:
    def __init__(self, catalog: Catalog, cooldowns: Cooldowns) -> None:
        self.catalog = catalog
        self.cooldowns = cooldowns

    def router(self, auth: Auth) -> APIRouter:
        """The master key when one is set (the same key parsing as every admin route); open otherwise."""
        router = APIRouter(responses=ERRORS, dependencies=[Security(MASTER_SCHEME), Depends(auth.master_if_set)])
        router.add_api_route("/api/v1/providers/status", self.status, methods=["GET"], tags=["routing"],
                             response_model=ProvidersStatus, summary="Each deployment's health and latency")
        return router

    async def status(self) -> dict[str, Any]:
        deployments = []
        for dep in self.catalog.deployments.values():
            state, left = self.cooldowns.state(dep)
            p95 = dep.p95_ttft(min_samples=1)
            problem = dep.provider.credentials_problem()
            deployments.append({
                "id": dep.id, "provider": dep.provider.name, "model": dep.model, "state": state,
                "healthy": state == "healthy" and problem is None, "credentials": problem or "ok",
                "cooldown_remaining_s": round(left, 3),
                "consecutive_failures": dep.fails_in_row, "in_flight": dep.in_flight,
                "requests": dep.requests, "failures": dep.failures,
                "ewma_ttft_ms": round(dep.ewma_ttft * 1000, 3),
                "p95_ttft_ms": round(p95 * 1000, 3) if p95 is not None else None,
            })
        models = {name: {"deployments": [d.id for d in route.deployments], "strategy": route.strategy.name,
                         "fallbacks": route.fallbacks + [r.name for r in route.chain],
                         "context_window_fallbacks": route.context_window_fallbacks}
                  for name, route in self.catalog.routes.items()}
        return {"deployments": deployments, "models": models}
