"""The admin API under /api/v1/ (keys, users, teams, models, usage, spend) and its /openapi.json."""

from __future__ import annotations

import orjson

from llm_gateway.keys.accounts import Accounts
from llm_gateway.routing.catalog import Catalog
from llm_gateway.server.http import Request, Responder
from llm_gateway.server.router import Router

from .openapi import spec
from .reports import ReportsApi
from .resources import ResourcesApi


def mount_admin(router: Router, accounts: Accounts, catalog: Catalog) -> None:
    r = ResourcesApi(accounts)
    reports = ReportsApi(accounts, catalog)
    document = orjson.dumps(spec())

    async def openapi(request: Request, responder: Responder) -> None:
        responder.send(200, document)

    router.add("GET", "/openapi.json", openapi)
    for kind, create, listing, get, update, delete in (
            ("keys", r.create_key, r.list_keys, r.get_key, r.update_key, r.delete_key),
            ("users", r.create_user, r.list_users, r.get_user, r.update_user, r.delete_user),
            ("teams", r.create_team, r.list_teams, r.get_team, r.update_team, r.delete_team)):
        router.add("POST", f"/api/v1/{kind}", create)
        router.add("GET", f"/api/v1/{kind}", listing)
        router.add("GET", f"/api/v1/{kind}/{{id}}", get)
        router.add("PATCH", f"/api/v1/{kind}/{{id}}", update)
        router.add("DELETE", f"/api/v1/{kind}/{{id}}", delete)
    router.add("POST", "/api/v1/keys/{id}/rotate", r.rotate_key)
    router.add("POST", "/api/v1/keys/{id}/block", r.block_key)
    router.add("POST", "/api/v1/keys/{id}/unblock", r.unblock_key)
    router.add("GET", "/api/v1/me/keys", r.my_keys)
    router.add("POST", "/api/v1/me/keys", r.create_my_key)
    router.add("DELETE", "/api/v1/me/keys/{id}", r.delete_my_key)
    router.add("GET", "/api/v1/usage", reports.usage)
    router.add("GET", "/api/v1/spend", reports.spend)
    router.add("GET", "/api/v1/models", reports.models)
