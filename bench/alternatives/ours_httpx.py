"""Variant (f): llm_gateway's own server (asyncio Protocol + httptools, uvloop) + httpx.AsyncClient."""

import asyncio

import httpx
import orjson
import uvloop
from _common import PATH, PORT, UPSTREAM_URL

from llm_gateway.server.http import Request, Responder, ServerState, serve

_client: httpx.AsyncClient | None = None


async def handler(request: Request, responder: Responder) -> None:
    global _client
    if request.method != "POST" or request.path != PATH:
        responder.send(404, b"{}")
        return
    if _client is None:
        _client = httpx.AsyncClient(limits=httpx.Limits(max_connections=200, max_keepalive_connections=200))
    orjson.loads(request.body)
    r = await _client.post(UPSTREAM_URL, content=request.body, headers={"Content-Type": "application/json"})
    data = r.content
    orjson.loads(data)
    responder.send(r.status_code, data)


async def main() -> None:
    await serve(ServerState(handler, max_body_bytes=1 << 20), "127.0.0.1", PORT)
    await asyncio.Event().wait()


if __name__ == "__main__":
    uvloop.run(main())
