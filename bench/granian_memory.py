"""granian's own memory after a burst of concurrent streams, with no gateway: a minimal ASGI app that streams 20
chunks 100 ms apart, served by granian's embedded server, and 1,000 clients at once.

    .venv/bin/python bench/granian_memory.py            # RSS (anon, file) at rest, right after, and 3 s after
    _RJEM_MALLOC_CONF=retain:false,dirty_decay_ms:0,muzzy_decay_ms:0 .venv/bin/python bench/granian_memory.py
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from typing import Any

import aiohttp
import uvloop
from granian.constants import HTTPModes, Interfaces
from granian.server.embed import Server

PORT = 18820


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await receive()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
    for _ in range(20):
        await asyncio.sleep(0.1)
        await send({"type": "http.response.body", "body": b"data: " + b"x" * 200 + b"\n\n", "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def serve() -> None:
    await Server(app, address="127.0.0.1", port=PORT, interface=Interfaces.ASGINL, http=HTTPModes.http1,
                 log_enabled=False, backlog=2048).serve()


def rss(pid: int) -> str:
    with open(f"/proc/{pid}/status") as f:
        fields = dict(line.split(":", 1) for line in f if line.startswith(("RssAnon", "RssFile")))
    return ", ".join(f"{k} {int(v.split()[0]) / 1024:.1f} MiB" for k, v in fields.items())


async def load(pid: int, n: int = 1000) -> None:
    await asyncio.sleep(1.5)
    print("rest:       ", rss(pid))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        async def one() -> None:
            async with session.post(f"http://127.0.0.1:{PORT}/", data=b"{}") as r:
                async for _ in r.content:
                    pass

        await asyncio.gather(*(one() for _ in range(n)))
    print("after:      ", rss(pid))
    await asyncio.sleep(3)
    print("3 s after:  ", rss(pid))


if __name__ == "__main__":
    if sys.argv[1:] == ["serve"]:
        uvloop.run(serve())
    else:
        server = subprocess.Popen([sys.executable, __file__, "serve"])
        try:
            asyncio.run(load(server.pid))
        finally:
            server.terminate()
            server.wait()
