"""The pipeline: stages of one shape, run in the order `create_app` lists them.

`admit` runs before the upstream call and may reject the request by raising a GatewayError; `settle` runs once
after it, always (success, error, client disconnect), and must not block: async work is scheduled, not awaited.
"""

from __future__ import annotations

import logging
from typing import Protocol

from llm_gateway.pipeline.context import RequestContext

log = logging.getLogger("llm_gateway.pipeline")


class Stage(Protocol):
    async def admit(self, ctx: RequestContext) -> None: ...

    def settle(self, ctx: RequestContext) -> None: ...


class Pipeline:
    def __init__(self, stages: list[Stage]) -> None:
        self.stages = stages
        self._admit = [s.admit for s in stages]
        self._settle = [s.settle for s in stages]

    async def admit(self, ctx: RequestContext) -> None:
        for admit in self._admit:
            await admit(ctx)

    def settle(self, ctx: RequestContext) -> None:
        if ctx.settled:
            return
        ctx.settled = True
        for settle in self._settle:
            try:
                settle(ctx)
            except Exception:
                log.exception("settle stage %s failed for request %s", settle, ctx.request_id)
