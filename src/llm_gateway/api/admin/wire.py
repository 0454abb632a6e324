"""Admin API plumbing: master-key check, JSON bodies, query parameters, pagination and time ranges."""

from __future__ import annotations

import hmac
import time
from typing import Any
from urllib.parse import parse_qs

import orjson

from llm_gateway.errors import BadRequest, GatewayError, Unauthorized
from llm_gateway.keys.auth import client_secret
from llm_gateway.server.http import Request, Responder
from llm_gateway.usage.report import timestamp_ms

MAX_PAGE = 1000


def require_master(request: Request, master_key: str | None) -> None:
    if master_key is None:
        raise GatewayError("the admin API is off: set auth.master_key (or LLM_GATEWAY_MASTER_KEY)",
                           status=403, type="permission_error", code="admin_disabled")
    secret = client_secret(request.headers)
    if not secret or not hmac.compare_digest(secret.encode(), master_key.encode()):
        raise Unauthorized("the admin API needs the master key")


def json_body(request: Request) -> Any:
    if not request.body:
        return {}
    try:
        return orjson.loads(request.body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"the request body is not valid JSON: {exc}", code="invalid_json") from None


def query(request: Request) -> dict[str, str]:
    return {k: v[-1] for k, v in parse_qs(request.query, keep_blank_values=False).items()}


def page(params: dict[str, str]) -> tuple[str | None, int]:
    """`after` (the last id of the previous page) and `limit` (1..1000, default 100)."""
    raw = params.get("limit", "100")
    try:
        limit = int(raw)
    except ValueError:
        raise BadRequest("limit must be an integer", param="limit") from None
    if not 1 <= limit <= MAX_PAGE:
        raise BadRequest(f"limit must be between 1 and {MAX_PAGE}", param="limit")
    return params.get("after") or None, limit


def listing(items: list[dict[str, Any]], limit: int) -> dict[str, Any]:
    more = len(items) > limit
    items = items[:limit]
    return {"object": "list", "data": items, "has_more": more,
            "next_cursor": items[-1]["id"] if more and items else None}


def time_range(params: dict[str, str], default_days: int = 30) -> tuple[int, int]:
    end = timestamp_ms(params["end"], "end") if "end" in params else int(time.time() * 1000) + 1
    start = timestamp_ms(params["start"], "start") if "start" in params else end - default_days * 86_400_000
    if start >= end:
        raise BadRequest("start must be before end", param="start")
    return start, end


def send_json(responder: Responder, status: int, body: Any) -> None:
    responder.send(status, orjson.dumps(body))
