"""Budgets shared by replicas through Redis: spend reserved at admission and settled after the call, atomically.

Each budget period is one Redis hash, `<prefix><kind>:<owner>:<period start>`: `spent` (USD), and per replica
`r:<replica>` (what its requests in flight hold) and `t:<replica>` (when it last reserved or settled, ms). A
reservation checks `spent + every replica's holds < limit` and adds its estimate in one Lua call, so replicas
overshoot a budget by no more than the requests they admit at once, not by a sync interval. The holds of a
replica that has not been heard from for `STALE_MS` (it died with requests in flight) are dropped. The ledger
stays the record: at start and every 30 s each replica raises `spent` to at least the ledger's spend.
When Redis cannot be reached the tracker in memory decides, as without Redis (one log line per outage).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Iterable
from typing import Any

from llm_gateway.keys.budget import Budget
from llm_gateway.redis_client import RedisReplyError
from llm_gateway.redis_cluster import ClusterClient, slot_of
from llm_gateway.redis_topology import open_client
from llm_gateway.settings import RedisConfig

log = logging.getLogger("llm_gateway.keys")

FAILURES = (OSError, asyncio.TimeoutError, RedisReplyError)
STALE_MS = 900_000  # longer than any request may take (the longest total timeout is 600 s)
KEEP_S = 86_400  # a period's hash outlives the period by a day

# KEYS: budget hashes. ARGV: now_ms, stale_ms, replica, estimate, then per key: limit, ttl_s (0: none).
# Returns 0 when admitted (the estimate held on every key), else the 1-based index of the spent budget.
RESERVE = """
local now, stale, me, est = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4])
for i, key in ipairs(KEYS) do
  local h = redis.call('HGETALL', key)
  local spent, held, seen = 0, {}, {}
  for j = 1, #h, 2 do
    local f, v = h[j], h[j + 1]
    if f == 'spent' then spent = tonumber(v)
    elseif string.sub(f, 1, 2) == 'r:' then held[string.sub(f, 3)] = tonumber(v)
    elseif string.sub(f, 1, 2) == 't:' then seen[string.sub(f, 3)] = tonumber(v) end
  end
  local total = spent
  for replica, amount in pairs(held) do
    if replica ~= me and (seen[replica] or 0) < now - stale then
      redis.call('HDEL', key, 'r:' .. replica, 't:' .. replica)
    else total = total + amount end
  end
  if total >= tonumber(ARGV[3 + 2 * i]) then return i end
end
for i, key in ipairs(KEYS) do
  redis.call('HINCRBYFLOAT', key, 'r:' .. me, est)
  redis.call('HSET', key, 't:' .. me, now)
  local ttl = tonumber(ARGV[4 + 2 * i])
  if ttl > 0 then redis.call('EXPIRE', key, ttl) end
end
return 0
"""

# KEYS: budget hashes. ARGV: now_ms, replica, estimate held, cost.
SETTLE = """
local now, me, est, cost = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
for _, key in ipairs(KEYS) do
  if est > 0 and tonumber(redis.call('HINCRBYFLOAT', key, 'r:' .. me, -est)) <= 1e-12 then
    redis.call('HDEL', key, 'r:' .. me)
  end
  if cost > 0 then redis.call('HINCRBYFLOAT', key, 'spent', cost) end
  redis.call('HSET', key, 't:' .. me, now)
end
return 0
"""

# KEYS: budget hashes. ARGV per key: spend known from the ledger, ttl_s. `spent` never goes down here.
SEED = """
for i, key in ipairs(KEYS) do
  local known = tonumber(ARGV[2 * i - 1])
  if tonumber(redis.call('HGET', key, 'spent') or '0') < known then redis.call('HSET', key, 'spent', known) end
  local ttl = tonumber(ARGV[2 * i])
  if ttl > 0 then redis.call('EXPIRE', key, ttl) end
