"""The fast upstream transport: HTTP/1.1 keep-alive pools per origin, streamed bodies, timeouts, cancellation.

Hand-written on asyncio protocols and httptools for the same reason as the server: httpx's pool costs more
CPU per request under concurrency than the gateway's whole budget. Providers that need an egress proxy or a
client certificate use the library transport (providers/library_transport.py) instead.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import cast

import httptools

from llm_gateway.deadlines import NEVER, Deadlines
from llm_gateway.errors import UpstreamTimeout, UpstreamUnavailable
from llm_gateway.providers.transport import Transport
from llm_gateway.providers.wire import Origin, PreparedRequest, Timeouts, render_head
from llm_gateway.server.busy_poll import BusyPoll

__all__ = ["HttpClient", "Origin", "Timeouts", "UpstreamResponse"]
log = logging.getLogger("llm_gateway.upstream")

_PAUSE_AT = 512 * 1024
# How late an upstream timeout may fire: all of them are checked by one sweep this often.
TIMEOUT_RESOLUTION_S = 0.05


class _Broken(Exception):
    """A connection failure whose message names no host or port, so the client may read it."""


class _Conn(asyncio.Protocol):
    """One upstream connection; carries one request at a time."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.loop = pool.loop
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.reused = False
        self.idle = False  # in the pool, between requests: any byte arriving now is not an answer
        self.label = "upstream"  # the provider's name, for errors the client reads
        self.keep_alive = False
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.chunks: deque[bytes] = deque()
        self.buffered = 0
        self.complete = False
        self.got_bytes = False
        self.got_body = False
        self.error: Exception | None = None
        self.head_waiter: asyncio.Future[None] | None = None
        self.data_waiter: asyncio.Future[None] | None = None
        # A stream's caller waits for the first body bytes anyway: wake it once, not for the head and again.
        self.wake_at_body = False
        self.last_activity = 0.0
        # While a request waits on this connection: when it times out, and what the error then says.
        self.expires_at = NEVER
        self.timeout_message = ""
        self.head_limit = 0.0

    # transport callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports don't subclass it

    def connection_lost(self, exc: Exception | None) -> None:
        closed = self.closed  # set by abort(): our own close cut the body, it did not end it
        self.closed = True
        self.pool.forget(self)
        if self.complete:
            return
        if exc is None and not closed and self.error is None and self.status and self._until_close():
            self._end_at_close()
            return
        self._fail(exc or _Broken("closed the connection before the response ended"))

    def _until_close(self) -> bool:
        """A body without Content-Length or chunked framing, which the closing of the connection ends."""
        if self.status < 200 or self.status in (204, 304):
            return False
        return not any(k in (b"content-length", b"transfer-encoding") for k, _ in self.headers)

    def _end_at_close(self) -> None:
        self.complete = True
        self.keep_alive = False
        self._wake_head()
        self._wake_data()

    def data_received(self, data: bytes) -> None:
        if self.idle:  # unasked-for bytes would be read as the next request's answer: drop the connection
            log.warning("upstream %s sent %d bytes on an idle connection: closed it", self.pool.origin.host_header,
                        len(data))
            self.abort()
            return
        self.got_bytes = True
        poll = self.pool.busy_poll
        if poll is not None:
            poll.wake()
        self.last_activity = self.loop.time()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            if self.complete:  # bytes after the answer ended: it stands, the connection goes
                log.warning("upstream %s sent bytes after a complete response: closed the connection",
                            self.pool.origin.host_header)
            else:
                self._fail(_Broken(f"sent malformed HTTP ({type(exc.__cause__ or exc).__name__})"))
            self.abort()

    # parser callbacks
    def on_message_begin(self) -> None:
        if self.complete:
            raise _Broken("a second response to one request")

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        self.keep_alive = self.parser.should_keep_alive()
        if not self.wake_at_body:
            self._wake_head()

    def on_body(self, body: bytes) -> None:
        self.got_body = True
        self.chunks.append(body)
        self.buffered += len(body)
        if self.buffered > _PAUSE_AT and self.transport is not None:
            self.transport.pause_reading()
        if self.wake_at_body:
            self._wake_head()
        self._wake_data()

    def on_message_complete(self) -> None:
        self.complete = True
        if self.wake_at_body:
            self._wake_head()
        self._wake_data()

    # helpers
    def _wake_head(self) -> None:
        if self.head_waiter is not None and not self.head_waiter.done():
            self.head_waiter.set_result(None)

    def _wake_data(self) -> None:
        if self.data_waiter is not None and not self.data_waiter.done():
            self.data_waiter.set_result(None)

    def _fail(self, exc: Exception) -> None:
        if self.error is None:
            self.error = exc
        for waiter in (self.head_waiter, self.data_waiter):
            if waiter is not None and not waiter.done():
                waiter.set_exception(exc)

    def expire(self) -> None:
        message = self.timeout_message
        if not message:
            what = "first token" if self.status else "response"
            message = f"upstream {self.label} sent no {what} within {self.head_limit:g}s"
        log.warning("%s (at %s)", message, self.pool.origin.host_header)
        self._fail(UpstreamTimeout(message))

    def reset(self) -> None:
        self.status = 0
        self.headers = []
        self.chunks.clear()
        self.buffered = 0
        self.complete = False
        self.got_bytes = False
        self.got_body = False
        self.error = None
        self.wake_at_body = False
        self.parser = httptools.HttpResponseParser(self)

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()
        self.pool.forget(self)


