"""Admin API reports: usage totals and groups over a time range, current budget spend, models with prices."""

from __future__ import annotations

import asyncio

from llm_gateway.errors import BadRequest
from llm_gateway.keys.accounts import Accounts
from llm_gateway.routing.catalog import Catalog
from llm_gateway.server.http import Request, Responder
from llm_gateway.usage.report import FILTERS, GROUPS, usage_report

from .wire import page, query, require_master, send_json, time_range


class ReportsApi:
    def __init__(self, accounts: Accounts, catalog: Catalog) -> None:
        self.accounts = accounts
        self.catalog = catalog
        self.master_key = accounts.config.auth.master_key

    async def usage(self, request: Request, responder: Responder) -> None:
        require_master(request, self.master_key)
        params = query(request)
        start, end = time_range(params)
        group_by = params.get("group_by")
        if group_by is not None and group_by not in GROUPS:
            raise BadRequest(f"group_by must be one of {', '.join(GROUPS)}", param="group_by")
        offset_text = params.get("offset", "0")
        if not offset_text.isdigit():
            raise BadRequest("offset must be an integer >= 0", param="offset")
        _, limit = page(params)
        filters = {name: params[name] for name in FILTERS if name in params}
        report = await asyncio.to_thread(usage_report, self.accounts.engine, start, end, group_by, filters,
                                         limit, int(offset_text))
        send_json(responder, 200, report)

    async def spend(self, request: Request, responder: Responder) -> None:
        """Every budget with its spend in the current period (what the budget check sees, in memory)."""
        require_master(request, self.master_key)
        kind = query(request).get("kind")
        rows = [b for b in self.accounts.budgets.snapshot() if kind is None or b["kind"] == kind]
        send_json(responder, 200, {"object": "list", "data": rows})

    async def models(self, request: Request, responder: Responder) -> None:
        require_master(request, self.master_key)
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
        send_json(responder, 200, {"object": "list", "data": data, "price_database": prices.version,
                                   "wildcard_providers": [p.name for p in self.catalog.wildcards]})
