"""Coarse deadlines for many connections on one timer: keep-alive expiry, upstream first-byte and idle timeouts.

A timer per wait (`loop.call_later` then `cancel`) costs a timer handle and a libuv timer each time, that is
twice per streamed chunk and twice per request on a keep-alive connection. Here each watched object only keeps
the loop time it expires at (`expires_at`, `inf` while nothing is timed), and one periodic sweep, running only
while something is watched, expires what is due. A deadline fires at most one `resolution` late.
"""

from __future__ import annotations

import asyncio
import math
from typing import Protocol

NEVER = math.inf


class Expiring(Protocol):
    expires_at: float

    def expire(self) -> None:
        """The deadline passed: fail or close (and stop being watched)."""


class Deadlines:
    def __init__(self, loop: asyncio.AbstractEventLoop, resolution: float) -> None:
        self.loop = loop
        self.resolution = resolution
        self._watched: dict[Expiring, None] = {}  # an insertion-ordered set
        self._timer: asyncio.TimerHandle | None = None

    def __len__(self) -> int:
        return len(self._watched)

    def watch(self, item: Expiring) -> None:
        self._watched[item] = None
        if self._timer is None:
            self._timer = self.loop.call_later(self.resolution, self._sweep)

    def unwatch(self, item: Expiring) -> None:
        self._watched.pop(item, None)

    def close(self) -> None:
        self._watched.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _sweep(self) -> None:
        now = self.loop.time()
        due = [item for item in self._watched if item.expires_at <= now]
        for item in due:
            item.expires_at = NEVER
            item.expire()
        self._timer = self.loop.call_later(self.resolution, self._sweep) if self._watched else None
