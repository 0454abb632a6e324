"""The hedge race: the second attempt starts only when the first is late; first success wins; loser cancelled."""

from __future__ import annotations

import asyncio

import pytest

from llm_gateway.routing.hedge import BothFailed, hedge


def attempt(delay: float, value: str, log: list[str], fail: bool = False) -> object:
    async def run() -> str:
        log.append(f"start {value}")
        try:
            await asyncio.sleep(delay)
        except asyncio.CancelledError:
            log.append(f"cancelled {value}")
            raise
        if fail:
            raise RuntimeError(value)
        return value
    return run


async def test_fast_first_attempt_never_hedges() -> None:
    log: list[str] = []
    out = await hedge(attempt(0.001, "a", log), attempt(0, "b", log), 0.2, lambda i, v: None)  # type: ignore[arg-type]
    assert (out.value, out.winner, out.hedged) == ("a", 0, False) and log == ["start a"]


async def test_slow_first_attempt_is_hedged_and_cancelled() -> None:
    log: list[str] = []
    out = await hedge(attempt(5, "a", log), attempt(0.01, "b", log), 0.02, lambda i, v: None)  # type: ignore[arg-type]
    assert (out.value, out.winner, out.hedged, out.loser_error) == ("b", 1, True, None)
    assert log == ["start a", "start b", "cancelled a"]


async def test_first_fails_after_hedge_started_second_wins() -> None:
    log: list[str] = []
    out = await hedge(attempt(0.03, "a", log, fail=True), attempt(0.06, "b", log), 0.01,  # type: ignore[arg-type]
                      lambda i, v: None)
    assert out.value == "b" and isinstance(out.loser_error, RuntimeError)


async def test_early_failure_is_raised_as_is_and_both_failing_raises_both() -> None:
    log: list[str] = []
    with pytest.raises(RuntimeError, match="a"):
        await hedge(attempt(0, "a", log, fail=True), attempt(0, "b", log), 0.5, lambda i, v: None)  # type: ignore[arg-type]
    assert log == ["start a"]
    with pytest.raises(BothFailed) as exc:
        await hedge(attempt(0.03, "a", log, True), attempt(0.01, "b", log, True), 0.01,  # type: ignore[arg-type]
                    lambda i, v: None)
    assert [str(e) for e in exc.value.errors] == ["a", "b"]


async def test_caller_cancelled_cancels_both() -> None:
    log: list[str] = []
    task = asyncio.ensure_future(hedge(attempt(5, "a", log), attempt(5, "b", log), 0.01,  # type: ignore[arg-type]
                                       lambda i, v: None))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0)
    assert sorted(log) == ["cancelled a", "cancelled b", "start a", "start b"]
