"""The routing stage: refuses unknown models (after authentication), gives back a request's in-flight slot on its
deployment, and counts mid-stream failures."""

from __future__ import annotations

from llm_gateway.errors import NotFound
from llm_gateway.pipeline.context import RequestContext
from llm_gateway.routing.cooldown import Cooldowns

# An upstream that broke after the answer began (reset, silence, garbage): the deployment failed this request.
_MID_STREAM_FAILURES = (502, 504)


class RoutingStage:
    def __init__(self, cooldowns: Cooldowns) -> None:
        self.cooldowns = cooldowns

    def admit(self, ctx: RequestContext) -> None:
        if ctx.route is None:
            raise NotFound(f"the model {ctx.model!r} does not exist or is not served by this gateway",
                           param="model", code="model_not_found")

    def settle(self, ctx: RequestContext) -> None:
        dep = ctx.in_flight_on
        if dep is None:
            return
        ctx.in_flight_on = None
        dep.in_flight -= 1
        if ctx.status in _MID_STREAM_FAILURES and ctx.error_type == "upstream_error":
            self.cooldowns.failure(dep)
