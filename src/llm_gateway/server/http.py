"""The HTTP/1.1 server: an asyncio protocol over httptools, one handler task per request.

Written directly on the event loop instead of ASGI because the gateway's budget per request is a few hundred
microseconds; ASGI scope building and middleware layers cost more than the whole of our own request path.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections import deque
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import cast

import httptools

from llm_gateway.deadlines import NEVER, Deadlines
from llm_gateway.errors import GatewayError
from llm_gateway.server.busy_poll import BusyPoll

log = logging.getLogger("llm_gateway.server")

_REASONS = {s.value: s.phrase.encode() for s in HTTPStatus}
_HIGH_WATER = 256 * 1024


def status_line(status: int) -> bytes:
    return b"HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, b"Unknown"))


class Request:
    """One parsed request. Header names are lower-case."""

    __slots__ = ("method", "path", "query", "headers", "body", "client", "params")

    def __init__(self, method: str, path: str, query: str, headers: dict[str, str], body: bytes,
                 client: str) -> None:
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.body = body
        self.client = client
        self.params: dict[str, str] = {}


class Responder:
    """Writes one response: whole (`send`) or streamed with chunked encoding (`start`, `write`, `end`)."""

    __slots__ = ("_conn", "_head", "_prepared", "started", "finished", "status", "keep_alive")

    def __init__(self, conn: HttpConnection, keep_alive: bool) -> None:
        self._conn = conn
        self._head = b""
        self._prepared: tuple[int, list[tuple[str, str]], bytes, bool, bytes] | None = None
        self.started = False
        self.finished = False
        self.status = 0
        self.keep_alive = keep_alive

    @property
    def disconnected(self) -> bool:
        return self._conn.closed

    def send(self, status: int, body: bytes, headers: list[tuple[str, str]] | None = None,
             content_type: bytes = b"application/json") -> None:
        if self.started:
            return
        self.started = self.finished = True
        self.status = status
        head = [status_line(status), b"content-type: ", content_type, b"\r\ncontent-length: ",
                str(len(body)).encode(), b"\r\n"]
        if headers:
            for name, value in headers:
                head.append(b"%s: %s\r\n" % (name.encode("latin-1"), value.encode("latin-1")))
        if not self.keep_alive:
            head.append(b"connection: close\r\n")
        head.append(b"\r\n")
        head.append(body)
        self._conn.write(b"".join(head))

    def send_error(self, err: GatewayError, headers: list[tuple[str, str]] | None = None) -> None:
        extra = list(err.headers.items())
        if headers:
            extra.extend(headers)
        self.send(err.status, err.body(), extra)

    def prepare(self, status: int, headers: list[tuple[str, str]],
                content_type: bytes = b"text/event-stream") -> None:
        """Render the head `start` will likely be called with, ahead of time (while the upstream works)."""
        self._prepared = (status, list(headers), content_type, self.keep_alive,
                          self._render(status, headers, content_type))

    def start(self, status: int, headers: list[tuple[str, str]],
              content_type: bytes = b"text/event-stream") -> None:
        self.started = True
        self.status = status
        prepared = self._prepared
        if (prepared is not None and prepared[0] == status and prepared[1] == headers and prepared[2] == content_type
                and prepared[3] == self.keep_alive):
            head = prepared[4]
        else:
            head = self._render(status, headers, content_type)
        # Held back until the first chunk (or the end) so that both leave in one segment: one syscall less,
        # and no client waits on a head whose body is still in the gateway.
        self._head = head

    def _render(self, status: int, headers: list[tuple[str, str]], content_type: bytes) -> bytes:
        head = [status_line(status), b"content-type: ", content_type,
                b"\r\ncache-control: no-cache\r\ntransfer-encoding: chunked\r\n"]
        for name, value in headers:
            head.append(b"%s: %s\r\n" % (name.encode("latin-1"), value.encode("latin-1")))
        if not self.keep_alive:
            head.append(b"connection: close\r\n")
        head.append(b"\r\n")
        return b"".join(head)

    async def write(self, data: bytes) -> None:
        if data:
            self._conn.write(b"%s%x\r\n%s\r\n" % (self._head, len(data), data))
            self._head = b""
            if self._conn.paused:
                await self._conn.drain()

    def flush_head(self) -> None:
        """Send a held-back head now (a long stream whose first chunk is slow to come)."""
        if self._head:
            self._conn.write(self._head)
            self._head = b""

    def end(self) -> None:
        if not self.finished:
            self.finished = True
            self._conn.write(self._head + b"0\r\n\r\n")
            self._head = b""


Handler = Callable[[Request, Responder], Awaitable[None]]


class ServerState:
    """What all connections of one listening server share: the handler, limits and live connections."""

    def __init__(self, handler: Handler, max_body_bytes: int, keepalive_timeout: float = 75.0) -> None:
        self.handler = handler
        self.max_body_bytes = max_body_bytes
        self.keepalive_timeout = keepalive_timeout
        self.connections: set[HttpConnection] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        self.peak_tasks = 0  # the most requests in flight at once since the last reset (memory trimming)
        self.closing = False
        self._idle_deadlines: Deadlines | None = None
        self.busy_poll: BusyPoll | None = None  # set by the runner when server.busy_poll_us > 0

    def idle_deadlines(self, loop: asyncio.AbstractEventLoop) -> Deadlines:
        """Keep-alive expiry of idle connections, swept a few times per timeout (at most once a second)."""
        if self._idle_deadlines is None:
            self._idle_deadlines = Deadlines(loop, min(1.0, self.keepalive_timeout / 4))
        return self._idle_deadlines


class HttpConnection(asyncio.Protocol):
    """One client connection. Requests on it are handled in order, one at a time."""

    def __init__(self, state: ServerState) -> None:
        self.state = state
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.closed = False
        self.paused = False
        self._drain_waiter: asyncio.Future[None] | None = None
        self._url = b""
        self._headers: dict[str, str] = {}
        self._body: list[bytes] = []
        self._body_size = 0
        self._too_large = False
        self._queue: deque[tuple[Request, bool]] = deque()
        self._task: asyncio.Task[None] | None = None
        self._client = ""
        self.expires_at = NEVER  # keep-alive expiry while idle (see llm_gateway.deadlines)
        self._deadlines = state.idle_deadlines(self.loop)

    # -- transport callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports don't subclass it
        peer = transport.get_extra_info("peername")
        self._client = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else ""
        self.state.connections.add(self)
        self._deadlines.watch(self)
        self._arm_idle()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.state.connections.discard(self)
        self._deadlines.unwatch(self)
        if self._task is not None and not self._task.done():
            self._task.cancel()
        self._queue.clear()
        if self._drain_waiter is not None and not self._drain_waiter.done():
            self._drain_waiter.set_exception(ConnectionResetError("client disconnected"))

    def data_received(self, data: bytes) -> None:
        self.expires_at = NEVER
        poll = self.state.busy_poll
        if poll is not None:
            poll.wake()
        if self._too_large:
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._reject(400, b"protocol upgrade is not supported")
        except httptools.HttpParserError as exc:
            if not self._too_large:
                self._reject(400, b"malformed HTTP request: " + str(exc).encode("latin-1", "replace"))

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        if self._drain_waiter is not None and not self._drain_waiter.done():
            self._drain_waiter.set_result(None)

    async def drain(self) -> None:
        if self.closed:
            raise ConnectionResetError("client disconnected")
        if self.paused:
            self._drain_waiter = self.loop.create_future()
            await self._drain_waiter

    def write(self, data: bytes) -> None:
        if not self.closed and self.transport is not None:
            self.transport.write(data)

    # -- parser callbacks
    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = {}
        self._body = []
        self._body_size = 0

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        prev = self._headers.get(key)
        self._headers[key] = text if prev is None else f"{prev}, {text}"

    def on_headers_complete(self) -> None:
        length = self._headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self.state.max_body_bytes:
            self._body_too_large()
        elif self._headers.get("expect", "").lower() == "100-continue":
            self.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        if self._too_large:
            return
        self._body_size += len(body)
        if self._body_size > self.state.max_body_bytes:
            self._body_too_large()
            return
        self._body.append(body)

    def _body_too_large(self) -> None:
        self._too_large = True
        self._reject(413, b"request body is larger than the limit of %d bytes" % self.state.max_body_bytes)

    def on_message_complete(self) -> None:
        if self._too_large or self.closed:
            return
        url = httptools.parse_url(self._url)
        path = url.path.decode("latin-1")
        query = url.query.decode("latin-1") if url.query else ""
        body = self._body[0] if len(self._body) == 1 else b"".join(self._body)
        request = Request(self.parser.get_method().decode("latin-1"), path, query, self._headers, body,
                          self._client)
        keep_alive = self.parser.should_keep_alive() and not self.state.closing
        if self._task is None:
            self._start(request, keep_alive)
        else:
            self._queue.append((request, keep_alive))
            if self.transport is not None and len(self._queue) > 8:
                self.transport.pause_reading()

    # -- request lifecycle
    def _start(self, request: Request, keep_alive: bool) -> None:
        responder = Responder(self, keep_alive)
        task = self.loop.create_task(self._run(request, responder))
        self._task = task
        tasks = self.state.tasks
        tasks.add(task)
        if len(tasks) > self.state.peak_tasks:
            self.state.peak_tasks = len(tasks)
        task.add_done_callback(self._done)

    async def _run(self, request: Request, responder: Responder) -> None:
        try:
            await self.state.handler(request, responder)
        except asyncio.CancelledError:
            raise
        except GatewayError as err:
            if not responder.started:
                responder.send_error(err)
            else:
                responder.keep_alive = False
        except Exception:
            log.exception("unhandled error while serving %s %s", request.method, request.path)
            if not responder.started:
                responder.send(500, GatewayError("internal gateway error").body())
            else:
                responder.keep_alive = False
        if responder.started and not responder.finished:
            responder.keep_alive = False
        if not responder.keep_alive and self.transport is not None:
            self.transport.close()

    def _done(self, task: asyncio.Task[None]) -> None:
        self.state.tasks.discard(task)
        self._task = None
        if self.closed:
            return
        if self._queue:
            request, keep_alive = self._queue.popleft()
            if self.transport is not None:
                self.transport.resume_reading()
            self._start(request, keep_alive)
        elif self.state.closing:
            self.close()
        else:
            self._arm_idle()

    def _reject(self, status: int, message: bytes) -> None:
        err = GatewayError(message.decode("latin-1"), status=status, type="invalid_request_error",
                           code="request_too_large" if status == 413 else "bad_request")
        body = err.body()
        self.write(status_line(status) + b"content-type: application/json\r\ncontent-length: %d\r\n"
                   b"connection: close\r\n\r\n%s" % (len(body), body))
        self.close()

    def _arm_idle(self) -> None:
        if not self.closed:
            self.expires_at = self.loop.time() + self.state.keepalive_timeout

    def expire(self) -> None:
        """Idle for the whole keep-alive timeout."""
        self.close()

    @property
    def idle(self) -> bool:
        return self._task is None

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.close()


async def serve(state: ServerState, host: str, port: int, *, reuse_port: bool = False,
                sock: socket.socket | None = None) -> asyncio.Server:
    loop = asyncio.get_running_loop()
    if sock is not None:
        return await loop.create_server(lambda: HttpConnection(state), sock=sock, backlog=2048)
    return await loop.create_server(lambda: HttpConnection(state), host, port, reuse_port=reuse_port,
                                    backlog=2048)


async def shutdown(state: ServerState, servers: list[asyncio.Server], grace: float) -> None:
    """Stop accepting, close idle connections, let in-flight requests finish within `grace` seconds."""
    state.closing = True
    for server in servers:
        server.close()
    for conn in list(state.connections):
        if conn.idle:
            conn.close()
    pending = [t for t in state.tasks if not t.done()]
    if pending:
        _, still = await asyncio.wait(pending, timeout=grace)
        for task in still:
            task.cancel()
        if still:
            await asyncio.wait(still, timeout=5)
    for conn in list(state.connections):
        conn.close()
