"""Admin API for keys, users and teams (master key only), and self-service keys for users (their token)."""

from __future__ import annotations

import asyncio
from typing import Any

from llm_gateway.errors import BadRequest, GatewayError, NotFound, Unauthorized
from llm_gateway.keys.accounts import Accounts
from llm_gateway.keys.auth import client_secret
from llm_gateway.keys.fields import KEY_FIELDS, SELF_SERVICE_KEY_FIELDS, TEAM_FIELDS, USER_FIELDS, validate
from llm_gateway.keys.model import KeyRecord, UserRecord
from llm_gateway.server.http import Request, Responder

from .wire import json_body, listing, page, query, require_master, send_json


class ResourcesApi:
    def __init__(self, accounts: Accounts) -> None:
        self.accounts = accounts
        self.store = accounts.store
        self.master_key = accounts.config.auth.master_key

    def _admin(self, request: Request) -> None:
        require_master(request, self.master_key)

    # -- keys
    async def create_key(self, request: Request, responder: Responder) -> None:
        self._admin(request)
        fields = validate(json_body(request), KEY_FIELDS, creating=True)
        send_json(responder, 201, await self._create_key(fields))

    async def _create_key(self, fields: dict[str, Any]) -> dict[str, Any]:
        if fields.get("user_id") and not fields.get("team_id"):
            user = await asyncio.to_thread(self.store.get_user, fields["user_id"])
            if user is not None and user.team_id:
                fields["team_id"] = user.team_id
        secret, key = await asyncio.to_thread(self.store.create_key, fields)
        self.accounts.put_key(key)
        return {**key.public(), "key": secret}

    async def list_keys(self, request: Request, responder: Responder) -> None:
        self._admin(request)
        params = query(request)
        after, limit = page(params)
        found = await asyncio.to_thread(self.store.list_keys, after, limit + 1, user_id=params.get("user_id"),
                                        team_id=params.get("team_id"))
        send_json(responder, 200, listing([k.public() for k in found], limit))

    async def get_key(self, request: Request, responder: Responder) -> None:
        self._admin(request)
        send_json(responder, 200, self._with_spend(await self._key(request.params["id"])))

    async def update_key(self, request: Request, responder: Responder) -> None:
        self._admin(request)
        changes = validate(json_body(request), KEY_FIELDS, creating=False)
        send_json(responder, 200, (await self._change_key(request.params["id"], changes)).public())

    async def block_key(self, request: Request, responder: Responder) -> None:
        self._admin(request)
        send_json(responder, 200, (await self._change_key(request.params["id"], {"blocked": True})).public())

    async def unblock_key(self, request: Request, responder: Responder) -> None:
        self._admin(request)
        send_json(responder, 200, (await self._change_key(request.params["id"], {"blocked": False})).public())

    async def rotate_key(self, request: Request, responder: Responder) -> None:
        self._admin(request)
        rotated = await asyncio.to_thread(self.store.rotate_key, request.params["id"])
        if rotated is None:
            raise NotFound(f"no key {request.params['id']!r}", code="key_not_found")
        secret, key, old_hash = rotated
        self.accounts.put_key(key, old_hash)
        send_json(responder, 200, {**key.public(), "key": secret})

    async def delete_key(self, request: Request, responder: Responder) -> None:
        self._admin(request)
        await self._delete_key(request.params["id"], None)
        send_json(responder, 200, {"id": request.params["id"], "deleted": True})

    async def _key(self, key_id: str) -> KeyRecord:
        key = await asyncio.to_thread(self.store.get_key, key_id)
        if key is None:
            raise NotFound(f"no key {key_id!r}", code="key_not_found")
        return key

    async def _change_key(self, key_id: str, changes: dict[str, Any]) -> KeyRecord:
        key = await asyncio.to_thread(self.store.update_key, key_id, changes)
        if key is None:
            raise NotFound(f"no key {key_id!r}", code="key_not_found")
        self.accounts.put_key(key)
        return key

    async def _delete_key(self, key_id: str, owner: str | None) -> None:
        key = await asyncio.to_thread(self.store.get_key, key_id)
        if key is None or (owner is not None and key.user_id != owner):
            raise NotFound(f"no key {key_id!r}", code="key_not_found")
        await asyncio.to_thread(self.store.delete_key, key_id)
        self.accounts.cache.evict(key.key_hash)

    def _with_spend(self, key: KeyRecord) -> dict[str, Any]:
        out = key.public()
        budget = self.accounts.budgets.budgets.get(("key", key.id))
        out["spent_usd"] = round(budget.spent, 9) if budget is not None else None
        return out

    # -- users and teams
    async def create_user(self, request: Request, responder: Responder) -> None:
        self._admin(request)
        fields = validate(json_body(request), USER_FIELDS, creating=True)
        if fields.get("id") and await asyncio.to_thread(self.store.get_user, fields["id"]) is not None:
            raise GatewayError(f"user {fields['id']!r} exists", status=409, type="invalid_request_error",
                               code="conflict")
        token, user = await asyncio.to_thread(self.store.create_user, fields)
        self.accounts.user_changed(user)
        send_json(responder, 201, {**user.public(), "token": token})

    async def create_team(self, request: Request, responder: Responder) -> None:
        self._admin(request)
        fields = validate(json_body(request), TEAM_FIELDS, creating=True)
        if fields.get("id") and await asyncio.to_thread(self.store.get_team, fields["id"]) is not None:
            raise GatewayError(f"team {fields['id']!r} exists", status=409, type="invalid_request_error",
                               code="conflict")
        team = await asyncio.to_thread(self.store.create_team, fields)
        self.accounts.team_changed(team)
        send_json(responder, 201, team.public())

    async def list_users(self, request: Request, responder: Responder) -> None:
        self._admin(request)
        params = query(request)
        after, limit = page(params)
        found = await asyncio.to_thread(self.store.list_users, after, limit + 1, params.get("team_id"))
        send_json(responder, 200, listing([u.public() for u in found], limit))

    async def list_teams(self, request: Request, responder: Responder) -> None:
        self._admin(request)
        after, limit = page(query(request))
        found = await asyncio.to_thread(self.store.list_teams, after, limit + 1)
        send_json(responder, 200, listing([t.public() for t in found], limit))

    async def get_user(self, request: Request, responder: Responder) -> None:
        self._admin(request)
        user = await asyncio.to_thread(self.store.get_user, request.params["id"])
        if user is None:
            raise NotFound(f"no user {request.params['id']!r}", code="user_not_found")
        send_json(responder, 200, user.public())

    async def get_team(self, request: Request, responder: Responder) -> None:
        self._admin(request)
        team = await asyncio.to_thread(self.store.get_team, request.params["id"])
        if team is None:
            raise NotFound(f"no team {request.params['id']!r}", code="team_not_found")
        send_json(responder, 200, team.public())

    async def update_user(self, request: Request, responder: Responder) -> None:
        self._admin(request)
        changes = validate(json_body(request), USER_FIELDS, creating=False)
        user = await asyncio.to_thread(self.store.update_user, request.params["id"], changes)
        if user is None:
            raise NotFound(f"no user {request.params['id']!r}", code="user_not_found")
        self.accounts.user_changed(user)
        send_json(responder, 200, user.public())

    async def update_team(self, request: Request, responder: Responder) -> None:
        self._admin(request)
        changes = validate(json_body(request), TEAM_FIELDS, creating=False)
        team = await asyncio.to_thread(self.store.update_team, request.params["id"], changes)
        if team is None:
            raise NotFound(f"no team {request.params['id']!r}", code="team_not_found")
        self.accounts.team_changed(team)
        send_json(responder, 200, team.public())

    async def delete_user(self, request: Request, responder: Responder) -> None:
        self._admin(request)
        if not await asyncio.to_thread(self.store.delete_user, request.params["id"]):
            raise NotFound(f"no user {request.params['id']!r}", code="user_not_found")
        self.accounts.budgets.configure("user", request.params["id"], None, "total")
        send_json(responder, 200, {"id": request.params["id"], "deleted": True})

    async def delete_team(self, request: Request, responder: Responder) -> None:
        self._admin(request)
        if not await asyncio.to_thread(self.store.delete_team, request.params["id"]):
            raise NotFound(f"no team {request.params['id']!r}", code="team_not_found")
        self.accounts.budgets.configure("team", request.params["id"], None, "total")
        send_json(responder, 200, {"id": request.params["id"], "deleted": True})

    # -- self-service: a user manages its own keys with its user token
    async def _me(self, request: Request) -> UserRecord:
        token = client_secret(request.headers)
        user = await asyncio.to_thread(self.store.user_by_token, token) if token else None
        if user is None:
            raise Unauthorized("send your user token as 'Authorization: Bearer <token>'")
        return user

    async def my_keys(self, request: Request, responder: Responder) -> None:
        user = await self._me(request)
        after, limit = page(query(request))
        found = await asyncio.to_thread(self.store.list_keys, after, limit + 1, user_id=user.id)
        send_json(responder, 200, listing([k.public() for k in found], limit))

    async def create_my_key(self, request: Request, responder: Responder) -> None:
        user = await self._me(request)
        fields = validate(json_body(request), KEY_FIELDS, creating=True, allowed=SELF_SERVICE_KEY_FIELDS)
        cap = user.max_keys if user.max_keys is not None else self.accounts.config.auth.max_keys_per_user
        if await asyncio.to_thread(self.store.count_keys, user.id) >= cap:
            raise BadRequest(f"you already have {cap} key(s), the most allowed: delete one first",
                             code="key_limit_reached")
        fields.update(user_id=user.id, team_id=user.team_id)
        send_json(responder, 201, await self._create_key(fields))

    async def delete_my_key(self, request: Request, responder: Responder) -> None:
        user = await self._me(request)
        await self._delete_key(request.params["id"], user.id)
        send_json(responder, 200, {"id": request.params["id"], "deleted": True})
