"""The pipeline's order of work: admits, settles at once, and records later but always."""

from __future__ import annotations

import asyncio

import pytest

from llm_gateway.pipeline.context import RequestContext
from llm_gateway.pipeline.stack import RECORD_AFTER_S, Pipeline
from llm_gateway.server.http import Request
from llm_gateway.telemetry.metrics import Registry


def context(rid: str) -> RequestContext:
    return RequestContext(Request("POST", "/v1/chat/completions", "", {}, b"{}", "test"), rid, "chat/completions")


class GivesBack:
    """Like the limits stage: what a request held goes back when it settles."""

    admit = None

    def __init__(self, log: list[str]) -> None:
        self.log = log

    def settle(self, ctx: RequestContext) -> None:
        self.log.append(f"give back {ctx.request_id}")


class Records:
    """Like the ledger: writes down what happened."""

    records = True

    def __init__(self, log: list[str]) -> None:
        self.log = log
        self.admitted: list[str] = []

    def admit(self, ctx: RequestContext) -> None:  # a plain function: admits without a coroutine
        self.admitted.append(ctx.request_id)

    def settle(self, ctx: RequestContext) -> None:
        self.log.append(f"record {ctx.request_id}")


async def test_records_wait_for_the_next_requests_upstream_call_or_a_short_timer() -> None:
    log: list[str] = []
    recorder = Records(log)
    pipeline = Pipeline([GivesBack(log), recorder])
    first = context("a")
    await pipeline.admit(first)
    pipeline.settle(first)
    pipeline.settle(first)  # settles once
    assert log == ["give back a"], "held resources go back at once; the record waits"

    second = context("b")
    await pipeline.admit(second)  # the record is left for while this request's upstream works
    assert recorder.admitted == ["a", "b"] and log == ["give back a"]
    second.run_deferred()  # what the upstream client does right after sending
    assert log == ["give back a", "record a"]

    pipeline.settle(second)
    assert log[-1] == "give back b"
    await asyncio.sleep(RECORD_AFTER_S * 5)  # no request came: recorded anyway
    assert log == ["give back a", "record a", "give back b", "record b"]


async def test_a_metrics_scrape_records_first() -> None:
    log: list[str] = []
    pipeline = Pipeline([GivesBack(log), Records(log)])
    registry = Registry()
    registry.before_render.append(pipeline.record)
    for rid in ("a", "b"):
        pipeline.settle(context(rid))
    registry.render()
    assert log == ["give back a", "give back b", "record a", "record b"]


def test_without_an_event_loop_records_at_once_and_recorders_must_come_last() -> None:
    log: list[str] = []
    Pipeline([GivesBack(log), Records(log)]).settle(context("a"))
    assert log == ["give back a", "record a"]
    with pytest.raises(ValueError, match="recording stages must come last"):
        Pipeline([Records(log), GivesBack(log)])
