"""Variant (c): uvicorn (--http httptools --loop uvloop) + raw ASGI app + aiohttp.ClientSession."""

import aiohttp
import uvicorn
from _asgi import make_app
from _common import PORT, UPSTREAM_URL

_session: aiohttp.ClientSession | None = None


async def forward(body: bytes) -> tuple[int, bytes]:
    global _session
    if _session is None:  # created on the server's loop
        _session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=200))
    async with _session.post(UPSTREAM_URL, data=body, headers={"Content-Type": "application/json"}) as r:
        return r.status, await r.read()


app = make_app(forward)

if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=PORT, http="httptools", loop="uvloop", access_log=False,
                log_level="warning")
