"""Three gateway processes on one Redis: a request limit admits exactly N of 300 concurrent requests; tokens hold."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import redis
from tests.conftest import GatewayProcess, metric_value, wait_until_answering
from tests.upstream import Upstream

REDIS_URL = "redis://127.0.0.1:6379/13"
MESSAGES = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Say hello"}]


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    prefix = f"test-replicas-{uuid.uuid4().hex[:8]}:"
    yield prefix
    admin = redis.Redis.from_url(REDIS_URL)
    keys = list(admin.scan_iter(match=prefix + "*"))
    if keys:
        admin.delete(*keys)
    admin.close()


def replicas(factory: Callable[..., GatewayProcess], upstream: Upstream, prefix: str,
             rule: dict[str, Any]) -> list[GatewayProcess]:
    config = {"providers": [{"name": "up", "type": "openai-compatible", "base_url": f"{upstream.url}/v1",
                             "models": ["*"]}],
              "redis": {"url": REDIS_URL, "pool_size": 8},
              "limits": {"rules": [rule], "redis_prefix": prefix, "on_backend_error": "closed",
                         "redis_timeout_s": 5.0}}
    return [factory(config=config) for _ in range(3)]


async def burst(gws: list[GatewayProcess], n: int, body: dict[str, Any]) -> list[int]:
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:
        async def one(i: int) -> int:
            r = await client.post(f"{gws[i % len(gws)].v1}/chat/completions", json=body, headers={"user": f"u{i}"})
            return r.status_code
        return await asyncio.gather(*(one(i) for i in range(n)))


async def test_request_limit_admits_exactly_n_across_three_replicas(
        gateway_factory: Callable[..., GatewayProcess], upstream: Upstream, redis_prefix: str) -> None:
    limit = 37
    gws = replicas(gateway_factory, upstream, redis_prefix,
                   {"name": "global-rpm", "scope": "global", "window": "1h", "requests": limit})
    statuses = Counter(await burst(gws, 300, {"model": "slow-20", "messages": MESSAGES}))
    assert statuses == {200: limit, 429: 300 - limit}
    limited = sum(metric_value(httpx.get(f"{gw.url}/metrics").text, "llm_gateway_rate_limited_requests_total",
                               {"scope": "global", "limit": "global-rpm"}) for gw in gws)
    assert limited == 300 - limit


async def test_token_limit_across_three_replicas_never_overshoots(
        gateway_factory: Callable[..., GatewayProcess], upstream: Upstream, redis_prefix: str) -> None:
    limit, estimate, real = 600, 17 + 5, 16  # reserve: prompt counted locally + max_tokens; settle: real usage
    gws = replicas(gateway_factory, upstream, redis_prefix,
                   {"name": "global-tpm", "scope": "global", "window": "1h", "tokens": limit})
    statuses = Counter(await burst(gws, 300, {"model": "slow-20", "messages": MESSAGES, "max_tokens": 5}))
    admitted = statuses[200]
    assert set(statuses) == {200, 429}
    # Reservations alone fit limit // estimate; settled requests give back the unused estimate, so a few more fit,
    # but never more than the limit holds in real tokens (no over-admission at all when max_tokens is set).
    assert limit // estimate <= admitted <= limit // real
    admin = redis.Redis.from_url(REDIS_URL)
    deadline = time.monotonic() + 5
    while True:  # settles run just after each response: wait until the last ones landed
        fields: dict[bytes, bytes] = admin.hgetall(f"{redis_prefix}global-tpm|{{}}")  # type: ignore[assignment]
        used = sum(int(v) for k, v in fields.items() if k.startswith(b"t") and k[1:].isdigit())  # buckets
        if used == admitted * real or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    admin.close()
    assert used == admitted * real
    assert int(fields[b"t-3"]) == used  # the running total the script keeps beside the buckets


async def test_workers_share_the_port_and_the_redis_limit(gateway_factory: Callable[..., GatewayProcess],
                                                         upstream: Upstream, redis_prefix: str) -> None:
    limit = 25
    config = {"providers": [{"name": "up", "type": "openai-compatible", "base_url": f"{upstream.url}/v1",
                             "models": ["*"]}],
              "redis": {"url": REDIS_URL, "pool_size": 4},
              "limits": {"rules": [{"name": "global-rpm", "scope": "global", "window": "1h", "requests": limit}],
                         "redis_prefix": redis_prefix, "on_backend_error": "closed", "redis_timeout_s": 5.0}}
    gw = gateway_factory(["--workers", "2"], config=config)
    # The gateway answered /health as soon as its first worker listened: wait for both.
    for i in range(2):
        wait_until_answering(gw.proc, f"http://127.0.0.1:{gw.metrics_port + i}/metrics", gw.log_path, 30, "worker")
    statuses = Counter(await burst([gw], 120, {"model": "slow-20", "messages": MESSAGES}))
    assert statuses == {200: limit, 429: 120 - limit}
    # Each worker keeps its own series and serves it on metrics_port + its index.
    ok = {"model": "slow-20", "provider": "up", "status": "200"}
    own = [metric_value(httpx.get(f"http://127.0.0.1:{gw.metrics_port + i}/metrics").text,
                        "llm_gateway_requests_total", ok) for i in range(2)]
    assert sum(own) == limit and all(own)  # both workers served some
    # /metrics on the gateway's port adds up both workers' series, whichever worker the scrape reaches
    for _ in range(6):
        with httpx.Client() as client:  # a new connection each time: the kernel spreads them over the workers
            text = client.get(f"{gw.url}/metrics").text
        assert metric_value(text, "llm_gateway_requests_total", ok) == limit
        limited = {"scope": "global", "limit": "global-rpm"}
        assert metric_value(text, "llm_gateway_rate_limited_requests_total", limited) == 120 - limit
        assert text.count("# TYPE llm_gateway_requests_total counter") == 1
    assert gw.stop() == 0
