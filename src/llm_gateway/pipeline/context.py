"""The per-request context that travels through every stage (and, re-exported, the usage record's type)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from llm_gateway.accounting.usage_types import Usage
from llm_gateway.server.http import Request

__all__ = ["RequestContext", "Usage"]

log = logging.getLogger("llm_gateway.pipeline")


GATEWAY_ERROR = "gateway_error"  # ctx.extensions: the GatewayError the request ended with (the ledger's `error`)


class RequestContext:
    """Everything known about one request, filled in as it moves through the pipeline."""

    __slots__ = (
        "request", "request_id", "endpoint", "started", "body", "model", "user", "stream",
        "client_wants_usage", "route", "deployment", "provider", "upstream_model", "usage", "status",
        "error_type", "first_byte_at", "finished_at", "cache_status", "key", "team", "response_headers",
        "completion_parts", "prompt_tokens_estimate", "attempts", "extensions", "settled", "disconnected",
        "attempt_log", "output", "cost", "cache", "limit_hold",
        "options", "in_flight_on", "deferred", "end_user", "access", "price_source", "guard",
    )

    def __init__(self, request: Request, request_id: str, endpoint: str) -> None:
        self.request = request
        self.request_id = request_id
        self.endpoint = endpoint
        self.started = time.perf_counter()
        self.body: dict[str, Any] = {}
        self.model = ""
        self.user = ""  # who the request is for: the key's user when the key is bound to one (limits, budgets)
        self.end_user = ""  # the `user` the client named (header or body field): recorded, never billed to
        self.stream = False
        self.client_wants_usage = False
        self.route: Any = None
        self.deployment: Any = None
        self.provider = ""
        self.upstream_model = ""
        self.usage: Usage | None = None
        self.status = 0
        self.error_type = ""
        self.first_byte_at = 0.0
        self.finished_at = 0.0
        self.cache_status = ""
        self.key: Any = None
        self.team = ""
        self.response_headers: list[tuple[str, str]] = []
        self.completion_parts: list[str] = []
        self.prompt_tokens_estimate = -1
        self.attempts = 0
        self.extensions: dict[str, Any] = {}
        self.settled = False
        self.disconnected = False
        self.attempt_log: list[Any] | None = None  # telemetry.attempts.Attempt records, when observed
        self.output: Any = None  # the upstream answer for observers: JSON body bytes or the StreamDecoder
        self.limit_hold: Any = None  # limits.stage.Hold: what the limits stage reserved, until settle
        self.cost = 0.0  # USD, set by usage.cost.CostStage on settle
        self.price_source = ""  # where ctx.cost's price came from (usage.pricing); "" when unpriced
        self.cache: Any = None  # cache.stage.Ticket: what the cache found or will store
        self.options: Any = None  # routing.options.RequestOptions: the `x-gateway` extension, when sent
        self.access: Any = None  # routing.access.Access: what the caller may reach; None: everything (no keys)
        self.guard: Any = None  # guardrails.flow.RequestGuard: the guardrails this request gets, when any
        self.in_flight_on: Any = None  # the Deployment whose in-flight count this request holds until settle
        # Work that must be done before the response starts but not before the upstream call: it runs while the
        # upstream works on the request (see `defer`).
        self.deferred: list[Callable[[], None]] = []

    def defer(self, work: Callable[[], None]) -> None:
        """Run `work` later: right after the request went upstream, or else before the response is built.

        For what the client's response needs but the upstream call does not (headers, bookkeeping): the time
        to the first byte is then spent only on what the upstream call needs.
        """
        self.deferred.append(work)

    def run_deferred(self) -> None:
        """Run the deferred work now (in order; what it defers in turn runs too). Failures are logged."""
        while self.deferred:
            work, self.deferred = self.deferred, []
            for item in work:
                try:
                    item()
                except Exception:
                    log.exception("deferred work %s failed for request %s", item, self.request_id)

    @property
    def latency(self) -> float:
        end = self.finished_at or time.perf_counter()
        return end - self.started

    @property
    def ttft(self) -> float:
        """Seconds until the first byte of the answer left for the client (0 when none did)."""
        return self.first_byte_at - self.started if self.first_byte_at else 0.0
