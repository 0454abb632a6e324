"""Admin API reports: usage totals and groups over a time range, current budget spend, models with prices."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Security

from llm_gateway.errors import BadRequest, Forbidden
from llm_gateway.keys.accounts import Accounts
from llm_gateway.routing.catalog import Catalog
from llm_gateway.usage.report import usage_report

from .schemas import ERRORS, MAX_EPOCH_MS, Id, ModelList, Name, SpendList, UsageReport
from .wire import MASTER_SCHEME, MAX_PAGE, Auth
from .wire import timestamp_ms as parse_time

Group = Annotated[str, Query(pattern=r"^(key|user|team|model|provider|day|metadata\.[A-Za-z0-9_-]{1,64})$",
                            max_length=80, description="key, user, team, model, provider, day or metadata.KEY")]
MetadataFilter = Annotated[str | None, Query(pattern=r"^[A-Za-z0-9_-]{1,64}:.{0,256}$", max_length=330,
                                             description="KEY:VALUE: only requests whose metadata has it")]
# Without a master key (keyless, as the Go seed runs) the usage report is open, but aggregate only: nothing that
# names who made the requests.
PRIVATE_GROUPS = ("key", "user", "team")
Moment = Annotated[str | None, Query(max_length=64, description="epoch ms or ISO 8601")]


def time_range(start: str | None, end: str | None, default_days: int = 30) -> tuple[int, int]:
    end_ms = parse_time(end, "end") if end is not None else int(time.time() * 1000) + 1
    start_ms = parse_time(start, "start") if start is not None else max(0, end_ms - default_days * 86_400_000)
    if start_ms >= end_ms:
        raise BadRequest("start must be before end", param="start")
    return start_ms, end_ms


class ReportsApi:
    def __init__(self, accounts: Accounts, catalog: Catalog, auth: Auth) -> None:
        self.accounts = accounts
        self.catalog = catalog
        self.auth = auth

    def router(self) -> APIRouter:
        router = APIRouter(prefix="/api/v1", responses=ERRORS,
                           dependencies=[Security(MASTER_SCHEME), Depends(self.auth.master)])
        router.add_api_route("/spend", self.spend, methods=["GET"], response_model=SpendList, tags=["usage"],
                             summary="Budgets and their spend this period")
        router.add_api_route("/models", self.models, methods=["GET"], response_model=ModelList, tags=["models"],
                             summary="Served models, deployments and prices")
        # the master key when one is set; without one (keyless), open for aggregate totals
        usage = APIRouter(prefix="/api/v1", responses=ERRORS,
                          dependencies=[Security(MASTER_SCHEME), Depends(self.auth.master_if_set)])
        usage.add_api_route("/usage", self.usage, methods=["GET"], response_model=UsageReport, tags=["usage"],
                            summary="Usage totals, optionally grouped")
        both = APIRouter()
        both.include_router(usage)
        both.include_router(router)
        return both

    async def usage(self, start: Moment = None, end: Moment = None, group_by: Group | None = None,
                    key_id: Annotated[Id | None, Query()] = None, user_id: Annotated[Id | None, Query()] = None,
                    team_id: Annotated[Id | None, Query()] = None, model: Annotated[Name | None, Query()] = None,
                    provider: Annotated[Name | None, Query()] = None, metadata: MetadataFilter = None,
                    limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="groups per page")] = 100,
                    offset: Annotated[int, Query(ge=0, le=MAX_EPOCH_MS, description="groups to skip")] = 0,
                    ) -> dict[str, Any]:
        start_ms, end_ms = time_range(start, end)
        given = {"key_id": key_id, "user_id": user_id, "team_id": team_id, "model": model, "provider": provider}
        filters = {name: value for name, value in given.items() if value is not None}
        if self.auth.master_key is None and (group_by in PRIVATE_GROUPS or {"key_id", "user_id", "team_id"} & set(
                filters)):
            raise Forbidden("without a master key the usage report is aggregate only: no grouping or filtering "
                            "by key, user or team (set auth.master_key to see them)", code="aggregate_only")
        meta = (metadata.split(":", 1)[0], metadata.split(":", 1)[1]) if metadata is not None else None
        return await asyncio.to_thread(usage_report, self.accounts.engine, start_ms, end_ms, group_by, filters,
                                       limit, offset, meta)

    async def spend(self, kind: Literal["key", "user", "team"] | None = None) -> dict[str, Any]:
        """Every budget with its spend in the current period (what the budget check sees, in memory)."""
        rows = [b for b in self.accounts.budgets.snapshot() if kind is None or b["kind"] == kind]
        return {"object": "list", "data": rows}

    async def models(self) -> dict[str, Any]:
        prices = self.accounts.prices
        data = []
        for name, route in self.catalog.routes.items():
            deployments = []
            for d in route.deployments:
                priced = prices.for_deployment(d)
                deployments.append({"deployment": d.name, "provider": d.provider.name, "model": d.model,
                                    "price_per_1m": priced.price.per_million_dict() if priced else None,
                                    "price_source": priced.source if priced else None})
            data.append({"id": name, "deployments": deployments, "fallbacks": route.fallbacks})
        return {"object": "list", "data": data, "price_database": prices.version,
                "wildcard_providers": [p.name for p in self.catalog.wildcards]}