end
return 0
"""


class SharedBudgets:
    def __init__(self, url: str, pool_size: int, prefix: str, replica: str, timeout_s: float = 0.5,
                 retry_after_s: float = 1.0, redis: RedisConfig | None = None) -> None:
        self.client = open_client(url, pool_size, timeout_s, redis)
        self._cluster = isinstance(self.client, ClusterClient)
        self.retry_after_s = retry_after_s
        self.prefix = prefix
        self.replica = replica
        self._shas = {source: hashlib.sha1(source.encode()).hexdigest() for source in (RESERVE, SETTLE, SEED)}
        self._tasks: set[asyncio.Task[None]] = set()
        self._down = False
        self._down_until = 0.0  # after a failure Redis is not asked for a while: an outage costs one timeout

    def _key(self, budget: Budget, start: float | None = None) -> str:
        return f"{self.prefix}{budget.kind}:{budget.owner}:{int(budget.start if start is None else start)}"

    @staticmethod
    def _ttl(budget: Budget, now: float) -> int:
        return 0 if budget.end == float("inf") else max(1, int(budget.end - now) + KEEP_S)

    async def _eval(self, source: str, keys: list[str], args: list[Any]) -> Any:
        try:
            return await self.client.call("EVALSHA", self._shas[source], len(keys), *keys, *args)
        except RedisReplyError as exc:
            if not str(exc).startswith("NOSCRIPT"):
                raise
        return await self.client.call("EVAL", source, len(keys), *keys, *args)  # the script did not run

    async def reserve(self, budgets: list[Budget], estimate: float, held: list[float] | None = None
                      ) -> Budget | bool:
        """Hold `estimate` on every budget: True when held, the spent Budget when one is, False when Redis
        could not be asked (the caller decides in memory). `held` receives the periods (their starts) the hold
        was taken in, for `settle`."""
        if self._down and time.monotonic() < self._down_until:
            return False
        now = time.time()
        args: list[Any] = [int(now * 1000), STALE_MS, self.replica, repr(estimate)]
        for budget in budgets:
            budget.roll(now)
            args += [repr(budget.limit), self._ttl(budget, now)]
        if held is not None:
            held[:] = [b.start for b in budgets]
        keys = [self._key(b) for b in budgets]
        try:
            if self._cluster and len({slot_of(k) for k in keys}) > 1:
                spent = await self._reserve_by_slot(keys, args)
            else:
                spent = await self._eval(RESERVE, keys, args)
        except FAILURES as exc:
            self._failed(exc)
            return False
        self._recovered()
        return True if spent == 0 else budgets[int(spent) - 1]

    async def _reserve_by_slot(self, keys: list[str], args: list[Any]) -> int:
        """Redis Cluster: one call per slot; when one budget is spent (or a call fails) the holds the other slots
        took are given back, so the estimate is held on every budget or on none."""
        groups: dict[int, list[int]] = {}
        for i, key in enumerate(keys):
            groups.setdefault(slot_of(key), []).append(i)
        parts = list(groups.values())
        head = args[:4]
        replies = await asyncio.gather(*(self._eval(RESERVE, [keys[i] for i in part],
                                                    [*head, *(a for i in part for a in args[4 + 2 * i:6 + 2 * i])])
                                         for part in parts), return_exceptions=True)
        failure = next((r for r in replies if isinstance(r, BaseException)), None)
        spent = next((part[int(r) - 1] + 1 for part, r in zip(parts, replies, strict=True)
                      if not isinstance(r, BaseException) and int(r) != 0), 0)
        if failure is not None or spent:
            held = [keys[i] for part, r in zip(parts, replies, strict=True) if not isinstance(r, BaseException)
                    and int(r) == 0 for i in part]
            if held:
                self._send_settle(held, [args[0], self.replica, args[3], "0"])
        if failure is not None:
            raise failure
        return spent

    def settle(self, budgets: list[Budget], estimate: float, cost: float, held: list[float] | None = None) -> None:
        """Give back the hold (in the periods `held` it was taken in) and add the real cost (to the current
        periods); sent off the request path."""
        if not budgets or (estimate <= 0 and cost <= 0):
            return
        keys = [self._key(b) for b in budgets]
        now_ms = int(time.time() * 1000)
        if estimate > 0 and held and any(start != b.start for start, b in zip(held, budgets, strict=True)):
            # admitted before a period's end, finished after it: the hold is in the old period's hash
            self._send_settle([self._key(b, start) for b, start in zip(budgets, held, strict=True)],
                              [now_ms, self.replica, repr(estimate), "0"])
            estimate = 0.0
            if cost <= 0:
                return
        self._send_settle(keys, [now_ms, self.replica, repr(estimate), repr(cost)])

    def _send_settle(self, keys: list[str], args: list[Any]) -> None:
        task = asyncio.get_running_loop().create_task(self._settle(keys, args))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _settle(self, keys: list[str], args: list[Any]) -> None:
        try:
            if self._cluster:  # each key's own call: the same hold and cost on each, in any slot
                await asyncio.gather(*(self._eval(SETTLE, [key], args) for key in keys))
            else:
                await self._eval(SETTLE, keys, args)
        except FAILURES as exc:
            self._failed(exc)  # the hold stays until this replica is stale; the spend comes back from the ledger

    async def seed(self, budgets: Iterable[Budget]) -> None:
        """Raise each period's shared spend to at least what this replica knows (the ledger's, its own)."""
        now = time.time()
        keys: list[str] = []
        args: list[Any] = []
        for budget in budgets:
            budget.roll(now)
            keys.append(self._key(budget))
            args += [repr(budget.spent), self._ttl(budget, now)]
        if not keys:
            return
        try:
            if self._cluster:
                await asyncio.gather(*(self._eval(SEED, [key], args[2 * i:2 * i + 2]) for i, key in enumerate(keys)))
            else:
                await self._eval(SEED, keys, args)
        except FAILURES as exc:
            self._failed(exc)

    async def close(self) -> None:
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)
        await self.client.close()

    def _failed(self, exc: BaseException) -> None:
        self._down_until = time.monotonic() + self.retry_after_s
        if not self._down:
            self._down = True
            log.warning("budgets: Redis unavailable (%s: %s); each replica checks budgets on its own until it is "
                        "back", type(exc).__name__, exc)

    def _recovered(self) -> None:
        if self._down:
            self._down = False
            log.warning("budgets: Redis is back; budgets are shared again")
