"""The upstream client over real loopback sockets: when `send` returns for a stream, and its timeouts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from llm_gateway.errors import UpstreamTimeout
from llm_gateway.providers.http import HttpClient, Origin, Timeouts
from llm_gateway.providers.wire import PreparedRequest

HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
EVENT = b'data: {"choices":[{"delta":{"content":"hi"}}]}\n\n'


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


@pytest.fixture
async def slow_first_token() -> AsyncIterator[tuple[Origin, list[float]]]:
    """A server that answers with the head at once and the first event `delay` seconds later."""
    settings = [0.2]

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:  # keep-alive: one request after the other
                await reader.readuntil(b"\r\n\r\n")
                await reader.readexactly(2)  # the body, b"{}"
                writer.write(HEAD)
                await writer.drain()
                await asyncio.sleep(settings[0])
                writer.write(chunk(EVENT) + b"0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    yield Origin("http", "127.0.0.1", port), settings
    server.close()


async def test_a_stream_is_handed_over_with_its_first_token(slow_first_token: tuple[Origin, list[float]]) -> None:
    origin, _ = slow_first_token
    client = HttpClient()
    loop = asyncio.get_running_loop()
    try:
        started = loop.time()
        head_only = await client.send(origin, PreparedRequest("POST", "/v1/chat/completions", [], b"{}"), Timeouts())
        assert loop.time() - started < 0.15  # the head alone came at once
        assert [c async for c in head_only.chunks()] == [chunk(EVENT)[4:-2]]

        started = loop.time()
        response = await client.send(origin, PreparedRequest("POST", "/v1/chat/completions", [], b"{}"), Timeouts(),
                                     first_body=True)
        assert loop.time() - started >= 0.19  # returned with the first event, in one wake-up
        assert response.status == 200
        assert response._conn.chunks, "the first event arrived with the response"
        assert [c async for c in response.chunks()] == [chunk(EVENT)[4:-2]]
    finally:
        client.close()


async def test_first_token_timeout_applies_while_waiting_with_the_head(
        slow_first_token: tuple[Origin, list[float]]) -> None:
    origin, settings = slow_first_token
    settings[0] = 2.0
    client = HttpClient()
    try:
        with pytest.raises(UpstreamTimeout, match=r"no first token within 0\.3s"):
            await client.send(origin, PreparedRequest("POST", "/v1/chat/completions", [], b"{}"),
                              Timeouts(first_byte=0.3), first_body=True)
    finally:
        client.close()


async def test_bodies_read_whole_and_the_connection_reused_even_after_a_large_one() -> None:
    """A body that came with its head is handed over without iterating; one large enough to pause reading
    leaves the connection reading again, so the next request on it is answered."""
    sizes = iter([10, 2 * 1024 * 1024, 10])
    accepted = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal accepted
        accepted += 1
        try:
            while True:
                await reader.readuntil(b"\r\n\r\n")
                await reader.readexactly(2)
                body = b"x" * next(sizes)
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    origin = Origin("http", "127.0.0.1", server.sockets[0].getsockname()[1])
    client = HttpClient()
    try:
        for size in (10, 2 * 1024 * 1024, 10):
            response = await client.send(origin, PreparedRequest("POST", "/v1/x", [], b"{}"), Timeouts(total=5))
            assert await response.read() == b"x" * size
        assert accepted == 1, "all three on one keep-alive connection"
    finally:
        client.close()
        server.close()


async def test_pieces_that_arrived_together_are_handed_over_as_one_and_after_write_runs_before_the_answer() -> None:
    """The server answers only once `after_write` ran (it would wait forever otherwise), with three chunks in one
    segment: the reader gets them joined, one write to the client instead of three."""
    written = asyncio.Event()
    calls = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await reader.readexactly(2)
        await written.wait()
        writer.write(HEAD + chunk(b"a") + chunk(b"b") + chunk(b"c") + b"0\r\n\r\n")
        await writer.drain()
        writer.close()

    def after_write() -> None:
        calls.append(1)
        written.set()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    origin = Origin("http", "127.0.0.1", server.sockets[0].getsockname()[1])
    client = HttpClient()
    try:
        async with asyncio.timeout(5):
            response = await client.send(origin, PreparedRequest("POST", "/v1/x", [], b"{}"), Timeouts(),
                                         first_body=True, after_write=after_write)
            assert calls == [1]
            assert [piece async for piece in response.chunks()] == [b"abc"]
    finally:
        client.close()
        server.close()
