"""The usage ledger through real gateway processes: a row for every answered request across SIGTERM under load,
and writes that fail while the database is unavailable are retried, not lost (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text
from tests.conftest import GatewayProcess, metric_value
from tests.upstream import Upstream

MASTER = "mk-ledger-test-51c2"
PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, Callable[[str], Any]]]:
    """A gateway database URL, and a function running one SQL statement on it from outside the gateway."""
    if request.param == "sqlite":
        path = tmp_path / "ledger.db"

        def run_sqlite(sql: str) -> Any:
            with sqlite3.connect(path, timeout=30) as conn:
                return conn.execute(sql).fetchall()
        yield f"sqlite:///{path}", run_sqlite
        return
    schema = f"test_ledger_{uuid.uuid4().hex[:8]}"
    engine = create_engine(PG, connect_args={"options": f"-csearch_path={schema}"})
    with engine.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))

    def run_pg(sql: str) -> Any:
        with engine.begin() as conn:
            result = conn.execute(text(sql))
            return result.fetchall() if result.returns_rows else None
    yield f"postgresql://postgres@127.0.0.1:5432/test?options=-csearch_path%3D{schema}", run_pg
    with engine.begin() as conn:
        conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
    engine.dispose()


def start(factory: Callable[..., GatewayProcess], upstream: Upstream, db_url: str,
          **database: Any) -> GatewayProcess:
    config = {"providers": [{"name": "up", "type": "openai-compatible", "base_url": f"{upstream.url}/v1",
                             "models": ["*"]}],
              "database": {"url": db_url, "ledger_flush_interval_s": 0.2, **database},
              "server": {"shutdown_grace_s": 10}}
    return factory(config=config, env={"LLM_GATEWAY_MASTER_KEY": MASTER})


async def test_every_answered_request_has_its_row_across_sigterm(
        db: tuple[str, Callable[[str], Any]], gateway_factory: Callable[..., GatewayProcess],
        upstream: Upstream) -> None:  # the database first: torn down after the gateways stopped
    db_url, sql = db
    # A large batch size: rows pile up in memory, so only the shutdown flush can write most of them.
    gw = start(gateway_factory, upstream, db_url, ledger_batch_size=100_000, ledger_flush_interval_s=30)
    answered: list[str] = []
    stop_at = time.monotonic() + 30

    async def worker(client: httpx.AsyncClient, n: int) -> None:
        i = 0
        while time.monotonic() < stop_at:
            rid = f"sigterm-{n}-{i}"
            i += 1
            try:
                r = await client.post(f"{gw.v1}/chat/completions", headers={
                    "authorization": f"Bearer {MASTER}", "x-request-id": rid},
                    json={"model": "slow-20", "messages": [{"role": "user", "content": "hi"}]})
            except httpx.HTTPError:
                return  # the gateway stopped taking requests
            if r.status_code == 200:
                assert r.headers["x-request-id"] == rid
                answered.append(rid)
            else:
                return

    async with httpx.AsyncClient(timeout=30) as client:
        tasks = [asyncio.create_task(worker(client, n)) for n in range(16)]
        while len(answered) < 150:
            await asyncio.sleep(0.02)
        gw.proc.send_signal(signal.SIGTERM)
        await asyncio.gather(*tasks)
    assert gw.proc.wait(30) == 0
    rows = {r[0] for r in sql("SELECT request_id FROM gw_usage WHERE status = 200")}
    missing = set(answered) - rows
    assert not missing, f"{len(missing)} of {len(answered)} answered requests have no ledger row"
    assert len(answered) >= 150


def test_failed_writes_are_retried_and_the_backlog_is_visible(
        db: tuple[str, Callable[[str], Any]], gateway_factory: Callable[..., GatewayProcess],
        upstream: Upstream) -> None:  # the database first: torn down after the gateways stopped
    db_url, sql = db
    gw = start(gateway_factory, upstream, db_url, ledger_flush_interval_s=0.05)
    headers = {"authorization": f"Bearer {MASTER}"}
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    sql("ALTER TABLE gw_usage RENAME TO gw_usage_away")  # the ledger's table is gone: writes fail
    try:
        for _ in range(5):
            assert httpx.post(f"{gw.v1}/chat/completions", headers=headers, json=body).status_code == 200
        for _ in range(100):
            metrics = httpx.get(f"{gw.url}/metrics").text
            if metric_value(metrics, "llm_gateway_ledger_write_failures_total") >= 1:
                break
            time.sleep(0.05)
        assert metric_value(metrics, "llm_gateway_ledger_write_failures_total") >= 1
        assert metric_value(metrics, "llm_gateway_ledger_backlog") == 5
    finally:
        sql("ALTER TABLE gw_usage_away RENAME TO gw_usage")
    for _ in range(200):
        metrics = httpx.get(f"{gw.url}/metrics").text
        if metric_value(metrics, "llm_gateway_ledger_backlog") == 0:
            break
        time.sleep(0.05)
    assert metric_value(metrics, "llm_gateway_ledger_backlog") == 0
    assert metric_value(metrics, "llm_gateway_ledger_rows_written_total") == 5
    rows = sql("SELECT model, prompt_tokens, completion_tokens, cost_usd, key_id FROM gw_usage")
    assert len(rows) == 5
    assert rows[0][:3] == ("gpt-4o-mini", 11, 5) and rows[0][3] == pytest.approx(11 * 0.15e-6 + 5 * 0.6e-6)
    assert rows[0][4] == "master"


def test_a_client_cannot_stop_the_ledger_with_a_long_or_nul_value(
        gateway_factory: Callable[..., GatewayProcess], upstream: Upstream,
        db: tuple[str, Callable[[str], Any]]) -> None:
    """A model name or `user` longer than its column, or holding a NUL, was a row PostgreSQL refused: its batch
    failed and was retried forever, and no request after it was recorded. Such values are now cut to fit; so is
    a token count past what a request can hold (an upstream's bug), which no 32-bit column takes."""
    db_url, sql = db
    gw = start(gateway_factory, upstream, db_url)
    auth = {"authorization": f"Bearer {MASTER}"}
    messages = [{"role": "user", "content": "hi"}]
    odd = [{"model": "m" * 300}, {"model": "ok", "user": "u" * 300}, {"model": "ok", "user": "nul\x00user"},
           {"model": "nul\x00model"}, {"model": "huge-usage"}]
    for extra in odd:
        httpx.post(f"{gw.v1}/chat/completions", json={"messages": messages, **extra}, headers=auth, timeout=10)
    httpx.post(f"{gw.v1}/chat/completions", json={"model": "x" * 300, "messages": messages}, timeout=10)  # no key
    for _ in range(3):
        assert httpx.post(f"{gw.v1}/chat/completions", json={"model": "after", "messages": messages},
                          headers=auth, timeout=10).status_code == 200
    deadline = time.monotonic() + 10
    while (count := sql("SELECT count(*) FROM gw_usage")[0][0]) < 9 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert count == 9, gw.log()[-2000:]
    rows = sql("SELECT model, end_user, prompt_tokens FROM gw_usage ORDER BY id")
    assert rows[0][0] == "m" * 200 and rows[1][1] == "u" * 200 and rows[2][1] == "nuluser"
    assert rows[3][0] == "nulmodel" and rows[-1][0] == "after"
    assert rows[4][0] == "huge-usage" and 10**8 < rows[4][2] < 2**31
    assert metric_value(httpx.get(f"{gw.url}/metrics").text, "llm_gateway_ledger_write_failures_total") == 0
