"""Admin API: the audit trail (sign-ins, sign-outs, refused credentials, role and team changes), newest first."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Security
from pydantic import BaseModel

from llm_gateway.sso.audit import EVENTS, AuditLog

from .schemas import ERRORS, MAX_EPOCH_MS, Id
from .wire import MASTER_SCHEME, MAX_PAGE, Auth

Event = Literal[EVENTS]  # type: ignore[valid-type]


class AuditEntry(BaseModel):
    id: int
    ts: int
    event: str
    outcome: str
    method: str
    provider: str
    subject: str | None
    user_id: str | None
    detail: dict[str, Any]
    client_ip: str | None


class AuditList(BaseModel):
    object: Literal["list"] = "list"
    data: list[AuditEntry]
    has_more: bool
    next_cursor: int | None


class AuditApi:
    def __init__(self, audit: AuditLog, auth: Auth) -> None:
        self.audit = audit
        self.auth = auth

    def router(self) -> APIRouter:
        router = APIRouter(prefix="/api/v1", responses=ERRORS,
                           dependencies=[Security(MASTER_SCHEME), Depends(self.auth.master)])
        router.add_api_route("/audit", self.list, methods=["GET"], response_model=AuditList, tags=["audit"],
                             summary="Sign-ins, sign-outs, refused credentials and role changes, newest first")
        return router

    async def list(self, after: Annotated[int | None, Query(ge=1, le=MAX_EPOCH_MS)] = None,
                   limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
                   user_id: Annotated[Id | None, Query()] = None, event: Event | None = None,
                   since: Annotated[int | None, Query(ge=0, le=MAX_EPOCH_MS, description="epoch ms")] = None,
                   ) -> dict[str, Any]:
        rows = await asyncio.to_thread(self.audit.list, after=after, limit=limit + 1, user_id=user_id,
                                       event=event, since_ms=since)
        more = len(rows) > limit
        rows = rows[:limit]
        return {"object": "list", "data": rows, "has_more": more,
                "next_cursor": rows[-1]["id"] if more and rows else None}
