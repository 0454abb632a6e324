"""The gateway as an ASGI application: requests read within the edge's limits, routed to the gateway's handlers,
a client's disconnect cancelling its request, and start-up and graceful shutdown (ASGI lifespan)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from llm_gateway.errors import BadRequest, GatewayError
from llm_gateway.server.http import Handler, Message, Receive, Request, Responder, Send
from llm_gateway.settings import EdgeLimits

log = logging.getLogger("llm_gateway.server")

Hook = Callable[[], Awaitable[None]]
ASGIApp = Callable[[Message, Receive, Send], Awaitable[None]]


class _Reject(Exception):
    def __init__(self, error: GatewayError) -> None:
        self.error = error


def _edge_error(status: int, message: str, code: str) -> _Reject:
    return _Reject(GatewayError(message, status=status, type="invalid_request_error", code=code))


class Edge:
    """One ASGI application: `handler` (the gateway's router) serves the paths under `watch_prefix`, whose handlers
    wait on an upstream, so a client's disconnect cancels them; `cold` (an ASGI app: admin API, health, metrics)
    serves every other path, or `handler` does when there is none. Both get the same limits: URL, headers, Host,
    body size and time."""

    def __init__(self, handler: Handler, limits: EdgeLimits, max_body_bytes: int, *,
                 watch_prefix: str = "/v1/",
                 cold: ASGIApp | None = None) -> None:
        self.handler = handler
        self.cold = cold
        self.limits = limits
        self.max_body_bytes = max_body_bytes
        self.watch_prefix = watch_prefix
        # Paths outside `watch_prefix` that `handler` serves too (rewritten to theirs): asked only about those
        self.also_hot: Callable[[Request], bool] | None = None
        self.startup_hooks: list[Hook] = []
        self.shutdown_hooks: list[Hook] = []
        self.in_flight = 0
        self.peak_in_flight = 0  # the most requests at once since the last reset (memory trimming)
        self.shutdown_grace_s = 30.0
        self.closed = False  # after the drain: a request that still comes is refused, never answered unrecorded
        self._tasks: set[asyncio.Task[Any]] = set()

    async def __call__(self, scope: Message, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self.http(scope, receive, send)
        elif kind == "lifespan":
            await self.lifespan(receive, send)

    # -- one request
    async def http(self, scope: Message, receive: Receive, send: Send) -> None:
        responder = Responder(send)
        try:
            request = await self._read(scope, receive)
        except _Reject as reject:
            responder.send_error(reject.error)
            await responder.flush()
            return
        if request is None:
            # The body ended early: the client left, or granian found its framing broken (a bad chunk size), which
            # it reports the same way. Answer 400 (harmless to a client that is gone) rather than let granian
            # answer 500 for an application that sent nothing; the connection is closed either way.
            responder.send_error(BadRequest("the request body is malformed or incomplete", code="invalid_body"))
            await responder.flush()
            return
        if self.closed:
            responder.send_error(GatewayError("the gateway is shutting down", status=503,
                                              type="service_unavailable", code="shutting_down"))
            await responder.flush()
            return
        self.in_flight += 1
        if self.in_flight > self.peak_in_flight:
            self.peak_in_flight = self.in_flight
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        watcher = None
        hot = request.path.startswith(self.watch_prefix) or (self.also_hot is not None and self.also_hot(request))
        if task is not None and hot:
            watcher = asyncio.get_running_loop().create_task(_cancel_on_disconnect(receive, task))
        try:
            if hot or self.cold is None:
                await self._handle(request, responder)
            else:
                await self._serve_cold(scope, request, receive, send)
        finally:
            if watcher is not None:
                watcher.cancel()
            self.in_flight -= 1
            if task is not None:
                self._tasks.discard(task)

    async def _handle(self, request: Request, responder: Responder) -> None:
        try:
            await self.handler(request, responder)
        except GatewayError as err:
            if not responder.started:
                responder.send_error(err)
            else:
                responder.keep_alive = False
        except Exception:
            log.exception("unhandled error while serving %s %s", request.method, request.path)
            if not responder.started:
                responder.send(500, GatewayError("internal gateway error").body())
        await responder.flush()

    async def _serve_cold(self, scope: Message, request: Request, receive: Receive, send: Send) -> None:
        """The cold app gets the body the edge read within its limits, then the connection's own messages."""
        assert self.cold is not None
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": request.body, "more_body": False}

        try:
            await self.cold(scope, replay, send)
        except Exception:  # the cold app answered 500 already (Starlette's ServerErrorMiddleware) or cannot
            log.exception("unhandled error while serving %s %s", request.method, request.path)

    async def _read(self, scope: Message, receive: Receive) -> Request | None:
        limits = self.limits
        path: str = scope["path"]
        query_bytes: bytes = scope.get("query_string") or b""
        raw_path: bytes = scope.get("raw_path") or path.encode("latin-1", "replace")
        if len(raw_path) + len(query_bytes) > limits.max_url_bytes:
            raise _edge_error(414, f"the URL is longer than the limit of {limits.max_url_bytes} bytes", "uri_too_long")
        headers: dict[str, str] = {}
        count = 0
        for raw_name, raw_value in scope["headers"]:
            count += 1
            name = raw_name.decode("latin-1")
            value = raw_value.decode("latin-1")
            prev = headers.get(name)
            headers[name] = value if prev is None else f"{prev}, {value}"
        if count > limits.max_headers:
            raise _edge_error(431, f"more than {limits.max_headers} header fields", "too_many_headers")
        if scope.get("http_version") == "1.1":
            host = headers.get("host", "")
            if not host or "," in host:
                raise _Reject(BadRequest("an HTTP/1.1 request needs exactly one Host header", code="bad_host"))
        length = headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body_bytes:
            raise self._too_large()
        body = await self._read_body(receive)
        if body is None:
            return None
        if len(body) > self.max_body_bytes:
            raise self._too_large()
        client = scope.get("client")
        return Request(scope["method"], path, query_bytes.decode("latin-1"), headers, body,
                       f"{client[0]}:{client[1]}" if client else "")

    async def _read_body(self, receive: Receive) -> bytes | None:
        """The whole body, within `body_timeout_s` from the end of the head (a body that never comes, or comes a
        byte at a time, gets 408). A bare timer handle: `asyncio.timeout` costs ~3x as much a request."""
        task = asyncio.current_task()
        assert task is not None
        fired: list[bool] = []
        timer = task.get_loop().call_later(self.limits.body_timeout_s, _expire, task, fired)
        try:
            message = await receive()
            if message["type"] != "http.request":
                return None
            body: bytes = message.get("body", b"")
            if message.get("more_body"):
                return await self._read_rest(receive, body)
            return body
        except asyncio.CancelledError:
            if fired and task.uncancel() == 0:  # the timer's cancel, and no other
                raise _edge_error(408, f"the request body did not arrive within {self.limits.body_timeout_s:g} s",
                                  "request_timeout") from None
            raise
        finally:
            timer.cancel()

    async def _read_rest(self, receive: Receive, first: bytes) -> bytes | None:
        parts = [first]
        size = len(first)
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                raise self._too_large()
            parts.append(chunk)
            if not message.get("more_body"):
                return b"".join(parts)

    def _too_large(self) -> _Reject:
        return _Reject(GatewayError(f"request body is larger than the limit of {self.max_body_bytes} bytes",
                                    status=413, type="invalid_request_error", code="request_too_large"))

    # -- start-up and shutdown
    async def lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:
                    log.exception("start-up failed")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def startup(self) -> None:
        for hook in self.startup_hooks:
            await hook()

    async def drain(self) -> None:
        """Let in-flight requests finish within the grace period (also those that come on open connections
        meanwhile); cancel what is left; refuse what comes after."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.shutdown_grace_s
        while True:
            pending = [t for t in self._tasks if not t.done()]
            if not pending:
                break
            left = deadline - loop.time()
            if left <= 0:
                for task in pending:
                    task.cancel()
                await asyncio.wait(pending, timeout=5)
                break
            await asyncio.wait(pending, timeout=left)
        self.closed = True

    async def shutdown(self) -> None:
        await self.drain()
        for hook in reversed(self.shutdown_hooks):
            await hook()


def _expire(task: asyncio.Task[Any], fired: list[bool]) -> None:
    fired.append(True)
    task.cancel()


async def _cancel_on_disconnect(receive: Receive, task: asyncio.Task[Any]) -> None:
    """The request's body is read: the next message can only be the client's disconnect."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            task.cancel()
            return
