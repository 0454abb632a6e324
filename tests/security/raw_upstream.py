"""A tiny upstream on raw sockets: records the exact bytes each connection brought, and answers with whatever
bytes a test scripts, misbehaviour included (bytes on an idle connection, close-delimited bodies, …)."""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import orjson

# A script step: bytes are written, a float is a pause in seconds, None closes the connection.
Step = bytes | float | None


@dataclass
class RawRequest:
    conn: int  # which connection (1, 2, …) it came on
    head: bytes
    body: bytes

    @property
    def line(self) -> bytes:
        return self.head.split(b"\r\n", 1)[0]

    def header(self, name: str) -> str | None:
        for line in self.head.split(b"\r\n")[1:]:
            key, _, value = line.partition(b":")
            if key.strip().lower() == name.lower().encode():
                return value.strip().decode("latin-1")
        return None


def chat_json(content: str = "hello") -> bytes:
    return orjson.dumps({"id": "c1", "object": "chat.completion", "created": 1, "model": "m",
                         "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                                      "finish_reason": "stop"}],
                         "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}})


def gemini_json(content: str = "hello") -> bytes:
    return orjson.dumps({"candidates": [{"content": {"role": "model", "parts": [{"text": content}]},
                                         "finishReason": "STOP"}],
                         "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 1, "totalTokenCount": 4}})


def response(body: bytes, *, ctype: str = "application/json", extra: str = "") -> bytes:
    """A keep-alive answer framed by Content-Length."""
    return (f"HTTP/1.1 200 OK\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
            .encode() + body)


class LoopThread:
    """An event loop in a daemon thread, for servers that sync tests use."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)


@dataclass
class RawUpstream:
    host: str = "127.0.0.1"
    tls: ssl.SSLContext | None = None
    # The answer to each request; the default is an OpenAI chat completion on a keep-alive connection.
    answer: Callable[[RawRequest], list[Step]] = field(default=lambda req: [response(chat_json())])
    requests: list[RawRequest] = field(default_factory=list)
    received: dict[int, bytearray] = field(default_factory=dict)  # every byte, per connection
    peer_certs: list[dict[str, Any]] = field(default_factory=list)
    port: int = 0
    _connections: int = 0

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}"

    async def serve(self) -> asyncio.Server:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        server = await asyncio.start_server(self._handle, self.host, 0, family=family, ssl=self.tls)
        self.port = server.sockets[0].getsockname()[1]
        return server

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._connections += 1
        conn = self._connections
        seen = self.received.setdefault(conn, bytearray())
        cert = writer.get_extra_info("peercert")
        if cert:
            self.peer_certs.append(cert)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                seen += head
                req = RawRequest(conn, head, b"")
                length = int(req.header("content-length") or 0)
                req.body = await reader.readexactly(length) if length else b""
                seen += req.body
                self.requests.append(req)
                for step in self.answer(req):
                    if step is None:
                        writer.close()
                        return
                    if isinstance(step, float):
                        await asyncio.sleep(step)
                    else:
                        writer.write(step)
                        await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, ssl.SSLError):
            writer.close()


class RawUpstreamThread:
    """Runs RawUpstreams on one loop thread; `start()` each, `stop()` at the end."""

    def __init__(self) -> None:
        self._loop = LoopThread("raw-upstream")
        self._servers: list[asyncio.Server] = []

    def start(self, upstream: RawUpstream) -> RawUpstream:
        self._servers.append(self._loop.run(upstream.serve()))
        return upstream

    def stop(self) -> None:
        for server in self._servers:
            self._loop.loop.call_soon_threadsafe(server.close)
        self._loop.stop()
