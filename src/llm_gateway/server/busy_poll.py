"""Busy polling: after network I/O the event loop keeps polling for a short window instead of going to sleep.

A request's path is ~50 µs of Python when the CPU is warm. When the loop sleeps between events, the kernel halts
the core, and on a virtual machine the host may give the physical core to something else: the next event then
finds the caches cold and the same path takes 5-10 times as long (bench/README.md, "Busy polling"). Polling for a
window after each event keeps the core awake through the gaps within a request (request in, upstream reply, the
next chunk) and between the requests of a busy client, at the price of the CPU time spent polling. Off (0) by
default; `server.busy_poll_us` turns it on.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


class BusyPoll:
    """Keeps `loop` polling (epoll without a timeout) until `window_s` seconds have passed with no I/O.

    `wake()` is called on every read, from the protocols' `data_received`: it costs one attribute store while
    polling. The poll is a callback that schedules itself again with `call_soon`; while a callback is ready the
    event loop polls its sockets without waiting, so I/O is handled as soon as it arrives.

    `give_way` says when work that runs only on an idle CPU is waiting (the ledger's writes at idle priority):
    polling stops then, the loop sleeps between events again, and the next read after the work is done polls.
    """

    __slots__ = ("_loop", "_window", "_give_way", "_until", "_seen", "polling", "started")

    def __init__(self, loop: asyncio.AbstractEventLoop, window_s: float,
                 give_way: Callable[[], bool] | None = None) -> None:
        self._loop = loop
        self._window = window_s
        self._give_way = give_way or _never
        self._until = 0.0
        self._seen = False
        self.polling = False
        self.started = 0  # times polling started after the loop had slept (for tests and debugging)

    def wake(self) -> None:
        if self.polling:
            self._seen = True
            return
        self.polling = True
        self.started += 1
        self._seen = False
        self._until = time.monotonic() + self._window
        self._loop.call_soon(self._poll)

    def _poll(self) -> None:
        if self._give_way():
            self.polling = False
            return
        if self._seen:
            self._seen = False
            self._until = time.monotonic() + self._window
        elif time.monotonic() >= self._until:
            self.polling = False
            return
        self._loop.call_soon(self._poll)


def _never() -> bool:
    return False
