"""The dashboard at /ui: server-rendered pages over the usage rollups and the admin API's own handlers."""

from __future__ import annotations

from fastapi import APIRouter

from llm_gateway.api.admin.resources import ResourcesApi
from llm_gateway.api.admin.wire import Auth
from llm_gateway.api.cache_admin import CacheAdminApi
from llm_gateway.api.routing import RoutingApi
from llm_gateway.keys.accounts import Accounts
from llm_gateway.routing.catalog import Catalog

from .actions import Actions
from .dashboard import Dashboard
from .pages import Pages


def dashboard_router(accounts: Accounts, catalog: Catalog, routing: RoutingApi, cache: CacheAdminApi,
                     auth: Auth) -> APIRouter:
    ui = Dashboard(accounts, catalog, ResourcesApi(accounts, auth), routing, cache, auth)
    router = APIRouter(prefix="/ui", include_in_schema=False)
    router.add_api_route("/static/{name}", ui.static.serve, methods=["GET"])
    Pages(ui).add_to(router)
    Actions(ui).add_to(router)
    return router
