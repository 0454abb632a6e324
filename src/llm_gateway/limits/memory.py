"""The in-memory limit backend: sliding windows of sub-buckets in a dict, for a single gateway process.

The arithmetic is the one the Redis script does, so both backends admit the same requests. A window of W split
into B buckets of width w counts the B-1 newest buckets fully, the current one, and the one that is sliding out
in proportion to how much of it is still inside [now - W, now].
"""

from __future__ import annotations

import time
from collections.abc import Callable

from llm_gateway.limits.backend import Outcome
from llm_gateway.limits.rules import Rule

SWEEP_EVERY_MS = 60_000


class _Series:
    """The buckets of one dimension (requests or tokens) of a window, with their running total.

    Buckets that left the window are dropped when the window's oldest bucket moves (once per bucket width), so a
    check costs a few dict lookups however many buckets the window has.
    """

    __slots__ = ("buckets", "low", "newest", "total")

    def __init__(self) -> None:
        self.buckets: dict[int, int] = {}
        self.total = 0
        self.low = -1  # no bucket below this index is kept
        self.newest = -1  # the newest non-empty bucket (-1: none)

    def measure(self, oldest: int, frac: float) -> tuple[float, int]:
        """Sum in the window, counting the bucket sliding out in proportion, and the newest non-empty bucket."""
        if oldest > self.low:
            self._drop_before(oldest)
        edge = self.buckets.get(oldest, 0)
        if not edge:
            return float(self.total), self.newest
        return (self.total - edge) + edge * (1.0 - frac), self.newest

    def add(self, idx: int, amount: int) -> None:
        buckets = self.buckets
        buckets[idx] = buckets.get(idx, 0) + amount
        self.total += amount
        if amount > 0 and idx > self.newest:
            self.newest = idx

    def adjust(self, idx: int, delta: int) -> None:
        """Settle: change a charged bucket, never below zero."""
        before = self.buckets[idx]
        after = max(0, before + delta)
        self.buckets[idx] = after
        self.total += after - before
        if not after and idx == self.newest:
            self.newest = max((i for i, v in self.buckets.items() if v > 0), default=-1)

    def _drop_before(self, oldest: int) -> None:
        buckets = self.buckets
        for idx in [i for i in buckets if i < oldest]:
            self.total -= buckets.pop(idx)
        if self.newest < oldest:
            self.newest = -1
        self.low = oldest


class _Window:
    __slots__ = ("expires_ms", "requests", "tokens")

    def __init__(self) -> None:
        self.requests = _Series()
        self.tokens = _Series()
        self.expires_ms = 0


def wait_ms(buckets: dict[int, int], oldest: int, frac: float, need: float, rule: Rule, now: int) -> int:
    """Milliseconds until at least `need` leaves the window (-1: it never can)."""
    freed = 0.0
    for idx in sorted(buckets):
        if idx < oldest:
            continue
        freed += buckets[idx] * (1.0 - frac) if idx == oldest else buckets[idx]
        if freed >= need:
            return (idx + rule.buckets + 1) * rule.bucket_ms - now
    return -1


class MemoryBackend:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._windows: dict[str, _Window] = {}
        self._sweep_at = 0

    async def reserve(self, keys: list[str], rules: list[Rule], costs: list[int]) -> Outcome:
        return self.reserve_now(keys, rules, costs)

    def reserve_now(self, keys: list[str], rules: list[Rule], costs: list[int]) -> Outcome:
        now = int(self._clock() * 1000)
        if now >= self._sweep_at:
            self._sweep(now)
        windows = self._windows
        n = len(keys)
        used_r = [-1] * n
        used_t = [-1] * n
        resets = [0.0] * n
        failed, retry = -1, 0
        for i in range(n):
            rule = rules[i]
            win = windows.get(keys[i])
            if win is None:
                win = windows[keys[i]] = _Window()
            cur = now // rule.bucket_ms
            frac = (now % rule.bucket_ms) / rule.bucket_ms
            oldest = cur - rule.buckets
            newest = -1
            if rule.requests is not None:
                used, newest = win.requests.measure(oldest, frac)
                used_r[i] = -int(-used // 1)
                if used + 1 > rule.requests:
                    wait = wait_ms(win.requests.buckets, oldest, frac, used + 1 - rule.requests, rule, now)
                    failed, retry = _worse(failed, retry, i, wait, rule)
            if rule.tokens is not None:
                used, newest_t = win.tokens.measure(oldest, frac)
                if newest_t > newest:
                    newest = newest_t
                used_t[i] = -int(-used // 1)
                if used + costs[i] > rule.tokens:
                    wait = wait_ms(win.tokens.buckets, oldest, frac, used + costs[i] - rule.tokens, rule, now)
                    failed, retry = _worse(failed, retry, i, wait, rule)
            resets[i] = max(0, (newest + rule.buckets + 1) * rule.bucket_ms - now) / 1000 if newest >= 0 else 0.0
        if failed >= 0:
            return Outcome(False, failed, retry / 1000, now, used_r, used_t, resets)
        for i in range(n):
            rule = rules[i]
            win = windows[keys[i]]
            cur = now // rule.bucket_ms
            if rule.requests is not None:
                win.requests.add(cur, 1)
                used_r[i] += 1
            if rule.tokens is not None and costs[i]:
                win.tokens.add(cur, costs[i])
                used_t[i] += costs[i]
            expires = now + rule.window_ms + rule.bucket_ms
            if expires > win.expires_ms:
                win.expires_ms = expires
            resets[i] = ((cur + rule.buckets + 1) * rule.bucket_ms - now) / 1000
        return Outcome(True, -1, 0.0, now, used_r, used_t, resets)

    def settle(self, keys: list[str], rules: list[Rule], deltas: list[int], stamp_ms: int) -> None:
        now = int(self._clock() * 1000)
        for key, rule, delta in zip(keys, rules, deltas, strict=True):
            win = self._windows.get(key)
            if not delta or win is None or rule.tokens is None:
                continue
            charged = stamp_ms // rule.bucket_ms
            cur = now // rule.bucket_ms
            if charged >= cur - rule.buckets and charged in win.tokens.buckets:
                win.tokens.adjust(charged, delta)
            elif delta > 0:  # the reservation already left the window; an overrun still counts, now
                win.tokens.add(cur, delta)
                win.expires_ms = max(win.expires_ms, now + rule.window_ms + rule.bucket_ms)

    async def close(self) -> None:
        return None

    def _sweep(self, now: int) -> None:
        """Forget windows nothing was charged to for a whole window, so idle users cost no memory."""
        self._sweep_at = now + SWEEP_EVERY_MS
        stale = [key for key, win in self._windows.items() if win.expires_ms < now]
        for key in stale:
            del self._windows[key]


def _worse(failed: int, retry: int, index: int, wait: int, rule: Rule) -> tuple[int, int]:
    """Keep the refusal that lasts longest: the request can pass only when every limit has room."""
    if wait < 0:
        wait = rule.buckets * rule.bucket_ms  # more than the limit itself: it cannot pass; say so at window pace
    if failed < 0 or wait > retry:
        return index, wait
    return failed, retry
