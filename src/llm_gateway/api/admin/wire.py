"""Cold-path plumbing: the one way every cold route reads the caller's key, pagination, and the key fields."""

from __future__ import annotations

import asyncio
import hmac
import time
from typing import Annotated, Any

from fastapi import Query, Request
from fastapi.security import HTTPBearer

from llm_gateway.errors import GatewayError, Unauthorized
from llm_gateway.keys.auth import client_secret
from llm_gateway.keys.model import UserRecord
from llm_gateway.keys.roles import MASTER, Identity, of_user
from llm_gateway.keys.store import Store
from llm_gateway.usage.report import timestamp_ms as parse_timestamp

from .schemas import MAX_EPOCH_MS, Id

MAX_PAGE = 1000
# Documentation only (auto_error off): the key itself is read by `client_secret`, as on the hot path, so
# `Authorization: Bearer`, `x-api-key` and `api-key` work alike on every route.
MASTER_SCHEME = HTTPBearer(auto_error=False, scheme_name="masterKey", description="the master key")
USER_SCHEME = HTTPBearer(auto_error=False, scheme_name="userToken", description="a user's self-service token")

Limit = Annotated[int, Query(ge=1, le=MAX_PAGE, description="items per page")]
After = Annotated[Id | None, Query(description="the next_cursor of the previous page")]


def caller_secret(request: Request) -> str:
    """The caller's key; repeated headers joined with ", " as the hot path's edge joins them."""
    headers = request.headers
    joined = {name: ", ".join(headers.getlist(name)) for name in ("authorization", "x-api-key", "api-key")
              if name in headers}
    return client_secret(joined)


def check_master(secret: str, master_key: str | None) -> None:
    if master_key is None:
        raise GatewayError("the admin API is off: set auth.master_key (or LLM_GATEWAY_MASTER_KEY)",
                           status=403, type="permission_error", code="admin_disabled")
    if not secret or not hmac.compare_digest(secret.encode(), master_key.encode()):
        raise Unauthorized("the admin API needs the master key")


class Auth:
    """FastAPI dependencies: the master key, the master key when one is set, a user's token."""

    def __init__(self, master_key: str | None, store: Store) -> None:
        self.master_key = master_key
        self.store = store

    async def master(self, request: Request) -> None:
        check_master(caller_secret(request), self.master_key)
        request.state.identity = MASTER

    async def master_if_set(self, request: Request) -> None:
        """Routes that are open when the gateway is (no master key: no admin identity exists)."""
        if self.master_key is not None:
            check_master(caller_secret(request), self.master_key)

    async def user(self, request: Request) -> None:
        token = caller_secret(request)
        user = await asyncio.to_thread(self.store.user_by_token, token) if token else None
        if user is None:
            raise Unauthorized("send your user token as 'Authorization: Bearer <token>'")
        request.state.user = user
        request.state.identity = of_user(user)


def current_user(request: Request) -> UserRecord:
    user: UserRecord = request.state.user
    return user


def current_identity(request: Request) -> Identity:
    identity: Identity = request.state.identity
    return identity


def listing(items: list[dict[str, Any]], limit: int) -> dict[str, Any]:
    more = len(items) > limit
    items = items[:limit]
    return {"object": "list", "data": items, "has_more": more,
            "next_cursor": items[-1]["id"] if more and items else None}


def key_fields(given: dict[str, Any]) -> dict[str, Any]:
    """Checked key fields as the store takes them: `expires_in_s` becomes `expires_at`, models sorted once."""
    fields = dict(given)
    if "expires_in_s" in fields:
        seconds = fields.pop("expires_in_s")
        fields["expires_at"] = None if seconds is None else int((time.time() + seconds) * 1000)
    if fields.get("models") is not None:
        fields["models"] = sorted(set(fields["models"]))
    return fields


def out_of_range(message: str, param: str) -> GatewayError:
    return GatewayError(message, status=422, type="invalid_request_error", code="invalid_value", param=param)


def timestamp_ms(value: str, name: str) -> int:
    """Epoch ms or ISO 8601 (400 when neither), within what a ledger row can hold (422 otherwise)."""
    ms = parse_timestamp(value, name)
    if not 0 <= ms <= MAX_EPOCH_MS:
        raise out_of_range(f"{name} must lie between 1970 and 9999", name)
    return ms
