"""The ledger under network faults, through a real gateway process and a TCP proxy in front of PostgreSQL that
the test controls: the proxy goes silent mid-write (no error, no close: a blackhole) and later forwards again.
Every answered request has exactly one row, the ledger writes again within seconds of the network's return,
its retries back off, and each outage is logged once."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text
from tests.conftest import GatewayProcess, metric_value
from tests.upstream import Upstream

MASTER = "mk-ledger-faults-7d1e"
PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


class Blackhole:
    """A TCP forwarder to PostgreSQL, on its own thread and event loop. `cut_after(marker)`: the next chunk from
    the gateway that contains `marker` is forwarded, then nothing more in either direction (bytes are held, not
    dropped or refused, as a network that stops delivering) until `restore()`."""

    def __init__(self, target: tuple[str, int] = ("127.0.0.1", 5432)) -> None:
        self.target = target
        self.loop = asyncio.new_event_loop()
        self.flowing = asyncio.Event()
        self.cut = threading.Event()
        self.marker: bytes | None = None
        self.port = 0
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._writers: list[asyncio.StreamWriter] = []

    def start(self) -> Blackhole:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._listen(), self.loop).result(5)
        return self

    async def _listen(self) -> None:
        self.flowing.set()
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self._writers += [writer, up_writer]
        await asyncio.gather(self._pump(reader, up_writer, True), self._pump(up_reader, writer, False),
                             return_exceptions=True)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, outbound: bool) -> None:
        while True:
            data = await reader.read(65536)
            await self.flowing.wait()  # a silent network: what was sent arrives, if ever, when it comes back
            if not data:
                writer.close()
                return
            writer.write(data)
            if outbound and self.marker is not None and self.marker in data:
                self.marker = None
                self.flowing.clear()
                self.cut.set()

    def cut_after(self, marker: bytes) -> None:
        self.cut.clear()
        self.loop.call_soon_threadsafe(setattr, self, "marker", marker)

    def restore(self) -> None:
        self.loop.call_soon_threadsafe(self.flowing.set)

    def close(self) -> None:
        async def shut() -> None:
            self.server.close()
            for writer in self._writers:
                writer.close()
        asyncio.run_coroutine_threadsafe(shut(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)


@pytest.fixture
def pg_schema() -> Iterator[tuple[str, Callable[[str], Any]]]:
    schema = f"test_faults_{uuid.uuid4().hex[:8]}"
    try:
        engine = create_engine(PG, connect_args={"options": f"-csearch_path={schema}", "connect_timeout": 3})
        with engine.begin() as conn:
            conn.execute(text(f"CREATE SCHEMA {schema}"))
    except Exception as exc:
        pytest.skip(f"PostgreSQL is not available: {exc}")

    def sql(statement: str) -> Any:
        with engine.begin() as conn:
            return conn.execute(text(statement)).fetchall()
    yield schema, sql
    with engine.begin() as conn:
        conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
    engine.dispose()


async def wait_for(check: Callable[[], bool], timeout: float, step: float = 0.05) -> float:
    """Seconds until `check()` held; raises when it did not within `timeout`."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"not within {timeout}s")
        await asyncio.sleep(step)
    return time.monotonic() - start


async def test_a_blackholed_database_loses_and_duplicates_no_row_and_recovers_in_seconds(
        pg_schema: tuple[str, Callable[[str], Any]], gateway_factory: Callable[..., GatewayProcess],
        upstream: Upstream) -> None:  # the database first: torn down after the gateways stopped
    schema, sql = pg_schema
    proxy = Blackhole().start()
    try:
        config = {"providers": [{"name": "up", "type": "openai-compatible", "base_url": f"{upstream.url}/v1",
                                 "models": ["*"]}],
                  "database": {"url": f"postgresql://postgres@127.0.0.1:{proxy.port}/test"
                                      f"?options=-csearch_path%3D{schema}",
                               "ledger_flush_interval_s": 0.1, "ledger_write_timeout_s": 1.0,
                               "connect_timeout_s": 1, "statement_timeout_s": 2}}
        gw = gateway_factory(config=config, env={"LLM_GATEWAY_MASTER_KEY": MASTER})
        await run_outages(gw, proxy, sql)
    finally:
        proxy.close()


async def run_outages(gw: GatewayProcess, proxy: Blackhole, sql: Callable[[str], Any]) -> None:
    answered: list[str] = []
    stop = asyncio.Event()

    async def traffic(client: httpx.AsyncClient, n: int) -> None:
        i = 0
        while not stop.is_set():
            rid = f"fault-{n}-{i}"
            i += 1
            r = await client.post(f"{gw.v1}/chat/completions", headers={
                "authorization": f"Bearer {MASTER}", "x-request-id": rid},
                json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
            assert r.status_code == 200, r.text
            answered.append(rid)
            await asyncio.sleep(0.005)

    async def metrics() -> str:
        return (await client.get(f"{gw.url}/metrics")).text

    async with httpx.AsyncClient(timeout=10) as client:
        tasks = [asyncio.create_task(traffic(client, n)) for n in range(4)]
        recoveries: list[float] = []
        failures: list[float] = []
        # Cut once in the middle of a COPY, once just after the COMMIT went out (its answer is held back: the
        # retry must find the batch written and not write it again).
        for marker, hold in ((b"COPY gw_usage", 6.0), (b"COMMIT\x00", 4.0)):
            before = metric_value(await metrics(), "llm_gateway_ledger_write_failures_total")
            proxy.cut_after(marker)
            await wait_for(proxy.cut.is_set, 10)
            await asyncio.sleep(hold)  # the gateway keeps answering while its database is silent
            text_ = await metrics()
            assert metric_value(text_, "llm_gateway_ledger_database_up") == 0
            assert metric_value(text_, "llm_gateway_ledger_backlog") > 0
            proxy.restore()
            recoveries.append(await wait_for(lambda: caught_up(gw), 15))
            failures.append(metric_value(await metrics(), "llm_gateway_ledger_write_failures_total") - before)
        stop.set()
        await asyncio.gather(*tasks)
        await wait_for(lambda: caught_up(gw, 0), 15)
        text_ = await metrics()
    assert len(answered) > 300
    rows = [r[0] for r in sql("SELECT request_id FROM gw_usage")]
    assert len(rows) == len(set(rows)), f"{len(rows) - len(set(rows))} duplicated rows"
    assert sorted(rows) == sorted(answered)
    assert metric_value(text_, "llm_gateway_ledger_database_up") == 1
    assert metric_value(text_, "llm_gateway_ledger_outage_seconds_total") >= 6
    # Written again within seconds of the network's return (backoff tops out at 5 s, with jitter).
    assert max(recoveries) < 7, recoveries
    # Backoff: a 6 s outage costs a handful of attempts (each also waits up to 1 s for its timeout), not one per
    # event loop turn; and it was retried more than once.
    assert all(2 <= f <= 8 for f in failures), failures
    log = gw.log()
    assert log.count("ledger: writing to the database failed") == 2, log[-3000:]
    assert log.count("ledger: the database is back") == 2


def caught_up(gw: GatewayProcess, backlog: int = 100) -> bool:
    """The ledger writes again and has written what waited (under traffic, a few rows always wait)."""
    text_ = httpx.get(f"{gw.url}/metrics").text
    return (metric_value(text_, "llm_gateway_ledger_database_up") == 1
            and metric_value(text_, "llm_gateway_ledger_backlog") <= backlog)
