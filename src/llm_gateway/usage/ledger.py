"""The usage ledger: one row per request, queued on settle and written in batches by a background task.

The request path only appends the row, as a tuple, to a deque. A failed write keeps its rows at the head of the
queue and is retried, the same rows under the same batch id, with exponential backoff and jitter up to 5 s; the
`llm_gateway_ledger_backlog` gauge shows how many rows wait. Each batch writes a marker row (its id) in its own
transaction, so a retry after a commit whose answer was lost finds the marker and does not write the rows twice.
A write that gets no answer within `write_timeout` (a network blackhole: no error, just silence) has its
connection's socket shut down from the event loop, which wakes the writer thread with an error. An outage is
logged once when it starts and once when it ends. Shutdown flushes what is left.

Batches are written by a thread that runs only when the event loop's thread does not want the CPU (SCHED_IDLE on
Linux): a batch takes milliseconds, and at equal priority a request that arrives meanwhile waits for the writer's
time slice (measured: p99 at one connection 2.3–3.3 ms with the writer at normal priority, 0.66–0.76 ms with no
writes). When rows pile up (the CPU is saturated, so the idle writer gets almost no time) batches go to a second
writer thread at normal priority until the backlog is back under two batches, and so does the shutdown flush:
nothing waits for long, nothing is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import operator
import os
import random
import socket
import time
import uuid
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from itertools import islice
from typing import Any

import orjson
from sqlalchemy import Engine, insert

from llm_gateway.db.tables import fit_text, ledger_batches, usage, width_of
from llm_gateway.errors import UpstreamHTTPError
from llm_gateway.keys.model import KeyRecord
from llm_gateway.pipeline.context import GATEWAY_ERROR, RequestContext
from llm_gateway.telemetry.metrics import Registry
from llm_gateway.usage.rollup import fold_cursor

log = logging.getLogger("llm_gateway.ledger")

# Rows per write of the idle-priority writer. On a saturated CPU it gets ~0.3 % of it, so a write in its hands
# finishes within ~0.5 s and rows meanwhile go to the normal-priority writer; 1,000 took ~4 s, and the rows that
# queued up behind it held ~12 MiB more.
IDLE_BATCH = 100
FIRST_BACKOFF = 0.25  # seconds after the first failed write; doubles up to `max_backoff`
MARKER_KEEP_MS = 86_400_000  # batch markers older than a day are deleted: a retry comes within minutes
MARKER_CLEANUP_EVERY = 1000  # batches
STAGING = "gw_usage_batch"
# Columns whose text a client chooses, wholly or in part (a model name, a `user`, a pass-through path, the texts
# quoting them): cut to the column's width and rid of NUL, which PostgreSQL refuses in text. One such row failed
# its batch's every write, and no row after it was ever written.
CLIENT_TEXT = tuple((name, width_of(usage.c[name]))
                    for name in ("user_id", "model", "provider", "deployment", "endpoint", "upstream_model",
                                 "end_user", "price_source", "error", "attempt_log"))


def fit_client_text(row: dict[str, Any]) -> None:
    for name, width in CLIENT_TEXT:
        value = row[name]
        if value:
            row[name] = fit_text(value, width)


def _idle_priority() -> None:
    """This thread runs only when no other thread of the machine wants its CPU (Linux; elsewhere as it was)."""
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):
        pass


def _shut_down(connection: Any) -> None:
    """Shut the socket of a DBAPI connection another thread waits on: its wait returns with an error."""
    fileno = getattr(getattr(connection, "driver_connection", None), "fileno", None)
    if fileno is None:
        return  # SQLite: no socket, and no network to go silent
    with contextlib.suppress(Exception):
        sock = socket.socket(fileno=os.dup(fileno()))
        try:
            sock.shutdown(socket.SHUT_RDWR)
        finally:
            sock.close()


class Outage:
    """The database's state as the ledger sees it: one log line when writes start failing and one when they
    succeed again, the `llm_gateway_ledger_database_up` gauge and `..._outage_seconds_total`."""

    def __init__(self, registry: Registry) -> None:
        self.since: float | None = None  # monotonic time of the first failure of the current outage
        self.failures = 0  # failed attempts in the current outage
        self._counted_to = 0.0
        registry.gauge("llm_gateway_ledger_database_up", "1 while ledger writes succeed, 0 while they fail",
                       read=lambda: 0.0 if self.since is not None else 1.0)
        self.seconds = registry.counter("llm_gateway_ledger_outage_seconds_total",
                                        "Time ledger writes have been failing, in seconds")
        registry.before_render.append(self.count)

    def count(self) -> None:
        if self.since is not None:
            now = time.monotonic()
            self.seconds.inc((), now - self._counted_to)
            self._counted_to = now

    def failed(self, exc: BaseException, rows: int, max_backoff: float) -> None:
        self.failures += 1
        if self.since is None:
            self.since = self._counted_to = time.monotonic()
            log.warning("ledger: writing to the database failed (%s: %s); %d row(s) wait, retrying with backoff "
                        "up to %gs", type(exc).__name__, str(exc)[:200].strip(), rows, max_backoff)

    def succeeded(self, rows: int) -> None:
        if self.since is not None:
            self.count()
            log.warning("ledger: the database is back after %.1fs and %d failed attempt(s); %d row(s) wait",
                        time.monotonic() - self.since, self.failures, rows)
            self.since = None
            self.failures = 0


class Ledger:
    def __init__(self, engine: Engine, registry: Registry, batch_size: int = 1000, interval: float = 0.5,
                 max_backlog: int = 2_000_000, write_timeout: float = 10.0, max_backoff: float = 5.0) -> None:
        self.engine = engine
        self.batch_size = batch_size
        self.interval = interval
        self.max_backlog = max_backlog
        self.write_timeout = write_timeout
        self.max_backoff = max_backoff
        self.pending: deque[tuple[Any, ...]] = deque()  # rows as tuples in the table's column order
        self._retry: tuple[str, int] | None = None  # a batch whose write failed: its id and row count
        # held while a batch is written and taken off the queue: `spend` reads the database and the queue with
        # no batch between the two, so that no row is counted twice or missed
        self._write_lock = asyncio.Lock()
        self._batches = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._idle_writer = ThreadPoolExecutor(1, "ledger-idle", initializer=_idle_priority)
        self._busy_writer = ThreadPoolExecutor(1, "ledger-busy")  # rows piling up: written at normal priority
        self._statement = insert(usage)
        self._columns = [c.name for c in usage.columns if c.name != "id"]
        # A row becomes a tuple when it is queued, on the event loop's thread: the writer thread then runs no
        # Python per row, and so holds the GIL that the requests need for no longer than the driver call.
        self._as_tuple = operator.itemgetter(*self._columns)
        names = ", ".join(self._columns)
        # Rows go to a per-connection staging table first: the batch's rollups are summed from it by the database,
        # and it is emptied when the transaction ends (PostgreSQL: ON COMMIT DELETE ROWS; SQLite: a DELETE).
        # (No `id` column there: the rows take theirs from the ledger's sequence once, when they are moved.)
        self._stage_pg = (f"CREATE TEMP TABLE IF NOT EXISTS {STAGING} ON COMMIT DELETE ROWS AS "
                          f"SELECT {names} FROM {usage.name} WITH NO DATA")
        self._stage_sqlite = f"CREATE TEMP TABLE IF NOT EXISTS {STAGING} AS SELECT {names} FROM {usage.name} WHERE 0"
        self._copy = f"COPY {STAGING} ({names}) FROM STDIN"
        self._sqlite_insert = f"INSERT INTO {STAGING} ({names}) VALUES ({', '.join('?' * len(self._columns))})"
        self._move = f"INSERT INTO {usage.name} ({names}) SELECT {names} FROM {STAGING}"
        mark = "?" if engine.dialect.name == "sqlite" else "%s"
        self._marker = (f"INSERT INTO {ledger_batches.name} (id, ts, row_count) VALUES ({mark}, {mark}, {mark}) "
                        "ON CONFLICT (id) DO NOTHING")
        self._marker_cleanup = f"DELETE FROM {ledger_batches.name} WHERE ts < {mark}"
        self.written = registry.counter("llm_gateway_ledger_rows_written_total", "Usage rows written")
        self.attempts = registry.counter("llm_gateway_ledger_write_attempts_total", "Ledger batch writes tried")
        self.failures = registry.counter("llm_gateway_ledger_write_failures_total",
                                         "Failed ledger batch writes (retried)")
        self.dropped = registry.counter("llm_gateway_ledger_rows_dropped_total",
                                        "Usage rows dropped because the backlog was full")
        self.outage = Outage(registry)

    def backlog(self) -> float:
        """Rows waiting to be written (telemetry's `llm_gateway_ledger_backlog` gauge reads it at scrape)."""
        return float(len(self.pending))

    async def spend(self, written: Callable[[], float], column: str, owner: str, since_ms: int) -> float:
        """One key's, user's or team's spend since `since_ms`: `written` (a query of the database, run in a
        thread) plus the cost of its rows still queued, read with no batch written in between."""
        at, ts, cost = (self._columns.index(name) for name in (column, "ts", "cost_usd"))
        async with self._write_lock:
            spent = await asyncio.to_thread(written)
            return spent + float(sum(row[cost] for row in self.pending if row[at] == owner and row[ts] >= since_ms))

    def record(self, row: dict[str, Any]) -> None:
        pending = self.pending
        if len(pending) >= self.max_backlog:
            pending.popleft()
            self.dropped.inc()
            if self._retry is not None:  # the dropped row was the failed batch's first
                self._retry = (self._retry[0], self._retry[1] - 1) if self._retry[1] > 1 else None
        pending.append(self._as_tuple(row))
        if len(pending) >= self.batch_size:
            self._wake.set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="ledger-writer")

    async def stop(self, timeout: float = 30.0) -> None:
        """Stop the writer and flush every queued row (retrying) within `timeout` seconds."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        deadline = time.monotonic() + timeout
        failures = 0
        while self.pending and time.monotonic() < deadline:
            if await self._write_batch(now=True):
                failures = 0
                continue
            failures += 1
            await asyncio.sleep(min(self._backoff(failures), max(0.0, deadline - time.monotonic())))
        if self.pending:
            log.error("ledger: %d usage row(s) could not be written before shutdown", len(self.pending))
        self._idle_writer.shutdown(wait=False)
        self._busy_writer.shutdown(wait=False)

    def _backoff(self, failures: int) -> float:
        """Exponential with jitter (half to all of the step): replicas that failed together retry apart."""
        step = min(self.max_backoff, FIRST_BACKOFF * 2 ** min(failures - 1, 30))
        return random.uniform(step / 2, step)

    async def _run(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), self.interval)
            except TimeoutError:
                pass
            self._wake.clear()
            failures = 0
            while self.pending:  # the idle writer takes IDLE_BATCH rows at a time: until none wait
                if await self._write_batch():
                    failures = 0
                    continue
                failures += 1
                # A sleep, not a wait on `_wake`: rows that keep arriving during an outage do not cut it short.
                await asyncio.sleep(self._backoff(failures))

    async def _write_batch(self, now: bool = False) -> bool:
        """Write the oldest batch; `now` (shutdown): at normal priority, whatever else wants the CPU."""
        async with self._write_lock:
            return await self._write_oldest(now)

    async def _write_oldest(self, now: bool) -> bool:
        busy = now or len(self.pending) > 2 * self.batch_size
        if self._retry is not None:
            batch_id, size = self._retry  # the same rows under the same id: written at most once
        else:
            batch_id, size = uuid.uuid4().hex, self.batch_size if busy else min(self.batch_size, IDLE_BATCH)
        batch = list(islice(self.pending, size))
        writer = self._busy_writer if busy else self._idle_writer
        held: list[Any] = []  # the writer thread puts its connection here, for the watchdog
        self.attempts.inc()
        write = asyncio.get_running_loop().run_in_executor(writer, self._insert, batch_id, batch, held)
        try:
            await self._within_timeout(write, held)
        except asyncio.CancelledError:  # stop() cancels the writer task; the batch's thread goes on
            try:
                await self._within_timeout(write, held)  # so that stop() does not write its rows a second time
            except Exception:
                self._retry = (batch_id, len(batch))
            else:
                self._written(len(batch))
            raise
        except Exception as exc:
            self._retry = (batch_id, len(batch))
            self.failures.inc()
            self.outage.failed(exc, len(self.pending), self.max_backoff)
            return False
        self._written(len(batch))
        self.outage.succeeded(len(self.pending))
        return True

    async def _within_timeout(self, write: asyncio.Future[bool], held: list[Any]) -> None:
        """Wait for `write`; when it is not answered in time, shut its connection down and wait for the error."""
        done, _ = await asyncio.wait([write], timeout=self.write_timeout)
        if not done:
            for connection in held:
                _shut_down(connection)
            await asyncio.wait([write])
        write.result()

    def _written(self, n: int) -> None:
        self._retry = None
        for _ in range(n):
            self.pending.popleft()
        self.written.inc((), n)

    def _insert(self, batch_id: str, rows: list[tuple[Any, ...]], held: list[Any]) -> bool:
        """Write `rows` with their batch marker; False when the marker is there already (an earlier try whose
        commit went unanswered wrote them)."""
        # Through the driver, not SQLAlchemy's executemany: measured per 10k rows, PostgreSQL COPY takes 0.13 s
        # against 0.7 s, SQLite's executemany of tuples 0.12 s against 0.2 s; this thread shares the GIL with
        # the request path.
        dialect = self.engine.dialect.name
        columns = self._columns
        if dialect not in ("postgresql", "sqlite"):
            with self.engine.begin() as conn:
                conn.execute(self._statement, [dict(zip(columns, row, strict=True)) for row in rows])
            return True
        raw = self.engine.raw_connection()
        held.append(raw)
        try:
            cursor: Any = raw.cursor()
            now_ms = int(time.time() * 1000)
            cursor.execute(self._marker, (batch_id, now_ms, len(rows)))
            if cursor.rowcount == 0:
                raw.rollback()
                return False
            self._batches += 1
            if self._batches % MARKER_CLEANUP_EVERY == 0:
                cursor.execute(self._marker_cleanup, (now_ms - MARKER_KEEP_MS,))
            if dialect == "postgresql":
                cursor.execute(self._stage_pg)
                with cursor.copy(self._copy) as copy:
                    for row in rows:
                        copy.write_row(row)
            else:
                cursor.execute(self._stage_sqlite)
                cursor.execute(f"DELETE FROM {STAGING}")
                cursor.executemany(self._sqlite_insert, rows)
            cursor.execute(self._move)
            fold_cursor(cursor, dialect, STAGING)
            if dialect == "sqlite":
                cursor.execute(f"DELETE FROM {STAGING}")
            raw.commit()
        except BaseException:
            raw.invalidate()  # a connection in an unknown state (cut mid-write, shut down) is not used again
            raise
        finally:
            raw.close()
        return True


class LedgerStage:
    """Settles after CostStage and AuthStage: turns the finished context into a ledger row."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.trace_of: Callable[[RequestContext], str] | None = None  # the trace id, when tracing is on

    admit = None  # nothing to do before the upstream call
    records = True  # settles by recording what happened: may run later (pipeline.stack)

    def settle(self, ctx: RequestContext) -> None:
        usage = ctx.usage
        key = ctx.key
        key_id = key.id if key is not None else None
        user_id = (key.user_id if isinstance(key, KeyRecord) else None) or ctx.user or None
        deployment = ctx.deployment
        first = ctx.first_byte_at
        row = {
            "ts": int(time.time() * 1000),
            "request_id": ctx.request_id,
            "key_id": key_id,
            "user_id": user_id,
            "team_id": ctx.team or None,
            "model": ctx.model,
            "provider": ctx.provider,
            "deployment": deployment.name if deployment is not None else "",
            "endpoint": ctx.endpoint,
            "prompt_tokens": usage.prompt_tokens if usage else 0,
            "completion_tokens": usage.completion_tokens if usage else 0,
            "cached_tokens": usage.cached_tokens if usage else 0,
            "reasoning_tokens": usage.reasoning_tokens if usage else 0,
            "cost_usd": ctx.cost,
            "latency_ms": round(ctx.latency * 1000, 3),
            "ttft_ms": round((first - ctx.started) * 1000, 3) if first else 0.0,
            "status": ctx.status,
            "cache_hit": ctx.cache_status == "hit",
            "estimated": bool(usage and usage.estimated),
            "upstream_model": ctx.upstream_model,  # beside `model`, what the client asked for
            "end_user": ctx.end_user or None,
            "cache_write_tokens": usage.cache_write_tokens if usage else 0,
            "cache_write_1h_tokens": usage.cache_write_1h_tokens if usage else 0,
            "prompt_audio_tokens": usage.prompt_audio_tokens if usage else 0,
            "prompt_image_tokens": usage.prompt_image_tokens if usage else 0,
            "completion_audio_tokens": usage.completion_audio_tokens if usage else 0,
            "completion_image_tokens": usage.completion_image_tokens if usage else 0,
            "price_source": ctx.price_source,
            "request_metadata": _metadata_text(ctx),
            "trace_id": self.trace_of(ctx) if self.trace_of is not None else "",
            "error": error_of(ctx),
            "attempts": ctx.attempts,
            "attempt_log": attempts_of(ctx),
            "guardrails": orjson.dumps(verdicts).decode() if (verdicts := ctx.extensions.get("guardrails")) else None,
        }
        fit_client_text(row)
        self.ledger.record(row)


