"""Cooldowns timed by a fake clock: out after repeated failures, one probe, back in; shared through Redis."""

from __future__ import annotations

import uuid

import pytest

from llm_gateway.providers.registry import build_provider
from llm_gateway.redis_client import RespClient
from llm_gateway.routing.catalog import Catalog, Deployment
from llm_gateway.routing.cooldown import Cooldowns, RedisCooldownSync
from llm_gateway.settings import CooldownConfig, ProviderConfig


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def make(failures: int = 3, cooldown_s: float = 30.0) -> tuple[Cooldowns, Deployment, FakeClock]:
    clock = FakeClock()
    provider = build_provider(ProviderConfig(name="p", type="openai-compatible", base_url="http://p:1"))
    return Cooldowns(CooldownConfig(failures=failures, cooldown_s=cooldown_s), clock), Deployment(provider, "m"), clock


def test_repeated_failures_cool_down_then_probe_and_recover() -> None:
    cool, dep, clock = make()
    cool.failure(dep)
    cool.failure(dep)
    assert cool.usable(dep) and cool.state(dep) == ("healthy", 0.0)
    cool.failure(dep)
    assert not cool.usable(dep)
    assert cool.state(dep) == ("cooling_down", 30.0)
    clock.now += 29.9
    assert not cool.usable(dep)
    clock.now += 0.2
    assert cool.usable(dep) and cool.state(dep)[0] == "ready_to_probe"
    cool.begin(dep)  # the probe
    assert cool.state(dep)[0] == "probing"
    assert not cool.usable(dep), "one probe at a time"
    cool.success(dep)
    assert cool.usable(dep) and cool.state(dep) == ("healthy", 0.0) and dep.fails_in_row == 0


def test_failed_probe_doubles_the_cooldown_up_to_the_cap() -> None:
    cool, dep, clock = make(failures=1, cooldown_s=10)
    cool.config.max_cooldown_s = 25
    cool.failure(dep)
    lengths = []
    for _ in range(3):
        clock.now = dep.cooldown_until + 0.01
        assert cool.usable(dep)
        cool.begin(dep)
        cool.failure(dep)
        lengths.append(dep.cooldown_len)
    assert lengths == [20, 25, 25]


def test_a_probe_that_never_returns_lets_another_through() -> None:
    cool, dep, clock = make(failures=1, cooldown_s=10)
    cool.failure(dep)
    clock.now += 10.5
    cool.begin(dep)
    assert not cool.usable(dep)
    clock.now += 10.1
    assert cool.usable(dep)


def test_max_in_flight_takes_a_busy_deployment_out() -> None:
    cool, dep, _ = make()
    dep.max_in_flight = 2
    dep.in_flight = 2
    assert not cool.usable(dep)
    dep.in_flight = 1
    assert cool.usable(dep)


async def test_cooldowns_are_shared_through_redis() -> None:
    prefix = f"test-cooldown-{uuid.uuid4().hex}:"
    provider = build_provider(ProviderConfig(name="p", type="openai-compatible", base_url="http://p:1",
                                             models=["m"]))
    clock = FakeClock()
    replicas = []
    for _ in range(2):
        catalog = Catalog({"p": provider}, {})
        cool = Cooldowns(CooldownConfig(failures=1, cooldown_s=30), clock)
        client = RespClient("redis://127.0.0.1:6379/11", 1, 1.0)
        replicas.append((catalog, cool, RedisCooldownSync(cool, catalog, client, prefix, 0.05)))
    (cat_a, cool_a, sync_a), (cat_b, cool_b, sync_b) = replicas
    dep_a, dep_b = cat_a.deployments["p/m"], cat_b.deployments["p/m"]
    try:
        cool_a.failure(dep_a)
        await sync_a.flush()
        assert cool_b.usable(dep_b)
        await sync_b.pull()
        assert not cool_b.usable(dep_b) and dep_b.cooldown_until == pytest.approx(dep_a.cooldown_until)
        clock.now += 31
        cool_a.begin(dep_a)
        cool_a.success(dep_a)
        await sync_a.flush()
        assert await sync_a.redis.call("HLEN", sync_a.key) == 0, "recovery clears the shared entry"
    finally:
        await sync_a.redis.call("DEL", sync_a.key)
        await sync_a.stop()
        await sync_b.stop()
