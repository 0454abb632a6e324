"""Budgets in Redis, on a real Redis: holds of every live replica count, a dead replica's stop counting, the
ledger's spend seeds a period, and an unreachable Redis leaves the decision to the replica's own tracker."""

from __future__ import annotations

import calendar
import time
import uuid
from collections.abc import AsyncIterator

import pytest
import redis

from llm_gateway.keys import shared_budget
from llm_gateway.keys.budget import Budget
from llm_gateway.keys.shared_budget import STALE_MS, SharedBudgets

REDIS_URL = "redis://127.0.0.1:6379/13"


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    name = f"test-shared-budget-{uuid.uuid4().hex[:8]}:"
    store = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        store.ping()
    except redis.RedisError as exc:
        pytest.skip(f"Redis is not available: {exc}")
    yield name
    keys = list(store.scan_iter(match=name + "*"))
    if keys:
        store.delete(*keys)
    store.close()


def budget(limit: float = 1.0) -> Budget:
    return Budget("key", "k1", limit, "daily", time.time())


async def test_holds_of_every_replica_count_until_settled(prefix: str) -> None:
    a, b = SharedBudgets(REDIS_URL, 1, prefix, "a"), SharedBudgets(REDIS_URL, 1, prefix, "b")
    mine, theirs = [budget()], [budget()]  # each replica's own Budget object for the same key
    assert await a.reserve(mine, 0.6) is True
    assert await b.reserve(theirs, 0.6) is True  # 0.6 < 1.0: admitted, now 1.2 held
    assert await b.reserve(theirs, 0.1) is theirs[0]  # spent + holds >= limit: refused
    a.settle(mine, 0.6, 0.0)  # a's request failed: nothing spent
    await a.close()
    assert await b.reserve(theirs, 0.1) is True
    b.settle(theirs, 0.6, 0.5)
    b.settle(theirs, 0.1, 0.1)
    await b.close()
    fields = redis.Redis.from_url(REDIS_URL).hgetall(f"{prefix}key:k1:{int(mine[0].start)}")
    assert float(fields[b"spent"]) == pytest.approx(0.6) and b"r:a" not in fields and b"r:b" not in fields


async def test_a_dead_replicas_holds_stop_counting_and_the_ledger_seeds_the_spend(prefix: str) -> None:
    live = SharedBudgets(REDIS_URL, 1, prefix, "live")
    b = [budget()]
    key = f"{prefix}key:k1:{int(b[0].start)}"
    store = redis.Redis.from_url(REDIS_URL)
    store.hset(key, mapping={"r:dead": 0.9, "t:dead": int(time.time() * 1000) - STALE_MS - 1000})
    assert await live.reserve(b, 0.5) is True  # the dead replica's 0.9 is dropped, not counted
    assert store.hget(key, "r:dead") is None
    b[0].spent = 0.7  # what the ledger says this period cost
    await live.seed(b)
    assert float(store.hget(key, "spent") or 0) == pytest.approx(0.7)
    b[0].spent = 0.2  # a lower figure never lowers it
    await live.seed(b)
    assert float(store.hget(key, "spent") or 0) == pytest.approx(0.7)
    assert await live.reserve(b, 0.1) is b[0]  # 0.7 spent + 0.5 held
    await live.close()
    store.close()


async def test_an_unreachable_redis_leaves_the_decision_to_memory() -> None:
    shared = SharedBudgets("redis://127.0.0.1:1/0", 1, "x:", "r", timeout_s=0.2, retry_after_s=30)
    assert await shared.reserve([budget()], 0.1) is False
    started = time.monotonic()
    assert await shared.reserve([budget()], 0.1) is False  # not asked again at once: no timeout per request
    assert time.monotonic() - started < 0.01
    await shared.close()


async def test_a_request_settled_in_the_next_period_gives_its_hold_back_where_it_took_it(
        prefix: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A request admitted at 23:59:59 and finished after midnight: its hold was taken on yesterday's hash, its
    cost belongs to today's. Giving the hold back on today's hash dropped this replica's holds of today's
    requests in flight (their budget could then be overshot) and left yesterday's hold behind."""
    shared = SharedBudgets(REDIS_URL, 1, prefix, "a")
    midnight = float(calendar.timegm((*time.gmtime()[:3], 0, 0, 0)))
    clock = [midnight - 1.0]
    monkeypatch.setattr(shared_budget.time, "time", lambda: clock[0])
    b = [Budget("key", "k1", 1.0, "daily", clock[0])]
    held: list[float] = []
    assert await shared.reserve(b, 0.5, held) is True  # yesterday, 23:59:59
    clock[0] = midnight + 1.0
    assert await shared.reserve(b, 0.3) is True  # today: another request holds 0.3
    b[0].roll(clock[0])
    shared.settle(b, 0.5, 0.2, held)  # the first one ends today
    await shared.close()
    store = redis.Redis.from_url(REDIS_URL)
    today = store.hgetall(f"{prefix}key:k1:{int(midnight)}")
    yesterday = store.hgetall(f"{prefix}key:k1:{int(midnight) - 86400}")
    store.close()
    assert float(today[b"r:a"]) == pytest.approx(0.3) and float(today[b"spent"]) == pytest.approx(0.2)
    assert b"r:a" not in yesterday and b"spent" not in yesterday
