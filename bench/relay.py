"""The floor of any proxy: a TCP relay on uvloop that passes bytes between client and upstream, nothing else.

    python bench/relay.py --port 8090 --upstream 127.0.0.1:18000

No HTTP parsing, no auth, no limits: what it adds to a direct call is the cost of one more process and two more
loopback hops on this machine's CPU layout, which every gateway pays before doing any work of its own.
Each client connection gets its own upstream connection, opened when the client connects.
"""

from __future__ import annotations

import argparse
import asyncio
import socket

import uvloop


class _Side(asyncio.Protocol):
    """One end of a relayed connection; what it reads goes to its peer."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.peer: _Side | None = None
        self.pending: list[bytes] = []  # read before the peer was connected

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    @property
    def peer_transport(self) -> asyncio.Transport | None:
        return self.peer.transport if self.peer is not None else None

    def data_received(self, data: bytes) -> None:
        peer = self.peer_transport
        if peer is not None:
            peer.write(data)
        else:
            self.pending.append(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if (peer := self.peer_transport) is not None:
            peer.close()

    # the peer cannot keep up: stop reading until it can
    def pause_writing(self) -> None:
        if (peer := self.peer_transport) is not None:
            peer.pause_reading()

    def resume_writing(self) -> None:
        if (peer := self.peer_transport) is not None:
            peer.resume_reading()


class _Client(_Side):
    def __init__(self, host: str, port: int) -> None:
        super().__init__()
        self.upstream = (host, port)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        asyncio.get_running_loop().create_task(self._connect())

    async def _connect(self) -> None:
        try:
            _, upstream = await asyncio.get_running_loop().create_connection(_Side, *self.upstream)
        except OSError:
            if self.transport is not None:
                self.transport.close()
            return
        upstream.peer, self.peer = self, upstream
        assert upstream.transport is not None
        for data in self.pending:
            upstream.transport.write(data)
        self.pending = []


async def main(port: int, upstream: str) -> None:
    host, _, up_port = upstream.rpartition(":")
    server = await asyncio.get_running_loop().create_server(lambda: _Client(host, int(up_port)), "127.0.0.1", port,
                                                            backlog=2048)
    await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="HOST:PORT to relay to")
    args = parser.parse_args()
    uvloop.run(main(args.port, args.upstream))