class UpstreamResponse:
    """A response whose head has arrived; the body is read with `read()` or iterated with `chunks()`."""

    def __init__(self, conn: _Conn, timeouts: Timeouts, started: float) -> None:
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
        if conn.buffered > _PAUSE_AT // 2 and conn.transport is not None:
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
            raise _translate(self._conn.error, self._conn)
        try:
            await self._wait_data()
        except (OSError, _Broken) as exc:
            raise _translate(exc, self._conn) from None

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


def _translate(exc: Exception, conn: _Conn) -> Exception:
    """The error the client reads: the provider's name, never its host or port (those go to the log)."""
    if isinstance(exc, (UpstreamTimeout, UpstreamUnavailable)):
        return exc
    log.warning("upstream %s at %s: %s", conn.label, conn.pool.origin.host_header, exc or type(exc).__name__)
    if isinstance(exc, _Broken):
        return UpstreamUnavailable(f"upstream {conn.label} {exc}")
    return UpstreamUnavailable(f"upstream {conn.label} broke the connection")


class Pool:
    """Idle keep-alive connections to one origin."""

    def __init__(self, origin: Origin, loop: asyncio.AbstractEventLoop, ssl_context: ssl.SSLContext | None,
                 max_idle: int, deadlines: Deadlines, busy_poll: BusyPoll | None = None) -> None:
        self.origin = origin
        self.loop = loop
        self.busy_poll = busy_poll
        self.deadlines = deadlines
        self.ssl_context = ssl_context
        self.max_idle = max_idle
        self.idle: deque[_Conn] = deque()

    def put(self, conn: _Conn) -> None:
        self.deadlines.unwatch(conn)
        if len(self.idle) >= self.max_idle:
            conn.abort()
            return
        conn.reset()
        conn.reused = True
        conn.idle = True
        self.idle.append(conn)

    def forget(self, conn: _Conn) -> None:
        """A closed connection: out of the idle list and of the timeout sweep."""
        self.deadlines.unwatch(conn)
        try:
            self.idle.remove(conn)
        except ValueError:
            pass

    async def acquire(self, connect_timeout: float, label: str) -> _Conn:
        while self.idle:
            conn = self.idle.pop()
            if not conn.closed:
                conn.idle = False
                conn.label = label
                return conn
        try:
            async with asyncio.timeout(connect_timeout):
                _, conn = await self.loop.create_connection(
                    lambda: _Conn(self), self.origin.host, self.origin.port, ssl=self.ssl_context,
                    server_hostname=self.origin.host if self.ssl_context else None)
        except TimeoutError:
            log.warning("connecting to upstream %s at %s timed out after %gs", label, self.origin.host_header,
                        connect_timeout)
            raise UpstreamTimeout(f"connecting to upstream {label} timed out after {connect_timeout:g}s") from None
        except OSError as exc:
            log.warning("upstream %s at %s unreachable: %s", label, self.origin.host_header, exc.strerror or exc)
            raise UpstreamUnavailable(f"upstream {label} unreachable") from None
        conn.label = label
        return conn

    def shed(self, keep: int) -> None:
        """Close the idle connections beyond the `keep` most recently used."""
        while len(self.idle) > keep:
            self.idle.popleft().abort()

    def close(self) -> None:
        while self.idle:
            self.idle.pop().abort()


class HttpClient(Transport):
    """Sends requests to upstream origins over pooled keep-alive connections."""

    def __init__(self, max_idle_per_origin: int = 256) -> None:
        self._pools: dict[Origin, Pool] = {}
        self._max_idle = max_idle_per_origin
        self._ssl: ssl.SSLContext | None = None
        self._deadlines: Deadlines | None = None
        self.busy_poll: BusyPoll | None = None  # set by the runner when server.busy_poll_us > 0

    def _pool(self, origin: Origin) -> Pool:
        pool = self._pools.get(origin)
        if pool is None:
            if origin.tls and self._ssl is None:
                self._ssl = ssl.create_default_context()
            loop = asyncio.get_running_loop()
            if self._deadlines is None:
                self._deadlines = Deadlines(loop, TIMEOUT_RESOLUTION_S)
            pool = Pool(origin, loop, self._ssl if origin.tls else None, self._max_idle, self._deadlines,
                        self.busy_poll)
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
            try:
                return await self._exchange(conn, data, timeouts, started, first_body, after_write)
            except UpstreamUnavailable:
                if conn.reused and not conn.got_bytes:
                    after_write = None  # it ran after the first write
                    continue
                raise
        raise UpstreamUnavailable(f"upstream {label} keeps closing connections")

    async def _exchange(self, conn: _Conn, data: bytes, timeouts: Timeouts, started: float,
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
                raise _translate(exc, conn) from None
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
