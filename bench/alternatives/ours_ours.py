"""Variant (g): llm_gateway's own server + its own HttpClient (the gateway's core, without the pipeline)."""

import asyncio

import orjson
import uvloop
from _common import OUR_HEAD, PATH, PORT, UPSTREAM_PORT

from llm_gateway.providers.http import HttpClient, Origin, Timeouts
from llm_gateway.server.http import Request, Responder, ServerState, serve

_client = HttpClient()
_origin = Origin("http", "127.0.0.1", UPSTREAM_PORT)
_timeouts = Timeouts()


async def handler(request: Request, responder: Responder) -> None:
    if request.method != "POST" or request.path != PATH:
        responder.send(404, b"{}")
        return
    orjson.loads(request.body)
    r = await _client.send(_origin, OUR_HEAD, request.body, _timeouts)
    data = await r.read()
    orjson.loads(data)
    responder.send(r.status, data)


async def main() -> None:
    await serve(ServerState(handler, max_body_bytes=1 << 20), "127.0.0.1", PORT)
    await asyncio.Event().wait()


if __name__ == "__main__":
    uvloop.run(main())
