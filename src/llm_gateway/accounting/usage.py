"""The first settle stage: every request leaves with a usage record, counted locally when upstream gave none."""

from __future__ import annotations

from llm_gateway.accounting.tokens import TokenCounter
from llm_gateway.pipeline.context import RequestContext, Usage


class UsageStage:
    def __init__(self, counter: TokenCounter) -> None:
        self.counter = counter

    admit = None  # nothing to do before the upstream call

    def settle(self, ctx: RequestContext) -> None:
        if ctx.usage is not None:
            return
        if not ctx.completion_parts and not ctx.first_byte_at:
            ctx.usage = Usage()  # nothing reached the model's answer: nothing to bill
            return
        model = ctx.upstream_model or ctx.model
        prompt = self.counter.count_prompt(ctx.body, model) if ctx.body else 0
        completion = self.counter.count_texts(ctx.completion_parts, model)
        ctx.usage = Usage(prompt, completion, estimated=True)
