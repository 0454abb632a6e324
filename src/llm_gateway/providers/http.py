"""The fast upstream transport: HTTP/1.1 keep-alive pools per origin, streamed bodies, timeouts, cancellation.

Hand-written on asyncio protocols and httptools for the same reason as the server: httpx's pool costs more
CPU per request under concurrency than the gateway's whole budget. Providers that need an egress proxy or a
client certificate use the library transport (providers/library_transport.py) instead.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Callable

from llm_gateway.deadlines import NEVER, Deadlines
from llm_gateway.errors import UpstreamUnavailable
from llm_gateway.providers.connection import PAUSE_AT, Broken, Connection, Pool, translate
from llm_gateway.providers.transport import Transport
from llm_gateway.providers.wire import Origin, PreparedRequest, Timeouts, render_head

__all__ = ["HttpClient", "Origin", "Timeouts", "UpstreamResponse"]
# How late an upstream timeout may fire: all of them are checked by one sweep this often.
TIMEOUT_RESOLUTION_S = 0.05


class UpstreamResponse:
    """A response whose head has arrived; the body is read with `read()` or iterated with `chunks()`."""

    def __init__(self, conn: Connection, timeouts: Timeouts, started: float) -> None:
        self._conn = conn
        self.status = conn.status
        self.headers = conn.headers
        self._timeouts = timeouts
        self._deadline = started + timeouts.total
        self._first_deadline = min(started + timeouts.first_byte, self._deadline)
        self._released = False

    def header(self, name: bytes) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value.decode("latin-1")
        return None

    async def chunks(self) -> AsyncIterator[bytes]:
        conn = self._conn
        try:
            while True:
                if conn.chunks:
                    # All that arrived since the last turn at once: one write to the client, not one per piece.
                    yield self._take()
                    continue
                if conn.complete:
                    break
                await self._more()
        finally:
            self.release()

    def _take(self) -> bytes:
        """Every body piece buffered, as one; reading resumes if it paused on them."""
        conn = self._conn
        pieces = conn.chunks
        data = pieces.popleft() if len(pieces) == 1 else b"".join(pieces)
        pieces.clear()
        if conn.buffered > PAUSE_AT // 2 and conn.transport is not None:
            conn.transport.resume_reading()  # paused on a large body: reusable only reading again
        conn.buffered = 0
        return data

    async def read(self) -> bytes:
        if self._conn.complete and not self._released:  # the body came with the head (most small answers)
            data = self._take()
            self.release()
            return data
        parts = [chunk async for chunk in self.chunks()]
        return parts[0] if len(parts) == 1 else b"".join(parts)

    async def wait_body(self) -> None:
        """Wait until the first body bytes (the first token of a stream) arrived or the body ended.

        Raises like `chunks()` (the connection is then dropped); nothing is consumed.
        """
        conn = self._conn
        try:
            while not conn.chunks and not conn.complete:
                await self._more()
        except BaseException:
            self.release()
            raise

    async def _more(self) -> None:
        """Wait for the next body bytes; a broken or silent connection raises as a gateway error."""
        if self._conn.error is not None:
            raise translate(self._conn.error, self._conn)
        try:
            await self._wait_data()
        except (OSError, Broken) as exc:
            raise translate(exc, self._conn) from None

    async def _wait_data(self) -> None:
        conn = self._conn
        loop = conn.loop
        waiter = loop.create_future()
        conn.data_waiter = waiter
        if conn.got_body:
            conn.expires_at = min(loop.time() + self._timeouts.idle, self._deadline)
            conn.timeout_message = f"upstream {conn.label} went silent mid-response"
        else:  # the time-to-first-token budget runs from the request's start, not from the response head
            conn.expires_at = self._first_deadline
            conn.timeout_message = f"upstream {conn.label} sent no first token in time"
        try:
            await waiter
        finally:
            conn.expires_at = NEVER
            conn.data_waiter = None

    def release(self) -> None:
        """Give the connection back to the pool when the body was read completely, else drop it."""
        if self._released:
            return
        self._released = True
        conn = self._conn
        if conn.complete and conn.keep_alive and not conn.closed:
            conn.pool.put(conn)
        else:
            conn.abort()


class HttpClient(Transport):
    """Sends requests to upstream origins over pooled keep-alive connections."""

    def __init__(self, max_idle_per_origin: int = 256) -> None:
        self._pools: dict[Origin, Pool] = {}
        self._max_idle = max_idle_per_origin
        self._ssl: ssl.SSLContext | None = None
        self._deadlines: Deadlines | None = None

    def _pool(self, origin: Origin) -> Pool:
        pool = self._pools.get(origin)
        if pool is None:
            if origin.tls and self._ssl is None:
                self._ssl = ssl.create_default_context()
            loop = asyncio.get_running_loop()
            if self._deadlines is None:
                self._deadlines = Deadlines(loop, TIMEOUT_RESOLUTION_S)
            pool = Pool(origin, loop, self._ssl if origin.tls else None, self._max_idle, self._deadlines)
            self._pools[origin] = pool
        return pool

    async def send(self, origin: Origin, request: PreparedRequest, timeouts: Timeouts, *, label: str = "upstream",
                   first_body: bool = False, after_write: Callable[[], None] | None = None) -> UpstreamResponse:
        """Send `request`; see `Transport.send`.

        A reused connection that turns out dead before any byte of the response arrived is replaced once (the
        request never reached a live server).
        """
        data = render_head(request, origin.host_header) + request.body
        pool = self._pool(origin)
        started = pool.loop.time()
        for _ in range(2):
            conn = await pool.acquire(timeouts.connect, label)
            conn.bodiless = request.method == "HEAD"
            try:
                return await self._exchange(conn, data, timeouts, started, first_body, after_write)
            except UpstreamUnavailable:
                if conn.reused and not conn.got_bytes:
                    after_write = None  # it ran after the first write
                    continue
                raise
        raise UpstreamUnavailable(f"upstream {label} keeps closing connections")

    async def _exchange(self, conn: Connection, data: bytes, timeouts: Timeouts, started: float,
                        first_body: bool, after_write: Callable[[], None] | None) -> UpstreamResponse:
        waiter = conn.loop.create_future()
        conn.head_waiter = waiter
        conn.wake_at_body = first_body
        assert conn.transport is not None
        conn.transport.write(data)
        if after_write is not None:
            after_write()
        limit = min(timeouts.first_byte, timeouts.total)
        conn.expires_at = started + limit
        conn.timeout_message = ""  # written if it expires: "no response within <limit>"
        conn.head_limit = limit
        conn.pool.deadlines.watch(conn)
        try:
            await waiter
        except BaseException as exc:
            conn.abort()
            if isinstance(exc, Exception):
                raise translate(exc, conn) from None
            raise
        finally:
            conn.expires_at = NEVER
            conn.head_waiter = None
        return UpstreamResponse(conn, timeouts, started)

    def shed_idle(self, keep: int = 16) -> None:
        """After a burst: keep only `keep` idle connections per origin (the rest would hold memory for hours)."""
        for pool in self._pools.values():
            pool.shed(keep)

    async def aclose(self) -> None:
        self.close()

    def close(self) -> None:
        for pool in self._pools.values():
            pool.close()
        self._pools.clear()
        if self._deadlines is not None:
            self._deadlines.close()
