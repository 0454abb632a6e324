"""The dispatcher against the local upstream, in process: backoff waits, Retry-After, cooldown and recovery
timed by a fake clock, hedge bookkeeping."""

from __future__ import annotations

import random
import uuid
from typing import Any

import orjson
import pytest
from tests.upstream import Upstream

from llm_gateway.errors import GatewayError
from llm_gateway.pipeline.context import RequestContext
from llm_gateway.pipeline.dispatch import Dispatcher
from llm_gateway.providers.http import HttpClient
from llm_gateway.providers.registry import build_provider
from llm_gateway.routing.catalog import Catalog
from llm_gateway.routing.cooldown import Cooldowns
from llm_gateway.routing.stage import RoutingStage
from llm_gateway.server.http import Request
from llm_gateway.settings import parse_config


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


class Setup:
    def __init__(self, upstream: Upstream, models: dict[str, Any], **routing: Any) -> None:
        cfg = parse_config({"providers": [{"name": "up", "type": "openai-compatible",
                                           "base_url": f"{upstream.url}/v1"}],
                            "models": models, "routing": routing})
        providers = {p.name: build_provider(p) for p in cfg.providers}
        self.catalog = Catalog(providers, cfg.models, cfg.routing)
        self.clock = FakeClock()
        self.cooldowns = Cooldowns(cfg.routing.cooldown, self.clock)
        self.waits: list[float] = []
        self.client = HttpClient()
        self.dispatcher = Dispatcher(self.client, self.catalog, self.cooldowns, cfg.routing,
                                     rng=random.Random(5), sleep=self.sleep)
        self.stage = RoutingStage(self.cooldowns)
        self.attempts: list[tuple[str, str, int | None]] = []
        self.dispatcher.on_attempt = self.on_attempt

    def on_attempt(self, ctx: RequestContext, dep: Any, started: float, error: BaseException | None = None,
                   kind: str = "primary", ended: float | None = None) -> None:
        record = (dep.id, kind, error.status if isinstance(error, GatewayError) else None)
        self.attempts.append(record)
        if ctx.attempt_log is None:  # the same list telemetry keeps, where the answer must come last
            ctx.attempt_log = []
        ctx.attempt_log.append(record)

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)

    async def send(self, model: str, stream: bool = False) -> RequestContext:
        body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": stream}
        raw = orjson.dumps(body)
        ctx = RequestContext(Request("POST", "/v1/chat/completions", "", {}, raw, "test"), "rid",
                             "chat/completions")
        ctx.body, ctx.model, ctx.stream, ctx.route = body, model, stream, self.catalog.resolve(model)
        try:
            _, response = await self.dispatcher.send(ctx, None)
            await response.read()
            ctx.run_deferred()  # as the edge does once the answer went on
            ctx.status = 200
        except GatewayError as err:
            ctx.status, ctx.error_type = err.status, err.type
        self.stage.settle(ctx)
        return ctx


def header(ctx: RequestContext, name: str) -> str:
    return dict(ctx.response_headers)[name]


async def test_backoff_waits_grow_with_jitter(upstream: Upstream) -> None:
    t = uuid.uuid4().hex[:8]
    s = Setup(upstream, {"m": {"retries": 3, "deployments": [{"provider": "up", "model": f"flaky-3-{t}"}]}},
              retries={"backoff_s": 0.1, "max_backoff_s": 1})
    ctx = await s.send("m")
    assert ctx.status == 200 and ctx.attempts == 4 and header(ctx, "x-gateway-attempts") == "4"
    assert len(s.waits) == 3
    assert [kind for _, kind, _ in s.attempts] == ["primary", "retry", "retry", "retry"]
    for wait, base in zip(s.waits, (0.1, 0.2, 0.4), strict=True):
        assert base / 2 <= wait <= base
    s.client.close()


async def test_retry_after_longer_than_allowed_moves_to_fallback(upstream: Upstream) -> None:
    t = uuid.uuid4().hex[:8]
    s = Setup(upstream, {"m": {"retries": 2, "fallbacks": ["ok"],
                               "deployments": [{"provider": "up", "model": f"limited-60-{t}"}]},
                         "ok": {"deployments": [{"provider": "up", "model": "fine"}]}})
    ctx = await s.send("m")
    assert ctx.status == 200 and s.waits == [] and header(ctx, "x-gateway-deployment") == "up/fine"
    assert s.attempts == [(f"up/limited-60-{t}", "primary", 429), ("up/fine", "fallback", None)]
    s.client.close()


