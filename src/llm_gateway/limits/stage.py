"""The limits stage: reserve a request's estimated cost before the upstream call, settle the real usage after."""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial

from llm_gateway.accounting.tokens import TokenCounter
from llm_gateway.errors import RateLimited, ServiceUnavailable
from llm_gateway.limits.backend import BackendUnavailable, LimitBackend, Outcome
from llm_gateway.limits.cluster import ClusterRedisBackend
from llm_gateway.limits.memory import MemoryBackend
from llm_gateway.limits.redis import RedisBackend
from llm_gateway.limits.rules import Rule, RuleSet, compile_rules
from llm_gateway.pipeline.context import RequestContext
from llm_gateway.providers.base import EMBEDDINGS
from llm_gateway.settings import GatewayConfig
from llm_gateway.telemetry.metrics import Registry


class LimitMetrics:
    def __init__(self, registry: Registry) -> None:
        self.limited = registry.counter("llm_gateway_rate_limited_requests_total",
                                        "Requests refused with 429 by a gateway limit", ["scope", "limit"])
        self.backend_errors = registry.counter("llm_gateway_rate_limit_backend_errors_total",
                                               "Failed calls to the limit store (Redis)", ["operation"])
        self.unchecked = registry.counter("llm_gateway_rate_limit_unchecked_requests_total",
                                          "Requests the limit store could not check, by fail mode "
                                          "(open: served, closed: refused with 503)", ["mode"])


class Hold:
    """What a request reserved, kept on the context until settle."""

    __slots__ = ("costs", "keys", "rules", "stamp_ms")

    def __init__(self, keys: list[str], rules: list[Rule], costs: list[int], stamp_ms: int) -> None:
        self.keys = keys
        self.rules = rules
        self.costs = costs
        self.stamp_ms = stamp_ms


class LimitStage:
    def __init__(self, ruleset: RuleSet, backend: LimitBackend, counter: TokenCounter, completion_estimate: int,
                 fail_closed: bool, metrics: LimitMetrics) -> None:
        self.ruleset = ruleset
        self.backend = backend
        self.counter = counter
        self.completion_estimate = completion_estimate
        self.fail_closed = fail_closed
        self.metrics = metrics
        self._mode = ("closed",) if fail_closed else ("open",)
        # In memory, and from the leases a Redis backend holds, there is nothing to wait for: no coroutine.
        self._reserve_now: Callable[[list[str], list[Rule], list[int]], Outcome | None] | None = None
        if type(backend) is MemoryBackend or (isinstance(backend, RedisBackend) and backend.lease):
            self._reserve_now = backend.reserve_now

    async def start(self) -> None:
        if isinstance(self.backend, RedisBackend):
            await self.backend.start()

    async def close(self) -> None:
        await self.backend.close()

    async def admit(self, ctx: RequestContext) -> None:
        checks = self.ruleset.checks(ctx.user, ctx.model, ctx.key, ctx.end_user)
        rules = checks.rules
        if not rules:
            return
        prompt = completion = 0
        for rule in rules:
            if rule.tokens is not None:
                prompt, completion = self._estimate(ctx)
                break
        costs = [0 if rule.tokens is None else rule.cost(prompt, completion) for rule in rules]
        outcome = None if self._reserve_now is None else self._reserve_now(checks.keys, rules, costs)
        if outcome is None:
            try:
                outcome = await self.backend.reserve(checks.keys, rules, costs)
            except BackendUnavailable:
                self.metrics.unchecked.inc(self._mode)
                if self.fail_closed:
                    raise ServiceUnavailable("rate limits cannot be checked right now (the limit store is "
                                             "unavailable); retry shortly", headers={"retry-after": "1"}) from None
                return
        if not outcome.ok:
            ctx.response_headers.extend(rate_headers(rules, costs, outcome))
            rule = rules[outcome.failed]
            self.metrics.limited.inc((rule.scope, rule.id))
            raise refusal(ctx, rule, costs[outcome.failed], outcome)
        ctx.limit_hold = Hold(checks.keys, rules, costs, outcome.stamp_ms)
        ctx.defer(partial(_add_rate_headers, ctx.response_headers, rules, costs, outcome))

    def settle(self, ctx: RequestContext) -> None:
        hold: Hold | None = ctx.limit_hold
        if hold is None:
            return
        ctx.limit_hold = None
        usage = ctx.usage
        prompt = usage.prompt_tokens if usage is not None else 0
        completion = usage.completion_tokens if usage is not None else 0
        deltas = [rule.cost(prompt, completion) - cost if rule.tokens is not None else 0
                  for rule, cost in zip(hold.rules, hold.costs, strict=True)]
        if any(deltas):
            self.backend.settle(hold.keys, hold.rules, deltas, hold.stamp_ms)

    def _estimate(self, ctx: RequestContext) -> tuple[int, int]:
        """Prompt tokens counted locally, and the most the completion can use (max_tokens × n)."""
        prompt = ctx.prompt_tokens_estimate
        body = ctx.body
        if prompt < 0:
            prompt = ctx.prompt_tokens_estimate = self.counter.count_prompt(body, ctx.model) if body else 0
        if ctx.endpoint == EMBEDDINGS:
            return prompt, 0
        most = body.get("max_completion_tokens")
        if most is None:
            most = body.get("max_tokens")
        if not isinstance(most, int) or isinstance(most, bool) or most < 0:
            most = self.completion_estimate
        choices = body.get("n")
        if isinstance(choices, int) and not isinstance(choices, bool) and choices > 1:
            most *= choices
        return prompt, most


