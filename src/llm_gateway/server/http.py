"""One HTTP exchange as the gateway's handlers see it: the parsed `Request` and the ASGI-backed `Responder`.

The server (granian, see runner.py) owns the wire: framing, limits, keep-alive, TLS. What the gateway writes back
goes through `Responder`, and every header value it writes passes `response_headers`, the one place that refuses
CR, LF and NUL.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from llm_gateway.errors import GatewayError

log = logging.getLogger("llm_gateway.server")

Message = MutableMapping[str, Any]
Send = Callable[[Message], Awaitable[None]]
Receive = Callable[[], Awaitable[Message]]

_UNSAFE = re.compile(r"[\r\n\x00]")
_STREAM_HEADERS = [(b"cache-control", b"no-cache")]


def response_headers(headers: list[tuple[str, str]] | None, content_type: bytes,
                     stream: bool = False) -> list[tuple[bytes, bytes]]:
    """Headers as the server takes them. A name or value with CR, LF or NUL (or outside latin-1) is refused:
    left out and logged by name, so no client-chosen text can add headers or split the response."""
    out = [(b"content-type", content_type)]
    if stream:
        out.extend(_STREAM_HEADERS)
    for name, value in headers or ():
        if _UNSAFE.search(value) is not None or _UNSAFE.search(name) is not None:
            log.warning("response header %r refused: its value holds CR, LF or NUL", name[:64])
            continue
        try:
            out.append((name.encode("latin-1"), value.encode("latin-1")))
        except UnicodeEncodeError:
            log.warning("response header %r refused: not latin-1", name[:64])
    return out


class Request:
    """One parsed request. Header names are lower-case; repeated headers are joined with ", "."""

    __slots__ = ("body", "client", "headers", "method", "params", "path", "query")

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
    """Writes one response: whole (`send`) or streamed (`start`, `write`, `end`).

    `send`, `start` and `end` only record what to send; the bytes leave on `flush` (called by the ASGI edge
    when the handler returns, or earlier by a handler that has more work after answering) and on `write`.
    """

    __slots__ = ("_body", "_ended", "_prepared", "_send", "_start", "_tail", "finished", "keep_alive", "started",
                 "status")

    def __init__(self, send: Send) -> None:
        self._send = send
        self._start: Message | None = None  # the response head, until it is sent
        self._body: bytes | None = None  # a whole response's body, until it is sent
        self._tail = b""
        self._ended = False  # the last body message went out
        self._prepared: tuple[int, list[tuple[str, str]], bytes, list[tuple[bytes, bytes]]] | None = None
        self.started = False
        self.finished = False
        self.status = 0
        self.keep_alive = True  # False: the exchange broke; the server closes the connection

    def send(self, status: int, body: bytes, headers: list[tuple[str, str]] | None = None,
             content_type: bytes = b"application/json") -> None:
        if self.started:
            return
        self.started = self.finished = True
        self.status = status
        self._start = {"type": "http.response.start", "status": status,
                       "headers": response_headers(headers, content_type)}
        self._body = body

    def send_error(self, err: GatewayError, headers: list[tuple[str, str]] | None = None) -> None:
        extra = list(err.headers.items())
        if headers:
            extra.extend(headers)
        self.send(err.status, err.body(), extra)

    def prepare(self, status: int, headers: list[tuple[str, str]],
                content_type: bytes = b"text/event-stream") -> None:
        """Render the head `start` will likely be called with, ahead of time (while the upstream works)."""
        self._prepared = (status, list(headers), content_type, response_headers(headers, content_type, True))

    def start(self, status: int, headers: list[tuple[str, str]],
              content_type: bytes = b"text/event-stream") -> None:
        """Begin a streamed answer. The head waits for the first chunk, so that both leave together."""
        self.started = True
        self.status = status
        prepared = self._prepared
        if prepared is not None and prepared[0] == status and prepared[1] == headers and prepared[2] == content_type:
            rendered = prepared[3]
        else:
            rendered = response_headers(headers, content_type, True)
        self._start = {"type": "http.response.start", "status": status, "headers": rendered}

    async def write(self, data: bytes) -> None:
        if data:
            if self._start is not None:
                start, self._start = self._start, None
                await self._send(start)
            await self._send({"type": "http.response.body", "body": data, "more_body": True})

    async def flush_head(self) -> None:
        """Send a held-back head now (a long stream whose first chunk is slow to come)."""
        if self._start is not None and not self.finished:
            start, self._start = self._start, None
            await self._send(start)

    def end(self, tail: bytes = b"") -> None:
        """The stream is complete; `tail` is its last bytes."""
        if not self.finished:
            self.finished = True
            self._tail = tail

    async def flush(self) -> None:
        """Send what is recorded and not yet sent: a whole response, or a stream's head and end."""
        if self._start is not None:
            start, self._start = self._start, None
            await self._send(start)
        if self.finished and not self._ended:
            self._ended = True
            body = self._body if self._body is not None else self._tail
            self._body = None
            await self._send({"type": "http.response.body", "body": body})


class WrappingResponder(Responder):
    """A responder that writes through the server's (`inner`), translating on the way (the Anthropic and
    Responses ingresses): the state the OpenAI edge reads and sets is the wrapped responder's."""

    __slots__ = ("_inner",)

    def __init__(self, inner: Responder) -> None:  # no super().__init__: the wrapped responder holds the state
        self._inner = inner

    @property
    def started(self) -> bool:
        return self._inner.started

    @started.setter
    def started(self, value: bool) -> None:
        self._inner.started = value

    @property
    def finished(self) -> bool:
        return self._inner.finished

    @finished.setter
    def finished(self, value: bool) -> None:
        self._inner.finished = value

    @property
    def status(self) -> int:
        return self._inner.status

    @status.setter
    def status(self, value: int) -> None:
        self._inner.status = value

    @property
    def keep_alive(self) -> bool:
        return self._inner.keep_alive

    @keep_alive.setter
    def keep_alive(self, value: bool) -> None:
        self._inner.keep_alive = value


Handler = Callable[[Request, Responder], Awaitable[None]]
