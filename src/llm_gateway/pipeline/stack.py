"""The pipeline: stages of one shape, run in the order `create_app` lists them.

`admit` runs before the upstream call and may reject the request by raising a GatewayError; `settle` runs once
after it, always (success, error, client disconnect), and must not block: async work is scheduled, not awaited.
A stage with nothing to do before the call sets `admit = None`, and one that never waits may admit with a plain
function: each coroutine costs the request path its creation and a step of the event loop's machinery.

A stage that only records what happened (ledger, metrics, access log, traces) sets `records = True`: it settles
later, after the stages that give back what a request held (limits, budgets, in-flight counts), which settle at
once. Recording then runs while the next request's upstream works, or within RECORD_AFTER_S when none comes, or
before metrics are rendered (`record`), and at shutdown: a client that sends its next request as soon as it has
an answer does not wait for the last one to be written down.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

from llm_gateway.pipeline.context import RequestContext

log = logging.getLogger("llm_gateway.pipeline")

RECORD_AFTER_S = 0.002  # the longest a settled request waits to be recorded when no other request comes
RECORD_AT_MOST = 256  # settled requests waiting to be recorded before they are recorded at once

Admit = Callable[[RequestContext], Awaitable[None] | None]


class Stage(Protocol):
    @property
    def admit(self) -> Admit | None: ...

    def settle(self, ctx: RequestContext) -> None: ...


class Pipeline:
    def __init__(self, stages: list[Stage]) -> None:
        self.stages = stages
        self._admit: list[tuple[Admit, bool]] = [
            (s.admit, inspect.iscoroutinefunction(s.admit)) for s in stages if s.admit is not None]
        records = [getattr(s, "records", False) for s in stages]
        first = records.index(True) if True in records else len(stages)
        if not all(records[first:]):
            raise ValueError("recording stages must come last: they read what every other stage set")
        self._settle = [s.settle for s in stages[:first]]
        self._record = [s.settle for s in stages[first:]]
        self._to_record: list[RequestContext] = []
        self._timer: asyncio.TimerHandle | None = None

    async def admit(self, ctx: RequestContext) -> None:
        if self._to_record:  # earlier requests' records: written while this one's upstream works
            ctx.defer(self.record)
        for admit, waits in self._admit:
            if waits:
                await admit(ctx)  # type: ignore[misc]  # a coroutine function's result
            else:
                admit(ctx)

    def settle(self, ctx: RequestContext) -> None:
        if ctx.settled:
            return
        ctx.settled = True
        for settle in self._settle:
            try:
                settle(ctx)
            except Exception:
                log.exception("settle stage %s failed for request %s", settle, ctx.request_id)
        if not self._record:
            return
        self._to_record.append(ctx)
        if self._timer is None:
            try:
                self._timer = asyncio.get_running_loop().call_later(RECORD_AFTER_S, self.record)
            except RuntimeError:  # no event loop (a synchronous caller): nothing to wait for
                self.record()
                return
        if len(self._to_record) >= RECORD_AT_MOST:
            self.record()

    def record(self) -> None:
        """Run the recording stages for every request settled but not yet recorded, in order."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self._to_record:
            pending, self._to_record = self._to_record, []
            for ctx in pending:
                for record in self._record:
                    try:
                        record(ctx)
                    except Exception:
                        log.exception("settle stage %s failed for request %s", record, ctx.request_id)
