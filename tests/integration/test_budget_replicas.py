"""Budgets across three gateway processes on one Redis and one PostgreSQL ledger: the spend they admit together
stays within the budget plus one request per replica, however the requests are spread over them."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import redis
from sqlalchemy import create_engine, text
from tests.conftest import GatewayProcess
from tests.upstream import Upstream

MASTER = "mk-budget-replicas-0c4f"
REDIS_URL = "redis://127.0.0.1:6379/13"
PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
PRICED = {"input": 1000.0, "output": 2000.0}  # USD per 1M: 11 prompt + 5 completion tokens = $0.021
COST = 11 * 1000e-6 + 5 * 2000e-6
BODY = {"model": "slow-150", "messages": [{"role": "user", "content": "Say hello"}], "max_tokens": 5}


@pytest.fixture
def services() -> Iterator[tuple[str, str, Callable[[str], Any]]]:
    """A Redis key prefix and a PostgreSQL ledger (URL, and a query function) of this test's own."""
    prefix = f"test-budgets-{uuid.uuid4().hex[:8]}:"
    schema = f"test_budgets_{uuid.uuid4().hex[:8]}"
    try:
        store = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
        store.ping()
        engine = create_engine(PG, connect_args={"connect_timeout": 3, "options": f"-csearch_path={schema}"})
        with engine.begin() as conn:
            conn.execute(text(f"CREATE SCHEMA {schema}"))
    except Exception as exc:
        pytest.skip(f"Redis or PostgreSQL is not available: {exc}")

    def sql(statement: str) -> Any:
        with engine.begin() as conn:
            return conn.execute(text(statement)).fetchall()
    yield prefix, f"postgresql://postgres@127.0.0.1:5432/test?options=-csearch_path%3D{schema}", sql
    with engine.begin() as conn:
        conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
    engine.dispose()
    keys = list(store.scan_iter(match=prefix + "*"))
    if keys:
        store.delete(*keys)
    store.close()


async def test_three_replicas_admit_at_most_the_budget_plus_one_request_each(
        services: tuple[str, str, Callable[[str], Any]], gateway_factory: Callable[..., GatewayProcess],
        upstream: Upstream) -> None:
    # `services` first: set up before the gateways, torn down after they stopped (dropping the schema under a
    # gateway's ledger writes deadlocks)
    prefix, db_url, sql = services
    config = {"providers": [{"name": "up", "type": "openai-compatible", "base_url": f"{upstream.url}/v1",
                             "models": ["*"]}],
              "database": {"url": db_url, "ledger_flush_interval_s": 0.1},
              "redis": {"url": REDIS_URL},
              "limits": {"redis_prefix": prefix, "redis_timeout_s": 5.0},
              "pricing": {"slow-150": PRICED}}
    gws = [gateway_factory(config=config, env={"LLM_GATEWAY_MASTER_KEY": MASTER}) for _ in range(3)]
    budget = 0.3
    created = httpx.post(f"{gws[0].url}/api/v1/keys", headers={"authorization": f"Bearer {MASTER}"},
                         json={"budget_usd": budget})
    assert created.status_code in (200, 201), created.text
    headers = {"authorization": f"Bearer {created.json()['key']}"}
    statuses: list[int] = []
    limits = httpx.Limits(max_connections=60, max_keepalive_connections=60)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        for _ in range(15):  # waves spread over the replicas, until the budget refuses a whole wave
            wave = await asyncio.gather(*(client.post(f"{gws[i % 3].v1}/chat/completions", headers=headers,
                                                      json=BODY) for i in range(24)))
            statuses += [r.status_code for r in wave]
            if all(r.status_code == 429 for r in wave):
                assert {r.json()["error"]["code"] for r in wave} == {"budget_exceeded"}
                break
    assert set(statuses) == {200, 429} and statuses[-1] == 429
    ok = statuses.count(200)
    assert budget <= ok * COST <= budget + 3 * COST, (ok, statuses)
    deadline = time.monotonic() + 10
    while True:  # what the ledger recorded: every admitted request, at its cost
        rows = sql("SELECT count(*), coalesce(sum(cost_usd), 0) FROM gw_usage WHERE status = 200")[0]
        if rows[0] == ok or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    assert rows[0] == ok and rows[1] == pytest.approx(ok * COST)
    assert rows[1] <= budget + 3 * COST
