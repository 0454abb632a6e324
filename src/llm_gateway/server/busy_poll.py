"""Busy polling: after network I/O the event loop keeps polling for a short window instead of going to sleep.

A request's path is ~50 µs of Python when the CPU is warm. When the loop sleeps between events, the kernel halts
the core, and on a virtual machine the host may give the physical core to something else: the next event then
finds the caches cold and the same path takes several times as long (bench/README.md, "Busy polling"). Polling for
a window after each event keeps the core awake through the gaps within a request (request in, upstream reply, the
next chunk) and between the requests of a busy client, at the price of the CPU time spent polling.

The window adapts as Linux's guest halt polling does (`haltpoll`, which VMs often run with polling off): it
doubles when the loop went to sleep and I/O came within the longest window after all, and halves when I/O came
later than that, so traffic whose events are far apart (a model's tokens 30 ms apart) soon costs no polling.
Off (0) by default; `server.busy_poll_us` is the longest window.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

GROW_FROM_S = 50e-6  # a window that grows from nothing starts here; one halved below it is nothing


class BusyPoll:
    """Keeps `loop` polling (epoll without a timeout) until `window` seconds have passed with no I/O.

    `wake()` is called on every read, from the protocols' `data_received`: while polling it costs one attribute
    store. The poll is a callback that schedules itself again with `call_soon`; while a callback is ready the
    event loop polls its sockets without waiting, so I/O is handled as soon as it arrives.

    `give_way` says when work that runs only on an idle CPU is waiting (the ledger's writes at idle priority):
    polling stops then, the loop sleeps between events again, and the next read after the work is done polls.
    """

    __slots__ = ("_loop", "_longest", "_give_way", "_until", "_last", "_seen", "window", "polling", "started")

    def __init__(self, loop: asyncio.AbstractEventLoop, longest_s: float,
                 give_way: Callable[[], bool] | None = None) -> None:
        self._loop = loop
        self._longest = longest_s
        self._give_way = give_way or _never
        self._until = 0.0
        self._last = time.monotonic()  # when the last read was seen
        self._seen = False
        self.window = longest_s  # the current window, seconds
        self.polling = False
        self.started = 0  # times polling started after the loop had slept (for tests and debugging)

    def wake(self) -> None:
        if self.polling:
            self._seen = True
            return
        now = time.monotonic()
        window = self.window
        if now - self._last <= self._longest:  # the loop slept, yet this read came within the longest window
            if window < self._longest:
                window = self.window = min(self._longest, max(2 * window, GROW_FROM_S))
        elif window:  # it came later than any window would have waited: polling was wasted
            window = self.window = window / 2 if window >= 2 * GROW_FROM_S else 0.0
        self._last = now
        self.polling = True
        self.started += 1
        self._seen = False
        self._until = now + window
        self._loop.call_soon(self._poll)

    def _poll(self) -> None:
        if self._give_way():
            self.polling = False
            return
        if self._seen:
            self._seen = False
            self._last = now = time.monotonic()
            self._until = now + self.window
        elif time.monotonic() >= self._until:
            self.polling = False
            return
        self._loop.call_soon(self._poll)


def _never() -> bool:
    return False
