"""The Redis limit backend on a Redis Cluster: a request's checks in several hash slots take one script call per
slot, sent together; when one slot refuses (or fails), what the others charged is given back, so a request is
charged everywhere or nowhere, as on one node. Checks of one slot (a principal's own limits) take one call."""

from __future__ import annotations

import asyncio
import time

from llm_gateway.limits.backend import BackendUnavailable, Outcome
from llm_gateway.limits.redis import FAILURES, RedisBackend
from llm_gateway.limits.rules import Rule
from llm_gateway.redis_cluster import slot_of


class ClusterRedisBackend(RedisBackend):
    async def reserve(self, keys: list[str], rules: list[Rule], costs: list[int]) -> Outcome:
        if self._down and time.monotonic() < self._down_until:
            raise BackendUnavailable("redis unavailable")
        return await self._reserve_by_slot(keys, rules, costs)

    async def _call_reserve(self, keys: list[str], rules: list[Rule], costs: list[int]) -> list[int]:
        try:
            reply: list[int] = await self._reserve(self.client, [self.prefix + k for k in keys],
                                                   self._args(keys, rules, costs))
        except FAILURES as exc:
            raise self._reserve_failed(exc) from None
        if self._down:
            self._recovered()
        return reply

    async def _reserve_by_slot(self, keys: list[str], rules: list[Rule], costs: list[int]) -> Outcome:
        """Redis Cluster: one script call per hash slot, all at once; when one slot refuses (or fails), what the
        others charged is given back, so a request is charged everywhere or nowhere, as on one node."""
        prefix = self.prefix
        groups: dict[int, list[int]] = {}
        for i, key in enumerate(keys):
            groups.setdefault(slot_of(prefix + key), []).append(i)
        sent_at = time.monotonic()
        if len(groups) == 1:
            return self._outcome(keys, rules, await self._call_reserve(keys, rules, costs), sent_at)
        parts = list(groups.values())
        replies = await asyncio.gather(*(self._call_reserve([keys[i] for i in part], [rules[i] for i in part],
                                                            [costs[i] for i in part]) for part in parts),
                                       return_exceptions=True)
        failure = next((r for r in replies if isinstance(r, BaseException)), None)
        refused = next((j for j, r in enumerate(replies) if not isinstance(r, BaseException) and r[0] != 1), None)
        if failure is None and refused is None:
            return self._merge(keys, rules, parts, replies, sent_at)  # type: ignore[arg-type]
        for part, reply in zip(parts, replies, strict=True):
            if not isinstance(reply, BaseException) and reply[0] == 1:
                self._refund([keys[i] for i in part], [rules[i] for i in part], [costs[i] for i in part], reply)
        if failure is not None:
            raise failure  # BackendUnavailable, the fail mode decides; anything else is a bug, raised as it is
        assert refused is not None
        reply = replies[refused]
        assert not isinstance(reply, BaseException)
        n = len(keys)
        used_r, used_t, resets = [-1] * n, [-1] * n, [0.0] * n
        for part, got in zip(parts, replies, strict=True):
            assert not isinstance(got, BaseException)
            for j, i in enumerate(part):
                charged = got[0] == 1
                r, t = got[4 + 5 * j], got[5 + 5 * j]
                if charged:  # given back: report the counts as they were before this request
                    r -= (1 + got[7 + 5 * j]) if rules[i].requests is not None else 0
                    t -= (costs[i] + got[8 + 5 * j]) if rules[i].tokens is not None else 0
                used_r[i], used_t[i], resets[i] = r, t, got[6 + 5 * j] / 1000
        failed = parts[refused][reply[1]]
        return Outcome(False, failed, reply[2] / 1000, reply[3], used_r, used_t, resets)

    def _merge(self, keys: list[str], rules: list[Rule], parts: list[list[int]], replies: list[list[int]],
               sent_at: float) -> Outcome:
        n = len(keys)
        used_r, used_t, resets = [-1] * n, [-1] * n, [0.0] * n
        stamp = 0
        for part, reply in zip(parts, replies, strict=True):
            got = self._outcome([keys[i] for i in part], [rules[i] for i in part], reply, sent_at)
            stamp = max(stamp, got.stamp_ms)
            for j, i in enumerate(part):
                used_r[i], used_t[i], resets[i] = got.used_requests[j], got.used_tokens[j], got.resets[j]
        return Outcome(True, -1, 0.0, stamp, used_r, used_t, resets)

    def _refund(self, keys: list[str], rules: list[Rule], costs: list[int], reply: list[int]) -> None:
        """Give back what an admitting slot charged (the request, its tokens and any lease granted with them)."""
        for j, (key, rule, cost) in enumerate(zip(keys, rules, costs, strict=True)):
            requests = (1 + reply[7 + 5 * j]) if rule.requests is not None else 0
            tokens = (cost + reply[8 + 5 * j]) if rule.tokens is not None else 0
            if requests or tokens:
                self._add_pending(self.prefix + key, rule, reply[3], -requests, -tokens, force=True)

    def _send_settle(self, keys: list[str], args: list[int]) -> None:
        """Settlements grouped by slot: one call per slot."""
        groups: dict[int, list[int]] = {}
        for i, key in enumerate(keys):
            groups.setdefault(slot_of(key), []).append(i)
        if len(groups) == 1:
            super()._send_settle(keys, args)
            return
        for part in groups.values():
            super()._send_settle([keys[i] for i in part], [a for i in part for a in args[5 * i:5 * i + 5]])

