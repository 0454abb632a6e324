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


class _Window:
    __slots__ = ("expires_ms", "requests", "tokens")

    def __init__(self) -> None:
        self.requests: dict[int, int] = {}
        self.tokens: dict[int, int] = {}
        self.expires_ms = 0


def measure(buckets: dict[int, int], oldest: int, frac: float) -> tuple[float, int]:
    """Sum in the window (dropping buckets that left it) and the newest non-empty bucket (-1: none)."""
    used = 0.0
    newest = -1
    for idx in list(buckets):
        value = buckets[idx]
        if idx < oldest:
            del buckets[idx]
            continue
        used += value * (1.0 - frac) if idx == oldest else value
        if value > 0 and idx > newest:
            newest = idx
    return used, newest


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
                used, newest = measure(win.requests, oldest, frac)
                used_r[i] = -int(-used // 1)
                if used + 1 > rule.requests:
                    wait = wait_ms(win.requests, oldest, frac, used + 1 - rule.requests, rule, now)
                    failed, retry = _worse(failed, retry, i, wait, rule)
            if rule.tokens is not None:
                used, newest_t = measure(win.tokens, oldest, frac)
                newest = max(newest, newest_t)
                used_t[i] = -int(-used // 1)
                if used + costs[i] > rule.tokens:
                    wait = wait_ms(win.tokens, oldest, frac, used + costs[i] - rule.tokens, rule, now)
                    failed, retry = _worse(failed, retry, i, wait, rule)
            resets[i] = max(0, (newest + rule.buckets + 1) * rule.bucket_ms - now) / 1000 if newest >= 0 else 0.0
        if failed >= 0:
            return Outcome(False, failed, retry / 1000, now, used_r, used_t, resets)
        for i in range(n):
            rule = rules[i]
            win = windows[keys[i]]
            cur = now // rule.bucket_ms
            if rule.requests is not None:
                win.requests[cur] = win.requests.get(cur, 0) + 1
                used_r[i] += 1
            if rule.tokens is not None and costs[i]:
                win.tokens[cur] = win.tokens.get(cur, 0) + costs[i]
                used_t[i] += costs[i]
            win.expires_ms = max(win.expires_ms, now + rule.window_ms + rule.bucket_ms)
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
            if charged >= cur - rule.buckets and charged in win.tokens:
                win.tokens[charged] = max(0, win.tokens[charged] + delta)
            elif delta > 0:  # the reservation already left the window; an overrun still counts, now
                win.tokens[cur] = win.tokens.get(cur, 0) + delta
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
