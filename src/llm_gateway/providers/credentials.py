"""Credentials that expire (cloud tokens, temporary keys): fetched by a library in a thread, refreshed before
they expire by a background task; the request path only reads the current value.

The libraries that fetch them (google-auth, botocore, azure-identity) are synchronous and may wait on the
network for seconds: they run in a worker thread, never on the event loop and never while a request waits.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from llm_gateway.errors import UpstreamUnavailable

log = logging.getLogger("llm_gateway.credentials")

T = TypeVar("T")

FIRST_FETCH_TIMEOUT_S = 20.0  # start-up waits this long for the first credentials, then goes on without them
RETRY_MIN_S = 1.0
RETRY_MAX_S = 30.0
SOONEST_S = 0.5  # never refresh more often than this, however short-lived the credentials


@dataclass(frozen=True, slots=True)
class Issued(Generic[T]):
    """Credentials as the request path uses them, and when they expire (epoch seconds; None: never)."""

    value: T
    expires_at: float | None


class CredentialUnavailable(UpstreamUnavailable):
    """No usable credentials for a provider: the attempt fails before anything is sent, and routing moves on."""

    code = "credentials_unavailable"


def describe(exc: BaseException) -> str:
    """A one-line account of why a fetch failed, short and without the library's response bodies in full."""
    text = " ".join(str(exc).split())
    if len(text) > 200:
        text = text[:200] + "…"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class Refresher(Generic[T]):
    """Keeps one provider's credentials current.

    A refresh is due `margin` seconds before expiry, or half-way through the credentials' life when they live
    shorter than twice that. A failed fetch is retried with backoff (1 s doubling to 30 s); the last good value
    is used until it expires, and `problem` says what went wrong meanwhile.
    """

    def __init__(self, provider: str, what: str, fetch: Callable[[], Issued[T]], *, margin: float = 300.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.provider = provider
        self.what = what  # e.g. "Google application default credentials", for messages
        self.fetch = fetch
        self.margin = margin
        self.clock = clock
        self.issued: Issued[T] | None = None
        self.problem: str | None = None
        self.fetches = 0
        self._task: asyncio.Task[None] | None = None
        self._retry = RETRY_MIN_S

    def current(self) -> T:
        """The value to use now (one attribute read and a clock read); raises when there is none."""
        issued = self.issued
        if issued is not None and (issued.expires_at is None or issued.expires_at > self.clock()):
            return issued.value
        # Why stays in the log, /ready and the providers status: it may name hosts the client should not learn.
        raise CredentialUnavailable(f"provider {self.provider!r} has no valid credentials")

    def status(self) -> str | None:
        """None while healthy; otherwise why not, for /ready, /api/v1/providers/status and the log:
        `unavailable: <what>: <why>`, or `cannot be refreshed: ...` while the current ones still work."""
        issued, now = self.issued, self.clock()
        valid = issued is not None and (issued.expires_at is None or issued.expires_at > now)
        if valid and self.problem is None:
            return None
        if not valid:
            why = self.problem or ("not fetched yet" if issued is None else "expired")
            return f"unavailable: {self.what}: {why}"
        left = f"; the current ones expire in {issued.expires_at - now:.0f}s" if (
            issued is not None and issued.expires_at is not None) else ""
        return f"cannot be refreshed: {self.what}: {self.problem}{left}"

    async def start(self) -> None:
        """Fetch the first credentials (waiting up to FIRST_FETCH_TIMEOUT_S), then keep them fresh."""
        first = asyncio.get_running_loop().create_task(self._refresh())
        try:
            await asyncio.wait_for(asyncio.shield(first), FIRST_FETCH_TIMEOUT_S)
        except TimeoutError:
            self.problem = self.problem or f"no answer within {FIRST_FETCH_TIMEOUT_S:.0f}s, still trying"
            log.warning("provider %s: %s", self.provider, self.status())
        self._task = asyncio.get_running_loop().create_task(self._keep_fresh(first))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _keep_fresh(self, first: asyncio.Task[float]) -> None:
        delay = await first
        while True:
            await asyncio.sleep(delay)
            delay = await self._refresh()

    async def _refresh(self) -> float:
        """One fetch in a worker thread; returns the seconds until the next one."""
        try:
            issued = await asyncio.to_thread(self.fetch)
        except Exception as exc:  # whatever the library raises: keep the last value, report, retry
            problem = describe(exc)
            # a warning when the reason changes; the same reason again (every retry) only at debug level
            level = logging.DEBUG if problem == self.problem else logging.WARNING
            self.problem = problem
            log.log(level, "provider %s: cannot obtain %s (%s); retrying in %.0fs", self.provider, self.what,
                    problem, self._retry)
            delay, self._retry = self._retry, min(RETRY_MAX_S, self._retry * 2)
            return delay
        self.fetches += 1
        if self.problem is not None:
            log.info("provider %s: %s obtained again", self.provider, self.what)
        self.issued, self.problem, self._retry = issued, None, RETRY_MIN_S
        if issued.expires_at is None:
            return 3600.0  # never expires (e.g. static keys found by the chain): look again now and then
        life = issued.expires_at - self.clock()
        return max(SOONEST_S, life - self.margin, life / 2)


class Keeper:
    """All providers' refreshers, started side by side (a slow identity endpoint holds start-up up only once)."""

    def __init__(self, refreshers: list[Refresher[Any]]) -> None:
        self.refreshers = refreshers

    async def start(self) -> None:
        await asyncio.gather(*(r.start() for r in self.refreshers))

    async def stop(self) -> None:
        await asyncio.gather(*(r.stop() for r in self.refreshers))
