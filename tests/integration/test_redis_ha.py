"""Limits on a real Redis Cluster (3 primaries, 3 replicas) and on a Sentinel-watched primary: exactly N admitted
across three gateway processes, refunds when one slot refuses, and a primary killed mid-load."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.conftest import GatewayProcess, metric_value, wait_until_answering
from tests.integration.test_limits_replicas import MESSAGES, burst
from tests.redis_ha import Cluster, Sentinels, binaries_present
from tests.upstream import Upstream

pytestmark = pytest.mark.skipif(not binaries_present(), reason="redis-server and redis-sentinel (scripts/test.sh)")
PREFIX = "deploy-ha:"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("cluster"))
    yield c
    c.stop()


@pytest.fixture(scope="module")
def sentinels(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sentinels]:
    s = Sentinels(tmp_path_factory.mktemp("sentinel"))
    yield s
    s.stop()


def config(upstream: Upstream, redis: dict[str, Any], prefix: str, rules: list[dict[str, Any]],
           fail: str = "closed", lease: int = 20) -> dict[str, Any]:
    return {"providers": [{"name": "up", "type": "openai-compatible", "base_url": f"{upstream.url}/v1",
                           "models": ["*"]}],
            "redis": {**redis, "pool_size": 4},
            "limits": {"rules": rules, "redis_prefix": prefix, "on_backend_error": fail, "redis_timeout_s": 2.0,
                       "retry_backend_after_s": 0.2, "redis_lease": lease}}


def cluster_redis(cluster: Cluster) -> dict[str, Any]:
    return {"url": f"redis://127.0.0.1:{cluster.ports[0]}", "cluster": True,
            "nodes": [f"127.0.0.1:{p}" for p in cluster.ports[1:3]]}


def sentinel_redis(sentinels: Sentinels) -> dict[str, Any]:
    return {"sentinel": {"master_name": sentinels.name, "nodes": sentinels.nodes()}}


async def exactly_n(factory: Callable[..., GatewayProcess], upstream: Upstream, redis: dict[str, Any],
                    prefix: str) -> None:
    limit = 37
    rules = [{"name": "global-rpm", "scope": "global", "window": "1h", "requests": limit},
             {"name": "user-rpm", "scope": "user", "window": "1h", "requests": 1000}]
    gws = [factory(config=config(upstream, redis, prefix, rules), wait=False) for _ in range(3)]
    for gw in gws:  # started together: they load at once
        wait_until_answering(gw.proc, f"{gw.url}/health", gw.log_path, 60, "gateway")
    # 150 users: their counters sit in many slots, the global one in another; each request takes two calls.
    statuses = Counter(await burst(gws, 150, {"model": "slow-20", "messages": MESSAGES}))
    assert statuses == {200: limit, 429: 150 - limit}


def user_requests(scan: Callable[[str], list[dict[bytes, bytes]]], prefix: str) -> int:
    """The requests the per-user counters hold (their running totals)."""
    return sum(int(h.get(b"t-2", b"0")) for h in scan(f"{prefix}user-rpm|*"))


async def settled(read: Callable[[], int], want: int) -> int:
    deadline = time.monotonic() + 5
    got = read()
    while got != want and time.monotonic() < deadline:  # refunds are sent just after the refusals
        await asyncio.sleep(0.05)
        got = read()
    return got


async def test_cluster_admits_exactly_n_and_refunds_the_other_slots(
        gateway_factory: Callable[..., GatewayProcess], upstream: Upstream, cluster: Cluster) -> None:
    prefix = PREFIX + "exact:"
    await exactly_n(gateway_factory, upstream, cluster_redis(cluster), prefix)
    admin = cluster.client()

    def scan(pattern: str) -> list[dict[bytes, bytes]]:
        return [admin.hgetall(k) for k in admin.scan_iter(match=pattern)]  # type: ignore[misc]

    slots = {admin.keyslot(k) for k in admin.scan_iter(match=f"{prefix}*")}
    assert len(slots) > 3  # the counters really are spread over the cluster
    # The 113 refused requests were charged on their user's slot first, then given back: only the admitted stay.
    assert await settled(lambda: user_requests(scan, prefix), 37) == 37
    admin.close()


async def test_sentinel_admits_exactly_n(gateway_factory: Callable[..., GatewayProcess], upstream: Upstream,
                                         sentinels: Sentinels) -> None:
    await exactly_n(gateway_factory, upstream, sentinel_redis(sentinels), PREFIX + "sentinel:")


async def load(gw: GatewayProcess, seconds: float, during: Callable[[], None], at: float) -> list[tuple[float, int]]:
    """Requests from 4 clients for `seconds`; `during` runs `at` seconds in. Every request must end within 10 s."""
    out: list[tuple[float, int]] = []
    start = time.monotonic()
    async with httpx.AsyncClient(timeout=10) as client:
        async def worker(n: int) -> None:
            while (now := time.monotonic() - start) < seconds:
                r = await client.post(f"{gw.v1}/chat/completions", headers={"user": f"w{n}"},
                                      json={"model": "m", "messages": MESSAGES})
                out.append((now, r.status_code))
                await asyncio.sleep(0.01)

        async def trigger() -> None:
            await asyncio.sleep(at)
            await asyncio.to_thread(during)

        await asyncio.gather(*(worker(n) for n in range(4)), trigger())
    return out


async def served_again(gw: GatewayProcess, limit: float) -> float:
    start = time.monotonic()
    async with httpx.AsyncClient(timeout=10) as client:
        while True:
            r = await client.post(f"{gw.v1}/chat/completions", json={"model": "m", "messages": MESSAGES})
            if r.status_code == 200:
                return time.monotonic() - start
            assert r.status_code == 503 and time.monotonic() - start < limit
            await asyncio.sleep(0.1)


async def test_sentinel_failover_fail_closed(gateway_factory: Callable[..., GatewayProcess], upstream: Upstream,
                                            tmp_path: Path) -> None:
    own = Sentinels(tmp_path / "failover")  # its own setup: the module's keeps its primary
    try:
        rules = [{"name": "user-rpm", "scope": "user", "window": "1h", "requests": 100_000}]
        gw = gateway_factory(config=config(upstream, sentinel_redis(own), PREFIX + "fo-sentinel:", rules))
        old = own.primary
        results = await load(gw, 5.0, lambda: own.kill(old), 1.0)
        statuses = Counter(s for _, s in results)
        # Documented: fail-closed answers 503 while no primary takes writes, and serves again once the sentinels
        # promoted the replica, with no restart.
        assert set(statuses) <= {200, 503} and statuses[503] > 0
        assert all(s == 200 for t, s in results if t < 0.9)
        await served_again(gw, 30)  # the replica took over (2-3 s on an idle machine)
        assert own.current_primary() == own.replica
        assert gw.stop() == 0
    finally:
        own.stop()


async def test_zz_cluster_primary_killed_fail_open(gateway_factory: Callable[..., GatewayProcess],
                                               upstream: Upstream, cluster: Cluster) -> None:
    prefix = PREFIX + "fo-cluster:"
    rules = [{"name": "global-rpm", "scope": "global", "window": "1h", "requests": 100_000}]
    gw = gateway_factory(config=config(upstream, cluster_redis(cluster), prefix, rules, fail="open",
                                                lease=0))  # lease 0: each request is counted in Redis
    victim = cluster.primary_of(f"{prefix}global-rpm|{{}}")
    results = await load(gw, 5.0, lambda: cluster.kill(victim), 1.0)
    # Documented: fail-open serves every request; those the cluster could not count show in the metric.
    assert {s for _, s in results} == {200}
    text = httpx.get(f"{gw.url}/metrics").text
    assert metric_value(text, "llm_gateway_rate_limit_unchecked_requests_total", {"mode": "open"}) > 0
    # After the failover the replica counts again: new requests are charged on the promoted node.
    deadline = time.monotonic() + 30
    while not cluster.healthy():
        assert time.monotonic() < deadline
        await asyncio.sleep(0.1)
    admin = cluster.client()
    key = f"{prefix}global-rpm|{{}}"

    def counted() -> int:
        return int(admin.hget(key, "t-2") or 0)  # type: ignore[arg-type]

    async with httpx.AsyncClient(timeout=10) as client:
        async def one() -> None:
            r = await client.post(f"{gw.v1}/chat/completions", json={"model": "m", "messages": MESSAGES})
            assert r.status_code == 200
        before = counted()
        while counted() == before:  # the first calls may still meet the paused client (retry_backend_after_s)
            assert time.monotonic() < deadline
            await one()
            await asyncio.sleep(0.05)
        before = counted()
        for _ in range(5):
            await one()
    assert counted() == before + 5
    admin.close()
    assert gw.stop() == 0


async def test_cluster_budgets_in_several_slots_hold_everywhere_or_nowhere(cluster: Cluster) -> None:
    from llm_gateway.keys.budget import Budget
    from llm_gateway.keys.shared_budget import SharedBudgets
    from llm_gateway.redis_cluster import slot_of
    from llm_gateway.settings import RedisConfig

    redis_cfg = RedisConfig.model_validate(cluster_redis(cluster))
    shared = SharedBudgets(redis_cfg.url or "", 2, PREFIX + "budget:", "r1", 2.0, redis=redis_cfg)
    now = time.time()
    budgets = [Budget("key", "k1", 1.0, "daily", now), Budget("user", "alice", 0.4, "daily", now),
               Budget("team", "t1", 1.0, "daily", now)]
    keys = [shared._key(b) for b in budgets]
    assert len({slot_of(k) for k in keys}) == 3  # three slots: three calls
    assert await shared.reserve(budgets, 0.4) is True
    assert await shared.reserve(budgets, 0.2) is budgets[1]  # the user's 0.4 is all held: refused there
    await asyncio.sleep(0.2)  # the holds the key's and the team's slots took are given back off the request path
    admin = cluster.client()
    holds = [float(admin.hget(k, "r:r1") or 0) for k in keys]  # type: ignore[arg-type]
    assert holds == pytest.approx([0.4, 0.4, 0.4])
    await shared.close()
    admin.delete(*keys)
    admin.close()


async def test_cluster_cache_get_set_clear(cluster: Cluster) -> None:
    from llm_gateway.cache.redis import RedisBackend as CacheBackend
    from llm_gateway.settings import RedisConfig

    redis_cfg = RedisConfig.model_validate(cluster_redis(cluster))
    cache = CacheBackend(redis_cfg.url or "", PREFIX + "cache:", 2.0, 2, redis_cfg)
    for i in range(30):  # keys spread over every primary
        await cache.set(f"{i:064x}", "m", b"answer %d" % i, 60)
    assert await cache.get(f"{7:064x}", "m") == b"answer 7"
    assert await cache.clear() == 30  # SCAN on each primary, UNLINK per key
    assert await cache.get(f"{7:064x}", "m") is None
    await cache.close()
