"""The ledger's writer: at idle CPU priority while it keeps up, at normal priority when rows pile up, and a
batch being written when the gateway stops is written once."""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from llm_gateway.db.engine import make_engine
from llm_gateway.db.tables import metadata, usage
from llm_gateway.telemetry.metrics import Registry
from llm_gateway.usage.ledger import IDLE_BATCH, Ledger


def row(i: int) -> dict[str, Any]:
    return {"ts": i, "request_id": f"r{i}", "key_id": None, "user_id": None, "team_id": None, "model": "m",
            "provider": "p", "deployment": "d", "endpoint": "chat/completions", "prompt_tokens": 1,
            "completion_tokens": 1, "cached_tokens": 0, "reasoning_tokens": 0, "cost_usd": 0.0, "latency_ms": 1.0,
            "ttft_ms": 1.0, "status": 200, "cache_hit": False, "estimated": False, "cache_write_tokens": 0,
            "cache_write_1h_tokens": 0, "prompt_audio_tokens": 0, "prompt_image_tokens": 0,
            "completion_audio_tokens": 0, "completion_image_tokens": 0, "price_source": "genai-prices 0: p/m",
            "request_metadata": None, "guardrails": None,
            "upstream_model": "m", "end_user": None, "trace_id": "", "error": "", "attempts": 1, "attempt_log": ""}


def ledger(tmp_path: Path, batch_size: int = 10) -> Ledger:
    engine = make_engine(f"sqlite:///{tmp_path}/ledger.db")
    metadata.create_all(engine)
    return Ledger(engine, Registry(), batch_size=batch_size, interval=0.05)


def before_insert(lg: Ledger, hook: Callable[[list[tuple[Any, ...]]], None]) -> None:
    """Run `hook` in the writer's thread before each batch it writes."""
    insert = lg._insert

    def hooked(batch_id: str, rows: list[tuple[Any, ...]], held: list[Any]) -> bool:
        hook(rows)
        return insert(batch_id, rows, held)

    lg._insert = hooked  # type: ignore[method-assign]


def rows_in(lg: Ledger) -> int:
    with lg.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(usage)).scalar_one())


@pytest.mark.skipif(sys.platform != "linux", reason="SCHED_IDLE is Linux's")
async def test_the_writer_yields_the_cpu_unless_rows_pile_up(tmp_path: Path) -> None:
    lg = ledger(tmp_path)
    policies: list[int] = []
    before_insert(lg, lambda rows: policies.append(os.sched_getscheduler(0)))
    for i in range(5):
        lg.record(row(i))
    assert await lg._write_batch()  # keeping up: 5 rows waiting, batches of 10
    for i in range(5, 40):
        lg.record(row(i))
    assert await lg._write_batch()  # 35 waiting, more than two batches: falling behind
    assert policies == [os.SCHED_IDLE, os.SCHED_OTHER]
    assert rows_in(lg) == 15 and len(lg.pending) == 25
    await lg.stop()  # the shutdown flush does not wait for an idle CPU
    assert rows_in(lg) == 40 and not lg.pending
    assert policies[2:] == [os.SCHED_OTHER] * 3


async def test_a_batch_being_written_at_stop_is_written_once(tmp_path: Path) -> None:
    lg = ledger(tmp_path, batch_size=100)
    started = threading.Event()

    def slow(rows: list[tuple[Any, ...]]) -> None:
        started.set()
        time.sleep(0.3)  # stop() comes while this batch is in the database's hands

    before_insert(lg, slow)
    await lg.start()
    for i in range(20):
        lg.record(row(i))
    while not started.is_set():
        await asyncio.sleep(0.01)
    await lg.stop()
    assert rows_in(lg) == 20 and not lg.pending
    assert lg.written.get() == 20


async def test_the_idle_writer_takes_small_batches_and_the_writer_drains_the_queue(tmp_path: Path) -> None:
    lg = ledger(tmp_path, batch_size=1000)
    sizes: list[int] = []
    before_insert(lg, lambda rows: sizes.append(len(rows)))
    for i in range(250):
        lg.record(row(i))
    assert await lg._write_batch()
    assert sizes == [IDLE_BATCH] and len(lg.pending) == 250 - IDLE_BATCH  # at idle priority: a short write
    await lg.start()
    lg._wake.set()
    while lg.pending:
        await asyncio.sleep(0.01)
    await lg.stop()
    assert sizes == [IDLE_BATCH, IDLE_BATCH, 50] and rows_in(lg) == 250  # the rest without waiting an interval


async def test_a_batch_whose_commit_answer_was_lost_is_not_written_twice(tmp_path: Path) -> None:
    lg = ledger(tmp_path)
    insert = lg._insert
    calls: list[str] = []

    def committed_then_lost(batch_id: str, rows: list[tuple[Any, ...]], held: list[Any]) -> bool:
        calls.append(batch_id)
        wrote = insert(batch_id, rows, held)
        if len(calls) == 1:
            raise ConnectionError("the answer to COMMIT never came")  # committed, but the ledger cannot know
        return wrote

    lg._insert = committed_then_lost  # type: ignore[method-assign]
    for i in range(5):
        lg.record(row(i))
    assert not await lg._write_batch()
    lg.record(row(5))  # a new row while the failed batch waits: not part of its retry
    assert await lg._write_batch()
    assert calls[0] == calls[1]  # the same batch id again, which finds its marker
    assert rows_in(lg) == 5 and len(lg.pending) == 1 and lg.written.get() == 5
    assert await lg._write_batch()
    assert rows_in(lg) == 6 and not lg.pending
    assert lg.attempts.get() == 3 and lg.failures.get() == 1


async def test_retries_back_off_exponentially_with_jitter_up_to_the_cap(tmp_path: Path) -> None:
    lg = ledger(tmp_path)
    delays = [[lg._backoff(n) for n in range(1, 10)] for _ in range(50)]
    for run in delays:
        for n, d in enumerate(run, start=1):
            step = min(5.0, 0.25 * 2 ** (n - 1))
            assert step / 2 <= d <= step
    assert len({run[3] for run in delays}) > 10  # jittered: replicas that failed together retry apart
