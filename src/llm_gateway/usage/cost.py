"""What a request cost: its usage priced by the price table; the settle stage that sets `ctx.cost`."""

from __future__ import annotations

from llm_gateway.pipeline.context import RequestContext, Usage
from llm_gateway.usage.pricing import Price, PriceTable


def cost_of(usage: Usage, price: Price) -> float:
    """USD for one request. Prompt tokens include cached ones, completion tokens include reasoning ones
    (OpenAI's convention, which the adapters normalise to)."""
    cached = min(usage.cached_tokens, usage.prompt_tokens)
    reasoning = min(usage.reasoning_tokens, usage.completion_tokens)
    return ((usage.prompt_tokens - cached) * price.input
            + cached * price.cached_input
            + usage.cache_write_tokens * price.cache_write
            + (usage.completion_tokens - reasoning) * price.output
            + reasoning * price.reasoning)


class CostStage:
    """Settles right after UsageStage so budgets and the ledger see the same `ctx.cost`."""

    def __init__(self, prices: PriceTable) -> None:
        self.prices = prices

    admit = None  # nothing to do before the upstream call

    def settle(self, ctx: RequestContext) -> None:
        usage = ctx.usage
        if usage is None or ctx.cache_status == "hit":
            ctx.cost = 0.0  # answered from the gateway's cache: no provider spend
            return
        provider = ctx.provider or (ctx.deployment.provider.name if ctx.deployment is not None else "")
        ctx.cost = cost_of(usage, self.prices.lookup(ctx.upstream_model or ctx.model, provider))
