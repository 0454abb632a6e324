"""One sweep for many deadlines: due items expire (at most one resolution late), others stay, the timer stops."""

from __future__ import annotations

import asyncio

from llm_gateway.deadlines import NEVER, Deadlines


class Item:
    def __init__(self, expires_at: float) -> None:
        self.expires_at = expires_at
        self.expired_at: float | None = None

    def expire(self) -> None:
        self.expired_at = asyncio.get_running_loop().time()


async def test_due_items_expire_once_and_the_sweep_stops_when_nothing_is_watched() -> None:
    loop = asyncio.get_running_loop()
    deadlines = Deadlines(loop, 0.02)
    now = loop.time()
    soon, later, never, gone = Item(now + 0.05), Item(now + 0.3), Item(NEVER), Item(now + 0.05)
    for item in (soon, later, never, gone):
        deadlines.watch(item)
    deadlines.unwatch(gone)
    await asyncio.sleep(0.15)
    assert soon.expired_at is not None and 0.05 <= soon.expired_at - now < 0.05 + 0.02 + 0.05
    assert soon.expires_at == NEVER  # expired once, not again on the next sweeps
    assert later.expired_at is None and never.expired_at is None and gone.expired_at is None
    for item in (soon, later, never):
        deadlines.unwatch(item)
    await asyncio.sleep(0.05)
    assert len(deadlines) == 0 and deadlines._timer is None
    deadlines.watch(later)  # watching again restarts the sweep
    await asyncio.sleep(0.3)
    assert later.expired_at is not None
    deadlines.close()
