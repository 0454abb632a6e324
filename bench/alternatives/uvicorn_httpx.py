"""Variant (b): uvicorn (--http httptools --loop uvloop) + raw ASGI app + httpx.AsyncClient."""

import httpx
import uvicorn
from _asgi import make_app
from _common import PORT, UPSTREAM_URL

_client: httpx.AsyncClient | None = None


async def forward(body: bytes) -> tuple[int, bytes]:
    global _client
    if _client is None:  # created on the server's loop
        _client = httpx.AsyncClient(limits=httpx.Limits(max_connections=200, max_keepalive_connections=200))
    r = await _client.post(UPSTREAM_URL, content=body, headers={"Content-Type": "application/json"})
    return r.status_code, r.content


app = make_app(forward)

if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=PORT, http="httptools", loop="uvloop", access_log=False,
                log_level="warning")
