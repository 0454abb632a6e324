"""Redis going away mid-run: fail-open serves unchecked, fail-closed answers 503; both recover by themselves."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable, Iterator

import httpx
import pytest
import redis
from tests.conftest import GatewayProcess, metric_value
from tests.upstream import Upstream, free_port

REDIS_DB_URL = "redis://127.0.0.1:{port}/13"
MESSAGES = [{"role": "user", "content": "hi"}]


class CuttableProxy:
    """A TCP proxy to the real Redis, run on its own loop; `cut()` closes the port and every connection."""

    def __init__(self) -> None:
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()
        self.thread = threading.Thread(target=self.loop.run_forever, name="redis-proxy", daemon=True)
        self.thread.start()

    def _call(self, coro: object) -> None:
        asyncio.run_coroutine_threadsafe(coro, self.loop).result(5)  # type: ignore[arg-type]

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", 6379)
        self.writers |= {writer, up_writer}
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    async def _start(self) -> None:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", self.port, reuse_address=True)

    async def _cut(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in self.writers:
            writer.transport.abort()
        self.writers.clear()
        await self.server.wait_closed()

    def start(self) -> None:
        self._call(self._start())

    def cut(self) -> None:
        self._call(self._cut())

    def stop(self) -> None:
        if self.server is not None and self.server.is_serving():
            self.cut()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture
def proxy() -> Iterator[CuttableProxy]:
    p = CuttableProxy()
    p.start()
    yield p
    p.stop()


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    prefix = f"test-failover-{uuid.uuid4().hex[:8]}:"
    yield prefix
    admin = redis.Redis.from_url(REDIS_DB_URL.format(port=6379))
    keys = list(admin.scan_iter(match=prefix + "*"))
    if keys:
        admin.delete(*keys)
    admin.close()


def start(factory: Callable[..., GatewayProcess], upstream: Upstream, proxy: CuttableProxy, prefix: str,
          mode: str) -> GatewayProcess:
    return factory(config={
        "providers": [{"name": "up", "type": "openai-compatible", "base_url": f"{upstream.url}/v1", "models": ["*"]}],
        "redis": {"url": REDIS_DB_URL.format(port=proxy.port)},
        "limits": {"rules": [{"name": "rpm", "scope": "user", "requests": 3}], "redis_prefix": prefix,
                   "on_backend_error": mode, "redis_timeout_s": 0.5, "retry_backend_after_s": 0.2}})


def chat(client: httpx.Client, user: str) -> httpx.Response:
    return client.post("/v1/chat/completions", headers={"user": user}, json={"model": "m", "messages": MESSAGES})


def until_limited_again(client: httpx.Client, user: str) -> list[int]:
    """Statuses for `user` until Redis answers again and the limit refuses (bounded: 5 s)."""
    seen: list[int] = []
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        r = chat(client, user)
        seen.append(r.status_code)
        if r.status_code == 429:
            return seen
        time.sleep(0.05)
    pytest.fail(f"limits did not come back after Redis did: {seen}")


@pytest.mark.parametrize("mode", ["open", "closed"])
def test_redis_cut_mid_run_then_recovery(gateway_factory: Callable[..., GatewayProcess], upstream: Upstream,
                                         proxy: CuttableProxy, redis_prefix: str, mode: str) -> None:
    gw = start(gateway_factory, upstream, proxy, redis_prefix, mode)
    client = httpx.Client(base_url=gw.url, timeout=10)
    assert [chat(client, "a").status_code for _ in range(4)] == [200, 200, 200, 429]
    proxy.cut()
    during = [chat(client, "a") for _ in range(5)]
    if mode == "open":
        # Served although "a" is over the limit: nobody can tell, and serving is what fail-open promises.
        assert [r.status_code for r in during] == [200] * 5
        assert all("x-ratelimit-limit-requests" not in r.headers for r in during)
    else:
        assert [r.status_code for r in during] == [503] * 5
        error = during[0].json()["error"]
        assert error["code"] == "service_unavailable" and "limit store is unavailable" in error["message"]
        assert during[0].headers["retry-after"] == "1"
    metrics = httpx.get(f"{gw.url}/metrics").text
    assert metric_value(metrics, "llm_gateway_rate_limit_unchecked_requests_total", {"mode": mode}) == 5
    assert metric_value(metrics, "llm_gateway_rate_limit_backend_errors_total", {"operation": "reserve"}) >= 1
    proxy.start()
    # "a" is still over its limit once Redis answers; "b" is counted from zero again.
    assert until_limited_again(client, "a")[-1] == 429
    seen = until_limited_again(client, "b")
    assert seen[-4:] == [200, 200, 200, 429]
    assert "Redis unavailable" in gw.log() and "Redis is back" in gw.log()
    client.close()
