"""A local HTTP server that replays one recorded provider response per request and records what it got."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field

from aiohttp import web

from tests.upstream import free_port


@dataclass
class Reply:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    chunk_size: int = 0  # > 0: the body is written in pieces of this size (streams split mid-event)
    hold_open: bool = False  # the stream stops after the body without ending, until the gateway hangs up


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class ReplayServer:
    def __init__(self) -> None:
        self.port = free_port()
        self.reply: Reply | None = None
        self.received: list[Received] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.received.append(Received(request.method, request.raw_path,
                                      {k.lower(): v for k, v in request.headers.items()}, body))
        reply = self.reply
        if reply is None:
            return web.Response(status=599, text="no reply armed")
        headers = {"content-type": reply.content_type, **reply.headers}
        if not reply.chunk_size and not reply.hold_open:
            return web.Response(status=reply.status, body=reply.body, headers=headers)
        resp = web.StreamResponse(status=reply.status, headers=headers)
        await resp.prepare(request)
        size = reply.chunk_size or len(reply.body) or 1
        for at in range(0, len(reply.body), size):
            await resp.write(reply.body[at:at + size])
        if reply.hold_open:  # a stream cut short: nothing more comes until the gateway closes the connection
            deadline = asyncio.get_running_loop().time() + 30
            while request.transport is not None and not request.transport.is_closing():
                if asyncio.get_running_loop().time() > deadline:
                    break
                await asyncio.sleep(0.02)
            return resp
        await resp.write_eof()
        return resp

    def _run(self) -> None:
        loop = self._loop = asyncio.new_event_loop()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None)
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", self.port).start())
        self._ready.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())

    def start(self) -> ReplayServer:
        self._thread.start()
        self._ready.wait(10)
        return self

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
