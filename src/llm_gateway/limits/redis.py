"""The Redis limit backend, shared by replicas: one Lua round trip to reserve, settlements off the request path.

Settlements are gathered while the event loop works through what is ready and sent as one call (corrections to one
counter bucket summed first).

Leases (`lease` > 0): a reservation asks Redis to charge `lease` requests' worth more for each of its checks; what
Redis grants (only far from the limit, see `lua.LEASE_ROOM`) is handed out here to the next requests of the same
checks with no round trip, until it is used, its bucket ends or `lease_s` pass. What is left then goes back to
the bucket it was charged to. A request whose checks do not all hold enough asks Redis, handing back what they
held. A request's real usage is settled into its check's lease while that lease is still in the bucket charged.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import heapq
import itertools
import logging
import time
from typing import Any

from llm_gateway.limits.backend import BackendUnavailable, Outcome
from llm_gateway.limits.lua import RESERVE, SETTLE
from llm_gateway.limits.rules import Rule
from llm_gateway.redis_client import Arg, RedisReplyError
from llm_gateway.redis_topology import RedisClient, open_client
from llm_gateway.settings import RedisConfig
from llm_gateway.telemetry.metrics import Counter

log = logging.getLogger("llm_gateway.limits")

FAILURES = (OSError, asyncio.TimeoutError, RedisReplyError)
# A batch of settlements this large goes at once; a smaller one when the loop has run what was ready.
SETTLE_BATCH = 256
_NOTHING_BACK = (-1, 0, 0)


class _Script:
    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()

    async def __call__(self, client: RedisClient, keys: list[str], args: list[int]) -> Any:
        try:
            return await client.call("EVALSHA", self.sha, len(keys), *keys, *args)
        except RedisReplyError as exc:
            if not str(exc).startswith("NOSCRIPT"):
                raise
        # Redis restarted or flushed its script cache: the script did not run, so sending it whole is safe.
        return await client.call("EVAL", self.source, len(keys), *keys, *args)


class _Lease:
    """Requests and tokens of one check that Redis charged ahead of need, not handed out yet.

    `charged_*` are the window's counts Redis reported with the lease included, so what a request is told it used
    is `charged - left`. All of it sits in Redis's bucket `bucket` (of the rule's width), where `stamp_ms` falls.
    """

    __slots__ = ("bucket", "charged_requests", "charged_tokens", "requests", "reset_at", "rule", "stamp_ms",
                 "tokens", "until")

    def __init__(self, rule: Rule, stamp_ms: int, requests: int, tokens: int, charged_requests: int,
                 charged_tokens: int, reset_at: float, until: float) -> None:
        self.rule = rule
        self.stamp_ms = stamp_ms
        self.bucket = stamp_ms // rule.bucket_ms
        self.requests = requests
        self.tokens = tokens
        self.charged_requests = charged_requests
        self.charged_tokens = charged_tokens
        self.reset_at = reset_at  # monotonic time when the window would be empty
        self.until = until  # monotonic time after which it is no longer handed out


class RedisBackend:
    def __init__(self, url: str, pool_size: int, prefix: str, timeout_s: float, retry_after_s: float,
                 errors: Counter, lease: int = 0, lease_s: float = 2.0, redis: RedisConfig | None = None) -> None:
        # No retries: a reservation that timed out may have been applied, and running it again would charge
        # twice. A failure trips a short breaker instead, so an outage costs one timeout, not one per request.
        self.client: RedisClient = open_client(url, pool_size, timeout_s, redis)
        self.prefix = prefix
        self.retry_after_s = retry_after_s
        self.errors = errors
        self.lease = lease
        self.lease_s = lease_s
        self._reserve = _Script(RESERVE)
        self._settle = _Script(SETTLE)
        self._down_until = 0.0
        self._down = False
        self._tasks: set[asyncio.Future[Any]] = set()  # settlements in flight
        # Settlements not sent yet: (key, bucket width, buckets, charged bucket) -> [a stamp in it, requests, tokens]
        self._pending: dict[tuple[str, int, int, int], list[int]] = {}
        self._flush_soon: asyncio.Handle | None = None
        self._leases: dict[str, _Lease] = {}  # by check key (unprefixed)
        self._expiry: list[tuple[float, int, str, _Lease]] = []  # a heap by `until`
        self._seq = itertools.count()
        self._expire_timer: asyncio.TimerHandle | None = None
        self._expire_at = 0.0

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
        sent_at = time.monotonic()
        # One node (or Sentinel's primary): one script call, awaited here rather than in a helper coroutine.
        try:
            reply: list[int] = await self._reserve(self.client, [self.prefix + k for k in keys],
                                                   self._args(keys, rules, costs))
        except FAILURES as exc:
            raise self._reserve_failed(exc) from None
        if self._down:
            self._recovered()
        return self._outcome(keys, rules, reply, sent_at)

    def _args(self, keys: list[str], rules: list[Rule], costs: list[int]) -> list[int]:
        """The script's ARGV, handing back the leases this process holds for these checks."""
        lease = self.lease
        leases = self._leases
        args: list[int] = []
        for key, rule, cost in zip(keys, rules, costs, strict=True):
            args.extend(rule.params)
            args.append(cost)
            args.append(lease if rule.requests is not None else 0)
            args.append(lease * cost if rule.tokens is not None else 0)
            held = leases.pop(key, None) if leases else None
            if held is None:
                args.extend(_NOTHING_BACK)
            else:
                args.extend((held.stamp_ms, held.requests, held.tokens))
        return args

    def _reserve_failed(self, exc: BaseException) -> BackendUnavailable:
        # The leases handed back are dropped: if the call timed out after Redis ran it, they are no longer
        # charged, and handing them out would admit beyond the limit; if it did not run, they stay charged
        # until they leave the window (the cautious side, as for a settlement that cannot be sent).
        self._failed("reserve", exc)
        return BackendUnavailable(str(exc))

    def _outcome(self, keys: list[str], rules: list[Rule], reply: list[int], sent_at: float) -> Outcome:
        n = len(keys)
        used_r = reply[4:4 + 5 * n:5]
        used_t = reply[5:5 + 5 * n:5]
        resets = [ms / 1000 for ms in reply[6:6 + 5 * n:5]]
        if reply[0] == 1 and self.lease:
            now_ms = reply[3]
            for i in range(n):
                got_r, got_t = reply[7 + 5 * i], reply[8 + 5 * i]
                if got_r or got_t:
                    self._grant(keys[i], rules[i], now_ms, got_r, got_t, used_r[i], used_t[i],
                                sent_at + resets[i], sent_at)
                    used_r[i] -= got_r  # the caller is told what is used, not what this replica holds
                    used_t[i] -= got_t
        return Outcome(reply[0] == 1, reply[1], reply[2] / 1000, reply[3], used_r, used_t, resets)

    def reserve_now(self, keys: list[str], rules: list[Rule], costs: list[int]) -> Outcome | None:
        """The reservation from the leases held, with no round trip; None when they do not cover the request."""
        leases = self._leases
        if not leases:
            return None
        held_all: list[_Lease] = []
        stamp = 0
        for key, rule, cost in zip(keys, rules, costs, strict=True):
            held = leases.get(key)
            if held is None or held.rule is not rule or (rule.requests is not None and held.requests < 1) or (
                    rule.tokens is not None and held.tokens < cost):
                return None
            if held.stamp_ms > stamp:
                stamp = held.stamp_ms
            held_all.append(held)
        mono = time.monotonic()
        for held in held_all:
            # One stamp for the request: settle finds each check's charged bucket from it.
            if held.until <= mono or stamp // held.rule.bucket_ms != held.bucket:
                return None
        n = len(keys)
        used_r = [-1] * n
        used_t = [-1] * n
        resets = [0.0] * n
        for i in range(n):
            held = held_all[i]
            if rules[i].requests is not None:
                held.requests -= 1
                used_r[i] = held.charged_requests - held.requests
            if rules[i].tokens is not None:
                held.tokens -= costs[i]
                used_t[i] = held.charged_tokens - held.tokens
            resets[i] = max(0.0, held.reset_at - mono)
        return Outcome(True, -1, 0.0, stamp, used_r, used_t, resets)

    def settle(self, keys: list[str], rules: list[Rule], deltas: list[int], stamp_ms: int) -> None:
        leases = self._leases
        for key, rule, delta in zip(keys, rules, deltas, strict=True):
            if not delta or rule.tokens is None:
                continue
            if leases:
                held = leases.get(key)
                if held is not None and held.rule is rule and held.bucket == stamp_ms // rule.bucket_ms:
                    # Same bucket: the lease takes the correction (tokens already charged in Redis, or to charge)
                    took = delta if delta < 0 else min(delta, held.tokens)
                    held.tokens -= took
                    delta -= took
                    if not delta:
                        continue
            if not self._add_pending(self.prefix + key, rule, stamp_ms, 0, delta):
                return

    def _add_pending(self, key: str, rule: Rule, stamp_ms: int, requests: int, tokens: int,
                     force: bool = False) -> bool:
        """Queue a correction for the next settle call; False (and dropped) while Redis is known to be down."""
        if not force and self._down and time.monotonic() < self._down_until:
            self.errors.inc(("settle",))  # dropped: the reservation stays charged until it leaves the window
            return False
        pending = self._pending
        slot = (key, rule.bucket_ms, rule.buckets, stamp_ms // rule.bucket_ms)
        entry = pending.get(slot)
        if entry is None:
            pending[slot] = [stamp_ms, requests, tokens]
        else:
            entry[1] += requests
            entry[2] += tokens
        if len(pending) >= SETTLE_BATCH:
            self._flush()
        elif self._flush_soon is None:
            # At once when idle (the gap after a response), together when busy: the requests that finish in
            # one turn of the loop share the call.
            self._flush_soon = asyncio.get_running_loop().call_soon(self._flush)
        return True

    def _flush(self) -> None:
        """Send the gathered settlements in one call; sent at once on a live connection, no task."""
        if self._flush_soon is not None:
            self._flush_soon.cancel()
            self._flush_soon = None
        pending, self._pending = self._pending, {}
        keys: list[str] = []
        args: list[int] = []
        for (key, bucket_ms, buckets, _), (stamp_ms, requests, tokens) in pending.items():
            if requests or tokens:
                keys.append(key)
                args.extend((stamp_ms, bucket_ms, buckets, requests, tokens))
        if not keys:
            return
        self._send_settle(keys, args)

    def _send_settle(self, keys: list[str], args: list[int]) -> None:
        sent = self.client.call_nowait("EVALSHA", self._settle.sha, len(keys), *keys, *args)
        if sent is None:
            self._settle_in_task(keys, args)
            return
        self._tasks.add(sent)
        sent.add_done_callback(functools.partial(self._settled, keys, args))

    # -- leases
    def _grant(self, key: str, rule: Rule, now_ms: int, requests: int, tokens: int, charged_requests: int,
               charged_tokens: int, reset_at: float, sent_at: float) -> None:
        bucket = now_ms // rule.bucket_ms
        # Counted from when the call was sent, so the lease ends here no later than its bucket ends in Redis.
        until = sent_at + min(self.lease_s, ((bucket + 1) * rule.bucket_ms - now_ms) / 1000)
        held = self._leases.get(key)
        if held is not None:
            if held.rule is rule and held.bucket == bucket:  # a concurrent reservation's lease: one pool
                held.requests += requests
                held.tokens += tokens
                held.charged_requests = max(held.charged_requests, charged_requests)
                held.charged_tokens = max(held.charged_tokens, charged_tokens)
                held.stamp_ms = max(held.stamp_ms, now_ms)
                held.reset_at = max(held.reset_at, reset_at)
                held.until = max(held.until, until)
                return
            del self._leases[key]
            self._give_back(key, held)
        self._hold(key, _Lease(rule, now_ms, requests, tokens, charged_requests, charged_tokens, reset_at, until))

    def _hold(self, key: str, held: _Lease) -> None:
        self._leases[key] = held
        heapq.heappush(self._expiry, (held.until, next(self._seq), key, held))
        if self._expire_timer is not None and held.until < self._expire_at:
            self._expire_timer.cancel()
            self._expire_timer = None
        self._arm()

    def _arm(self) -> None:
        if self._expire_timer is None and self._expiry:
            self._expire_at = self._expiry[0][0]
            delay = max(0.0, self._expire_at - time.monotonic())
            self._expire_timer = asyncio.get_running_loop().call_later(delay, self._expire)

    def _expire(self) -> None:
        """Give back the leases whose time is up."""
        self._expire_timer = None
        now = time.monotonic()
        heap = self._expiry
        leases = self._leases
        while heap and heap[0][0] <= now:
            _, _, key, held = heapq.heappop(heap)
            if leases.get(key) is not held:
                continue  # handed back with a reservation, or replaced
            if held.until > now:  # extended by a concurrent grant
                heapq.heappush(heap, (held.until, next(self._seq), key, held))
                continue
            del leases[key]
            self._give_back(key, held)
        self._arm()

    def _give_back(self, key: str, held: _Lease) -> None:
        if held.requests or held.tokens:
            self._add_pending(self.prefix + key, held.rule, held.stamp_ms, -held.requests, -held.tokens)

    def _settled(self, keys: list[str], args: list[int], sent: asyncio.Future[Any]) -> None:
        self._tasks.discard(sent)
        exc = None if sent.cancelled() else sent.exception()
        if exc is None:
            return
        if isinstance(exc, RedisReplyError) and str(exc).startswith(("NOSCRIPT", "MOVED ")):
            # Redis lost its scripts, or (Cluster) the slot moved: the script did not run, the task sends it again
            self._settle_in_task(keys, args)
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
        """Give back every lease, send the gathered settlements and wait for those in flight (at shutdown: no
        reservation is left charged)."""
        if self._expire_timer is not None:
            self._expire_timer.cancel()
            self._expire_timer = None
        leases, self._leases = self._leases, {}
        self._expiry.clear()
        for key, held in leases.items():
            self._give_back(key, held)
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
