"""The Redis limit backend: one Lua round trip to reserve; settlements, off the request path, gathered while the event
loop works through what is ready and sent as one call (corrections to one counter bucket summed first). Shared by
replicas."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import time
from typing import Any

from llm_gateway.limits.backend import BackendUnavailable, Outcome
from llm_gateway.limits.lua import RESERVE, SETTLE
from llm_gateway.limits.rules import Rule
from llm_gateway.redis_client import Arg, RedisReplyError, RespClient
from llm_gateway.telemetry.metrics import Counter

log = logging.getLogger("llm_gateway.limits")

FAILURES = (OSError, asyncio.TimeoutError, RedisReplyError)
# A batch of settlements this large goes at once; a smaller one when the loop has run what was ready.
SETTLE_BATCH = 256


class _Script:
    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()

    async def __call__(self, client: RespClient, keys: list[str], args: list[int]) -> Any:
        try:
            return await client.call("EVALSHA", self.sha, len(keys), *keys, *args)
        except RedisReplyError as exc:
            if not str(exc).startswith("NOSCRIPT"):
                raise
        # Redis restarted or flushed its script cache: the script did not run, so sending it whole is safe.
        return await client.call("EVAL", self.source, len(keys), *keys, *args)


class RedisBackend:
    def __init__(self, url: str, pool_size: int, prefix: str, timeout_s: float, retry_after_s: float,
                 errors: Counter) -> None:
        # No retries: a reservation that timed out may have been applied, and running it again would charge
        # twice. A failure trips a short breaker instead, so an outage costs one timeout, not one per request.
        self.client = RespClient(url, pool_size, timeout_s)
        self.prefix = prefix
        self.retry_after_s = retry_after_s
        self.errors = errors
        self._reserve = _Script(RESERVE)
        self._settle = _Script(SETTLE)
        self._down_until = 0.0
        self._down = False
        self._tasks: set[asyncio.Future[Any]] = set()  # settlements in flight
        # Settlements not sent yet: (key, bucket width, buckets, charged bucket) -> [a stamp in it, summed delta]
        self._pending: dict[tuple[str, int, int, int], list[int]] = {}
        self._flush_soon: asyncio.Handle | None = None

    async def start(self) -> None:
        """Load the scripts (and learn early whether Redis is there); a failure only logs: the fail mode rules."""
        try:
            for script in (self._reserve, self._settle):
                await self.client.call("SCRIPT", "LOAD", script.source)
        except FAILURES as exc:
            self._failed("start", exc)

    async def reserve(self, keys: list[str], rules: list[Rule], costs: list[int]) -> Outcome:
        if self._down and time.monotonic() < self._down_until:
            raise BackendUnavailable("redis unavailable")
        prefix = self.prefix
        args: list[int] = []
        for rule, cost in zip(rules, costs, strict=True):
            args.extend(rule.params)
            args.append(cost)
        try:
            reply: list[int] = await self._reserve(self.client, [prefix + k for k in keys], args)
        except FAILURES as exc:
            self._failed("reserve", exc)
            raise BackendUnavailable(str(exc)) from None
        if self._down:
            self._recovered()
        n = len(keys)
        return Outcome(reply[0] == 1, reply[1], reply[2] / 1000, reply[3], reply[4:4 + 3 * n:3],
                       reply[5:5 + 3 * n:3], [ms / 1000 for ms in reply[6:6 + 3 * n:3]])

    def settle(self, keys: list[str], rules: list[Rule], deltas: list[int], stamp_ms: int) -> None:
        pending = self._pending
        added = False
        for key, rule, delta in zip(keys, rules, deltas, strict=True):
            if delta and rule.tokens is not None:
                if not added and self._down and time.monotonic() < self._down_until:
                    self.errors.inc(("settle",))  # dropped: the reservation stays charged until it leaves the window
                    return
                added = True
                slot = (self.prefix + key, rule.bucket_ms, rule.buckets, stamp_ms // rule.bucket_ms)
                entry = pending.get(slot)
                if entry is None:
                    pending[slot] = [stamp_ms, delta]
                else:
                    entry[1] += delta
        if not added:
            return
        if len(pending) >= SETTLE_BATCH:
            self._flush()
        elif self._flush_soon is None:
            # At once when idle (the gap after a response), together when busy: the requests that finish in
            # one turn of the loop share the call.
            self._flush_soon = asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        """Send the gathered settlements in one call; sent at once on a live connection, no task."""
        if self._flush_soon is not None:
            self._flush_soon.cancel()
            self._flush_soon = None
        pending, self._pending = self._pending, {}
        keys: list[str] = []
        args: list[int] = []
        for (key, bucket_ms, buckets, _), (stamp_ms, delta) in pending.items():
            if delta:
                keys.append(key)
                args.extend((stamp_ms, bucket_ms, buckets, delta))
        if not keys:
            return
        sent = self.client.call_nowait("EVALSHA", self._settle.sha, len(keys), *keys, *args)
        if sent is None:
            self._settle_in_task(keys, args)
            return
        self._tasks.add(sent)
        sent.add_done_callback(functools.partial(self._settled, keys, args))

    def _settled(self, keys: list[str], args: list[int], sent: asyncio.Future[Any]) -> None:
        self._tasks.discard(sent)
        exc = None if sent.cancelled() else sent.exception()
        if exc is None:
            return
        if isinstance(exc, RedisReplyError) and str(exc).startswith("NOSCRIPT"):
            self._settle_in_task(keys, args)  # Redis lost its scripts: the task sends the source
        elif isinstance(exc, FAILURES):
            self._failed("settle", exc)

    def _settle_in_task(self, keys: list[str], args: list[int]) -> None:
        task = asyncio.get_running_loop().create_task(self._run_settle(keys, args))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_settle(self, keys: list[str], args: list[int]) -> None:
        try:
            await self._settle(self.client, keys, args)
        except FAILURES as exc:
            self._failed("settle", exc)

    async def close_pending(self, timeout: float = 5.0) -> None:
        """Send the gathered settlements and wait for those in flight (at shutdown: no reservation is left
        charged)."""
        self._flush()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout)

    async def close(self) -> None:
        await self.close_pending()
        await self.client.close()

    async def command(self, *args: Arg) -> Any:
        """Any other command on the backend's connections (tests and operators' tools)."""
        return await self.client.call(*args)

    def _failed(self, op: str, exc: BaseException) -> None:
        self.errors.inc((op,))
        self._down_until = time.monotonic() + self.retry_after_s
        if not self._down:
            self._down = True
            log.warning("limits: Redis unavailable (%s: %s); retrying every %gs", type(exc).__name__, exc,
                        self.retry_after_s)

    def _recovered(self) -> None:
        self._down = False
        log.warning("limits: Redis is back")
