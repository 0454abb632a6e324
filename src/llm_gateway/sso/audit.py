"""The audit trail: every sign-in, sign-out, refused credential and role or team change, one row each.

Writes go to a thread (the database is never awaited on the request path's event loop); a failed write is logged,
never turned into a refused sign-in.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import orjson
from sqlalchemy import Engine, insert, select

from llm_gateway.db.tables import audit
from llm_gateway.keys.model import now_ms

log = logging.getLogger("llm_gateway.audit")

CAPPED_PER_S = 20  # refusals anyone can cause: at most this many rows a second, the rest counted in the log
EVENTS = ("sign_in", "sign_in_refused", "sign_out", "role_change", "team_change", "token_refused", "key_issued",
          "key_blocked", "token_rotated")


class AuditLog:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._pending: set[asyncio.Task[None]] = set()
        self._second, self._count, self._suppressed = 0, 0, 0

    def write(self, event: str, *, outcome: str = "ok", method: str = "", provider: str = "",
              subject: str | None = None, user_id: str | None = None, client_ip: str | None = None,
              **detail: Any) -> None:
        row = {"ts": now_ms(), "event": event, "outcome": outcome, "method": method, "provider": provider[:64],
               "subject": subject[:320] if subject else None, "user_id": user_id,
               "detail": orjson.dumps(detail, default=str).decode(), "client_ip": client_ip}
        with self.engine.begin() as conn:
            conn.execute(insert(audit).values(**row))

    def record(self, event: str, **fields: Any) -> None:
        """Write in the background (from async code); errors are logged."""
        task = asyncio.get_running_loop().create_task(self._write(event, fields))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    def record_capped(self, event: str, **fields: Any) -> None:
        """`record`, at most CAPPED_PER_S rows a second: for refusals that anyone can cause, so that a flood of bad
        credentials cannot become a flood of writes."""
        second = int(time.time())
        if second != self._second:
            if self._suppressed:
                log.warning("%d %s row(s) not written to the audit table (rate cap)", self._suppressed, event)
            self._second, self._count, self._suppressed = second, 0, 0
        if self._count >= CAPPED_PER_S:
            self._suppressed += 1
            return
        self._count += 1
        self.record(event, **fields)

    async def awrite(self, event: str, **fields: Any) -> None:
        """Write and wait (cold paths: the row exists when the answer leaves); errors are logged."""
        await self._write(event, fields)

    async def _write(self, event: str, fields: dict[str, Any]) -> None:
        try:
            await asyncio.to_thread(self.write, event, **fields)
        except Exception as exc:  # the trail is best effort; the sign-in's outcome does not depend on it
            log.warning("audit write failed (%s): %s", type(exc).__name__, event)

    def session_event(self, event: str, request: Any, identity: Any, method: str) -> None:
        """A dashboard sign-in or sign-out (ui/session.py's observers): master key, user token, ..."""
        client = getattr(request, "client", None)
        self.record(event, method=method.partition(":")[0], subject=identity.subject, user_id=identity.user_id,
                    client_ip=client.host if client else None, roles=sorted(identity.roles))

    async def drain(self) -> None:
        if self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)

    def list(self, *, after: int | None = None, limit: int = 100, user_id: str | None = None,
             event: str | None = None, since_ms: int | None = None) -> list[dict[str, Any]]:
        """Newest first; `after` is the previous page's last id."""
        query = select(audit).order_by(audit.c.id.desc()).limit(limit)
        if after is not None:
            query = query.where(audit.c.id < after)
        if user_id is not None:
            query = query.where(audit.c.user_id == user_id)
        if event is not None:
            query = query.where(audit.c.event == event)
        if since_ms is not None:
            query = query.where(audit.c.ts >= since_ms)
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        out = []
        for row in rows:
            item = dict(row._mapping)
            item["detail"] = orjson.loads(item["detail"] or "{}")
            out.append(item)
        return out
