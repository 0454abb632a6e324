"""Upstream connections: one HTTP/1.1 exchange at a time on an asyncio protocol parsed by httptools, and the
keep-alive pool per origin that holds them between requests."""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections import deque
from typing import cast

import httptools

from llm_gateway.deadlines import NEVER, Deadlines
from llm_gateway.errors import UpstreamTimeout, UpstreamUnavailable
from llm_gateway.providers.wire import Origin

log = logging.getLogger("llm_gateway.upstream")

PAUSE_AT = 512 * 1024


class Broken(Exception):
    """A connection failure whose message names no host or port, so the client may read it."""


class Connection(asyncio.Protocol):
    """One upstream connection; carries one request at a time."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.loop = pool.loop
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.reused = False
        self.bodiless = False  # the request was HEAD: its answer's Content-Length describes no body that comes
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
        self._fail(exc or Broken("closed the connection before the response ended"))

    def _until_close(self) -> bool:
        """A body without Content-Length or chunked framing, which the closing of the connection ends."""
        if self.status < 200 or self.status in (204, 304):
            return False
        return not any(k in (b"content-length", b"transfer-encoding") for k, _ in self.headers)

    def _end_at_head(self) -> None:
        self.complete = True  # the parser still waits for the announced body: on_body refuses what comes
        self._wake_head()
        self._wake_data()

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
        self.last_activity = self.loop.time()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            if self.complete:  # bytes after the answer ended: it stands, the connection goes
                log.warning("upstream %s sent bytes after a complete response: closed the connection",
                            self.pool.origin.host_header)
            else:
                self._fail(Broken(f"sent malformed HTTP ({type(exc.__cause__ or exc).__name__})"))
            self.abort()

    # parser callbacks
    def on_message_begin(self) -> None:
        if self.complete:
            raise Broken("a second response to one request")

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        self.keep_alive = self.parser.should_keep_alive()
        if self.status < 200:  # an interim answer (103 Early Hints): the response is still to come
            return
        if self.bodiless:
            self._end_at_head()
        elif not self.wake_at_body:
            self._wake_head()

    def on_body(self, body: bytes) -> None:
        if self.complete:  # bytes after a HEAD answer, which has no body whatever its Content-Length says
            raise Broken("body bytes after the response ended")
        self.got_body = True
        self.chunks.append(body)
        self.buffered += len(body)
        if self.buffered > PAUSE_AT and self.transport is not None:
            self.transport.pause_reading()
        if self.wake_at_body:
            self._wake_head()
        self._wake_data()

    def on_message_complete(self) -> None:
        if self.status < 200:
            self.status = 0
            self.headers = []
            return
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
        self.bodiless = False
        self.parser = httptools.HttpResponseParser(self)

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()
        self.pool.forget(self)


def translate(exc: Exception, conn: Connection) -> Exception:
    """The error the client reads: the provider's name, never its host or port (those go to the log)."""
    if isinstance(exc, (UpstreamTimeout, UpstreamUnavailable)):
        return exc
    log.warning("upstream %s at %s: %s", conn.label, conn.pool.origin.host_header, exc or type(exc).__name__)
    if isinstance(exc, Broken):
        return UpstreamUnavailable(f"upstream {conn.label} {exc}")
    return UpstreamUnavailable(f"upstream {conn.label} broke the connection")


class Pool:
    """Idle keep-alive connections to one origin."""

    def __init__(self, origin: Origin, loop: asyncio.AbstractEventLoop, ssl_context: ssl.SSLContext | None,
                 max_idle: int, deadlines: Deadlines) -> None:
        self.origin = origin
        self.loop = loop
        self.deadlines = deadlines
        self.ssl_context = ssl_context
        self.max_idle = max_idle
        self.idle: deque[Connection] = deque()

    def put(self, conn: Connection) -> None:
        self.deadlines.unwatch(conn)
        if len(self.idle) >= self.max_idle:
            conn.abort()
            return
        conn.reset()
        conn.reused = True
        conn.idle = True
        self.idle.append(conn)

    def forget(self, conn: Connection) -> None:
        """A closed connection: out of the idle list and of the timeout sweep."""
        self.deadlines.unwatch(conn)
        try:
            self.idle.remove(conn)
        except ValueError:
            pass

    async def acquire(self, connect_timeout: float, label: str) -> Connection:
        while self.idle:
            conn = self.idle.pop()
            if not conn.closed:
                conn.idle = False
                conn.label = label
                return conn
        try:
            async with asyncio.timeout(connect_timeout):
                _, conn = await self.loop.create_connection(
                    lambda: Connection(self), self.origin.host, self.origin.port, ssl=self.ssl_context,
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
