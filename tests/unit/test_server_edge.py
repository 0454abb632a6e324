"""The ASGI edge on granian's embedded server, over raw sockets: keep-alive, chunked bodies, limits, streaming,
a prepared head, unsafe header values refused, errors without internals."""

from __future__ import annotations

import asyncio

from tests.serving import served

from llm_gateway.server.asgi import Edge
from llm_gateway.server.http import Request, Responder, response_headers
from llm_gateway.settings import EdgeLimits


async def echo(request: Request, responder: Responder) -> None:
    if request.path == "/stream":
        responder.prepare(200, [("x-a", "1")])
        responder.start(200, [("x-a", "1")])
        for part in (b"one", b"two"):
            await responder.write(part)
        responder.end(b"three")
        return
    if request.path == "/boom":
        raise RuntimeError("secret internals")
    if request.path == "/inject":
        responder.send(200, b"ok", [("x-model", "a\r\nset-cookie: evil=1"), ("x-fine", "b")])
        return
    responder.send(200, b"%s %s %d" % (request.method.encode(), request.path.encode(), len(request.body)),
                   content_type=b"text/plain")


async def exchange(port: int, data: bytes, until: bytes = b"", wait: float = 2.0) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    out = b""
    try:
        async with asyncio.timeout(wait):
            while not (until and until in out):
                chunk = await reader.read(65536)
                if not chunk:
                    break
                out += chunk
    except TimeoutError:
        pass
    writer.close()
    return out


def edge(**limits: float) -> Edge:
    return Edge(echo, EdgeLimits(**limits), max_body_bytes=1000)


async def test_two_requests_on_one_connection_and_a_chunked_body() -> None:
    async with served(edge()) as port:
        out = await exchange(port, b"GET /a HTTP/1.1\r\nhost: x\r\n\r\n"
                             b"POST /b HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
                             until=b"POST /b 3")
    assert b"GET /a 0" in out and b"POST /b 3" in out


async def test_a_stream_leaves_its_head_with_the_first_chunk_and_ends_with_its_tail() -> None:
    async with served(edge()) as port:
        out = await exchange(port, b"GET /stream HTTP/1.1\r\nhost: x\r\n\r\n", until=b"0\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 200 OK") and b"x-a: 1" in out and b"cache-control: no-cache" in out
    assert b"3\r\none\r\n3\r\ntwo\r\n5\r\nthree\r\n0\r\n\r\n" in out


async def test_bodies_over_the_limit_get_413_whether_announced_or_chunked() -> None:
    async with served(edge()) as port:
        announced = await exchange(port, b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 5000\r\n\r\n", b"}}")
        chunk = b"%x\r\n%s\r\n" % (600, b"a" * 600)
        chunked = await exchange(port, b"POST / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n"
                                 + chunk * 2 + b"0\r\n\r\n", b"}}")
    for out in (announced, chunked):
        assert out.startswith(b"HTTP/1.1 413") and b"request_too_large" in out


async def test_urls_headers_and_hosts_outside_the_limits_are_refused() -> None:
    async with served(edge(max_url_bytes=300, max_headers=10)) as port:
        long_url = await exchange(port, b"GET /" + b"a" * 400 + b" HTTP/1.1\r\nhost: x\r\n\r\n", b"}}")
        many = await exchange(port, b"GET / HTTP/1.1\r\nhost: x\r\n" + b"x-a: b\r\n" * 20 + b"\r\n", b"}}")
        no_host = await exchange(port, b"GET / HTTP/1.1\r\n\r\n", b"}}")
        two_hosts = await exchange(port, b"GET / HTTP/1.1\r\nhost: a\r\nhost: b\r\n\r\n", b"}}")
    assert long_url.startswith(b"HTTP/1.1 414")
    assert many.startswith(b"HTTP/1.1 431")
    assert no_host.startswith(b"HTTP/1.1 400") and two_hosts.startswith(b"HTTP/1.1 400")


async def test_a_body_slower_than_the_timeout_gets_408() -> None:
    async with served(edge(body_timeout_s=0.3)) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 10\r\n\r\nab")
        async with asyncio.timeout(3):
            out = await reader.read(4096)
        writer.close()
    assert out.startswith(b"HTTP/1.1 408")


async def test_an_unhandled_error_is_a_500_without_internals() -> None:
    async with served(edge()) as port:
        out = await exchange(port, b"GET /boom HTTP/1.1\r\nhost: x\r\n\r\n", b"}}")
    assert out.startswith(b"HTTP/1.1 500") and b"secret" not in out


async def test_header_values_with_cr_lf_or_nul_are_never_written() -> None:
    async with served(edge()) as port:
        out = await exchange(port, b"GET /inject HTTP/1.1\r\nhost: x\r\n\r\n", b"ok")
    head = out.split(b"\r\n\r\n", 1)[0].lower()
    assert b"set-cookie" not in head and b"x-model" not in head and b"x-fine: b" in head
    assert response_headers([("a", "x\x00y"), ("b\n", "v")], b"text/plain") == [(b"content-type", b"text/plain")]


async def cold_echo(scope: dict[str, object], receive: object, send: object) -> None:
    """A raw ASGI app standing for the cold paths: it names itself and the body it received."""
    message = await receive()  # type: ignore[operator]
    body = b"cold %s %d" % (str(scope["path"]).encode(), len(message.get("body", b"")))
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})  # type: ignore[operator]
    await send({"type": "http.response.body", "body": body})  # type: ignore[operator]


async def test_paths_outside_the_hot_prefix_go_to_the_cold_app_within_the_same_limits() -> None:
    cold = Edge(echo, EdgeLimits(max_url_bytes=300, max_headers=10), max_body_bytes=1000, cold=cold_echo)
    async with served(cold) as port:
        hot = await exchange(port, b"POST /v1/x HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\n\r\nabc", b"POST /v1/x 3")
        admin = await exchange(port, b"POST /api/v1/keys HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n"
                               b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n", b"cold /api/v1/keys 5")
        long_url = await exchange(port, b"GET /api/" + b"a" * 400 + b" HTTP/1.1\r\nhost: x\r\n\r\n", b"}}")
        many = await exchange(port, b"GET /health HTTP/1.1\r\nhost: x\r\n" + b"x-a: b\r\n" * 20 + b"\r\n", b"}}")
        no_host = await exchange(port, b"GET /health HTTP/1.1\r\n\r\n", b"}}")
        large = await exchange(port, b"POST /api/v1/keys HTTP/1.1\r\nhost: x\r\ncontent-length: 5000\r\n\r\n", b"}}")
    assert b"POST /v1/x 3" in hot and b"cold" not in hot
    assert b"cold /api/v1/keys 5" in admin
    assert long_url.startswith(b"HTTP/1.1 414") and many.startswith(b"HTTP/1.1 431")
    assert no_host.startswith(b"HTTP/1.1 400") and large.startswith(b"HTTP/1.1 413")
