"""What a limit backend does (reserve, settle) and what a reservation answers, whatever stores the counters."""

from __future__ import annotations

from typing import Protocol

from llm_gateway.limits.rules import Rule


class BackendUnavailable(Exception):
    """The counter store could not be reached; the stage applies the configured fail mode."""


class Outcome:
    """The answer to a reservation, per check in the order given.

    `used_*` are the counts in the window after this request's charge (before it when refused, and -1 for a
    dimension the rule does not limit); `resets` the seconds until the window is empty again; `stamp_ms` the
    backend's clock at the reservation, which settle needs to find the bucket that was charged.
    """

    __slots__ = ("failed", "ok", "resets", "retry_after", "stamp_ms", "used_requests", "used_tokens")

    def __init__(self, ok: bool, failed: int, retry_after: float, stamp_ms: int, used_requests: list[int],
                 used_tokens: list[int], resets: list[float]) -> None:
        self.ok = ok
        self.failed = failed
        self.retry_after = retry_after
        self.stamp_ms = stamp_ms
        self.used_requests = used_requests
        self.used_tokens = used_tokens
        self.resets = resets


class LimitBackend(Protocol):
    async def reserve(self, keys: list[str], rules: list[Rule], costs: list[int]) -> Outcome:
        """Atomically: if every check has room for one request and its token cost, charge them all."""
        ...

    def settle(self, keys: list[str], rules: list[Rule], deltas: list[int], stamp_ms: int) -> None:
        """Add `deltas` (real cost minus reserved; may be negative) to the reserved tokens. Must not block."""
        ...

    async def close(self) -> None:
        """Finish pending settlements and release connections."""
        ...