def refusal(ctx: RequestContext, rule: Rule, cost: int, outcome: Outcome) -> RateLimited:
    i = outcome.failed
    by_requests = rule.requests is not None and outcome.used_requests[i] + 1 > rule.requests
    if by_requests:
        what, limit, used, asked = "requests", rule.requests, outcome.used_requests[i], 1
    else:
        what, limit, used, asked = "tokens", rule.tokens, outcome.used_tokens[i], cost
    subject = {"user": f" for user {ctx.user or 'anonymous'!r}", "model": f" for model {ctx.model!r}",
               "end_user": f" for end user {ctx.end_user!r}",
               "user_model": f" for user {ctx.user or 'anonymous'!r} on model {ctx.model!r}"}.get(rule.scope, "")
    retry = max(outcome.retry_after, 0.001)
    if limit is not None and asked > limit:
        tail = (f"this request needs {asked} {what}, more than the whole limit; lower max_tokens or the prompt "
                "size")
    else:
        tail = f"please try again in {duration(retry)}"
    message = (f"Rate limit reached on limit {rule.id!r} ({rule.describe()}){subject}: {what} limit {limit}, "
               f"used {used}, requested {asked}; {tail}.")
    headers = {"retry-after": str(max(1, math.ceil(retry))), "retry-after-ms": str(math.ceil(retry * 1000))}
    return RateLimited(message, headers=headers)


def _add_rate_headers(headers: list[tuple[str, str]], rules: list[Rule], costs: list[int], outcome: Outcome) -> None:
    headers.extend(rate_headers(rules, costs, outcome))


def rate_headers(rules: list[Rule], costs: list[int], outcome: Outcome) -> list[tuple[str, str]]:
    """OpenAI's x-ratelimit-* headers for the tightest request limit and the tightest token limit."""
    req: tuple[int, int, float] | None = None
    tok: tuple[int, int, float] | None = None
    for i, rule in enumerate(rules):
        if rule.requests is not None:
            left = max(0, rule.requests - outcome.used_requests[i])
            if req is None or left < req[1]:
                req = (rule.requests, left, outcome.resets[i])
        if rule.tokens is not None:
            left = max(0, rule.tokens - outcome.used_tokens[i])
            if tok is None or left < tok[1]:
                tok = (rule.tokens, left, outcome.resets[i])
    headers: list[tuple[str, str]] = []
    if req is not None:
        headers += [("x-ratelimit-limit-requests", str(req[0])), ("x-ratelimit-remaining-requests", str(req[1])),
                    ("x-ratelimit-reset-requests", duration(req[2]))]
    if tok is not None:
        headers += [("x-ratelimit-limit-tokens", str(tok[0])), ("x-ratelimit-remaining-tokens", str(tok[1])),
                    ("x-ratelimit-reset-tokens", duration(tok[2]))]
    return headers


def duration(seconds: float) -> str:
    """OpenAI's (Go's) duration style: 20ms, 1s, 6m0s, 1h2m3s."""
    if seconds < 1:
        return f"{math.ceil(seconds * 1000)}ms"
    total = math.ceil(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


def build_limit_stage(config: GatewayConfig, registry: Registry, counter: TokenCounter) -> LimitStage | None:
    """The limits stage for a config, or None when nothing can be limited (nothing on the request path then)."""
    limits = config.limits
    rules = compile_rules(limits)
    # Virtual keys exist only when the gateway authenticates (a master key is set); they may carry rpm/tpm limits.
    if not rules and config.auth.master_key is None:
        return None
    metrics = LimitMetrics(registry)
    use_redis = limits.backend == "redis" or (limits.backend == "auto" and config.redis.url is not None)
    backend: LimitBackend
    if use_redis:
        url = config.redis.url or "redis://127.0.0.1:6379/0"
        backend_type = ClusterRedisBackend if config.redis.cluster else RedisBackend
        backend = backend_type(url, config.redis.pool_size, limits.redis_prefix, limits.redis_timeout_s,
                               limits.retry_backend_after_s, metrics.backend_errors, limits.redis_lease,
                               limits.redis_lease_s, redis=config.redis)
    else:
        backend = MemoryBackend()
    return LimitStage(RuleSet(rules, limits.buckets), backend, counter, limits.completion_estimate,
                      limits.on_backend_error == "closed", metrics)

