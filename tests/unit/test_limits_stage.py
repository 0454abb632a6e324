"""The limits stage: estimates, headers, 429s that name the limit, settle deltas, fail modes, virtual key limits."""

from __future__ import annotations

from typing import Any

import pytest

from llm_gateway.accounting.tokens import TokenCounter
from llm_gateway.errors import RateLimited, ServiceUnavailable
from llm_gateway.keys.model import KeyRecord
from llm_gateway.limits.backend import BackendUnavailable, Outcome
from llm_gateway.limits.memory import MemoryBackend
from llm_gateway.limits.redis import RedisBackend
from llm_gateway.limits.rules import Rule, RuleSet
from llm_gateway.limits.stage import LimitMetrics, LimitStage, build_limit_stage, duration
from llm_gateway.pipeline.context import RequestContext, Usage
from llm_gateway.server.http import Request
from llm_gateway.settings import parse_config
from llm_gateway.telemetry.metrics import Registry

COUNTER = TokenCounter()
MESSAGES = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Say hello"}]


def context(body: dict[str, Any], user: str = "alice", endpoint: str = "chat/completions",
            key: Any = None) -> RequestContext:
    ctx = RequestContext(Request("POST", "/v1/x", "", {}, b"", "127.0.0.1"), "req-1", endpoint)
    ctx.body = body
    ctx.model = str(body.get("model", "m"))
    ctx.user = user
    ctx.key = key
    return ctx


def stage(rules: list[Rule], backend: Any = None, fail_closed: bool = False,
          registry: Registry | None = None) -> LimitStage:
    return LimitStage(RuleSet(rules), backend or MemoryBackend(), COUNTER, 100, fail_closed,
                      LimitMetrics(registry or Registry()))


class Recording(MemoryBackend):
    def __init__(self) -> None:
        super().__init__()
        self.costs: list[list[int]] = []
        self.settled: list[list[int]] = []

    def reserve_now(self, keys: list[str], rules: list[Rule], costs: list[int]) -> Outcome:
        self.costs.append(list(costs))
        return super().reserve_now(keys, rules, costs)

    def settle(self, keys: list[str], rules: list[Rule], deltas: list[int], stamp_ms: int) -> None:
        self.settled.append(list(deltas))
        super().settle(keys, rules, deltas, stamp_ms)


@pytest.mark.parametrize(("extra", "endpoint", "cost"), [
    ({"max_tokens": 40}, "chat/completions", 17 + 40),
    ({"max_completion_tokens": 30, "max_tokens": 40}, "chat/completions", 17 + 30),
    ({"max_tokens": 40, "n": 3}, "chat/completions", 17 + 120),
    ({}, "chat/completions", 17 + 100),  # the configured completion estimate
    ({"max_tokens": True}, "chat/completions", 17 + 100),
    ({"max_tokens": 40}, "embeddings", 17),  # embeddings complete nothing
])
async def test_reservation_estimates_prompt_plus_completion(extra: dict[str, Any], endpoint: str,
                                                            cost: int) -> None:
    backend = Recording()
    s = stage([Rule("t", "user", 60, None, 10_000)], backend)
    ctx = context({"model": "m", "messages": MESSAGES, **extra}, endpoint=endpoint)
    await s.admit(ctx)
    assert backend.costs == [[cost]]
    assert ctx.prompt_tokens_estimate == 17  # kept for later stages: counted once


async def test_request_only_rules_do_not_count_tokens() -> None:
    backend = Recording()
    s = stage([Rule("r", "user", 60, 5, None)], backend)
    ctx = context({"model": "m", "messages": MESSAGES})
    await s.admit(ctx)
    assert ctx.prompt_tokens_estimate == -1 and backend.costs == [[0]]
    ctx.usage = Usage(100, 100)
    s.settle(ctx)
    assert backend.settled == []  # nothing to correct


async def test_headers_name_the_tightest_limits_and_settle_corrects_by_rule() -> None:
    backend = Recording()
    rules = [Rule("user-rpm", "user", 60, 10, None), Rule("global-rpd", "global", 86400, 3, 10_000),
             Rule("prompt-tpm", "user", 60, None, 500, "prompt")]
    s = stage(rules, backend)
    ctx = context({"model": "m", "messages": MESSAGES, "max_tokens": 20})
    await s.admit(ctx)
    assert ctx.response_headers == []  # written while the upstream works on the request: deferred
    ctx.run_deferred()
    headers = dict(ctx.response_headers)
    assert [name for name, _ in ctx.response_headers] == [
        "x-ratelimit-limit-requests", "x-ratelimit-remaining-requests", "x-ratelimit-reset-requests",
        "x-ratelimit-limit-tokens", "x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens"]
    assert (headers["x-ratelimit-limit-requests"], headers["x-ratelimit-remaining-requests"]) == ("3", "2")
    assert (headers["x-ratelimit-limit-tokens"], headers["x-ratelimit-remaining-tokens"]) == ("500", "483")
    # Empty again once this request's bucket (1/20 of the window) has slid out: between W and W + W/20.
    assert headers["x-ratelimit-reset-tokens"] in ("1m1s", "1m2s", "1m3s")
    assert headers["x-ratelimit-reset-requests"].startswith(("24h", "25h"))
    assert backend.costs == [[0, 37, 17]]
    ctx.usage = Usage(11, 5)
    s.settle(ctx)
    assert backend.settled == [[0, 16 - 37, 11 - 17]]
    s.settle(ctx)
    assert len(backend.settled) == 1  # a hold settles once


