"""The admin API under /api/v1/ (keys, users, teams, models, usage, spend), as FastAPI routers."""

from __future__ import annotations

from fastapi import APIRouter

from llm_gateway.keys.accounts import Accounts
from llm_gateway.routing.catalog import Catalog
from llm_gateway.sso.audit import AuditLog

from .audit import AuditApi
from .reports import ReportsApi
from .resources import ResourcesApi
from .wire import Auth


def admin_router(accounts: Accounts, catalog: Catalog, auth: Auth) -> APIRouter:
    router = APIRouter()
    for part in ResourcesApi(accounts, auth).routers():
        router.include_router(part)
    router.include_router(ReportsApi(accounts, catalog, auth).router())
    router.include_router(AuditApi(AuditLog(accounts.engine), auth).router())
    return router
