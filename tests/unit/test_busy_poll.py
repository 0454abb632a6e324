"""Busy polling: the loop polls instead of sleeping for a window after I/O, then sleeps again; the window shrinks
when reads come further apart than the longest window and grows back when they come closer; both the server's and
the upstream client's reads open it."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from tests.serving import served

from llm_gateway.providers.http import HttpClient, Origin, Timeouts
from llm_gateway.providers.wire import PreparedRequest
from llm_gateway.server.asgi import Edge
from llm_gateway.server.busy_poll import BusyPoll
from llm_gateway.server.http import Request, Responder
from llm_gateway.settings import EdgeLimits

EVENT = b'data: {"choices":[{"delta":{"content":"hi"}}]}\n\n'


async def cpu_over(seconds: float) -> float:
    """CPU time this process spends while the loop waits `seconds` with nothing to do."""
    before = time.process_time()
    await asyncio.sleep(seconds)
    return time.process_time() - before


class CountingPoll(BusyPoll):
    """Counts the poll callback's runs: each is one turn of the event loop that did not sleep."""

    __slots__ = ("turns",)

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.turns = 0

    def _poll(self) -> None:
        self.turns += 1
        super()._poll()


async def test_the_loop_polls_for_the_window_after_a_wake_then_sleeps() -> None:
    assert await cpu_over(0.15) < 0.05  # no polling: the loop sleeps
    poll = CountingPoll(asyncio.get_running_loop(), 0.15)
    poll.wake()
    assert poll.polling
    await asyncio.sleep(0.1)
    # Inside the window the loop keeps turning instead of sleeping until the timer: many turns, not one. (Counted
    # in turns, not CPU seconds, which a busy machine would not give this process.)
    assert poll.polling and poll.turns > 100
    await asyncio.sleep(0.1)
    assert not poll.polling
    turns = poll.turns
    assert await cpu_over(0.15) < 0.05  # the window has closed: asleep again
    assert poll.turns == turns
    assert poll.started == 1


async def test_wakes_within_the_window_keep_it_open() -> None:
    poll = BusyPoll(asyncio.get_running_loop(), 0.08)
    for _ in range(8):  # 0.2 s of wakes 25 ms apart: one window, kept open
        poll.wake()
        await asyncio.sleep(0.025)
        assert poll.polling
    assert poll.started == 1
    await asyncio.sleep(0.2)
    assert not poll.polling
    poll.wake()
    assert poll.started == 2


async def test_reads_further_apart_than_the_longest_window_shrink_it_to_nothing_and_closer_ones_grow_it() -> None:
    poll = BusyPoll(asyncio.get_running_loop(), 0.04)
    for _ in range(12):  # 60 ms apart: each window waited in vain
        poll.wake()
        await asyncio.sleep(0.06)
    assert poll.window == 0.0
    assert await cpu_over(0.03) < 0.02
    for _ in range(12):  # 10 ms apart, within the longest window: it doubles until it spans the gaps
        poll.wake()
        await asyncio.sleep(0.01)
    assert 0.01 <= poll.window <= 0.04 and poll.polling
    await asyncio.sleep(0.1)
    assert not poll.polling


async def ok(request: Request, responder: Responder) -> None:
    responder.send(200, b"ok", content_type=b"text/plain")


async def test_a_request_on_the_server_opens_the_window() -> None:
    edge = Edge(ok, EdgeLimits(), max_body_bytes=1000)
    edge.on_request = (poll := BusyPoll(asyncio.get_running_loop(), 0.5)).wake
    async with served(edge) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        assert (await reader.readuntil(b"ok")).startswith(b"HTTP/1.1 200 OK")
        writer.close()
        assert poll.polling and poll.started == 1
    await asyncio.sleep(0.6)  # let the window close before the next test
    assert not poll.polling


async def test_an_upstream_reply_opens_the_window() -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await reader.readexactly(2)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
        await asyncio.sleep(0.15)  # longer than the window: the first event opens it again
        writer.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(EVENT), EVENT))
        await writer.drain()
        writer.close()

    upstream = await asyncio.start_server(handle, "127.0.0.1", 0)
    client = HttpClient()
    client.busy_poll = poll = BusyPoll(asyncio.get_running_loop(), 0.05)
    try:
        origin = Origin("http", "127.0.0.1", upstream.sockets[0].getsockname()[1])
        response = await client.send(origin, PreparedRequest("POST", "/v1/chat/completions", [], b"{}"), Timeouts())
        assert poll.polling and poll.started == 1  # the head
        assert [c async for c in response.chunks()] == [EVENT]
        assert poll.started == 2  # the event, after the window had closed
    finally:
        client.close()
        upstream.close()
        await asyncio.sleep(0.1)
        assert not poll.polling


async def test_polling_gives_way_to_work_that_waits_for_an_idle_cpu() -> None:
    waiting = [False]
    poll = BusyPoll(asyncio.get_running_loop(), 0.5, lambda: waiting[0])
    poll.wake()
    await asyncio.sleep(0.01)
    assert poll.polling
    waiting[0] = True  # say, the ledger handed a write to its idle-priority thread
    await asyncio.sleep(0.01)
    assert not poll.polling
    assert await cpu_over(0.15) < 0.05
    poll.wake()  # a read while the work still waits: the loop does not poll
    await asyncio.sleep(0.01)
    assert not poll.polling
    waiting[0] = False
    poll.wake()  # the next read after it is done polls again
    await asyncio.sleep(0.01)
    assert poll.polling
    await asyncio.sleep(0.6)
    assert not poll.polling
