"""Upstream attempts: the record the dispatcher leaves for each try, and the hook that takes it.

The dispatcher calls `on_attempt(ctx, deployment, started, error, kind, ended)` once per upstream attempt: when
it failed, or once the answer's first bytes went on to the client (`ended` is when the answer arrived). That is
all the coupling between routing and
telemetry: metrics are updated right away, and the attempt is kept on the context for the trace and the
access log, which are built in settle.
"""

from __future__ import annotations

import time
from typing import Any, Protocol

from llm_gateway.errors import GatewayError, UpstreamTimeout, UpstreamUnavailable
from llm_gateway.pipeline.context import RequestContext
from llm_gateway.telemetry.gateway_metrics import GatewayMetrics

PRIMARY, RETRY, FALLBACK, HEDGE = "primary", "retry", "fallback", "hedge"
KINDS = (PRIMARY, RETRY, FALLBACK, HEDGE)


class AttemptHook(Protocol):
    """The dispatcher's hook. `started` is the time.perf_counter() taken just before sending; `ended`, when the
    outcome was known if that was earlier than the call (a successful attempt is noted after its answer went on).
    """

    def __call__(self, ctx: RequestContext, deployment: Any, started: float, error: BaseException | None = None,
                 kind: str = ..., ended: float | None = None) -> None: ...


class Attempt:
    """One try at one deployment."""

    __slots__ = ("deployment", "ended", "error_message", "error_type", "kind", "model", "provider",
                 "provider_type", "started", "status")

    def __init__(self, deployment: Any, started: float, ended: float, kind: str) -> None:
        provider = getattr(deployment, "provider", None)
        self.deployment = deployment
        self.provider = str(getattr(provider, "name", "") or "unknown")
        self.provider_type = str(getattr(provider, "type", "") or "")
        self.model = str(getattr(deployment, "model", "") or "")
        self.started = started
        self.ended = ended
        self.kind = kind if kind in KINDS else PRIMARY
        self.status = 0
        self.error_type = ""
        self.error_message = ""

    @property
    def ok(self) -> bool:
        return not self.error_type

    def __repr__(self) -> str:
        return f"Attempt({self.kind} {self.provider}/{self.model} status={self.status} error={self.error_type!r})"


def error_class(err: BaseException) -> tuple[int, str]:
    """(HTTP status, bounded error type) of a failed attempt, for metric labels and span attributes."""
    if isinstance(err, UpstreamTimeout) or isinstance(err, TimeoutError):
        return 504, "timeout"
    if isinstance(err, UpstreamUnavailable) or isinstance(err, ConnectionError):
        return 502, "connection"
    if isinstance(err, GatewayError):
        status = err.status
        if status == 429:
            return status, "rate_limit"
        if status in (401, 403):
            return status, "auth"
        if status >= 500:
            return status, "server_error"
        if status >= 400:
            return status, "client_error"
        return status, "other"
    if isinstance(err, Exception):
        return 0, "cancelled" if type(err).__name__ == "CancelledError" else "other"
    return 0, "cancelled"


class AttemptRecorder:
    """The `on_attempt` hook create_app gives the dispatcher."""

    def __init__(self, metrics: GatewayMetrics) -> None:
        self.metrics = metrics

    def on_attempt(self, ctx: RequestContext, deployment: Any, started: float,
                   error: BaseException | None = None, kind: str = PRIMARY, ended: float | None = None) -> None:
        now = ended or time.perf_counter()
        attempt = Attempt(deployment, started, now, kind)
        if error is None:
            attempt.status = 200
        else:
            attempt.status, attempt.error_type = error_class(error)
            attempt.error_message = error.message if isinstance(error, GatewayError) else type(error).__name__
        log = ctx.attempt_log
        if log is None:
            ctx.attempt_log = [attempt]
        else:
            log.append(attempt)
        self.metrics.attempt(attempt.provider, attempt.kind, now - started, attempt.error_type)
