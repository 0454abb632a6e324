"""Variant (e): granian (RSGI interface, uvloop) + llm_gateway's HttpClient. Run by the granian CLI."""

import orjson
from _common import request, PATH, UPSTREAM_PORT

from llm_gateway.providers.http import HttpClient, Origin, Timeouts

_client = HttpClient()
_origin = Origin("http", "127.0.0.1", UPSTREAM_PORT)
_timeouts = Timeouts()
_HEADERS = [("content-type", "application/json")]


async def app(scope, proto) -> None:
    if scope.proto != "http" or scope.method != "POST" or scope.path != PATH:
        proto.response_bytes(404, _HEADERS, b"{}")
        return
    body = await proto()
    orjson.loads(body)
    r = await _client.send(_origin, request(body), _timeouts)
    data = await r.read()
    orjson.loads(data)
    proto.response_bytes(r.status, _HEADERS, data)
