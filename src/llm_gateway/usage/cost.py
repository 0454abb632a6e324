"""What a request cost: its usage priced class by class; the settle stage that sets `ctx.cost`."""

from __future__ import annotations

from typing import Any

from llm_gateway.accounting.usage import SIDE_CALLS
from llm_gateway.accounting.usage_types import Usage
from llm_gateway.pipeline.context import RequestContext
from llm_gateway.usage.pricing import Price, PriceBook, Priced


def cost_of(usage: Usage, price: Price) -> float:
    """USD for one request: each token charged once, at its class's price.

    The totals keep OpenAI's meaning (usage_types.Usage): prompt tokens include the cached ones, the cache
    writes and the audio and image ones; completion tokens include the reasoning, audio and image ones. So
    each class is taken out of its total and what is left is charged as plain text. Counts larger than what
    is left (a provider's inconsistent report) are capped, never charged twice.
    """
    prompt = usage.prompt_tokens
    p = price.at(prompt) if price.tiers else price
    cached, writes = usage.cached_tokens, usage.cache_write_tokens
    audio_in, image_in = usage.prompt_audio_tokens, usage.prompt_image_tokens
    if writes or audio_in or image_in:
        cached = min(cached, prompt)
        writes = min(writes, prompt - cached)
        audio_in = min(audio_in, prompt - cached - writes)
        image_in = min(image_in, prompt - cached - writes - audio_in)
        writes_1h = min(usage.cache_write_1h_tokens, writes)
        cost = ((prompt - cached - writes - audio_in - image_in) * p.input + cached * p.cached_input
                + (writes - writes_1h) * p.cache_write + writes_1h * p.cache_write_1h
                + audio_in * p.input_audio + image_in * p.input_image)
    elif cached:  # the common cases first: prompt caching alone, or plain text
        cached = min(cached, prompt)
        cost = (prompt - cached) * p.input + cached * p.cached_input
    else:
        cost = prompt * p.input
    if usage.web_searches:  # billed per search, beside the tokens
        cost += usage.web_searches * price.web_search
    out = usage.completion_tokens
    reasoning, audio_out, image_out = (usage.reasoning_tokens, usage.completion_audio_tokens,
                                       usage.completion_image_tokens)
    if not (reasoning or audio_out or image_out):
        return cost + out * p.output
    reasoning = min(reasoning, out)
    audio_out = min(audio_out, out - reasoning)
    image_out = min(image_out, out - reasoning - audio_out)
    return cost + ((out - reasoning - audio_out - image_out) * p.output + reasoning * p.reasoning
                   + audio_out * p.output_audio + image_out * p.output_image)


class CostStage:
    """Settles right after UsageStage so budgets and the ledger see the same `ctx.cost`."""

    def __init__(self, prices: PriceBook) -> None:
        self.prices = prices

    admit = None  # nothing to do before the upstream call

    def settle(self, ctx: RequestContext) -> None:
        self._settle(ctx)
        side = ctx.extensions.get(SIDE_CALLS)
        if side:
            self._side_calls(ctx, side)

    def _settle(self, ctx: RequestContext) -> None:
        usage = ctx.usage
        if usage is None or ctx.cache_status == "hit":
            ctx.cost = 0.0  # answered from the gateway's cache: no provider spend
            return
        dep = ctx.deployment
        priced: Priced | None = (self.prices.for_deployment(dep) if dep is not None
                                 else self.prices.for_model(ctx.model))
        if priced is None:
            ctx.cost = 0.0
            if usage.prompt_tokens or usage.completion_tokens:
                self.prices.unpriced(ctx.model)
            return
        if usage.service_tier:
            price, ctx.price_source = priced.for_tier(usage.service_tier)
            ctx.cost = cost_of(usage, price)
            return
        ctx.price_source = priced.source
        ctx.cost = cost_of(usage, priced.price)

    def _side_calls(self, ctx: RequestContext, calls: list[tuple[Any, Usage]]) -> None:
        """Add what the gateway's own calls for the request cost (the semantic cache's embedding), and say so in
        `price_source`; an unpriced main call keeps its empty source, so that it is still counted as unpriced."""
        notes = []
        for dep, usage in calls:
            priced = self.prices.for_deployment(dep)
            if priced is None:
                self.prices.unpriced(dep.model)
                notes.append(f"+ {dep.id} {usage.prompt_tokens} tokens unpriced")
                continue
            ctx.cost += cost_of(usage, priced.price)
            notes.append(f"+ {dep.id} {usage.prompt_tokens} tokens at {priced.source}")
        if ctx.price_source or ctx.cache_status == "hit":
            ctx.price_source = "; ".join((ctx.price_source, *notes) if ctx.price_source else notes)
