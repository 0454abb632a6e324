"""The first settle stage: every request leaves with a usage record, counted locally when upstream gave none."""

from __future__ import annotations

from typing import Any

from llm_gateway.accounting.tokens import TokenCounter
from llm_gateway.pipeline.context import RequestContext, Usage

# ctx.extensions key: what a provider had reported when its stream was cut short (its prompt count is exact)
PARTIAL_USAGE = "accounting.partial_usage"
# ctx.extensions key: [(deployment, Usage)] of paid calls the gateway made for the request besides its own
# (the semantic cache's embedding): usage.cost charges them to it
SIDE_CALLS = "accounting.side_calls"


def side_call(ctx: RequestContext, deployment: Any, usage: Usage) -> None:
    """Charge the request for a provider call the gateway made on its behalf."""
    ctx.extensions.setdefault(SIDE_CALLS, []).append((deployment, usage))


def cut_short(ctx: RequestContext, reported: Usage | None, relayed: list[str]) -> None:
    """A stream that ended before its end (client gone, upstream broken): its completion is counted locally.

    A provider's usage so far (Anthropic's message_start, Gemini's running totals) knows the prompt but not the
    rest of the answer, so only its prompt side is kept.
    """
    ctx.usage = None
    ctx.completion_parts = relayed
    if reported is not None:
        ctx.extensions[PARTIAL_USAGE] = reported


class UsageStage:
    def __init__(self, counter: TokenCounter) -> None:
        self.counter = counter

    admit = None  # nothing to do before the upstream call

    def settle(self, ctx: RequestContext) -> None:
        if ctx.usage is not None:
            return
        if not ctx.completion_parts and not ctx.first_byte_at:
            if not (ctx.disconnected and ctx.attempts and ctx.body):
                ctx.usage = Usage()  # nothing reached the model's answer: nothing to bill
                return
            # The client left while an upstream had its prompt: the provider bills the prompt it read (and
            # maybe more); the prompt is the least the request cost.
            ctx.usage = Usage(self.counter.count_prompt(ctx.body, ctx.upstream_model or ctx.model), 0, estimated=True)
            return
        model = ctx.upstream_model or ctx.model
        completion = self.counter.count_completion(ctx.completion_parts, model)
        reported = ctx.extensions.get(PARTIAL_USAGE)
        if isinstance(reported, Usage) and reported.prompt_tokens:
            ctx.usage = Usage(reported.prompt_tokens, completion, cached_tokens=reported.cached_tokens,
                              cache_write_tokens=reported.cache_write_tokens, estimated=True)
            return
        prompt = self.counter.count_prompt(ctx.body, model) if ctx.body else 0
        ctx.usage = Usage(prompt, completion, estimated=True)
