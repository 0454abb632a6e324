"""The pipeline: stages of one shape, run in the order `create_app` lists them.

`admit` runs before the upstream call and may reject the request by raising a GatewayError; `settle` runs once
after it, always (success, error, client disconnect), and must not block: async work is scheduled, not awaited.
A stage with nothing to do before the call sets `admit = None`, and one that never waits may admit with a plain
function: each coroutine costs the request path its creation and a step of the event loop's machinery.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

from llm_gateway.pipeline.context import RequestContext

log = logging.getLogger("llm_gateway.pipeline")

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
        self._settle = [s.settle for s in stages]

    async def admit(self, ctx: RequestContext) -> None:
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