async def test_refusal_names_the_limit_and_counts_by_scope() -> None:
    registry = Registry()
    s = stage([Rule("alice-tpm", "user", 60, None, 50)], registry=registry)
    await s.admit(context({"model": "m", "messages": MESSAGES, "max_tokens": 20}))
    ctx = context({"model": "m", "messages": MESSAGES, "max_tokens": 20})
    with pytest.raises(RateLimited) as exc:
        await s.admit(ctx)
    err = exc.value
    assert err.status == 429 and err.code == "rate_limit_exceeded"
    assert err.message.startswith("Rate limit reached on limit 'alice-tpm' (tokens per 1m per user) for user "
                                  "'alice': tokens limit 50, used 37, requested 37; please try again in ")
    assert 60 <= int(err.headers["retry-after"]) <= 63 and int(err.headers["retry-after-ms"]) > 60_000
    assert ("x-ratelimit-remaining-tokens", "13") in ctx.response_headers
    assert ctx.limit_hold is None
    assert "llm_gateway_rate_limited_requests_total{scope=\"user\",limit=\"alice-tpm\"} 1" in registry.render().decode()
    with pytest.raises(RateLimited, match="this request needs 217 tokens, more than the whole limit"):
        await s.admit(context({"model": "m", "messages": MESSAGES, "max_tokens": 200}, user="bob"))


async def test_virtual_key_rpm_applies_to_that_key_only() -> None:
    s = stage([])
    key = KeyRecord(id="key_1", key_hash="h", key_prefix="sk-gw-", rpm_limit=2)
    other = KeyRecord(id="key_2", key_hash="h2", key_prefix="sk-gw-")
    for _ in range(2):
        await s.admit(context({"model": "m"}, key=key))
    with pytest.raises(RateLimited, match="'virtual-key/60s' \\(requests per 1m per key\\)"):
        await s.admit(context({"model": "m"}, key=key))
    ctx = context({"model": "m"}, key=other)
    await s.admit(ctx)
    assert ctx.response_headers == [] and ctx.limit_hold is None  # no limits on that key: nothing checked


class Broken(MemoryBackend):
    async def reserve(self, keys: list[str], rules: list[Rule], costs: list[int]) -> Outcome:
        raise BackendUnavailable("down")


async def test_fail_open_serves_and_fail_closed_refuses() -> None:
    registry = Registry()
    opened = stage([Rule("r", "user", 60, 1, None)], Broken(), registry=registry)
    ctx = context({"model": "m"})
    await opened.admit(ctx)
    assert ctx.limit_hold is None and ctx.response_headers == []
    closed = stage([Rule("r", "user", 60, 1, None)], Broken(), fail_closed=True, registry=Registry())
    with pytest.raises(ServiceUnavailable) as exc:
        await closed.admit(context({"model": "m"}))
    assert exc.value.status == 503 and exc.value.headers == {"retry-after": "1"}
    assert 'llm_gateway_rate_limit_unchecked_requests_total{mode="open"} 1' in registry.render().decode()


def test_duration_format() -> None:
    assert [duration(s) for s in (0.0201, 0.999, 1, 59.2, 360, 3723)] == ["21ms", "999ms", "1s", "1m0s", "6m0s",
                                                                          "1h2m3s"]


def test_stage_is_built_only_when_something_can_limit() -> None:
    assert build_limit_stage(parse_config({}), Registry(), COUNTER) is None
    memory = build_limit_stage(parse_config({"limits": {"rules": [{"scope": "global", "requests": 1}]}}),
                               Registry(), COUNTER)
    assert memory is not None and isinstance(memory.backend, MemoryBackend)
    keys_only = build_limit_stage(parse_config({"auth": {"master_key": "sk-master"}}), Registry(), COUNTER)
    assert keys_only is not None and keys_only.ruleset.rules == []
    genai = build_limit_stage(parse_config({"limits": {"per_user_tokens": {"enabled": True}},
                                            "redis": {"url": "redis://127.0.0.1:6379/13"}}), Registry(), COUNTER)
    assert genai is not None and isinstance(genai.backend, RedisBackend)
    forced = build_limit_stage(parse_config({"limits": {"per_user_tokens": {"enabled": True}, "backend": "memory"},
                                             "redis": {"url": "redis://127.0.0.1:6379/13"}}), Registry(), COUNTER)
    assert forced is not None and isinstance(forced.backend, MemoryBackend)