MAX_METADATA_CHARS = 8192


def _metadata_text(ctx: RequestContext) -> str | None:
    """The request's `x-gateway.metadata` as JSON text; None without one (or past the size kept)."""
    options = ctx.options
    if options is None or not options.metadata:
        return None
    try:
        text = orjson.dumps(options.metadata).decode()
    except orjson.JSONEncodeError:  # refused as the request came (routing.options); never the row lost for it
        return None
    return text if len(text) <= MAX_METADATA_CHARS else None


def error_of(ctx: RequestContext) -> str:
    """Why the gateway refused or failed the request, as `code: message` (our own texts: no secrets)."""
    err = ctx.extensions.get(GATEWAY_ERROR)
    if err is None:
        return ctx.error_type
    if isinstance(err, UpstreamHTTPError):  # the upstream's text is not ours to keep: its code only
        return f"{err.code or err.type}: the upstream answered {err.status}"
    return f"{getattr(err, 'code', None) or ctx.error_type}: {getattr(err, 'message', '')}"[:300]


def attempts_of(ctx: RequestContext) -> str:
    log = ctx.attempt_log
    if not log or (len(log) == 1 and log[0].ok):  # the usual case says nothing the row does not: no string built
        return ""
    text = "; ".join(f"{a.kind} {a.provider}/{a.model} {a.status or ''} {a.error_type or 'ok'}".replace("  ", " ")
                     for a in log)
    return text[:1000]
