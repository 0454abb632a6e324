"""Hedged requests: when the first attempt is slow to answer, start a second and keep whichever answers first."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class HedgeOutcome(Generic[T]):
    """The winner's value and index (0: first attempt, 1: the hedge), and what happened to the other."""

    __slots__ = ("hedged", "loser_error", "value", "winner")

    def __init__(self, value: T, winner: int, hedged: bool, loser_error: BaseException | None) -> None:
        self.value = value
        self.winner = winner
        self.hedged = hedged
        self.loser_error = loser_error  # None: the loser was still running and was cancelled (or never started)


class BothFailed(Exception):
    """Both attempts failed; `errors` in the order the attempts started."""

    def __init__(self, errors: list[BaseException]) -> None:
        super().__init__("both hedged attempts failed")
        self.errors = errors


async def hedge(first: Callable[[], Awaitable[T]], second: Callable[[], Awaitable[T]], delay: float,
                discard: Callable[[int, T], None]) -> HedgeOutcome[T]:
    """Run `first`; if it has not finished after `delay` seconds, also run `second`; return the first success.

    The loser is cancelled (and awaited, so it cleans up); a loser that also succeeded is passed, with its
    index, to `discard`.
    If `first` fails before the delay its error is raised as it is (the caller's retry logic takes over);
    if both fail, BothFailed.
    """
    loop = asyncio.get_running_loop()
    tasks = [loop.create_task(_call(first))]
    try:
        done, _ = await asyncio.wait(tasks, timeout=delay)
        if done:
            return HedgeOutcome(tasks[0].result(), 0, False, None)
        tasks.append(loop.create_task(_call(second)))
        pending = set(tasks)
        errors: dict[int, BaseException] = {}
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in sorted(done, key=tasks.index):
                index = tasks.index(task)
                exc = task.exception()
                if exc is not None:
                    errors[index] = exc
                    continue
                other = tasks[1 - index]
                if not other.done():
                    other.cancel()
                    await asyncio.gather(other, return_exceptions=True)
                    loser_error = None
                elif other.exception() is None:
                    discard(1 - index, other.result())
                    loser_error = None
                else:
                    loser_error = other.exception()
                return HedgeOutcome(task.result(), index, True, loser_error)
        raise BothFailed([errors[i] for i in sorted(errors)])
    finally:
        for task in tasks:  # the client went away (or we returned): nothing keeps running behind our back
            if not task.done():
                task.cancel()


async def _call(fn: Callable[[], Awaitable[T]]) -> T:
    return await fn()
