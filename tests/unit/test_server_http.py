"""The HTTP/1.1 server on raw sockets: keep-alive, pipelining, chunked bodies, 100-continue, limits, streaming."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from llm_gateway.server.http import Request, Responder, ServerState, serve, shutdown


async def echo(request: Request, responder: Responder) -> None:
    if request.path == "/stream":
        responder.start(200, [("x-a", "1")])
        for part in (b"one", b"two"):
            await responder.write(part)
        responder.end()
        return
    if request.path in ("/prepared", "/prepared-other"):  # a head rendered ahead; the second sends another
        responder.prepare(200, [("x-a", "1")])
        responder.start(200, [("x-a", "1" if request.path == "/prepared" else "2")])
        await responder.write(b"one")
        responder.end()
        return
    if request.path == "/boom":
        raise RuntimeError("secret internals")
    responder.send(200, b"%s %s %d" % (request.method.encode(), request.path.encode(), len(request.body)),
                   content_type=b"text/plain")


@pytest.fixture
async def server() -> AsyncIterator[int]:
    state = ServerState(echo, max_body_bytes=1000)
    srv = await serve(state, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    yield port
    await shutdown(state, [srv], 1)


async def exchange(port: int, data: bytes, until: bytes = b"", close: bool = True) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    got = b""
    try:
        async with asyncio.timeout(5):
            while not (until and until in got):
                chunk = await reader.read(65536)
                if not chunk:
                    break
                got += chunk
    finally:
        if close:
            writer.close()
    return got


async def test_pipelined_requests_answer_in_order(server: int) -> None:
    req = b"POST /a HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\n\r\nabcGET /b HTTP/1.1\r\nhost: x\r\n\r\n"
    got = await exchange(server, req, until=b"GET /b 0")
    assert got.index(b"POST /a 3") < got.index(b"GET /b 0")


async def test_chunked_request_body_and_expect_continue(server: int) -> None:
    req = (b"POST /c HTTP/1.1\r\nhost: x\r\nexpect: 100-continue\r\ntransfer-encoding: chunked\r\n\r\n"
           b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
    got = await exchange(server, req, until=b"POST /c 11")
    assert got.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n")


async def test_body_limit_and_malformed_request(server: int) -> None:
    got = await exchange(server, b"POST /a HTTP/1.1\r\nhost: x\r\ncontent-length: 5000\r\n\r\n")
    assert got.startswith(b"HTTP/1.1 413 ") and b"larger than the limit of 1000 bytes" in got
    got = await exchange(server, b"NOT HTTP AT ALL\r\n\r\n")
    assert got.startswith(b"HTTP/1.1 400 ") and b'"error"' in got


async def test_streamed_response_is_chunked(server: int) -> None:
    got = await exchange(server, b"GET /stream HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
    head, _, body = got.partition(b"\r\n\r\n")
    assert b"transfer-encoding: chunked" in head and b"x-a: 1" in head
    assert body == b"3\r\none\r\n3\r\ntwo\r\n0\r\n\r\n"


async def test_a_prepared_head_is_sent_only_for_the_headers_it_was_rendered_with(server: int) -> None:
    for path, header in ((b"/prepared", b"x-a: 1"), (b"/prepared-other", b"x-a: 2")):
        got = await exchange(server, b"GET %s HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n" % path)
        head, _, body = got.partition(b"\r\n\r\n")
        assert head.count(b"x-a:") == 1 and header in head and b"connection: close" in head
        assert body == b"3\r\none\r\n0\r\n\r\n"


async def test_handler_crash_is_a_500_without_internals(server: int) -> None:
    got = await exchange(server, b"GET /boom HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
    assert got.startswith(b"HTTP/1.1 500 ")
    assert b"secret internals" not in got and b"Traceback" not in got


async def test_idle_keep_alive_connections_expire_but_busy_ones_do_not() -> None:
    async def slow(request: Request, responder: Responder) -> None:
        await asyncio.sleep(0.6)  # longer than the keep-alive timeout: in flight, so never expired
        responder.send(200, b"done", content_type=b"text/plain")

    state = ServerState(slow, max_body_bytes=1000, keepalive_timeout=0.2)
    srv = await serve(state, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /a HTTP/1.1\r\nhost: x\r\n\r\n")
        async with asyncio.timeout(5):
            head = await reader.readuntil(b"done")
            assert head.startswith(b"HTTP/1.1 200")
            started = asyncio.get_running_loop().time()
            assert await reader.read(100) == b""  # idle now: the server closes it after ~0.2 s (+ one sweep)
        waited = asyncio.get_running_loop().time() - started
        assert 0.15 < waited < 0.5, waited
        writer.close()
        assert not state.connections
    finally:
        await shutdown(state, [srv], 1)
