"""Variant (d): uvicorn (--http httptools --loop uvloop) + raw ASGI app + llm_gateway's HttpClient."""

import uvicorn
from _asgi import make_app
from _common import request, PORT, UPSTREAM_PORT

from llm_gateway.providers.http import HttpClient, Origin, Timeouts

_client = HttpClient()
_origin = Origin("http", "127.0.0.1", UPSTREAM_PORT)
_timeouts = Timeouts()


async def forward(body: bytes) -> tuple[int, bytes]:
    r = await _client.send(_origin, request(body), _timeouts)
    return r.status, await r.read()


app = make_app(forward)

if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=PORT, http="httptools", loop="uvloop", access_log=False,
                log_level="warning")