async def test_cooldown_probe_and_recovery_through_dispatch(upstream: Upstream) -> None:
    t = uuid.uuid4().hex[:8]
    s = Setup(upstream, {"m": {"strategy": "cost", "deployments": [
        {"provider": "up", "model": f"flaky-2-{t}", "cost": 1}, {"provider": "up", "model": "backup", "cost": 2}]}},
        cooldown={"failures": 2, "cooldown_s": 30})
    flaky = s.catalog.deployments[f"up/flaky-2-{t}"]
    for _ in range(2):  # two failures in a row: out
        ctx = await s.send("m")
        assert ctx.status == 200 and header(ctx, "x-gateway-deployment") == "up/backup"
    assert s.cooldowns.state(flaky) == ("cooling_down", 30.0)
    ctx = await s.send("m")
    assert ctx.attempts == 1 and header(ctx, "x-gateway-deployment") == "up/backup", "skipped while cooling"
    assert upstream.seen[f"flaky-2-{t}"] == 2
    s.clock.now += 30.5  # cooldown over: the next request probes it, and it works again
    ctx = await s.send("m", stream=True)
    assert ctx.attempts == 1 and header(ctx, "x-gateway-deployment") == f"up/flaky-2-{t}"
    assert s.cooldowns.state(flaky) == ("healthy", 0.0)
    assert flaky.in_flight == 0 and s.catalog.deployments["up/backup"].in_flight == 0
    s.client.close()


async def test_everything_cooling_down_still_tries_the_first_choice(upstream: Upstream) -> None:
    s = Setup(upstream, {"m": {"deployments": [{"provider": "up", "model": "error-503"}], "fallbacks": ["n"]},
                         "n": {"deployments": [{"provider": "up", "model": "error-502"}]}},
              cooldown={"failures": 1, "cooldown_s": 30})
    ctx = await s.send("m")
    assert ctx.status == 502 and ctx.attempts == 2
    ctx = await s.send("m")  # both cooling: the first choice is tried anyway rather than failing blind
    assert ctx.status == 503 and ctx.attempts == 1
    s.client.close()


@pytest.mark.parametrize("strategy", ["weighted", "least-in-flight", "lowest-latency", "cost"])
async def test_every_strategy_serves(upstream: Upstream, strategy: str) -> None:
    s = Setup(upstream, {"m": {"strategy": strategy, "deployments": [
        {"provider": "up", "model": "x1"}, {"provider": "up", "model": "x2"}]}}, retries={"max_retries": 1})
    for _ in range(4):
        assert (await s.send("m")).status == 200
    assert sum(d.requests for d in s.catalog.deployments.values()) == 4
    s.client.close()


async def test_hedge_both_failing_moves_to_the_next_deployment(upstream: Upstream) -> None:
    quick = {"first_token": 0.2}
    s = Setup(upstream, {"m": {"strategy": "cost", "hedge": {"enabled": True, "delay_s": 0.05}, "deployments": [
        {"provider": "up", "model": "hang", "cost": 1, "timeouts": quick},
        {"provider": "up", "model": "error-503", "cost": 2},
        {"provider": "up", "model": "third", "cost": 3}]}})
    ctx = await s.send("m", stream=True)
    assert ctx.status == 200 and header(ctx, "x-gateway-deployment") == "up/third"
    assert s.attempts == [("up/error-503", "hedge", 503), ("up/hang", "primary", 504), ("up/third", "retry", None)]
    assert all(d.in_flight == 0 for d in s.catalog.deployments.values())
    s.client.close()


async def test_hedge_winner_is_last_in_the_attempt_record(upstream: Upstream) -> None:
    s = Setup(upstream, {"m": {"strategy": "cost", "hedge": {"enabled": True, "delay_s": 0.05}, "deployments": [
        {"provider": "up", "model": "ttft-1000", "cost": 1}, {"provider": "up", "model": "fast", "cost": 2}]}})
    ctx = await s.send("m")
    assert ctx.status == 200 and header(ctx, "x-gateway-deployment") == "up/fast" and ctx.attempts == 2
    assert s.attempts == [("up/fast", "hedge", None), ("up/ttft-1000", "primary", None)]  # as they ended
    assert ctx.attempt_log == [("up/ttft-1000", "primary", None), ("up/fast", "hedge", None)]
    assert all(d.in_flight == 0 for d in s.catalog.deployments.values())
    s.client.close()
