"""The dashboard's audit page (admins): sign-ins, sign-outs, refused credentials, role and team changes."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from fastapi.responses import Response

from llm_gateway.sso.audit import EVENTS, AuditLog

from .dashboard import Dashboard

PAGE = 100


class AuditPage:
    def __init__(self, ui: Dashboard) -> None:
        self.ui = ui
        self.audit = AuditLog(ui.engine)

    def add_to(self, router: APIRouter) -> None:
        router.add_api_route("/audit", self.page, methods=["GET"])

    async def page(self, request: Request) -> Response:
        session = await self.ui.session(request)
        if session is None:
            return self.ui.to_login(request)
        if not session.identity.is_admin:
            return self.ui.render(request, "error.html", session, status=403, message="this needs an admin")
        event = request.query_params.get("event")
        event = event if event in EVENTS else None
        after_text = request.query_params.get("after", "")
        after = int(after_text) if after_text.isascii() and after_text.isdigit() and len(after_text) < 19 else None
        rows = await asyncio.to_thread(self.audit.list, after=after, limit=PAGE + 1, event=event)
        return self.ui.render(request, "audit.html", session, rows=rows[:PAGE], events=EVENTS, event=event,
                              next_after=rows[PAGE - 1]["id"] if len(rows) > PAGE else None)
