"""A small forward proxy for tests: CONNECT tunnels (https upstreams) and absolute-URI requests (http ones).

It records each request line it was asked for, so a test can tell that traffic went through it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from urllib.parse import urlsplit


@dataclass
class ForwardProxy:
    seen: list[str] = field(default_factory=list)  # request lines: "CONNECT host:port HTTP/1.1", "POST http://…"
    heads: list[bytes] = field(default_factory=list)  # the whole heads, headers included
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def serve(self) -> asyncio.Server:
        server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        return server

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()
            return
        line, _, rest = head.partition(b"\r\n")
        method, target, version = line.decode("latin-1").split(" ")
        self.seen.append(line.decode("latin-1"))
        self.heads.append(head)
        if method == "CONNECT":
            host, _, port = target.rpartition(":")
            first = b""
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        else:  # absolute-URI: forward in origin form
            parts = urlsplit(target)
            host, port = parts.hostname or "", str(parts.port or 80)
            path = parts.path + (f"?{parts.query}" if parts.query else "")
            first = f"{method} {path} {version}\r\n".encode() + rest
        try:
            up_reader, up_writer = await asyncio.open_connection(host.strip("[]"), int(port))
        except OSError:
            writer.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            writer.close()
            return
        up_writer.write(first)
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()
